"""The features: pure Python/NumPy, no Spark, no Kafka, no I/O.

Bottom up (each module imports only those above it in this list):

* :mod:`rtfd.features.names` — :data:`FEATURE_NAMES`, the exact column order, and what each
  feature means (import-light);
* :mod:`rtfd.features.timeutil` — event time as integer milliseconds;
* :mod:`rtfd.features.arithmetic` — the kernel's parameters and its only floating-point formulas;
* :mod:`rtfd.features.reference` — :func:`~rtfd.features.reference.step`, one user and one
  transaction at a time: the definition of every user feature;
* :mod:`rtfd.features.state` — the state of many users as columns, and its blob;
* :mod:`rtfd.features.columns` — a batch of transactions as arrays, validated once;
* :mod:`rtfd.features.batch` — :func:`~rtfd.features.batch.step_batch`, the vectorised fold,
  bit for bit the reference (:mod:`rtfd.features.kernel` re-exports the kernel's public names);
* :mod:`rtfd.features.merchant_risk` — merchant fraud rates from matured labels (as-of join);
* :mod:`rtfd.features.offline` — folding a whole history, then joining merchant risk, for
  training and backtests;
* :mod:`rtfd.features.store` — the stream's per-user state, addressed by user (``intmap``).

The reads of the Parquet lake that feed these are in :mod:`rtfd.query.lake_reads`.
"""

from rtfd.features.names import FEATURE_NAMES, RISK_FEATURES, USER_FEATURES

__all__ = ["FEATURE_NAMES", "RISK_FEATURES", "USER_FEATURES"]
