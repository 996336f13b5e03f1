"""Fixtures of the spark tier: a quiet local SparkSession per module, test settings, helpers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rtfd.config import Settings, load_settings

# Local mode sized for CI's 2 cores: two task slots, two shuffle partitions, no UI.
SPARK_TEST_SETTINGS: dict[str, Any] = {
    "spark_master": "local[2]",
    "spark_shuffle_partitions": 2,
    "spark_ui": False,
}


def spark_settings(home: Path, **overrides: Any) -> Settings:
    """Settings for a Spark test rooted at ``home`` (real jar cache, no config file)."""
    environ = {k: v for k, v in os.environ.items() if k == "RTFD_CACHE_DIR"}
    environ["RTFD_CONFIG"] = str(home / "no-config.toml")
    return load_settings({"home": str(home), **SPARK_TEST_SETTINGS, **overrides}, environ=environ)


@pytest.fixture(scope="module")
def spark_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("spark-home")


@pytest.fixture(scope="module")
def spark(spark_home: Path) -> Iterator[Any]:
    """One SparkSession for the whole module (Spark costs seconds to start), stopped after."""
    from rtfd.stream.procs import checkpoint_tag
    from rtfd.stream.session import start_spark, stop_spark

    settings = spark_settings(spark_home)
    handle = start_spark(settings, tag=checkpoint_tag(settings.checkpoints_dir), with_kafka=False)
    try:
        yield handle.spark
    finally:
        stop_spark(handle)
