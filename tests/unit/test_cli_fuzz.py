"""Fuzzing the rtfd command line: a bad value anywhere is one line on stderr and exit code 2.

Every subcommand and each of its flags is discovered from rtfd.cli's argparse parser (nested ones
too: ``models show``, ``broker up``), so a flag added later is fuzzed without being listed here; a
flag whose kind the parser does not tell (a free string) must be classified in :data:`KINDS`, or
``test_every_flag_is_classified`` fails. Each flag gets the generic bad values (empty, /proc/nope,
a directory, a file of random bytes, -1, nan, inf, 1e309, a 10 KB string, a NUL byte) and the bad
values of its kind (an integer out of range, a corrupt Parquet, a CSV with wrong columns, bad SQL,
a model version that does not exist ...). The directory settings and the config file (--home,
RTFD_HOME, RTFD_LOG_DIR, RTFD_CACHE_DIR, --config) are crossed with every command; every setting
gets the generic values through its RTFD_* variable; a few broken TOML files are loaded.

Each case runs ``rtfd.cli.main(argv)`` in-process with its own RTFD_HOME and asserts:

* no "Traceback" on stdout or stderr, and no internal error;
* a value that is invalid for its kind ("strict") exits 2, its error line names the flag, the
  setting or the value, and nothing heavy started: the Spark stream, the appliance, the live
  generator and the TUI are stubs here that record being reached;
* a value that may be valid exits 0 or 2, or a command's own report code (1 from ``broker
  status``: not running; from ``doctor``: a check failed), with no error line then;
* exit 2 comes with exactly one error line, ``rtfd: <Title>: <message>``, the last on stderr.
  Progress and information lines a command printed before it failed (``rtfd backtest: [    ]
  reading ...``, ``rtfd: replaying 3 rows``) are allowed; any other stderr line (a log warning,
  a library's message) is not. argparse errors are one line as well: rtfd's parser prints
  ``rtfd: Invalid argument: <argparse's message> (see `rtfd CMD --help`)`` instead of the usage.

No broker runs: commands see an external broker on a closed 127.0.0.1 port, with time-outs cut so
reaching it fails in well under a second with BrokerUnavailable.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest

from rtfd import cli
from rtfd.config import Settings

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]

LONG = "x" * 10_240
# A newline and a terminal escape too: the error must stay one line and print no control codes.
GENERIC = ("", "/proc/nope", "{dir}", "{random}", "-1", "nan", "inf", "1e309", LONG, "a\x00b")
GENERIC += ("two\nlines", "\x1b[2Jred")
ENV_GENERIC = tuple(v for v in GENERIC if "\x00" not in v)  # the environment cannot hold NUL

# Commands with a documented non-zero exit that is a report, not an error (nothing on stderr).
REPORT_CODES: dict[tuple[str, ...], tuple[int, ...]] = {
    ("doctor",): (1,),
    ("broker", "status"): (1,),
}

# Arguments that make a command otherwise valid, so the fuzzed flag is the only bad thing. The
# fuzzed flag comes after them (argparse: the last value wins); a fuzzed positional replaces its
# baseline. Offline `generate` flags get a tiny history to write.
OFFLINE = ("--history", "0.5", "--out", "{tmp}/h.parquet", "--users", "40", "--merchants", "10")
BASELINES: dict[tuple[str, ...], dict[str, tuple[str, ...]]] = {
    ("replay",): {"file": ("{valid.csv}",)},
    ("models", "promote"): {"model_version": ("v0001",)},
    ("backtest",): {"data": ("--data", "{valid.csv}")},
    ("query",): {"sql": ("SELECT 1",)},
    ("label",): {"transaction_id": ("tx_1",), "verdict": ("fraud",)},
}
OFFLINE_DESTS = {"history", "out", "set_generator_seed", "set_generator_users"}
OFFLINE_DESTS |= {"set_generator_merchants", "set_generator_fraud_rate"}
# Where the global flags are fuzzed: the DuckDB query and the broker client.
GLOBAL_FLAG_COMMANDS = (("query",), ("broker", "status"))


@dataclass(frozen=True)
class Kind:
    """What a flag's value is, which decides its bad values and which of them are valid."""

    # number, choice, text, dir_setting, config, in_file, out_file, out_dir, sql, version, date,
    # export
    name: str
    integer: bool = False
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    choices: tuple[str, ...] = ()


TEXT = Kind("text")
# Flags whose kind the parser cannot tell: free strings. Typed flags (cli.Number, choices,
# settings flags) are classified from the parser itself.
KINDS: dict[tuple[tuple[str, ...], str], Kind] = {
    ((), "config"): Kind("config"),
    (("generate",), "topic"): TEXT,
    (("generate",), "labels_topic"): TEXT,
    (("generate",), "out"): Kind("out_file"),
    (("replay",), "file"): Kind("in_file"),
    (("replay",), "currency"): TEXT,
    (("replay",), "topic"): TEXT,
    (("replay",), "labels_topic"): TEXT,
    (("stream",), "topic_prefix"): TEXT,
    (("train",), "data"): Kind("in_file"),
    (("models", "show"), "model_version"): Kind("version"),
    (("models", "promote"), "model_version"): Kind("version"),
    (("backtest",), "data"): Kind("in_file"),
    (("backtest",), "train_start"): Kind("date"),
    (("backtest",), "json"): Kind("out_file"),
    (("backtest",), "plots"): Kind("out_dir"),
    (("query",), "sql"): Kind("sql"),
    (("query",), "csv"): Kind("export"),
    (("label",), "transaction_id"): TEXT,
}

# The corrupt and mistaken input files (made by the ``files`` fixture).
INPUT_FILES = (
    "empty.csv",
    "header_only.csv",
    "random.csv",
    "random.parquet",
    "text.parquet",
    "wrong_columns.csv",
    "wrong_columns.parquet",
    "bad_timestamps.csv",
    "bad_labels.csv",
    "bad_amounts.csv",
    "missing_labels.csv",
    "random.txt",
    "random.csv.gz",
    "unreadable.csv",
    "parquet_dir_corrupt",
)

# Values of each kind beyond the generic ones: (value, valid) where valid=None means "judge it".
EXTRA: dict[str, tuple[tuple[str, bool | None], ...]] = {
    "number": (
        ("1.5", None),
        ("0x10", None),
        ("9" * 400, None),
        ("1e300", None),
        ("-inf", None),
        ("0", None),
    ),
    "in_file": (
        *((f"{{{name}}}", False) for name in INPUT_FILES),
        ("{random}/x.csv", False),
        ("/dev/null", False),
    ),
    "out_file": (
        ("/proc/nope/x.parquet", False),
        ("/proc/x.json", False),
        ("{random}/x.json", False),
        ("{dir}/" + "n" * 300, False),
    ),
    "out_dir": (("/proc", False), ("{random}/sub", False), ("{dir}/" + "n" * 300, False)),
    "sql": (
        ("SELEC 1", False),
        ("DROP TABLE labels", False),
        ("SELECT 1; SELECT 2", False),
        ("COPY labels TO 'x.csv'", False),
        ("ATTACH 'x.db'", False),
        ("INSTALL httpfs", False),
        ("SET threads = 1", False),
        ("PRAGMA version", False),
        ("SELECT * FROM read_csv('/etc/passwd')", False),
        ("SELECT * FROM nope", False),
        ("SELECT 'a'::INTEGER", False),
        ("SELECT " + "(" * 3000 + "1" + ")" * 3000, True),
        ("SELECT 1 // 0", True),
        ("SELECT '\x00'", True),
        ("EXPLAIN SELECT 1", True),
    ),
    "version": tuple(
        (v, False) for v in ("v9999", "v0000", "../v0001", "V0001", "v0001/..", "latest", "v1")
    ),
    "date": (
        ("2026-13-01", None),
        ("2026-02-30", None),
        ("0001-01-01", None),
        ("9999-12-31", None),
    ),
    "export": (
        ("../x.csv", None),
        ("/tmp/x.csv", None),
        ("x.txt", None),
        ("a b.csv", None),
        (".csv", None),
        ("sub/x.csv", None),
        ("ok.csv", None),
    ),
}

# Inputs that are fine for a command by design: replay sends unparseable timestamps and odd
# labels as they are, for the stream's validation to reject (that is what replay is for).
VALID_INPUTS: dict[tuple[str, ...], set[str]] = {
    ("replay",): {
        "{bad_timestamps.csv}",
        "{bad_labels.csv}",
        "{bad_amounts.csv}",
        "{missing_labels.csv}",
        "{header_only.csv}",
    },
}
# Words that name the culprit in the error line of a kind whose message quotes neither the flag
# nor the value (the SQL panel's errors, the exports directory).
KIND_CULPRITS = {"sql": ("Query error",), "export": ("export",)}

DIR_VALUES = ("/proc/nope", "/proc", "{random}", "{random}/sub", "{dir}/" + "d" * 300)
CONFIG_VALUES = ("/proc/nope", "{dir}", "{random}", "{bad.toml}", "{dir}/" + "c" * 300)
DIR_SOURCES = ("--home", "RTFD_HOME", "RTFD_LOG_DIR", "RTFD_CACHE_DIR")
SETTING_OF = {
    "--home": "home",
    "RTFD_HOME": "home",
    "RTFD_LOG_DIR": "log_dir",
    "RTFD_CACHE_DIR": "cache_dir",
}

TOML_CASES: tuple[tuple[str, bool], ...] = (
    ('home = "a\\u0000b"', False),
    ('log_dir = "/proc/nope"', False),
    ('broker_port = "x"', False),
    ("broker_port = 99999999999999999999999", False),
    ("client = 5", False),
    ("spark_conf = 5", False),
    ("[broker]\nport = [1]", False),
    ("nope = 1", False),
    ("log_level = 1.5", False),
    ("[[generator]]\nrate = 1", False),
    ("generator_rate = nan", False),
    ("generator_rate = inf", False),
    ("generator_seed = true", False),
    ("query_row_cap = 1.5", False),
    ("spark_conf = {a = {b = 1}}", True),
    ("log_dir = 5", True),
)


# -- the parser, walked -------------------------------------------------------------------------
@dataclass(frozen=True)
class Flag:
    """One argument of one command as the parser declares it."""

    path: tuple[str, ...]  # () = the global flags
    action: argparse.Action

    @property
    def dest(self) -> str:
        return self.action.dest

    @property
    def name(self) -> str:
        return self.action.option_strings[-1] if self.action.option_strings else self.dest


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found.update(action.choices)
    return found


def walk(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every (command path, parser) pair; a command with subcommands is not a leaf itself."""
    children = _subcommands(parser)
    if not children or not path:
        yield path, parser
    for name, child in children.items():
        yield from walk(child, (*path, name))


def value_flags() -> list[Flag]:
    """Every argument that takes a value, global ones under the path ()."""
    flags = []
    for path, parser in walk(cli.build_parser()):
        for action in parser._actions:
            if action.nargs == 0 or isinstance(action, argparse._SubParsersAction):
                continue  # --help, --force, subcommand choice: no value to fuzz
            flags.append(Flag(path, action))
    return flags


def leaf_commands() -> list[tuple[str, ...]]:
    return [path for path, _ in walk(cli.build_parser()) if path]


def kind_of(flag: Flag) -> Kind:
    action = flag.action
    if isinstance(action.type, cli.Number):
        t = action.type
        return Kind("number", t.kind is int, t.lo, t.hi, t.lo_open)
    if action.type in (int, float):
        return Kind("number", action.type is int)  # unbounded, but nan/inf/1e309 stay invalid
    if action.dest.startswith("set_"):
        return settings_kind(action.dest[4:])
    if action.choices:
        return Kind("choice", choices=tuple(action.choices))
    return KINDS[(flag.path, flag.dest)]


# Settings that only mean something with broker_security (the cases run without it): any value
# but "" is refused, naming the setting.
NEEDS_SECURITY = {"broker_sasl_username", "broker_sasl_password", "broker_ssl_ca_file"}


def settings_kind(name: str) -> Kind:
    hint = typing.get_type_hints(Settings)[name]
    meta = Settings.__dataclass_fields__[name].metadata
    if name in NEEDS_SECURITY:
        return Kind("needs_security")
    if meta.get("auto_int"):
        lo, hi = meta["auto_int"]
        return Kind("auto_number", True, lo, hi)
    if hint in (int, float):
        return Kind("number", hint is int, meta.get("min"), meta.get("max"))
    if meta.get("choices"):
        return Kind("choice", choices=tuple(meta["choices"]))
    if hint is bool:
        return Kind("choice", choices=("1", "true", "yes", "on", "0", "false", "no", "off"))
    if hint is str:
        return TEXT
    if hint == (Path | None):
        return Kind("dir_setting")
    raise LookupError(f"setting {name}: no kind for {hint}")


def valid_number(kind: Kind, text: str) -> bool:
    try:
        value = int(text.strip().replace("_", "")) if kind.integer else float(text)
    except (ValueError, OverflowError):
        return False
    if value != value or value in (float("inf"), float("-inf")):
        return False
    if kind.lo is not None and (value <= kind.lo if kind.lo_open else value < kind.lo):
        return False
    return kind.hi is None or value <= kind.hi


def judge(kind: Kind, value: str) -> bool:
    """Whether ``value`` (placeholders resolved) may be valid for ``kind``; False = strict."""
    if kind.name == "number":
        return valid_number(kind, value)
    if kind.name == "auto_number":
        return value.strip().lower() == "auto" or valid_number(kind, value)
    if kind.name == "needs_security":
        return value == ""
    if kind.name == "choice":
        return value in kind.choices
    if kind.name == "dir_setting":
        return value == "" or usable_dir(value)
    if kind.name == "date":
        try:
            datetime.strptime(value, "%Y-%m-%d")
        except ValueError:
            return value == ""
        return True
    if kind.name == "export":
        path = Path(value)
        return value == "" or (
            not path.is_absolute()
            and ".." not in path.parts
            and re.fullmatch(r"[\w.\-]+\.csv", path.name) is not None
        )
    if kind.name in ("out_file", "out_dir"):
        return value == "" or (usable_dir(value) and (kind.name == "out_dir" or not isdir(value)))
    # Free text may be anything; the other kinds are only fed bad values (an empty one may mean
    # "not given" for an optional flag).
    return kind.name == "text" or value == ""


def usable_dir(value: str) -> bool:
    """Whether ``value`` is, or can be made, a writable directory (or file) path."""
    if "\x00" in value or any(len(part) > 255 for part in value.split("/")):
        return False
    path = Path(value).absolute()
    probe = path
    while not probe.exists():
        probe = probe.parent
    if str(path).startswith("/proc"):
        return False
    return probe.is_dir() or (probe == path and probe.is_file())


def isdir(value: str) -> bool:
    return "\x00" not in value and Path(value).is_dir()


def kind_values(kind: Kind) -> list[tuple[str, bool | None]]:
    values: list[tuple[str, bool | None]] = [(v, None) for v in GENERIC]
    values += list(EXTRA.get(kind.name, ()))
    if kind.name == "number":
        if kind.lo is not None:
            values.append((f"{kind.lo - 1:g}", None))
            if kind.lo_open:
                values.append((f"{kind.lo:g}", None))
        if kind.hi is not None:
            values.append((f"{kind.hi * 2 + 1:g}", None))
    if kind.name == "choice":
        values += [(kind.choices[0].upper(), None), (f" {kind.choices[0]}", None)]
    return values


# -- cases --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    """One run of ``rtfd``: argv and environment (placeholders unresolved) and what to expect."""

    id: str
    command: tuple[str, ...]
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    valid: bool | None = None  # None: judged once placeholders are resolved
    kind: Kind = TEXT
    value: str = ""
    culprits: tuple[str, ...] = ()
    config_text: str | None = None


def _label(value: str) -> str:
    text = value if len(value) <= 24 else f"{value[:12]}..{len(value)}"
    return repr(text)[1:-1].replace("\\x00", "NUL") or "EMPTY"


def baseline(command: tuple[str, ...], dest: str) -> tuple[str, ...]:
    if command == ("generate",) and dest in OFFLINE_DESTS:
        return OFFLINE
    args: tuple[str, ...] = ()
    for base_dest, tokens in BASELINES.get(command, {}).items():
        if base_dest != dest:
            args += tokens
    return args


def flag_cases() -> list[Case]:
    cases = []
    for flag in value_flags():
        for command in [flag.path] if flag.path else GLOBAL_FLAG_COMMANDS:
            cases += _cases_of(flag, command)
    return cases


def _cases_of(flag: Flag, command: tuple[str, ...]) -> list[Case]:
    """The cases of one flag on one command: its kind's values, each after the baseline."""
    kind = kind_of(flag)
    # The flag as typed (argparse names a positional by its metavar), the setting it sets, and
    # the kind's own word; the value itself is added when the case runs.
    action = flag.action
    culprits = list(action.option_strings) or [str(action.metavar or action.dest)]
    culprits += KIND_CULPRITS.get(kind.name, ())
    if flag.dest.startswith("set_"):
        culprits.append(flag.dest[4:])
    cases = []
    for value, valid in kind_values(kind):
        token = (flag.name, value) if flag.action.option_strings else (value,)
        if flag.path:
            argv = (*command, *baseline(command, flag.dest), *token)
        else:
            argv = (*token, *command, *baseline(command, ""))
        cases.append(
            Case(
                id=f"{'' if flag.path else 'global '}{' '.join(command)} {flag.name}="
                f"{_label(value)}",
                command=command,
                argv=argv,
                valid=True if value in VALID_INPUTS.get(command, ()) else valid,
                kind=kind,
                value=value,
                culprits=tuple(c for c in culprits if c),
            )
        )
    return cases


def directory_cases() -> list[Case]:
    """Each directory setting and the config file, pointed somewhere unusable, for every command."""
    cases = []
    for command in leaf_commands():
        base = baseline(command, "")
        for source in DIR_SOURCES:
            setting = SETTING_OF[source]
            for value in DIR_VALUES:
                if source.startswith("--"):
                    argv, env = (source, value, *command, *base), ()
                else:
                    argv, env = (*command, *base), ((source, value),)
                cases.append(
                    Case(
                        id=f"{' '.join(command)} {source}={_label(value)}",
                        command=command,
                        argv=argv,
                        env=env,
                        valid=False,
                        value=value,
                        culprits=(setting,),
                    )
                )
        for value in CONFIG_VALUES:
            cases.append(
                Case(
                    id=f"{' '.join(command)} --config={_label(value)}",
                    command=command,
                    argv=("--config", value, *command, *base),
                    valid=False,
                    value=value,
                    culprits=("config file",),
                )
            )
    return cases


def environment_cases() -> list[Case]:
    """Every setting through its RTFD_* variable, with the generic values."""
    cases = []
    for name in Settings.__dataclass_fields__:
        if name in ("client", "client_java", "spark_conf"):
            continue  # tables (client properties are passed through)
        kind = settings_kind(name)
        var = f"RTFD_{name.upper()}"
        for value in ENV_GENERIC:
            cases.append(
                Case(
                    id=f"env {var}={_label(value)}",
                    command=("query",),
                    argv=("query", "SELECT 1"),
                    env=((var, value),),
                    kind=kind,
                    value=value,
                    culprits=(name,),
                )
            )
    return cases


def config_file_cases() -> list[Case]:
    return [
        Case(
            id=f"toml {text.splitlines()[0]}",
            command=("query",),
            argv=("--config", "{tmp}/c.toml", "query", "SELECT 1"),
            valid=valid,
            config_text=text,
            culprits=("c.toml", "setting"),
        )
        for text, valid in TOML_CASES
    ]


ALL_CASES = flag_cases() + directory_cases() + environment_cases() + config_file_cases()


# -- fixtures -----------------------------------------------------------------------------------
VALID_CSV = (
    "transaction_id,timestamp,user_id,merchant_id,amount,label\n"
    "t1,2026-01-01T00:00:00Z,u1,m1,10.5,0\n"
    "t2,2026-01-01T06:00:00Z,u2,m1,99.0,1\n"
    "t3,2026-01-02T12:00:00Z,u1,m2,5.25,0\n"
)


@pytest.fixture(scope="session")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The placeholder files: good, corrupt and mistaken inputs, made once."""
    import pandas as pd

    root = tmp_path_factory.mktemp("fuzz-files")
    rnd = os.urandom(4096)
    (root / "dir").mkdir()
    for name in ("random", "random.csv", "random.parquet", "random.txt", "random.csv.gz"):
        (root / name).write_bytes(rnd)
    (root / "unreadable.csv").write_bytes(rnd)  # corrupt for root, unreadable for anyone else
    (root / "unreadable.csv").chmod(0)
    (root / "empty.csv").write_text("")
    (root / "header_only.csv").write_text(VALID_CSV.splitlines()[0] + "\n")
    (root / "text.parquet").write_text("PAR1 not really\n")
    (root / "wrong_columns.csv").write_text("a,b\n1,2\n")
    pd.DataFrame({"a": [1, 2]}).to_parquet(root / "wrong_columns.parquet")
    (root / "bad_timestamps.csv").write_text(VALID_CSV.replace("2026-01-01T00:00:00Z", "soon"))
    (root / "bad_labels.csv").write_text(VALID_CSV.replace(",1\n", ",yes\n"))
    (root / "bad_amounts.csv").write_text(VALID_CSV.replace(",10.5,", ",ten,"))
    (root / "missing_labels.csv").write_text(VALID_CSV.replace(",1\n", ",\n"))
    (root / "valid.csv").write_text(VALID_CSV)
    (root / "bad.toml").write_text("[broker\nport = 1\n")
    corrupt = root / "parquet_dir_corrupt"
    corrupt.mkdir()
    (corrupt / "part-0.parquet").write_bytes(b"PAR1" + rnd + b"PAR1")
    names = (*INPUT_FILES, "dir", "random", "valid.csv", "bad.toml")
    return {name: str(root / name) for name in names}


def closed_port() -> int:
    """A 127.0.0.1 port nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Heavy:
    """What a case reached that starts real work (a stub here)."""

    reached: list[str] = field(default_factory=list)


@pytest.fixture
def heavy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, isolated_env: Path) -> Iterator[Heavy]:
    """A sandbox for one case: no broker, no Spark, no TUI; logging and signals restored after."""
    import rtfd.broker.admin as admin
    import rtfd.generator.live as live
    import rtfd.stream.foreground as stream_cli
    import rtfd.supervisor as supervisor
    from rtfd import logs
    from rtfd.errors import BrokerUnavailable

    state = Heavy()
    port = closed_port()
    monkeypatch.chdir(tmp_path)  # relative values ("-1", "nan") land here
    for xdg in ("XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME", "XDG_CONFIG_HOME"):
        monkeypatch.setenv(xdg, str(tmp_path / "xdg" / xdg))
    monkeypatch.setenv("RTFD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("RTFD_BROKER_BACKEND", "external")
    monkeypatch.setenv("RTFD_BROKER_BOOTSTRAP_SERVERS", f"127.0.0.1:{port}")

    def run_stream(settings: Settings, **kwargs: object) -> int:
        state.reached.append("stream")
        return 0

    class FakeSupervisor:
        def __init__(self, settings: Settings, **kwargs: object) -> None:
            pass

        def subscribe(self, callback: Callable[[object], None]) -> None:
            pass

        def start(self) -> None:
            state.reached.append("appliance")
            raise KeyboardInterrupt

        def stop(self) -> None:
            pass

    class FakeLiveGenerator:
        def __init__(self, settings: Settings, **kwargs: object) -> None:
            state.reached.append("generator")
            raise BrokerUnavailable(f"no broker answers at 127.0.0.1:{port} (fuzz stub)")

    def run_app(settings: Settings, **kwargs: object) -> int:
        state.reached.append("tui")
        return 0

    answers = admin.broker_answers
    monkeypatch.setattr(admin, "broker_answers", lambda config, timeout=2.0: answers(config, 0.3))
    monkeypatch.setattr(stream_cli, "run_stream", run_stream)
    monkeypatch.setattr(supervisor, "Supervisor", FakeSupervisor)
    monkeypatch.setattr(live, "LiveGenerator", FakeLiveGenerator)
    monkeypatch.setitem(sys.modules, "rtfd.tui.app", types.SimpleNamespace(run_app=run_app))

    root = logging.getLogger()
    handlers, level, configured = list(root.handlers), root.level, set(logs._CONFIGURED)
    signals = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}
    try:
        yield state
    finally:
        for h in root.handlers[:]:
            if h not in handlers:
                root.removeHandler(h)
                h.close()
        root.setLevel(level)
        logs._CONFIGURED.clear()
        logs._CONFIGURED.update(configured)
        for s, h in signals.items():
            signal.signal(s, h)


def resolve(text: str, files: dict[str, str], tmp: Path) -> str:
    for name, path in files.items():
        text = text.replace(f"{{{name}}}", path)
    return text.replace("{tmp}", str(tmp))


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = cli.main(argv)
    except SystemExit as e:  # argparse: --help, or a usage error
        code = e.code if isinstance(e.code, int) else 2
    out, err = capsys.readouterr()
    return code, out, err


ERROR_LINE = re.compile(r"^rtfd: [A-Z][\w ,'-]*: \S")
# Progress, information, and the log lines --log-level DEBUG asks for on the console.
INFO_LINE = re.compile(r"^(rtfd [\w ]+: \[|rtfd: [a-z]|rtfd stream: |simulating \[|(DEBUG|INFO) )")


def error_lines(err: str) -> list[str]:
    """stderr's error lines; any line that is neither an error nor progress fails the case."""
    lines = [line for line in err.splitlines() if line.strip()]
    unexpected = [ln for ln in lines if not ERROR_LINE.match(ln) and not INFO_LINE.match(ln)]
    assert not unexpected, f"unexpected stderr line(s): {unexpected[:3]}"
    errors = [ln for ln in lines if ERROR_LINE.match(ln)]
    if errors:
        assert lines[-1] == errors[-1], "the error line must be the last one"
    return errors


# -- tests --------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", ALL_CASES, ids=lambda c: c.id)
def test_a_bad_value_is_one_line_and_exit_2(
    case: Case,
    files: dict[str, str],
    heavy: Heavy,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for var, value in case.env:
        monkeypatch.setenv(var, resolve(value, files, tmp_path))
    if case.config_text is not None:
        (tmp_path / "c.toml").write_text(case.config_text, encoding="utf-8")
    value = resolve(case.value, files, tmp_path)
    valid = case.valid if case.valid is not None else judge(case.kind, value)
    argv = [resolve(a, files, tmp_path) for a in case.argv]

    code, out, err = run_cli(argv, capsys)

    shown = f"argv={[a[:80] for a in argv]} env={case.env} -> {code}\nstdout: {out[-800:]}\n"
    shown += f"stderr: {err[-1500:]}"
    assert "Traceback" not in out + err, shown
    assert "internal error" not in err.lower(), shown
    errors = error_lines(err)
    if code == 2:
        assert len(errors) == 1, shown
        assert errors[0].isprintable(), shown
    if not valid:
        assert code == 2, shown
        assert not heavy.reached, f"{heavy.reached} started on a bad value: {shown}"
        tokens = [c for c in case.culprits if c]
        if value.strip():  # escaped or on one line; whole, or its tail (long paths are elided)
            for quoted in (repr(value)[1:-1], cli.one_line(value)):
                tokens.append(quoted if len(quoted) <= 150 else quoted[-30:])
        assert any(t in errors[0] for t in tokens), f"the error names none of {tokens}: {shown}"
    else:
        assert code in (0, 2, *REPORT_CODES.get(case.command, ())), shown
        if code not in (0, 2):
            assert not errors, shown


def test_every_flag_is_classified() -> None:
    """A new free-string flag must say what it is (KINDS), so it gets the right bad values."""
    unknown = []
    for flag in value_flags():
        try:
            kind_of(flag)
        except (KeyError, LookupError):
            unknown.append(f"{' '.join(flag.path) or 'global'} {flag.name}")
    assert not unknown, f"classify these flags in KINDS: {unknown}"


def test_the_walk_finds_nested_subcommands() -> None:
    leaves = leaf_commands()
    for path in (
        ("models", "show"),
        ("models", "rollback"),
        ("broker", "up"),
        ("broker", "status"),
    ):
        assert path in leaves
    assert ("models",) not in leaves and ("broker",) not in leaves
    assert len(ALL_CASES) > 1000


def test_the_issue_example_in_a_real_process(tmp_path: Path) -> None:
    """``rtfd --home /proc/nope query "SELECT 1"``: the report of rtfd issue 12, as typed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RTFD_")}
    env["RTFD_CONFIG"] = str(tmp_path / "none.toml")
    done = subprocess.run(
        [sys.executable, "-m", "rtfd.cli", "--home", "/proc/nope", "query", "SELECT 1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("rtfd: Invalid configuration: setting home: ")
    assert "/proc/nope" in lines[0]


def test_an_internal_error_is_one_line_with_the_log_that_holds_the_traceback(
    heavy: Heavy, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from rtfd.query import service

    def broken(self: object, sql: str, limit: int | None = None) -> object:
        raise RuntimeError("a bug\nover two lines")

    monkeypatch.setattr(service.QueryService, "run", broken)
    code, _, err = run_cli(["query", "SELECT 1"], capsys)
    assert code == 1
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("rtfd: Internal error: RuntimeError: a bug over two lines")
    log_file = Path(lines[0].rsplit("the traceback is in ", 1)[1].rstrip(")"))
    text = log_file.read_text(encoding="utf-8")
    assert "Traceback" in text and "RuntimeError: a bug" in text


def test_an_internal_error_before_logging_keeps_its_traceback_in_a_crash_file(
    heavy: Heavy, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(args: argparse.Namespace) -> Settings:
        raise KeyError("early")

    monkeypatch.setattr(cli, "settings_from_args", broken)
    code, _, err = run_cli(["query", "SELECT 1"], capsys)
    assert code == 1
    assert err.count("\n") == 1 and "Internal error: KeyError" in err
    crash = Path(err.rsplit("the traceback is in ", 1)[1].strip().rstrip(")"))
    try:
        assert "Traceback" in crash.read_text(encoding="utf-8")
    finally:
        crash.unlink()


def test_an_unwrapped_os_error_is_one_line_naming_the_file(
    heavy: Heavy, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from rtfd.query import service

    def full(self: object, sql: str, limit: int | None = None) -> object:
        raise OSError(28, "No space left on device", "/data/x.parquet")

    monkeypatch.setattr(service.QueryService, "run", full)
    code, _, err = run_cli(["query", "SELECT 1"], capsys)
    assert code == 2
    assert err == "rtfd: File system error: No space left on device: /data/x.parquet\n"


@pytest.mark.parametrize(
    ("setting", "make"),
    [
        ("home", lambda tmp: {"home": tmp / "file"}),
        ("home", lambda tmp: {"home": Path("/proc/nope")}),
        ("cache_dir", lambda tmp: {"home": tmp / "ok", "cache_dir": tmp / "file" / "sub"}),
        ("log_dir", lambda tmp: {"home": tmp / "ok", "log_dir": Path("/proc")}),
        ("home", lambda tmp: {"home": tmp / ("n" * 300)}),
    ],
)
def test_ensure_dirs_names_the_setting_and_the_path(
    setting: str, make: Callable[[Path], dict[str, Path]], tmp_path: Path
) -> None:
    """The TUI and every command create their directories through ensure_dirs."""
    from rtfd.errors import ConfigError

    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(ConfigError, match=f"^setting {setting}: ") as info:
        Settings(**make(tmp_path)).ensure_dirs()  # type: ignore[arg-type]
    assert "\n" not in info.value.message


@pytest.mark.parametrize(
    "value",
    ["", "a\x00b", "/dev/null", "{dir}", "{random}/x.json", "/proc/nope/x.json", "/proc/x.json"],
)
def test_an_output_file_that_cannot_be_written_is_refused_before_any_work(
    value: str, files: dict[str, str], tmp_path: Path
) -> None:
    """/dev/null is refused too: the writers replace their file atomically, clobbering it."""
    from rtfd.errors import UsageError

    with pytest.raises(UsageError, match=r"^--out"):
        cli.output_file(resolve(value, files, tmp_path), "--out")
    assert Path("/dev/null").is_char_device()


def test_an_output_file_check_leaves_no_file_and_keeps_an_existing_one(tmp_path: Path) -> None:
    new = tmp_path / "sub" / "new.parquet"
    assert cli.output_file(str(new), "--out") == new
    assert new.parent.is_dir() and not new.exists()
    old = tmp_path / "old.json"
    old.write_text("kept")
    cli.output_file(str(old), "--json")
    assert old.read_text() == "kept"


@pytest.mark.parametrize(
    ("number", "text", "ok"),
    [
        (cli.Number(int, lo=1), "1_000", True),
        (cli.Number(int, lo=1), "0", False),
        (cli.Number(int, lo=1), "9" * 400, True),
        (cli.Number(int, lo=1, hi=10), "9" * 400, False),
        (cli.Number(float, lo=0, lo_open=True), "0", False),
        (cli.Number(float, lo=0), "0", True),
        (cli.Number(float), "nan", False),
        (cli.Number(float), "-inf", False),
        (cli.Number(float), "1e309", False),
        (cli.Number(float), "1e308", True),
        (cli.Number(float), " 2.5 ", True),
    ],
)
def test_number_accepts_finite_values_in_range_only(
    number: cli.Number, text: str, ok: bool
) -> None:
    if ok:
        number(text)
    else:
        with pytest.raises(argparse.ArgumentTypeError, match=r"^expected "):
            number(text)
