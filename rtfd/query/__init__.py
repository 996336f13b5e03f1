"""Read-only SQL over the appliance's Parquet outputs (DuckDB)."""
