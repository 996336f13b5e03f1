"""The file format of model artifacts: plain arrays and a JSON header, nothing that runs code.

``model.pkl`` and ``preprocess_scaler.pkl`` keep the names they had when they were pickles, but
since registry format 2 each is a NumPy ``.npz`` (an uncompressed zip of ``.npy`` arrays) holding:

* ``header`` — UTF-8 JSON bytes: ``{"format": "rtfd.model" | "rtfd.preprocessor", "version": 2,
  ...}`` plus the kind's own scalar fields;
* one member per array, of a plain numeric dtype (bool, uint8, int32, int64, float32, float64).

A pickle is refused, not loaded, however well it hashes: unpickling is running code chosen by
whoever wrote the file, and the manifest's hashes cannot stop someone who rewrites both. Reading
never calls the unpickler (nor ``np.load``): the zip directory, every ``.npy`` header and every
length are checked before any array is built, so a truncated, oversized, compressed, duplicated or
object-typed member is refused with a one-line :class:`ArtifactFormatError`.
"""

from __future__ import annotations

import io
import json
import math
import re
import zipfile
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

FORMAT_VERSION = 2
MODEL = "rtfd.model"
PREPROCESSOR = "rtfd.preprocessor"
# The largest file the loader reads: a bootstrap XGBoost model is ~4 MB, an IsolationForest ~1 MB.
MAX_BYTES = 64 << 20
MAX_MEMBERS = 32
MAX_HEADER_BYTES = 1 << 20
# Little-endian plain numbers only: no objects (pickles), no strings, no structured records.
_DTYPES = frozenset({"|b1", "|u1", "<i4", "<i8", "<f4", "<f8"})
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_PICKLE_PROTO = b"\x80"
_ZIP_MAGIC = b"PK\x03\x04"

T = TypeVar("T")


class ArtifactFormatError(ValueError):
    """Why a file is not an artifact rtfd will load (one line; the caller names the file)."""


@dataclass(frozen=True)
class Payload:
    """An artifact's header fields (without ``format``/``version``) and its arrays."""

    header: dict[str, Any]
    arrays: dict[str, np.ndarray]

    def field(self, key: str, kind: type[T]) -> T:
        """The header field ``key``, which must be a ``kind`` (a float must be finite)."""
        value = self.header.get(key)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value) if abs(value) < 2**1023 else math.inf
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ArtifactFormatError(f"header field {key!r} must be a {kind.__name__}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ArtifactFormatError(f"header field {key!r} must be finite")
        return value

    def expect(self, names: frozenset[str]) -> None:
        """Refuse the artifact unless its arrays are exactly ``names``."""
        unexpected = sorted(self.arrays.keys() - names)
        missing = sorted(names - self.arrays.keys())
        if unexpected:
            raise ArtifactFormatError(f"unexpected array {unexpected[0]!r}")
        if missing:
            raise ArtifactFormatError(f"missing array {missing[0]!r}")

    def array(self, name: str, dtype: str, ndim: int = 1) -> np.ndarray:
        """The array ``name``, which must have exactly this dtype and number of dimensions."""
        arr = self.arrays[name]
        if arr.dtype != np.dtype(dtype) or arr.ndim != ndim:
            raise ArtifactFormatError(
                f"array {name!r} must be {ndim}-D {np.dtype(dtype).name}, "
                f"not {arr.ndim}-D {arr.dtype.name}"
            )
        return arr


def pack(kind: str, header: dict[str, Any], arrays: dict[str, np.ndarray]) -> bytes:
    """The ``.npz`` bytes of an artifact of ``kind`` (see the module docstring)."""
    doc = {"format": kind, "version": FORMAT_VERSION, **header}
    text = json.dumps(doc, sort_keys=True, allow_nan=False).encode()
    members: dict[str, np.ndarray] = {"header": np.frombuffer(text, dtype=np.uint8)}
    for name, arr in arrays.items():
        if not _NAME.match(name) or name == "header" or arr.dtype.str not in _DTYPES:
            raise ValueError(f"cannot store array {name!r} of dtype {arr.dtype} in an artifact")
        members[name] = np.ascontiguousarray(arr)
    buf = io.BytesIO()
    # What np.savez writes, spelled out: stored (nothing to decompress), never pickled.
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, arr in members.items():
            with zf.open(f"{name}.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, arr, allow_pickle=False)
    return buf.getvalue()


def unpack(blob: bytes, kind: str) -> Payload:
    """Check and read an artifact of ``kind`` (the caller then checks which arrays it holds).

    Raises :class:`ArtifactFormatError` for anything else, before building any object from it.
    """
    if len(blob) > MAX_BYTES:
        raise ArtifactFormatError(
            f"{len(blob):,} bytes, more than the {MAX_BYTES:,} an artifact may have"
        )
    if blob.startswith(_PICKLE_PROTO):
        raise ArtifactFormatError(
            "a pickle (a model saved before registry format 2, or a forgery) is never loaded, "
            "because unpickling can run code: retrain with `rtfd train`"
        )
    if not blob.startswith(_ZIP_MAGIC):
        raise ArtifactFormatError(
            f"not an {kind} file (a NumPy .npz): a model saved before registry format 2 is not "
            "loaded, retrain with `rtfd train`"
        )
    members = _read_members(blob)
    if "header" not in members:
        raise ArtifactFormatError("no header member")
    doc = _header(members.pop("header"), kind)
    return Payload(header=doc, arrays=members)


def _read_members(blob: bytes) -> dict[str, np.ndarray]:
    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as zf:
            infos = zf.infolist()
            if len(infos) > MAX_MEMBERS:
                raise ArtifactFormatError(f"{len(infos)} members (at most {MAX_MEMBERS})")
            names = [info.filename for info in infos]
            if len(set(names)) != len(names):
                raise ArtifactFormatError("a duplicated member")
            for name in names:
                if not (name.endswith(".npy") and _NAME.match(name[: -len(".npy")])):
                    raise ArtifactFormatError(f"unexpected member {name[:60]!r}")
            out: dict[str, np.ndarray] = {}
            for info in infos:
                name = info.filename[: -len(".npy")]
                if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:
                    raise ArtifactFormatError(f"member {name!r} is compressed or encrypted")
                if info.file_size != info.compress_size or info.file_size > len(blob):
                    raise ArtifactFormatError(f"member {name!r} has an impossible size")
                out[name] = _read_npy(zf.read(info), name)
            return out
    except ArtifactFormatError:
        raise
    except Exception as e:  # any failure to parse untrusted bytes is a refusal, not a crash
        raise ArtifactFormatError(f"not a readable .npz ({one_line(e)})") from e


def one_line(e: BaseException) -> str:
    """An exception from a library as a short single line."""
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0][:200]}" if lines else type(e).__name__


def _read_npy(data: bytes, name: str) -> np.ndarray:
    """One ``.npy`` member as an array, its header and length checked before it is built."""
    f = io.BytesIO(data)
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        raise ArtifactFormatError(f"member {name!r} has .npy version {version}")
    if dtype.str not in _DTYPES or dtype.hasobject or dtype.fields is not None:
        raise ArtifactFormatError(f"member {name!r} has dtype {dtype!r} (plain numbers only)")
    if len(shape) > 2 or any(not isinstance(n, int) or n < 0 for n in shape):
        raise ArtifactFormatError(f"member {name!r} has shape {shape}")
    count = math.prod(shape)
    offset = f.tell()
    if count * dtype.itemsize != len(data) - offset:
        raise ArtifactFormatError(
            f"member {name!r} holds {len(data) - offset} bytes, not the "
            f"{count * dtype.itemsize} its header announces (truncated or padded)"
        )
    flat = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
    return np.array(flat.reshape(shape, order="F" if fortran else "C"), order="C")


def _header(raw: np.ndarray, kind: str) -> dict[str, Any]:
    if raw.dtype != np.uint8 or raw.ndim != 1 or len(raw) > MAX_HEADER_BYTES:
        raise ArtifactFormatError("no valid header (1-D uint8 JSON, at most 1 MiB)")
    try:
        doc = strict_json(raw.tobytes())
    except ValueError as e:
        raise ArtifactFormatError(f"header is not valid JSON ({e})") from e
    if not isinstance(doc, dict) or doc.get("format") != kind:
        found = doc.get("format") if isinstance(doc, dict) else None
        raise ArtifactFormatError(f"not an {kind} file (its header says {found!r})")
    version = doc.get("version")
    if version != FORMAT_VERSION or isinstance(version, bool):
        raise ArtifactFormatError(
            f"{kind} version {version!r}; this rtfd reads version {FORMAT_VERSION} only: "
            "retrain with `rtfd train`"
        )
    return {k: v for k, v in doc.items() if k not in ("format", "version")}


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for key, value in pairs:
        if key in doc:
            raise ValueError(f"duplicate key {key!r}")
        doc[key] = value
    return doc


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def strict_json(data: bytes) -> Any:
    """Parse JSON that two parsers cannot read differently: no duplicate keys, no NaN/Infinity.

    ValueError on anything else (including bytes that are not UTF-8 or nest too deep).
    """
    try:
        return json.loads(
            data.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_no_constant
        )
    except (UnicodeDecodeError, RecursionError) as e:
        raise ValueError(str(e)) from e
