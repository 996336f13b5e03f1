"""What the stream's SparkSession is given for a cluster master, without starting Spark: where
the driver binds, and the Python files shipped to the executors."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from rtfd.config import load_settings
from rtfd.errors import ConfigError

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("master", "loopback"),
    [
        ("local[*]", True),
        ("local[2]", True),
        (" LOCAL ", True),
        ("spark://127.0.0.1:7077", True),
        ("spark://localhost:7077", True),
        ("SPARK://LOCALHOST:7077", True),
        ("spark://[::1]:7077", True),
        ("spark://127.0.0.1:7077,localhost:7078", True),
        ("spark://127.0.0.1:7077,10.0.0.2:7077", False),
        ("spark://10.0.0.2:7077", False),
        ("spark://master.example.com:7077", False),
        ("spark://127.0.0.1.example.com:7077", False),
        ("spark://localhost.evil:7077", False),
        ("spark://", False),
        ("yarn", False),
        ("k8s://https://127.0.0.1:6443", False),
    ],
)
def test_only_a_cluster_wholly_on_loopback_binds_the_driver_there(
    master: str, loopback: bool
) -> None:
    from rtfd.stream.session import master_on_loopback, spark_conf_items

    assert master_on_loopback(master) is loopback
    settings = load_settings({"spark_master": master.strip()})
    conf = spark_conf_items(settings, app_name="t", jars=[], log4j2=None, tag="t")
    assert (conf.get("spark.driver.host") == "127.0.0.1") is loopback
    assert (conf.get("spark.driver.bindAddress") == "127.0.0.1") is loopback


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("spark.driver.host", "10.1.2.3"),
        ("spark.driver.bindAddress", "0.0.0.0"),
        ("spark.pyspark.python", "/opt/rtfd/bin/python"),  # where the workers' venv is
        ("spark.executor.memory", "4g"),
    ],
)
def test_spark_conf_wins_over_what_rtfd_derives(key: str, value: str) -> None:
    from rtfd.stream.session import spark_conf_items

    settings = load_settings({"spark_master": "spark://127.0.0.1:7077"}).replace(
        spark_conf={key: value}
    )
    conf = spark_conf_items(settings, app_name="t", jars=[], log4j2=None, tag="t")
    assert conf[key] == value


def test_the_zip_holds_the_package_and_imports_from_itself(tmp_path: Path) -> None:
    import rtfd
    from rtfd.stream.session import package_zip

    dest = package_zip(tmp_path / "out" / "rtfd.zip")
    names = zipfile.ZipFile(dest).namelist()
    assert "rtfd/__init__.py" in names and "rtfd/stream/state.py" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith((".pyc", ".pyo"))]
    assert all(n.startswith("rtfd/") for n in names)
    root = Path(rtfd.__file__).parent
    sources = {p.relative_to(root.parent).as_posix() for p in root.rglob("*.py")}
    assert sources - {n for n in names if n.endswith(".py")} == set()
    assert not list(dest.parent.glob(".*.tmp"))  # written under a temporary name, then renamed
    # As on an executor: the zip goes before site-packages, where rtfd is installed too.
    code = "import sys; sys.path.insert(1, sys.argv[1]); import rtfd.features.kernel as k; "
    code += "print(k.__file__)"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(
        [sys.executable, "-c", code, str(dest)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert out.returncode == 0 and out.stdout.strip().startswith(str(dest)), out.stderr[-2000:]


def test_a_cluster_master_ships_rtfd_and_a_local_one_ships_nothing(tmp_path: Path) -> None:
    from rtfd.stream.session import py_files

    local = load_settings({"home": str(tmp_path), "spark_master": "local[2]"})
    assert py_files(local, {}) == []
    cluster = load_settings({"home": str(tmp_path), "spark_master": "spark://10.0.0.2:7077"})
    (shipped,) = py_files(cluster, {})
    assert Path(shipped) == cluster.run_dir / "spark-py" / "rtfd-driver.zip"
    assert Path(shipped).is_file()


def test_spark_submit_py_files_of_spark_conf_are_shipped_first(tmp_path: Path) -> None:
    from rtfd.stream.session import PY_FILES_KEY, py_files

    deps = [tmp_path / "rtfd.zip", tmp_path / "more.egg"]  # a user's own rtfd.zip too
    for d in deps:
        d.write_bytes(b"PK\x05\x06" + b"\0" * 18)
    remote = "hdfs://nn:8020/libs/x.zip"
    settings = load_settings({"home": str(tmp_path), "spark_master": "spark://h:7077"})
    conf = {PY_FILES_KEY: f" {deps[0]}, file://{deps[1]} ,,{remote}"}
    shipped = py_files(settings, conf)
    assert shipped[:3] == [str(deps[0]), f"file://{deps[1]}", remote]
    assert shipped[3].endswith("rtfd-driver.zip") and len(shipped) == 4


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("{tmp}/missing.zip", "is not a file"),
        ("file://{tmp}/missing.zip", "is not a file"),
        ("{tmp}", "is not a file"),
        ("{tmp}/wheel.whl", "is not a .zip, .egg or .jar"),
        ("{tmp}/code.py", "is not a .zip, .egg or .jar"),
        ("{tmp}/archive.tar.gz", "is not a .zip, .egg or .jar"),
    ],
)
def test_a_py_file_spark_cannot_ship_is_one_line(tmp_path: Path, entry: str, message: str) -> None:
    from rtfd.stream.session import PY_FILES_KEY, py_files

    for name in ("wheel.whl", "code.py", "archive.tar.gz"):
        (tmp_path / name).write_bytes(b"x")
    settings = load_settings({"home": str(tmp_path), "spark_master": "spark://h:7077"})
    with pytest.raises(ConfigError) as info:
        py_files(settings, {PY_FILES_KEY: entry.format(tmp=tmp_path)})
    text = str(info.value)
    assert message in text and PY_FILES_KEY in text and "\n" not in text
