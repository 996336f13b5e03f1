"""Training, thresholds, metrics, the model registry, backtests and explanations.

Heavy libraries (pandas, scikit-learn, XGBoost, DuckDB, matplotlib) are imported by the modules
that need them, never by :mod:`rtfd.cli.ml`, so ``rtfd --help`` stays instant.
"""
