"""The feature kernel: pure Python/NumPy, no Spark, no Kafka.

* :mod:`rtfd.features.names` — :data:`FEATURE_NAMES`, the exact column order (import-light);
* :mod:`rtfd.features.kernel` — the per-user step and its vectorised batch twin;
* :mod:`rtfd.features.offline` — folding a whole history for training and backtests;
* :mod:`rtfd.features.merchant_risk` — merchant fraud rates from matured labels (as-of join).
"""

from rtfd.features.names import FEATURE_NAMES, RISK_FEATURES, USER_FEATURES

__all__ = ["FEATURE_NAMES", "RISK_FEATURES", "USER_FEATURES"]
