"""The Spark Structured Streaming job: the only package that imports pyspark.

* :mod:`rtfd.stream.runner` — :class:`StreamRunner`, the job as an object (start/stop/state/
  progress observers) for the CLI, the supervisor and the TUI;
* :mod:`rtfd.stream.session` — the quiet, stoppable SparkSession; :mod:`rtfd.stream.connector` —
  Spark's Kafka connector, resolved once and cached;
* :mod:`rtfd.stream.validate` — parsing and validation derived from :mod:`rtfd.schemas`;
* :mod:`rtfd.stream.state` — per-user features over buckets of users (applyInPandasWithState);
* :mod:`rtfd.stream.batch`, :mod:`rtfd.stream.scoring`, :mod:`rtfd.stream.sinks` — scoring with
  hot reload, exactly-once Parquet, alerts and dead letters;
* :mod:`rtfd.stream.progress` — per-batch progress; :mod:`rtfd.stream.procs` — lock and orphans.

Heavy imports (pyspark, pandas) happen inside functions, so importing this package is cheap.
"""
