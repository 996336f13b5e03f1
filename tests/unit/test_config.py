"""Settings: precedence, validation, paths and secrets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rtfd.config import load_settings
from rtfd.errors import ConfigError

pytestmark = pytest.mark.unit


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_file_or_env() -> None:
    s = load_settings(environ={})
    assert s.broker_backend == "auto"
    assert s.topic_partitions == 3
    assert s.generator_fraud_rate == pytest.approx(0.01)


def test_file_beats_default_env_beats_file_flag_beats_env(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.toml", "[broker]\nport = 9100\n[generator]\nrate = 50\n")
    env = {"RTFD_CONFIG": str(cfg)}
    assert load_settings(environ=env).broker_port == 9100
    assert load_settings(environ=env).generator_rate == 50.0
    env["RTFD_BROKER_PORT"] = "9200"
    assert load_settings(environ=env).broker_port == 9200
    assert load_settings({"broker_port": "9300"}, environ=env).broker_port == 9300
    # a flag that was not given (None) does not override
    assert load_settings({"broker_port": None}, environ=env).broker_port == 9200
    # settings the env did not touch still come from the file
    assert load_settings({"broker_port": "9300"}, environ=env).generator_rate == 50.0


def test_flat_keys_in_the_file_work_too(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.toml", 'broker_backend = "kafka"\ntopic_partitions = 6\n')
    s = load_settings(environ={"RTFD_CONFIG": str(cfg)})
    assert (s.broker_backend, s.topic_partitions) == ("kafka", 6)


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"RTFD_BROKER_PORT": "abc"}, "broker_port (from RTFD_BROKER_PORT)"),
        ({"RTFD_BROKER_PORT": "70000"}, "broker_port (from RTFD_BROKER_PORT)"),
        ({"RTFD_BROKER_BACKEND": "zookeeper"}, "broker_backend"),
        ({"RTFD_GENERATOR_FRAUD_RATE": "nan"}, "generator_fraud_rate"),
        ({"RTFD_SPARK_UI": "maybe"}, "spark_ui"),
        ({"RTFD_BROKER_BACKEND": "external"}, "broker_bootstrap_servers"),
    ],
)
def test_a_bad_value_gives_one_line_naming_the_setting(env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(environ=env)
    message = str(info.value)
    assert needle in message
    assert "\n" not in message


def test_bad_file_values_name_the_file(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.toml", "[broker]\nport = 'x'\n")
    with pytest.raises(ConfigError, match=r"broker_port \(from .*c\.toml\)"):
        load_settings(environ={"RTFD_CONFIG": str(cfg)})
    write(cfg, "[broker]\nprot = 1\n")
    with pytest.raises(ConfigError, match=r"broker_prot .*unknown setting"):
        load_settings(environ={"RTFD_CONFIG": str(cfg)})
    write(cfg, "not toml [")
    with pytest.raises(ConfigError, match="config file"):
        load_settings(environ={"RTFD_CONFIG": str(cfg)})


def test_rtfd_home_moves_data_and_logs(tmp_path: Path) -> None:
    s = load_settings(environ={"RTFD_HOME": str(tmp_path / "h")})
    assert s.data_dir == tmp_path / "h"
    assert s.models_dir == tmp_path / "h" / "models"
    assert s.log_file == tmp_path / "h" / "logs" / "rtfd.log"
    assert not (tmp_path / "h").exists()  # nothing created until asked
    s.ensure_dirs()
    assert s.data_dir.is_dir() and s.log_root.is_dir()


def test_importing_config_creates_no_directory(tmp_path: Path) -> None:
    home = tmp_path / "fresh-home"
    code = "import rtfd.config, rtfd.cli; rtfd.config.load_settings()"
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin", "RTFD_HOME": str(home / "data")}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    assert not home.exists()


def test_client_secrets_pass_through_but_are_redacted() -> None:
    env = {
        "RTFD_CLIENT_SECURITY_PROTOCOL": "SASL_SSL",
        "RTFD_CLIENT_SASL_PASSWORD": "hunter2-very-secret",
        "RTFD_BROKER_BOOTSTRAP_SERVERS": "kafka.example:9093",
    }
    s = load_settings(environ=env)
    assert s.client["sasl.password"] == "hunter2-very-secret"
    assert s.client["security.protocol"] == "SASL_SSL"
    assert "hunter2" not in repr(s)
    assert "hunter2" not in str(s.redacted())
    from rtfd.broker import client_config

    assert client_config(s)["sasl.password"] == "hunter2-very-secret"
    assert client_config(s)["bootstrap.servers"] == "kafka.example:9093"


def test_readme_configuration_table_is_current() -> None:
    from rtfd.config import settings_table_markdown

    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    start = readme.index("<!-- settings-table:start -->") + len("<!-- settings-table:start -->")
    end = readme.index("<!-- settings-table:end -->")
    assert readme[start:end].strip() == settings_table_markdown(), (
        "README's configuration table is stale: "
        "regenerate it from rtfd.config.settings_table_markdown()"
    )
