"""The transaction simulator: population, behaviour, fraud rules, delayed labels.

* Offline: :func:`rtfd.generator.history.simulate_history` (a DataFrame with ground truth) and
  :func:`~rtfd.generator.history.write_history` (Parquet).
* Live: :class:`rtfd.generator.live.LiveGenerator` (paced, pausable, on its own thread) and
  :func:`~rtfd.generator.live.produce_transactions` (as fast as possible, for tests).
* Replay: :class:`rtfd.generator.replay.FileSource` for any Parquet/CSV file.

See docs/simulator.md. Nothing heavy is imported here: ``rtfd --help`` stays instant.
"""
