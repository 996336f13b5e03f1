"""A model file cannot run code.

Every attack here is planted into a real version with a recomputed, consistent manifest, so the
SHA-256 check passes and only the artifact format stands in the way. Each must be refused by
:meth:`Registry.load` with one line naming the version and the file, and the payload's side effect
(a canary file, a module-level flag) must not have happened. A control test proves that every
pickle gadget marked live really runs code when it is unpickled: the attacks are real.
"""

from __future__ import annotations

import copyreg
import hashlib
import io
import json
import math
import os
import pickle
import shutil
import struct
import subprocess
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rtfd.cli import main
from rtfd.config import load_settings
from rtfd.errors import ArtifactError
from rtfd.ml import models
from rtfd.ml.artifact import MAX_BYTES, MODEL, PREPROCESSOR, pack, unpack
from rtfd.ml.data import simulated_history
from rtfd.ml.registry import MAX_JSON_BYTES, Registry, _canonical
from rtfd.ml.train import train_model

pytestmark = pytest.mark.unit

XGB, LOGREG, IFOREST = "v0001", "v0002", "v0003"
BINARIES = ("model.pkl", "preprocess_scaler.pkl")

# Set by the trap classes below when a payload reaches them.
TRIPPED: list[str] = []


class SetstateTrap:
    """A class whose ``__setstate__`` runs code (reached by BUILD after NEWOBJ)."""

    def __setstate__(self, state: Any) -> None:
        TRIPPED.append(f"__setstate__({state!r})")


class NewTrap:
    """A class whose ``__new__`` runs code (reached by NEWOBJ)."""

    def __new__(cls, *args: Any) -> NewTrap:
        TRIPPED.append(f"__new__{args!r}")
        return super().__new__(cls)


class InitTrap:
    """A class whose ``__init__`` runs code (reached by copyreg._reconstructor)."""

    def __init__(self, state: Any = None) -> None:
        TRIPPED.append(f"__init__({state!r})")


class ReduceToSystem:
    """A class whose ``__reduce__`` makes the pickle call os.system (the classic payload)."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (self.command,))


# -- pickle opcodes, written by hand so that each family is exactly the one named -------------
def _arg(value: Any) -> bytes:
    """The opcodes that push ``value`` (protocol 2, without its header and STOP)."""
    return pickle.dumps(value, protocol=2)[2:-1]


def _global(module: str, name: str) -> bytes:
    return b"c" + f"{module}\n{name}\n".encode()


def _call(module: str, name: str, *args: Any) -> bytes:
    """GLOBAL module.name, push args, REDUCE: ``module.name(*args)``."""
    return _global(module, name) + _arg(tuple(args)) + b"R"


def _p2(body: bytes) -> bytes:
    return b"\x80\x02" + body + b"."


def _stack_global(module: str, name: str) -> bytes:
    def short(s: str) -> bytes:
        return b"\x8c" + bytes([len(s)]) + s.encode()

    return short(module) + short(name) + b"\x93"


def _then_call_method(method: str) -> bytes:
    """With an object on the stack: ``getattr(obj, method)()`` (memo slot 200)."""
    return (
        b"q\xc8" + b"0" + _global("builtins", "getattr") + b"(" + b"h\xc8" + _arg(method)
        + b"t" + b"R" + b")" + b"R"
    )  # fmt: skip


@dataclass(frozen=True)
class Gadget:
    """A pickle that runs code when unpickled; ``live`` when it does so with these libraries."""

    family: str
    build: Callable[[Path], bytes]
    live: bool = True


def _write(canary: Path) -> str:
    return f"open({str(canary)!r}, 'w').write('pwned')"


def _touch(canary: Path) -> str:
    return f"touch {canary}"


def _argv(canary: Path) -> list[str]:
    return ["touch", str(canary)]


def _reduce(canary: Path, protocol: int) -> bytes:
    return pickle.dumps(ReduceToSystem(_touch(canary)), protocol=protocol)


GADGETS = [
    Gadget("builtins.exec", lambda c: _p2(_call("builtins", "exec", _write(c)))),
    Gadget("builtins.eval", lambda c: _p2(_call("builtins", "eval", _write(c)))),
    Gadget("os.system", lambda c: _p2(_call("os", "system", _touch(c)))),
    Gadget("posix.system", lambda c: _p2(_call("posix", "system", _touch(c)))),
    Gadget("subprocess.check_call", lambda c: _p2(_call("subprocess", "check_call", _argv(c)))),
    Gadget(
        "subprocess.Popen(...).wait() through getattr",
        lambda c: _p2(_call("subprocess", "Popen", _argv(c)) + _then_call_method("wait")),
    ),
    Gadget(
        "getattr(__import__('os'), 'system')",
        lambda c: _p2(
            _global("builtins", "getattr") + b"(" + _call("builtins", "__import__", "os")
            + _arg("system") + b"t" + b"R" + _arg((_touch(c),)) + b"R"
        ),
    ),
    Gadget(
        "getattr(importlib.import_module('posix'), 'system')",
        lambda c: _p2(
            _global("builtins", "getattr") + b"(" + _call("importlib", "import_module", "posix")
            + _arg("system") + b"t" + b"R" + _arg((_touch(c),)) + b"R"
        ),
    ),
    Gadget("__reduce__ returning (os.system, ...), protocol 5", lambda c: _reduce(c, 5)),
    Gadget("__reduce__ returning (os.system, ...), protocol 0", lambda c: _reduce(c, 0)),
    Gadget(
        "STACK_GLOBAL os.system, protocol 4",
        lambda c: b"\x80\x04" + _stack_global("os", "system") + _arg((_touch(c),)) + b"R.",
    ),
    Gadget(
        "INST os.system, protocol 0",
        lambda c: b"(V" + _touch(c).encode() + b"\nios\nsystem\n.",
    ),
    Gadget(
        "OBJ os.system, protocol 1",
        lambda c: b"(" + _global("os", "system") + _arg(_touch(c)) + b"o.",
    ),
    Gadget(
        "NEWOBJ of a class whose __new__ runs code",
        lambda c: _p2(_global(__name__, "NewTrap") + _arg(("payload",)) + b"\x81"),
    ),
    Gadget(
        "NEWOBJ + BUILD reaching __setstate__",
        lambda c: _p2(_global(__name__, "SetstateTrap") + b")" + b"\x81" + _arg("payload") + b"b"),
    ),
    Gadget(
        "copyreg._reconstructor(Popen, Popen, [touch]).wait()",
        lambda c: _p2(
            _global("copyreg", "_reconstructor")
            + b"(" + _global("subprocess", "Popen") + _global("subprocess", "Popen")
            + _arg(_argv(c)) + b"t" + b"R" + _then_call_method("wait")
        ),
    ),
    Gadget(
        "copyreg._reconstructor(cls, cls, state) reaching __init__",
        lambda c: _p2(
            _global("copyreg", "_reconstructor")
            + b"(" + _global(__name__, "InitTrap") + _global(__name__, "InitTrap")
            + _arg("payload") + b"t" + b"R"
        ),
    ),
    Gadget(
        "numpy.testing._private.utils.runstring (exec)",
        lambda c: _p2(_call("numpy.testing._private.utils", "runstring", _write(c), {})),
    ),
    Gadget(
        "numpy.f2py.crackfortran.myeval (eval)",
        lambda c: _p2(_call("numpy.f2py.crackfortran", "myeval", _write(c) + " and 0")),
    ),
    Gadget(
        "numpy.frompyfunc(os.system) ufunc",
        lambda c: _p2(
            _global("numpy", "frompyfunc") + b"(" + _global("os", "system") + _arg(1) + _arg(1)
            + b"t" + b"R" + _arg((_touch(c),)) + b"R"
        ),
    ),
    Gadget(
        "scipy._lib._testutils._test_cython_extension (runs meson)",
        lambda c: _p2(_call("scipy._lib._testutils", "_test_cython_extension", str(c), str(c))),
        live=False,
    ),
    Gadget(
        "sklearn.utils.parallel.delayed(runstring) trampoline",
        lambda c: _p2(
            _global("sklearn.utils.parallel", "delayed") + b"("
            + _global("numpy.testing._private.utils", "runstring") + b"t" + b"R"
            + _arg((_write(c), {})) + b"R"
        ),
        live=False,
    ),
    Gadget(
        "xgboost.testing.federated.run_federated_learning (subprocess)",
        lambda c: _p2(_call("xgboost.testing.federated", "run_federated_learning", 0, 0, str(c))),
        live=False,
    ),
]  # fmt: skip


# -- a real registry: one version per algorithm ------------------------------------------------
@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """v0001 xgboost (live), v0002 logreg, v0003 iforest; built once, copied per test."""
    home = tmp_path_factory.mktemp("attacks-template")
    settings = load_settings({"home": str(home), "label_maturity_days": 2}, environ={})
    start = datetime(2024, 1, 1, tzinfo=UTC)
    data = simulated_history(10, seed=5, users=400, merchants=100, fraud_rate=0.02, start=start)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(models, "XGB_ROUNDS", 20)
        mp.setattr(models, "IFOREST_TREES", 30)
        for algo in ("xgboost", "logreg", "iforest"):
            train_model(settings, algo=algo, data=data, force=True)
    Registry(settings.models_dir).promote(XGB, force=True)
    return settings.models_dir


@pytest.fixture
def registry(template: Path) -> Registry:
    """A copy of the template where the CLI (this test's settings) looks for models."""
    root = load_settings({}).models_dir
    shutil.copytree(template, root)
    return Registry(root)


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    TRIPPED.clear()
    return tmp_path / "canary"


def plant(registry: Registry, version: str, file: str, data: bytes) -> None:
    """Replace ``file`` and rewrite the manifest to match, as an attacker with write access
    can: the hash check then passes."""
    vdir = registry.root / version
    (vdir / file).write_bytes(data)
    doc = json.loads((vdir / "manifest.json").read_text())
    doc.pop("manifest_sha256")
    doc["files"][file] = hashlib.sha256(data).hexdigest()
    doc["manifest_sha256"] = hashlib.sha256(_canonical(doc)).hexdigest()
    (vdir / "manifest.json").write_bytes(_canonical(doc))
    registry.verify(version)


def assert_refused(registry: Registry, version: str, file: str, canary: Path) -> str:
    """Loading fails with one line naming the version and the file; nothing ran."""
    with pytest.raises(ArtifactError) as err:
        registry.load(version)
    message = err.value.message
    assert "\n" not in message and len(message) < 400, message
    assert f"model {version}" in message and file in message, message
    assert not canary.exists(), f"the payload ran: {canary} exists"
    assert TRIPPED == [], f"the payload ran: {TRIPPED}"
    return message


# -- pickles ------------------------------------------------------------------------------------
@pytest.mark.parametrize("gadget", [g for g in GADGETS if g.live], ids=lambda g: g.family)
def test_each_live_gadget_runs_code_when_unpickled(gadget: Gadget, canary: Path) -> None:
    """The control: with plain pickle.loads each of these payloads does run (so the refusals
    below are refusals of real attacks, not of broken pickles)."""
    try:
        pickle.loads(gadget.build(canary))
    except Exception:
        pass  # some gadgets fail after their side effect (myeval raises on a non-number)
    assert canary.exists() or TRIPPED


@pytest.mark.parametrize("file", BINARIES)
@pytest.mark.parametrize("gadget", GADGETS, ids=lambda g: g.family)
def test_a_gadget_pickle_is_refused_before_it_runs(
    registry: Registry, canary: Path, gadget: Gadget, file: str
) -> None:
    plant(registry, XGB, file, gadget.build(canary))
    message = assert_refused(registry, XGB, file, canary)
    assert "rtfd train" in message


def test_a_gadget_in_the_live_model_is_one_line_in_the_cli(
    registry: Registry, canary: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plant(registry, XGB, "model.pkl", GADGETS[0].build(canary))
    assert main(["models", "show"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "model.pkl" in err and "Traceback" not in err
    assert not canary.exists()


def test_a_format_1_version_is_refused_with_a_retrain_message(registry: Registry) -> None:
    """Versions saved as pickles before format 2 are never unpickled, not even to migrate
    them: the manifest's format alone refuses them."""
    vdir = registry.root / LOGREG
    doc = json.loads((vdir / "manifest.json").read_text())
    doc.pop("manifest_sha256")
    doc["format"] = 1
    doc["manifest_sha256"] = hashlib.sha256(_canonical(doc)).hexdigest()
    (vdir / "manifest.json").write_bytes(_canonical(doc))
    with pytest.raises(ArtifactError, match=r"model v0002 .*format 1.*retrain with `rtfd train`"):
        registry.load(LOGREG)
    assert registry.versions() == [XGB, LOGREG, IFOREST]  # still listed, just not loaded


# -- pickles inside the array container --------------------------------------------------------
def _object_npy(canary: Path) -> bytes:
    """An .npy object array: its body is a pickle, run by np.load(allow_pickle=True)."""
    buf = io.BytesIO()
    np.save(buf, np.array([ReduceToSystem(_touch(canary))], dtype=object), allow_pickle=True)
    return buf.getvalue()


def _replace_member(blob: bytes, member: str, data: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(blob)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            dst.writestr(info.filename, data if info.filename == member else src.read(info))
    return out.getvalue()


def test_an_object_array_in_an_npz_is_a_live_gadget(canary: Path) -> None:
    """The control: NumPy would run it when allowed to unpickle."""
    np.load(io.BytesIO(_object_npy(canary)), allow_pickle=True)
    assert canary.exists()


@pytest.mark.parametrize(
    ("version", "file", "member"),
    [
        (LOGREG, "model.pkl", "coef.npy"),
        (LOGREG, "model.pkl", "header.npy"),
        (XGB, "model.pkl", "booster_json.npy"),
        (IFOREST, "model.pkl", "threshold.npy"),
        (LOGREG, "preprocess_scaler.pkl", "mean.npy"),
        (IFOREST, "preprocess_scaler.pkl", "header.npy"),
    ],
)
def test_an_object_array_inside_an_artifact_is_refused(
    registry: Registry, canary: Path, version: str, file: str, member: str
) -> None:
    blob = (registry.root / version / file).read_bytes()
    plant(registry, version, file, _replace_member(blob, member, _object_npy(canary)))
    assert "plain numbers only" in assert_refused(registry, version, file, canary)


def test_a_raw_pickle_as_a_member_is_refused(registry: Registry, canary: Path) -> None:
    blob = (registry.root / LOGREG / "model.pkl").read_bytes()
    evil = pickle.dumps(ReduceToSystem(_touch(canary)))
    plant(registry, LOGREG, "model.pkl", _replace_member(blob, "coef.npy", evil))
    assert_refused(registry, LOGREG, "model.pkl", canary)


# -- malformed containers ----------------------------------------------------------------------
def _npy_header(descr: str, shape: tuple[int, ...]) -> bytes:
    header = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}"
    header += " " * (63 - (len(header) + 10) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode()


def _repack(blob: bytes, edit: Callable[[dict[str, bytes]], None], **zip_args: Any) -> bytes:
    with zipfile.ZipFile(io.BytesIO(blob)) as src:
        members = {info.filename: src.read(info) for info in src.infolist()}
    edit(members)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", **zip_args) as dst:
        for name, data in members.items():
            dst.writestr(name, data)
    return out.getvalue()


def _duplicate_member(blob: bytes) -> bytes:
    out = io.BytesIO(blob)
    with zipfile.ZipFile(out, "a") as z, pytest.warns(UserWarning, match="Duplicate"):
        z.writestr("coef.npy", _npy_header("<f8", (1, 3)) + bytes(24))
    return out.getvalue()


def _header(**fields: Any) -> Callable[[dict[str, bytes]], None]:
    def edit(members: dict[str, bytes]) -> None:
        arr = np.lib.format.read_array(io.BytesIO(members["header.npy"]))
        doc = {**json.loads(arr.tobytes()), **fields}
        buf = io.BytesIO()
        np.save(buf, np.frombuffer(json.dumps(doc).encode(), dtype=np.uint8))
        members["header.npy"] = buf.getvalue()

    return edit


def _coef_as(descr: str) -> Callable[[bytes], bytes]:
    """Replace the coefficients by three 8-byte values of another dtype."""
    npy = _npy_header(descr, (1, 3)) + bytes(24)
    return lambda b: _repack(b, lambda m: m.update({"coef.npy": npy}))


CONTAINER_ATTACKS: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "truncated": (lambda b: b[: len(b) // 2], "not a readable .npz"),
    "empty": (lambda b: b"", "not an rtfd"),
    "a zip of another kind": (lambda b: b"PK\x03\x04" + bytes(200), "not a readable .npz"),
    "a member claiming 2**40 floats": (
        lambda b: _repack(b, lambda m: m.update({"coef.npy": _npy_header("<f8", (1, 1 << 40))})),
        "not the 8796093022208 its header announces",
    ),
    "a deflated member (a zip bomb's shape)": (
        lambda b: _repack(b, lambda m: None, compression=zipfile.ZIP_DEFLATED),
        "compressed",
    ),
    "a duplicated member": (_duplicate_member, "duplicated"),
    "a path-like member name": (
        lambda b: _repack(b, lambda m: m.update({"../evil.npy": m["coef.npy"]})),
        "unexpected member",
    ),
    "an unexpected array": (
        lambda b: _repack(b, lambda m: m.update({"extra.npy": m["coef.npy"]})),
        "unexpected array 'extra'",
    ),
    "a missing array": (lambda b: _repack(b, lambda m: m.pop("intercept.npy")), "missing array"),
    "a structured dtype": (_coef_as("|V8"), "plain numbers only"),
    "a big-endian dtype": (_coef_as(">f8"), "plain numbers only"),
    "a header of version 1": (lambda b: _repack(b, _header(version=1)), "version 1"),
    "a preprocessor header in model.pkl": (
        lambda b: _repack(b, _header(format=PREPROCESSOR)),
        "not an rtfd.model file",
    ),
    "an unknown algorithm": (lambda b: _repack(b, _header(algo="os.system")), "unknown algorithm"),
    "a string where a rate belongs": (lambda b: _repack(b, _header(neg_rate="0.1")), "neg_rate"),
    "a rate of 400 digits": (lambda b: _repack(b, _header(neg_rate=10**400)), "finite"),
}


@pytest.mark.parametrize("attack", CONTAINER_ATTACKS, ids=str)
def test_a_malformed_container_is_refused(registry: Registry, canary: Path, attack: str) -> None:
    edit, expected = CONTAINER_ATTACKS[attack]
    blob = (registry.root / LOGREG / "model.pkl").read_bytes()
    plant(registry, LOGREG, "model.pkl", edit(blob))
    assert expected in assert_refused(registry, LOGREG, "model.pkl", canary)


def test_an_oversized_artifact_is_refused_unread(registry: Registry, canary: Path) -> None:
    blob = (registry.root / LOGREG / "model.pkl").read_bytes()
    plant(registry, LOGREG, "model.pkl", blob + bytes(MAX_BYTES))
    assert "more than" in assert_refused(registry, LOGREG, "model.pkl", canary)


# -- XGBoost's JSON: well-formed numbers, malicious structure ----------------------------------
def _edit_booster(blob: bytes, edit: Callable[[dict[str, Any]], bytes | None]) -> bytes:
    payload = unpack(blob, MODEL)
    doc = json.loads(payload.arrays["booster_json"].tobytes())
    text = edit(doc)
    if text is None:
        text = json.dumps(doc).encode()
    header = dict(payload.header)
    return pack(MODEL, header, {"booster_json": np.frombuffer(text, dtype=np.uint8)})


def _tree(doc: dict[str, Any], i: int = 0) -> dict[str, Any]:
    tree: dict[str, Any] = doc["learner"]["gradient_booster"]["model"]["trees"][i]
    return tree


def _set(path: list[str | int], value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(doc: dict[str, Any]) -> None:
        node: Any = doc
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return edit


def _ubjson(doc: dict[str, Any]) -> bytes:
    import xgboost as xgb

    booster = xgb.Booster()
    booster.load_model(bytearray(json.dumps(doc).encode()))
    raw = bytes(booster.save_raw("ubj"))
    return raw[: len(raw) // 2]


def _node(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """Set the first node's ``key`` in the first tree."""
    return lambda doc: _tree(doc)[key].__setitem__(0, value)


def _text(old: str, new: str) -> Callable[[dict[str, Any]], bytes]:
    """Edit the model's JSON text (for what a Python dict cannot hold)."""
    return lambda doc: json.dumps(doc).replace(old, new, 1).encode()


BOOSTER = ["learner", "gradient_booster", "model"]


def _split_at(text: str) -> Callable[[dict[str, Any]], bytes]:
    """The first split's threshold written as ``text`` (NaN, 1e999: no Python float for it)."""

    def edit(doc: dict[str, Any]) -> bytes:
        _tree(doc)["split_conditions"][0] = math.inf
        return json.dumps(doc).replace("Infinity", text, 1).encode()

    return edit


# Each of the first five made XGBoost 3.2 crash (segfault or heap corruption) when loaded as is.
BOOSTER_ATTACKS: dict[str, tuple[Callable[[dict[str, Any]], Any], str]] = {
    "a child index outside the tree": (_node("left_children", 10**6), "out of range"),
    "a node that is its own child": (_node("left_children", 0), "out of range"),
    "a split on feature 10**6": (_node("split_indices", 10**6), "feature outside"),
    "tree_info naming output group 5": (_set([*BOOSTER, "tree_info", 0], 5), "tree_info"),
    "truncated UBJSON instead of JSON": (_ubjson, "not valid JSON"),
    "duplicate keys (two parsers, two trees)": (
        _text('"base_weights"', '"left_children": [9999], "base_weights"'),
        "duplicate key",
    ),
    "NaN in a split": (_split_at("NaN"), "not a number"),
    "1e999 in a split": (_split_at("1e999"), "finite"),
    "truncated JSON": (lambda d: json.dumps(d).encode()[:5000], "not valid JSON"),
    "a JSON list": (lambda d: b"[1, 2, 3]", "must be an object"),
    "another objective": (_set(["learner", "objective", "name"], "reg:squarederror"), "logistic"),
    "another feature count": (
        _set(["learner", "learner_model_param", "num_feature"], "3"),
        "learner_model_param",
    ),
    "a categorical split": (_node("split_type", 1), "categorical"),
    "an unknown field": (_set(["learner", "plugin"], {"name": "evil"}), "unknown field 'plugin'"),
    "a dart booster": (_set(["learner", "gradient_booster", "name"], "dart"), "gbtree"),
}


@pytest.mark.parametrize("attack", BOOSTER_ATTACKS, ids=str)
def test_a_malicious_xgboost_model_is_refused_before_xgboost_reads_it(
    registry: Registry, canary: Path, attack: str
) -> None:
    edit, expected = BOOSTER_ATTACKS[attack]
    blob = (registry.root / XGB / "model.pkl").read_bytes()
    plant(registry, XGB, "model.pkl", _edit_booster(blob, edit))
    message = assert_refused(registry, XGB, "model.pkl", canary)
    assert expected in message and "XGBoost model" in message


# -- IsolationForest arrays and the preprocessor ----------------------------------------------
def _edit_arrays(blob: bytes, kind: str, edit: Callable[[dict[str, np.ndarray]], None]) -> bytes:
    payload = unpack(blob, kind)
    arrays = {k: v.copy() for k, v in payload.arrays.items()}
    edit(arrays)
    return pack(kind, dict(payload.header), arrays)


def _put(name: str, index: int, value: Any) -> Callable[[dict[str, np.ndarray]], None]:
    """Set ``arrays[name][index]``; a callable value is computed from the arrays."""

    def edit(arrays: dict[str, np.ndarray]) -> None:
        arrays[name][index] = value(arrays) if callable(value) else value

    return edit


FOREST_ATTACKS: dict[str, tuple[Callable[[dict[str, np.ndarray]], None], str]] = {
    "a child pointing back to the root": (_put("children_left", 0, 0), "not after its parent"),
    "a child in the next tree": (
        _put("children_right", 0, lambda a: a["tree_offsets"][1]),
        "out of range",
    ),
    "a split on column 10**6": (_put("feature", 0, 10**6), "column outside"),
    "offsets that skip nodes": (_put("tree_offsets", -1, 1), "tree_offsets"),
    "a NaN path length": (_put("path_length", -1, np.nan), "finite"),
    "float32 offsets": (
        lambda a: a.update(tree_offsets=a["tree_offsets"].astype(np.float32)),
        "int64",
    ),
}


@pytest.mark.parametrize("attack", FOREST_ATTACKS, ids=str)
def test_malformed_isolation_trees_are_refused(
    registry: Registry, canary: Path, attack: str
) -> None:
    edit, expected = FOREST_ATTACKS[attack]
    blob = (registry.root / IFOREST / "model.pkl").read_bytes()
    plant(registry, IFOREST, "model.pkl", _edit_arrays(blob, MODEL, edit))
    assert expected in assert_refused(registry, IFOREST, "model.pkl", canary)


SCALER_ATTACKS: dict[str, tuple[Callable[[dict[str, np.ndarray]], None], str]] = {
    "a mean of the wrong length": (lambda a: a.update(mean=a["mean"][:-1]), "values"),
    "a zero scale": (_put("scale", 0, 0.0), "positive"),
    "an infinite mean": (_put("mean", 0, np.inf), "finite"),
}


@pytest.mark.parametrize("attack", SCALER_ATTACKS, ids=str)
def test_a_malformed_scaler_is_refused(registry: Registry, canary: Path, attack: str) -> None:
    edit, expected = SCALER_ATTACKS[attack]
    blob = (registry.root / LOGREG / "preprocess_scaler.pkl").read_bytes()
    plant(registry, LOGREG, "preprocess_scaler.pkl", _edit_arrays(blob, PREPROCESSOR, edit))
    assert expected in assert_refused(registry, LOGREG, "preprocess_scaler.pkl", canary)


def test_artifacts_of_different_models_are_not_mixed(registry: Registry, canary: Path) -> None:
    """A consistent manifest over files taken from two versions is still refused."""
    iforest_model = (registry.root / IFOREST / "model.pkl").read_bytes()
    plant(registry, LOGREG, "model.pkl", iforest_model)
    assert "threshold.json says logreg" in assert_refused(registry, LOGREG, "model.pkl", canary)


# -- the JSON artifacts ------------------------------------------------------------------------
def _merged(**fields: Any) -> Callable[[bytes], bytes]:
    return lambda b: json.dumps({**json.loads(b), **fields}).encode()


def _const(data: bytes) -> Callable[[bytes], bytes]:
    return lambda b: data


NAN_THRESHOLD = b'{"threshold": NaN, "mode": "supervised", "algo": "logreg"}'
JSON_ATTACKS: dict[str, tuple[str, Callable[[bytes], bytes], str]] = {
    "truncated features": ("features.json", lambda b: b[: len(b) // 2], "not valid JSON"),
    "features of the wrong type": ("features.json", _const(b'{"features": "x"}'), "features"),
    "duplicated feature names": ("features.json", _const(b'{"features": ["a", "a"]}'), "distinct"),
    "a threshold list": ("threshold.json", _const(b"[0.5]"), "JSON object"),
    "a threshold string": ("threshold.json", _merged(threshold="0.5"), "finite number"),
    "a NaN threshold": ("threshold.json", _const(NAN_THRESHOLD), "not valid JSON"),
    "a threshold of 400 digits": ("threshold.json", _merged(threshold=10**400), "finite number"),
    "a calibration without max": ("threshold.json", _merged(calibration={"min": 0}), "calibration"),
    "huge metrics": ("metrics.json", _const(b'"' + b"a" * MAX_JSON_BYTES + b'"'), "more than"),
    "deeply nested metrics": (
        "metrics.json",
        _const(b"[" * 10**5 + b"]" * 10**5),
        "not valid JSON",
    ),
    "metrics not UTF-8": ("metrics.json", _const(b"\xff\xfe{}"), "not valid JSON"),
}


@pytest.mark.parametrize("attack", JSON_ATTACKS, ids=str)
def test_a_malformed_json_artifact_is_refused(
    registry: Registry, canary: Path, attack: str
) -> None:
    file, edit, expected = JSON_ATTACKS[attack]
    plant(registry, LOGREG, file, edit((registry.root / LOGREG / file).read_bytes()))
    assert expected in assert_refused(registry, LOGREG, file, canary)


def test_the_loader_never_unpickles(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading every kind of model with the unpickler and np.load's pickling disabled works:
    nothing on the load path needs them."""

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the load path unpickled something")

    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    monkeypatch.setattr(copyreg, "_reconstructor", forbidden)
    monkeypatch.setattr(subprocess, "Popen", forbidden)
    for version in (XGB, LOGREG, IFOREST):
        model = registry.load(version)
        assert model.version == version


# -- the calibration map in threshold.json ----------------------------------------------------
ISOTONIC = {"method": "isotonic", "x": [0.0, 0.3, 1.0], "y": [0.0, 0.1, 0.9]}
PLATT = {"method": "platt", "a": 1.2, "b": -0.5}


def _with(base: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {**base, **fields}


def _without(base: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in base.items() if k != key}


# Each is planted as threshold.json's "calibration" (a tampered score map with a consistent
# manifest): a map that inverts or flattens the ranking, hides alerts, smuggles a field, or is
# not plain numbers. (value, what the one-line refusal says)
CALIBRATION_ATTACKS: dict[str, tuple[Any, str]] = {
    "a decreasing isotonic map (inverts the ranking)": (
        _with(ISOTONIC, y=[0.9, 0.5, 0.1]),
        "non-decreasing",
    ),
    "a map that dips once": (_with(ISOTONIC, y=[0.1, 0.05, 0.9]), "non-decreasing"),
    "probabilities above 1": (_with(ISOTONIC, y=[0.0, 0.5, 1.5]), "[0, 1]"),
    "negative probabilities": (_with(ISOTONIC, y=[-0.5, 0.1, 0.9]), "[0, 1]"),
    "knots out of order": (_with(ISOTONIC, x=[0.0, 1.0, 0.3]), "strictly increasing"),
    "a repeated knot": (_with(ISOTONIC, x=[0.0, 0.3, 0.3]), "strictly increasing"),
    "more x than y": (_with(ISOTONIC, x=[0.0, 0.3, 0.6, 1.0]), "as many values"),
    "a single knot": (_with(ISOTONIC, x=[0.5], y=[0.5]), "2 to"),
    "no knots": (_with(ISOTONIC, x=[], y=[]), "2 to"),
    "20,001 knots": (
        _with(ISOTONIC, x=list(range(20_001)), y=[0.5] * 20_001),
        "2 to 20,000",
    ),
    "knots as a string": (_with(ISOTONIC, x="0.0,0.3,1.0"), "'x' must list"),
    "a knot as a string": (_with(ISOTONIC, x=[0.0, "0.3", 1.0]), "'x' must be a number"),
    "a probability as a boolean": (_with(ISOTONIC, y=[False, 0.1, True]), "'y' must be a number"),
    "a nested knot": (_with(ISOTONIC, x=[0.0, [0.3], 1.0]), "'x' must be a number"),
    "a knot of 400 digits": (_with(ISOTONIC, x=[0.0, 0.3, 10**400]), "finite"),
    "isotonic without y": (_without(ISOTONIC, "y"), "'y' must list"),
    "a Platt slope of zero (every score the same)": (_with(PLATT, a=0.0), "positive"),
    "a negative Platt slope (inverts the ranking)": (_with(PLATT, a=-1.2), "positive"),
    "a Platt slope as a string": (_with(PLATT, a="1.2"), "'a' must be a number"),
    "a Platt intercept of 400 digits": (_with(PLATT, b=-(10**400)), "finite"),
    "Platt without an intercept": (_without(PLATT, "b"), "'b' must be a number"),
    "Platt with isotonic knots": (_with(PLATT, x=[0.0, 1.0]), "does not belong"),
    "knots without a method": (_without(ISOTONIC, "method"), "does not belong"),
    "an unknown method": (_with(PLATT, method="pickle"), "isotonic or platt"),
    "a method as a list": (_with(PLATT, method=["platt"]), "isotonic or platt"),
    "a field that names code": (_with(PLATT, code="os.system('id')"), "unknown field 'code'"),
    "a calibration list": ([0.0, 1.0], "JSON object"),
    "a calibration string": ("platt", "JSON object"),
    "min above max (inverts the normalisation)": (_with(PLATT, min=1.0, max=-1.0), "above"),
    "max without min": (_with(PLATT, max=1.0), "min and max"),
}


def _plant_calibration(registry: Registry, version: str, calibration: Any) -> None:
    path = registry.root / version / "threshold.json"
    doc = {**json.loads(path.read_bytes()), "calibration": calibration}
    plant(registry, version, "threshold.json", json.dumps(doc).encode())


@pytest.mark.parametrize("version", [XGB, IFOREST])
@pytest.mark.parametrize("attack", CALIBRATION_ATTACKS, ids=str)
def test_a_tampered_calibration_is_refused(
    registry: Registry, canary: Path, attack: str, version: str
) -> None:
    calibration, expected = CALIBRATION_ATTACKS[attack]
    _plant_calibration(registry, version, calibration)
    message = assert_refused(registry, version, "threshold.json", canary)
    assert "'calibration'" in message and expected in message, message


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_a_calibration_number_json_cannot_hold_is_refused(
    registry: Registry, canary: Path, number: str
) -> None:
    path = registry.root / XGB / "threshold.json"
    doc = {**json.loads(path.read_bytes()), "calibration": _with(PLATT, b=0.123456)}
    text = json.dumps(doc).replace("0.123456", number).encode()
    plant(registry, XGB, "threshold.json", text)
    message = assert_refused(registry, XGB, "threshold.json", canary)
    assert "not valid JSON" in message or "finite" in message, message


@pytest.mark.parametrize("calibration", [ISOTONIC, PLATT, None, {"min": -1.0, "max": 1.0}])
def test_a_well_formed_calibration_is_loaded_and_applied(
    registry: Registry, calibration: Any
) -> None:
    """The control: the refusals above are about what was wrong, not about any edit; a valid
    map planted the same way loads, and LoadedModel.score applies it."""
    from rtfd.ml.calibration import ScoreMap

    _plant_calibration(registry, XGB, calibration)
    model = registry.load(XGB)
    assert model.score_map.to_dict() == ScoreMap.from_dict(calibration).to_dict()
    rows = np.linspace(-2.0, 2.0, 11)
    assert np.array_equal(model.score_map.apply(rows), ScoreMap.from_dict(calibration).apply(rows))
