"""The Spark Structured Streaming job: the only package that imports pyspark.

* :mod:`rtfd.stream.runner` — :class:`StreamRunner`, the job as an object (start/stop/state/
  progress observers) for the CLI, the supervisor and the TUI;
* :mod:`rtfd.stream.session` — the quiet, stoppable SparkSession; :mod:`rtfd.stream.connector` —
  Spark's Kafka connector, resolved once and cached;
* :mod:`rtfd.stream.decode` — Kafka records to validated records and dead letters (one validator,
  vectorised, for both paths);
* :mod:`rtfd.stream.engine` — the local path: per-user state beside ``foreachBatch``, durable
  through :mod:`rtfd.stream.durable` (redo log, snapshots); :mod:`rtfd.stream.risk` — the
  versioned merchant-risk tables;
* :mod:`rtfd.stream.cluster` and :mod:`rtfd.stream.state` — the cluster path: decoding on the
  executors and per-user features over buckets of users in Spark's state store;
* :mod:`rtfd.stream.batch` — the batch step both paths share, pure (risk features, score,
  threshold, alert and dead-letter records), tested on plain frames;
* :mod:`rtfd.stream.sinks` — where its output goes, and nothing else: Parquet, Kafka (alerts,
  dead letters), the console; :mod:`rtfd.stream.scoring` — models with hot reload;
* :mod:`rtfd.stream.progress` — per-batch progress; :mod:`rtfd.stream.procs` — lock and orphans.

Heavy imports (pyspark, pandas) happen inside functions, so importing this package is cheap.
"""
