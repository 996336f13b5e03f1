"""The framing shared by the feature state blobs: magic, a JSON header, Arrow IPC tables.

A blob is ``magic``, the header's length (u32, little endian), the header (a JSON object), then
per table its length (u64, little endian) and an Arrow IPC stream of it, zstd-compressed.
:meth:`~rtfd.features.state.KernelState.to_bytes` and
:meth:`~rtfd.features.store.UserStore.to_bytes` both write it, and both kinds of blob sit in the
Spark checkpoints of running appliances: :func:`pack` must keep writing these exact bytes.

The blobs come back from disk, where they can be truncated, torn or tampered with, so
:func:`unpack` checks every length against what is left before it slices, never unpickles, and
turns every way a blob can be wrong into one :class:`ValueError` whose message names the blob
(``what``): the callers and their users see one kind of error, not a struct, JSON, Unicode or
Arrow one. Each format keeps its own checks of what the header and the tables say.

pyarrow is imported when a blob is packed or read, not with this module, so that importing the
features stays light.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

_HEADER_LEN = struct.Struct("<I")
_TABLE_LEN = struct.Struct("<Q")


def pack(magic: bytes, header: Mapping[str, Any], tables: Iterable[pa.Table]) -> bytes:
    """``magic``, ``header`` (as JSON) and ``tables`` framed as the module docstring says."""
    import pyarrow as pa

    head = json.dumps(header).encode()
    parts = [magic, _HEADER_LEN.pack(len(head)), head]
    options = pa.ipc.IpcWriteOptions(compression="zstd")
    for table in tables:
        sink = io.BytesIO()
        with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
            writer.write_table(table)
        stream = sink.getvalue()
        parts += [_TABLE_LEN.pack(len(stream)), stream]
    return b"".join(parts)


@dataclass(frozen=True)
class Unpacked:
    """A blob whose magic and header are read and checked, and whose tables are not yet:
    a format checks its header (its version) first, so that a blob of another version says so
    rather than failing on tables it does not know how to count."""

    header: dict[str, Any]
    """The header, a JSON object."""
    what: str
    _view: memoryview
    _start: int

    def tables(self, count: int) -> list[pa.Table]:
        """The ``count`` tables that must follow the header and end the blob; ValueError if
        the blob is truncated, a table does not read, or bytes are left over."""
        import pyarrow as pa

        view, pos = self._view, self._start
        out = []
        for i in range(count):
            if len(view) - pos < _TABLE_LEN.size:
                raise ValueError(f"truncated {self.what}: table {i + 1} of {count} is missing")
            (length,) = _TABLE_LEN.unpack_from(view, pos)
            pos += _TABLE_LEN.size
            if length > len(view) - pos:
                raise ValueError(
                    f"truncated {self.what}: table {i + 1} of {count} needs {length} bytes, "
                    f"{len(view) - pos} left"
                )
            try:
                table = pa.ipc.open_stream(pa.py_buffer(view[pos : pos + length])).read_all()
                # Decode every field name (nested ones too) and validate fully, so that a name
                # that is not UTF-8, or offsets and lengths out of their buffers, fail here
                # rather than where a format reads a column.
                table.schema.to_string()
                table.validate(full=True)
            # Arrow's I/O errors are OSErrors, a name that is not UTF-8 a UnicodeDecodeError.
            except (pa.ArrowException, OSError, ValueError) as e:
                raise ValueError(
                    f"corrupt {self.what}: table {i + 1} of {count}: {_one_line(e)}"
                ) from e
            out.append(table)
            pos += length
        if pos != len(view):
            raise ValueError(f"corrupt {self.what}: {len(view) - pos} bytes after its tables")
        return out

    def column(self, table: pa.Table, name: str, dtype: Any) -> np.ndarray:
        """Column ``name`` of one of the tables as an array of ``dtype`` (object: a string
        column); a column that is missing, null or of another type is a corrupt blob, not a
        KeyError or a cast of nulls to garbage integers."""
        import numpy as np
        import pyarrow as pa

        if name not in table.column_names:
            raise ValueError(f"corrupt {self.what}: no column {name!r}")
        column = table.column(name)
        if column.null_count or (dtype is object) != pa.types.is_string(column.type):
            raise ValueError(f"corrupt {self.what}: column {name!r} of type {column.type}")
        try:
            return np.asarray(column.to_numpy(zero_copy_only=False), dtype=dtype)
        except (TypeError, ValueError, pa.ArrowException) as e:
            raise ValueError(f"corrupt {self.what}: column {name!r}: {e}") from e


def unpack(blob: bytes, magic: bytes, *, what: str) -> Unpacked:
    """Check ``blob``'s magic and read its header; ``what`` names the blob in the messages
    (``"not a {what} (bad magic)"``, ``"truncated {what}: ..."``, ``"corrupt {what}: ..."``)."""
    view = memoryview(blob).cast("B")
    if bytes(view[: len(magic)]) != magic:
        raise ValueError(f"not a {what} (bad magic)")
    pos = len(magic)
    if len(view) - pos < _HEADER_LEN.size:
        raise ValueError(f"truncated {what}: no header length")
    (length,) = _HEADER_LEN.unpack_from(view, pos)
    pos += _HEADER_LEN.size
    if length > len(view) - pos:
        raise ValueError(
            f"truncated {what}: the header needs {length} bytes, {len(view) - pos} left"
        )
    try:
        header = json.loads(bytes(view[pos : pos + length]))
    except (ValueError, RecursionError) as e:  # JSON and UTF-8 errors are ValueErrors
        raise ValueError(f"corrupt {what}: header is not JSON ({_one_line(e)})") from e
    if not isinstance(header, dict):
        raise ValueError(f"corrupt {what}: header is a {type(header).__name__}, not an object")
    return Unpacked(header, what, view, pos + length)


def _one_line(error: BaseException) -> str:
    """An error's message on one line (Arrow's can span several)."""
    return " ".join(str(error).split())
