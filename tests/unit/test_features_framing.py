"""The state blobs' framing (magic, JSON header, Arrow IPC tables): the bytes of a blob never
change (running appliances keep them in their Spark checkpoints), every blob round-trips, and
anything else read as one is a one-line ValueError naming the blob, never another exception,
a hang or a huge allocation."""

from __future__ import annotations

import hashlib
import io
import json
import resource
import struct
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from rtfd.features import framing
from rtfd.features.arithmetic import PAIR_KINDS, KernelConfig
from rtfd.features.batch import step_batch
from rtfd.features.state import KernelState
from rtfd.features.store import UserStore

pytestmark = pytest.mark.unit

KERNEL_MAGIC = b"RTFDKS1\n"
STORE_MAGIC = b"RTFDUS1\n"
T0 = pd.Timestamp("2024-03-04 12:00", tz="UTC")


def small_history() -> pd.DataFrame:
    """Three users, two merchants and every pair kind, fixed (no generator, no clock)."""
    rows = [
        ("u1", "m1", 12.5, "Paris", 48.8566, 2.3522, "pos", 0),
        ("u2", "m2", 99.99, "Lyon", 45.764, 4.8357, "online", 3),
        ("u1", "m2", 7.0, "Paris", 48.8566, 2.3522, "online", 61),
        ("u3", "m1", 1500.0, "Nice", 43.7102, 7.262, "pos", 600),
        ("u1", "m1", 20.0, "Lyon", 45.764, 4.8357, "pos", 1440),
    ]
    return pd.DataFrame(
        {
            "transaction_id": [f"t{i}" for i in range(len(rows))],
            "user_id": [r[0] for r in rows],
            "merchant_id": [r[1] for r in rows],
            "amount": [r[2] for r in rows],
            "currency": "EUR",
            "location": [r[3] for r in rows],
            "lat": [r[4] for r in rows],
            "lon": [r[5] for r in rows],
            "channel": [r[6] for r in rows],
            "timestamp": [T0 + pd.Timedelta(minutes=r[7]) for r in rows],
        }
    )


def small_kernel_state() -> KernelState:
    return step_batch(KernelState(KernelConfig(max_events=7)), small_history())[0]


def small_store() -> UserStore:
    store = UserStore(KernelConfig(max_events=7), capacity=2)
    history = small_history()
    store.step(history.iloc[:3])
    store.step(history.iloc[3:])
    return store


# SHA-256 of to_bytes() computed with the code from before rtfd.features.framing (commit
# 9083cd3). A failure means a blob's bytes changed: the checkpoints of running appliances hold
# the old bytes, so a new layout needs a new version (and a reader of the old one). Should a
# pyarrow upgrade alone change them (another zstd), the layout test below still tells whether
# the framing itself moved.
GOLDEN = {
    "kernel, empty": (
        lambda: KernelState().to_bytes(),
        "b8d912f94ef299c7f0857db1b86c5102ed94ad5b0764107d6117f67a7ffafac1",
    ),
    "kernel, small": (
        lambda: small_kernel_state().to_bytes(),
        "33abe37fc0b1fbaf450d3a424a6017404602c7407b7d8a842b6cf5185fe5ac08",
    ),
    "store, empty": (
        lambda: UserStore().to_bytes(),
        "78262c14297bc2ab3580e2e26fb01277ff15ab42c7a32852f7e5c9b4a64d23ad",
    ),
    "store, small": (
        lambda: small_store().to_bytes(),
        "6ad287f2c3922ed1456f0e4aed1443ac8450f008e38ddd8bdf3641823271a467",
    ),
}


@pytest.mark.parametrize("name", list(GOLDEN))
def test_a_blob_keeps_the_bytes_checkpoints_hold(name: str) -> None:
    make, digest = GOLDEN[name]
    assert hashlib.sha256(make()).hexdigest() == digest


def _frames(blob: bytes, magic: bytes) -> tuple[bytes, list[bytes]]:
    """The header and table streams of a blob, split by hand (not by the code under test)."""
    assert blob[: len(magic)] == magic
    pos = len(magic)
    (hlen,) = struct.unpack_from("<I", blob, pos)
    header = blob[pos + 4 : pos + 4 + hlen]
    pos += 4 + hlen
    streams = []
    while pos < len(blob):
        (tlen,) = struct.unpack_from("<Q", blob, pos)
        streams.append(blob[pos + 8 : pos + 8 + tlen])
        pos += 8 + tlen
    assert pos == len(blob)
    return header, streams


def test_the_layout_is_magic_header_then_length_prefixed_zstd_ipc_streams() -> None:
    blob = small_kernel_state().to_bytes()
    header, streams = _frames(blob, KERNEL_MAGIC)
    assert (
        header
        == json.dumps(
            {
                "version": 3,
                "config": {"ttl_s": 691200.0, "max_events": 7},
                "pairs": list(PAIR_KINDS),
            }
        ).encode()
    )
    assert len(streams) == 2 + 2 * len(PAIR_KINDS)
    users = pa.ipc.open_stream(streams[0]).read_all()
    assert sorted(users.column("uid").to_pylist()) == ["u1", "u2", "u3"]
    header, streams = _frames(small_store().to_bytes(), STORE_MAGIC)
    assert json.loads(header)["tables"] == [
        "users",
        "events",
        "pairs",
        *(f"vocab_{k}" for k in PAIR_KINDS),
    ]
    assert len(streams) == 3 + len(PAIR_KINDS)


def test_pack_and_unpack_round_trip_any_header_and_tables() -> None:
    tables = [
        pa.table({"a": [1, 2, 3], "s": ["x", None, "z"]}),
        pa.table({"f": pa.array([], pa.float64())}),
        pa.table({"b": [True]}),
    ]
    header = {"k": [1, "two", None], "nested": {"x": 1.5}}
    blob = framing.pack(b"MAGIC\n", header, tables)
    unpacked = framing.unpack(blob, b"MAGIC\n", what="test blob")
    assert unpacked.header == header
    assert [t.equals(u) for t, u in zip(tables, unpacked.tables(3), strict=True)] == [True] * 3
    assert framing.unpack(framing.pack(b"M", {}, []), b"M", what="x").tables(0) == []
    with pytest.raises(ValueError, match=r"^truncated test blob: table 4 of 4 is missing$"):
        unpacked.tables(4)
    with pytest.raises(ValueError, match=r"^corrupt test blob: \d+ bytes after its tables$"):
        unpacked.tables(2)


def _assert_same_kernel_state(a: KernelState, b: KernelState) -> None:
    assert a.config == b.config
    for mine, theirs in ((a.users, b.users), (a.events, b.events)):
        assert mine.keys() == theirs.keys()
        for k in mine:
            assert mine[k].dtype == theirs[k].dtype, k
            np.testing.assert_array_equal(mine[k], theirs[k])
    for kind in PAIR_KINDS:
        np.testing.assert_array_equal(a.vocab[kind], b.vocab[kind])
        for k in a.pairs[kind]:
            np.testing.assert_array_equal(a.pairs[kind][k], b.pairs[kind][k])


@pytest.mark.parametrize("make", [KernelState, small_kernel_state])
def test_kernel_state_round_trips(make: Callable[[], KernelState]) -> None:
    state = make()
    blob = state.to_bytes()
    back = KernelState.from_bytes(blob)
    _assert_same_kernel_state(back, state)
    assert back.to_bytes() == blob
    assert back.user_state("u1") == state.user_state("u1")


@pytest.mark.parametrize("make", [UserStore, small_store])
def test_user_store_round_trips(make: Callable[[], UserStore]) -> None:
    store = make()
    blob = store.to_bytes()
    back = UserStore.from_bytes(blob)
    assert back.to_bytes() == blob
    assert (len(back), back.events, back.pairs) == (len(store), store.events, store.pairs)
    _assert_same_kernel_state(back.kernel_state(), store.kernel_state())
    # ... and the next batch gives the same features from either.
    later = small_history().assign(
        transaction_id=lambda f: f["transaction_id"] + "-later",
        timestamp=lambda f: f["timestamp"] + pd.Timedelta(hours=2),
    )
    pd.testing.assert_frame_equal(back.step(later), store.step(later), check_exact=True)


def _version_2_blob(state: KernelState) -> bytes:
    """A kernel state as version 2 wrote it (before commit ebdc47e): int64 columns, absolute
    times, no compression, in the same framing."""
    header = json.dumps(
        {"version": 2, "config": state.config.to_dict(), "pairs": list(PAIR_KINDS)}
    ).encode()
    tables = [
        pa.table(
            {
                "uid": pa.array(state.users["uid"], type=pa.string()),
                **{
                    c: pa.array(state.users[c], type=pa.int64())
                    for c in ("n", "sum_c", "sq_hi", "sq_lo", "last_te")
                },
                "last_lat": pa.array(state.users["last_lat"], type=pa.float64()),
                "last_lon": pa.array(state.users["last_lon"], type=pa.float64()),
            }
        ),
        pa.table({k: pa.array(v, type=pa.int64()) for k, v in state.events.items()}),
    ]
    for kind in PAIR_KINDS:
        tables.append(pa.table({"key": pa.array(state.vocab[kind], type=pa.string())}))
        tables.append(
            pa.table({k: pa.array(v, type=pa.int64()) for k, v in state.pairs[kind].items()})
        )
    parts = [KERNEL_MAGIC, struct.pack("<I", len(header)), header]
    for table in tables:
        sink = io.BytesIO()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        parts += [struct.pack("<Q", len(sink.getvalue())), sink.getvalue()]
    return b"".join(parts)


@pytest.mark.parametrize("make", [KernelState, small_kernel_state])
def test_a_version_2_kernel_state_still_reads(make: Callable[[], KernelState]) -> None:
    state = make()
    back = KernelState.from_bytes(_version_2_blob(state))
    _assert_same_kernel_state(back, state)
    assert back.to_bytes() == state.to_bytes()


# -- attacks ------------------------------------------------------------------------------------

FORMATS: dict[str, tuple[bytes, Callable[[bytes], object], str]] = {
    "kernel": (KERNEL_MAGIC, KernelState.from_bytes, "kernel state"),
    "store": (STORE_MAGIC, UserStore.from_bytes, "user store snapshot"),
}


def _blob(fmt: str) -> bytes:
    return small_kernel_state().to_bytes() if fmt == "kernel" else small_store().to_bytes()


@contextmanager
def _bounded(megabytes: int = 64, seconds: float = 60.0, *, trace: bool = True) -> Iterator[None]:
    """Fails if the block allocates more than ``megabytes`` at its peak or runs longer than
    ``seconds``: Python and NumPy allocations through tracemalloc (``trace``; it doubles the
    time of the byte-by-byte loops, which go without it), anything else (Arrow's pool) through
    the process's peak resident size, which a huge allocation would raise."""
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    if trace:
        tracemalloc.start()
    started = time.monotonic()
    try:
        yield
    finally:
        peak = tracemalloc.get_traced_memory()[1] if trace else 0
        tracemalloc.stop()
    assert time.monotonic() - started < seconds
    assert peak < megabytes << 20, peak
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
    assert grown < megabytes << 10, f"peak resident size grew by {grown} KiB"


def _refused(fmt: str, blob: bytes) -> str:
    """The one-line message with which ``fmt`` refuses ``blob`` (the test fails otherwise)."""
    _, read, what = FORMATS[fmt]
    with pytest.raises(ValueError) as info:
        read(blob)
    message = str(info.value)
    assert what in message and "\n" not in message, message
    return message


def _read_or_refused(fmt: str, blob: bytes) -> bool:
    """Reads ``blob`` or refuses it with a one-line ValueError; True if it was refused. A byte
    changed inside compressed data can still read (zstd frames carry no checksum here)."""
    _, read, what = FORMATS[fmt]
    try:
        read(blob)
    except ValueError as e:
        assert what in str(e) and "\n" not in str(e), str(e)
        return True
    return False


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_every_truncation_is_refused(fmt: str) -> None:
    blob = _blob(fmt)
    with _bounded(trace=False):
        for end in range(len(blob)):
            _refused(fmt, blob[:end])


def _flips(blob: bytes, magic: bytes) -> Iterator[tuple[int, int]]:
    """(position, xor mask) pairs: every bit pattern at each byte of the magic, the lengths
    and the header, then every fifth byte of the tables with a mask that rotates (each byte
    costs a whole read: every byte of every table would take the test past a minute)."""
    masks = (0x01, 0x80, 0xFF)
    header_end = len(magic) + 4 + struct.unpack_from("<I", blob, len(magic))[0]
    lengths = {at + i for at in _table_length_offsets(blob, magic) for i in range(8)}
    for pos in range(len(blob)):
        if pos < header_end or pos in lengths:
            yield from ((pos, mask) for mask in masks)
        elif pos % 5 == 0:
            yield pos, masks[pos // 5 % 3]


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_a_changed_byte_anywhere_reads_or_is_refused(fmt: str) -> None:
    blob = _blob(fmt)
    flips = list(_flips(blob, FORMATS[fmt][0]))
    refused = 0
    with _bounded(trace=False):
        for pos, mask in flips:
            bad = bytearray(blob)
            bad[pos] ^= mask
            refused += _read_or_refused(fmt, bytes(bad))
    # The magic, the lengths, the header and the IPC framing are checked: many changes are
    # refused, not read as some other state.
    assert refused > len(flips) // 4, (refused, len(flips))


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_appended_bytes_are_refused(fmt: str) -> None:
    blob = _blob(fmt)
    for extra in (b"\x00", b"x" * 100, struct.pack("<Q", 0), blob):
        assert "after its tables" in _refused(fmt, blob + extra)


def _with_header_length(blob: bytes, magic: bytes, length: int) -> bytes:
    return magic + struct.pack("<I", length) + blob[len(magic) + 4 :]


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_a_header_length_past_the_end_is_refused(fmt: str) -> None:
    magic = FORMATS[fmt][0]
    blob = _blob(fmt)
    rest = len(blob) - len(magic) - 4
    for length in (rest + 1, rest + 4096, len(blob), 2**31, 2**32 - 1):
        message = _refused(fmt, _with_header_length(blob, magic, length))
        assert message.startswith("truncated"), message


def _table_length_offsets(blob: bytes, magic: bytes) -> list[int]:
    """Where each table's u64 length sits in ``blob``."""
    pos = len(magic)
    (hlen,) = struct.unpack_from("<I", blob, pos)
    pos += 4 + hlen
    out = []
    while pos < len(blob):
        out.append(pos)
        pos += 8 + struct.unpack_from("<Q", blob, pos)[0]
    return out


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_a_huge_or_overlong_table_length_is_refused(fmt: str) -> None:
    magic = FORMATS[fmt][0]
    blob = _blob(fmt)
    offsets = _table_length_offsets(blob, magic)
    with _bounded():
        for at in offsets:
            rest = len(blob) - at - 8
            for length in (rest + 1, len(blob), 2**32, 2**62, 2**63, 2**63 + 1, 2**64 - 1):
                bad = blob[:at] + struct.pack("<Q", length) + blob[at + 8 :]
                assert _refused(fmt, bad).startswith("truncated")
            # Shorter than the stream: the tables no longer line up.
            for length in (0, 1, 8):
                bad = blob[:at] + struct.pack("<Q", length) + blob[at + 8 :]
                _refused(fmt, bad)


def _with_header(magic: bytes, header: bytes, blob: bytes) -> bytes:
    """``blob``'s tables behind another header."""
    (hlen,) = struct.unpack_from("<I", blob, len(magic))
    return magic + struct.pack("<I", len(header)) + header + blob[len(magic) + 4 + hlen :]


NOT_AN_OBJECT = {
    "list": b"[1, 2, 3]",
    "number": b"3",
    "string": b'"version"',
    "null": b"null",
    "true": b"true",
    "empty": b"",
    "invalid JSON": b'{"version": 3,',
    "invalid UTF-8": b'{"version": "\xff\xfe"}',
    "invalid UTF-8 first": b"\xff{}",
    "a cut UTF-8 sequence": b'{"version": "\xc3"}',
    "NUL bytes": b"\x00" * 16,
    "deep nesting": b"[" * 100_000 + b"]" * 100_000,
    "huge integer": b'{"version": ' + b"9" * 10_000 + b"}",
    "two objects": b"{} {}",
}


@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("case", list(NOT_AN_OBJECT))
def test_a_header_that_is_not_a_json_object_is_refused(fmt: str, case: str) -> None:
    magic = FORMATS[fmt][0]
    message = _refused(fmt, _with_header(magic, NOT_AN_OBJECT[case], _blob(fmt)))
    assert message.startswith("corrupt"), message


def _kernel_header(**changes: object) -> bytes:
    header: dict[str, object] = {
        "version": 3,
        "config": {"ttl_s": 691200.0, "max_events": 7},
        "pairs": list(PAIR_KINDS),
    }
    header.update(changes)
    return json.dumps({k: v for k, v in header.items() if v is not ...}).encode()


KERNEL_HEADERS = {
    "version 1": (_kernel_header(version=1), "another kernel version"),
    "version 4": (_kernel_header(version=4), "another kernel version"),
    "version as text": (_kernel_header(version="3"), "another kernel version"),
    "no version": (_kernel_header(version=...), "another kernel version"),
    "pairs reordered": (_kernel_header(pairs=list(PAIR_KINDS)[::-1]), "another kernel version"),
    "no pairs": (_kernel_header(pairs=...), "another kernel version"),
    "no config": (_kernel_header(config=...), "corrupt"),
    "config a list": (_kernel_header(config=[1, 2]), "corrupt"),
    "config a string": (_kernel_header(config="x"), "corrupt"),
    "config unknown field": (_kernel_header(config={"ttl_s": 691200.0, "x": 1}), "corrupt"),
    "config out of range": (_kernel_header(config={"max_events": 0}), "corrupt"),
    "config of text": (_kernel_header(config={"max_events": "many"}), "corrupt"),
}


@pytest.mark.parametrize("case", list(KERNEL_HEADERS))
def test_a_kernel_header_of_another_version_or_config_is_refused(case: str) -> None:
    header, expected = KERNEL_HEADERS[case]
    assert expected in _refused("kernel", _with_header(KERNEL_MAGIC, header, _blob("kernel")))


def _store_header(**changes: object) -> bytes:
    header: dict[str, object] = {
        "format": 1,
        "config": {"ttl_s": 691200.0, "max_events": 7},
        "pairs": list(PAIR_KINDS),
        "tables": ["users", "events", "pairs", *(f"vocab_{k}" for k in PAIR_KINDS)],
    }
    header.update(changes)
    return json.dumps({k: v for k, v in header.items() if v is not ...}).encode()


STORE_HEADERS = {
    "format 2": (_store_header(format=2), "another format"),
    "format as text": (_store_header(format="1"), "another format"),
    "no format": (_store_header(format=...), "another format"),
    "pairs reordered": (_store_header(pairs=list(PAIR_KINDS)[::-1]), "another format"),
    "no tables": (_store_header(tables=...), "corrupt"),
    "tables a string": (_store_header(tables="users"), "corrupt"),
    "tables of numbers": (_store_header(tables=list(range(7))), "corrupt"),
    "a table short": (_store_header(tables=["users", "events"]), "corrupt"),
    "a million tables": (_store_header(tables=["t"] * 1_000_000), "truncated"),
    "a table renamed": (
        _store_header(tables=["people", "events", "pairs", *(f"vocab_{k}" for k in PAIR_KINDS)]),
        "missing users",
    ),
    "no config": (_store_header(config=...), "corrupt"),
    "config a list": (_store_header(config=[1]), "corrupt"),
    "config out of range": (_store_header(config={"ttl_s": 1.0}), "corrupt"),
}


@pytest.mark.parametrize("case", list(STORE_HEADERS))
def test_a_store_header_of_another_format_or_config_is_refused(case: str) -> None:
    header, expected = STORE_HEADERS[case]
    with _bounded():
        message = _refused("store", _with_header(STORE_MAGIC, header, _blob("store")))
    assert expected in message, message


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_wrong_magic_and_the_other_formats_blob_are_refused(fmt: str) -> None:
    magic = FORMATS[fmt][0]
    other = "store" if fmt == "kernel" else "kernel"
    blob = _blob(fmt)
    for bad in (
        b"",
        b"R",
        magic[:-1],
        b"pickle",
        b"\x80\x04\x95",  # a pickle's opening bytes
        b"RTFDKS2\n" + blob[8:],
        b"rtfdks1\n" + blob[8:],
        b"PAR1" + blob[4:],
        b"\x00" * len(blob),
    ):
        assert "bad magic" in _refused(fmt, bad)
    assert "bad magic" in _refused(fmt, _blob(other))
    # This blob behind the other format's magic: its header is not the other format's.
    assert "another" in _refused(other, FORMATS[other][0] + blob[len(magic) :])
    for bad in (magic, magic + b"\x01", magic + b"\x01\x00\x00"):
        assert _refused(fmt, bad).startswith("truncated")


def _rebuilt(fmt: str, change: Callable[[list[pa.Table]], list[pa.Table]]) -> bytes:
    """A well-framed blob whose tables ``change`` altered: the format's own checks' turn."""
    magic = FORMATS[fmt][0]
    unpacked = framing.unpack(_blob(fmt), magic, what=fmt)
    tables = unpacked.tables(len(_table_length_offsets(_blob(fmt), magic)))
    return framing.pack(magic, unpacked.header, change(tables))


def _set(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    return table.set_column(table.column_names.index(name), name, values)


def _kernel_table(i: int, change: Callable[[pa.Table], pa.Table]) -> Callable[..., list[pa.Table]]:
    return lambda tables: [change(t) if j == i else t for j, t in enumerate(tables)]


def _pair_table(kind: str) -> int:
    return 3 + 2 * PAIR_KINDS.index(kind)


KERNEL_TABLE_ATTACKS: dict[str, Callable[[list[pa.Table]], list[pa.Table]]] = {
    "tables swapped": lambda t: [t[1], t[0], *t[2:]],
    "a table empty of columns": _kernel_table(0, lambda t: pa.table({})),
    "uid missing": _kernel_table(0, lambda t: t.drop_columns(["uid"])),
    "uid of numbers": _kernel_table(0, lambda t: _set(t, "uid", pa.array(range(t.num_rows)))),
    "n of text": _kernel_table(0, lambda t: _set(t, "n", pa.array(["x"] * t.num_rows))),
    "n with a null": _kernel_table(
        0, lambda t: _set(t, "n", pa.array([None] * t.num_rows, pa.int64()))
    ),
    "event of an unknown user": _kernel_table(
        1, lambda t: _set(t, "u", pa.array([99] * t.num_rows, pa.int32()))
    ),
    "event of a negative user": _kernel_table(
        1, lambda t: _set(t, "u", pa.array([-1] * t.num_rows, pa.int32()))
    ),
    **{
        f"{kind} pair key outside its vocab": _kernel_table(
            _pair_table(kind), lambda t: _set(t, "k", pa.array([10**6] * t.num_rows, pa.int32()))
        )
        for kind in PAIR_KINDS
    },
    **{
        f"{kind} pair key negative": _kernel_table(
            _pair_table(kind), lambda t: _set(t, "k", pa.array([-1] * t.num_rows, pa.int32()))
        )
        for kind in PAIR_KINDS
    },
    "pair of an unknown user": _kernel_table(
        _pair_table("city"), lambda t: _set(t, "u", pa.array([7] * t.num_rows, pa.int32()))
    ),
    "vocab of numbers": _kernel_table(2, lambda t: pa.table({"key": pa.array(range(t.num_rows))})),
    "a table fewer": lambda t: t[:-1],
    "a table more": lambda t: [*t, t[0]],
}


@pytest.mark.parametrize("case", list(KERNEL_TABLE_ATTACKS))
def test_kernel_tables_that_do_not_fit_are_refused(case: str) -> None:
    assert _refused("kernel", _rebuilt("kernel", KERNEL_TABLE_ATTACKS[case])).startswith(
        ("corrupt", "truncated")
    )


def _store_table(i: int, change: Callable[[pa.Table], pa.Table]) -> Callable[..., list[pa.Table]]:
    return _kernel_table(i, change)


STORE_TABLE_ATTACKS: dict[str, Callable[[list[pa.Table]], list[pa.Table]]] = {
    "users and pairs swapped": lambda t: [t[2], t[1], t[0], *t[3:]],
    "uid missing": _store_table(0, lambda t: t.drop_columns(["uid"])),
    "a user twice": _store_table(0, lambda t: _set(t, "uid", pa.array(["u1"] * t.num_rows))),
    "uid with a null": _store_table(0, lambda t: _set(t, "uid", pa.array([None] * t.num_rows))),
    "n of text": _store_table(0, lambda t: _set(t, "n", pa.array(["x"] * t.num_rows))),
    "event buffer past max_events": _store_table(
        0, lambda t: _set(t, "ev_len", pa.array([10**9] * t.num_rows, pa.int32()))
    ),
    "event buffer length wrapping int32": _store_table(
        0, lambda t: _set(t, "ev_len", pa.array([2**32 + 1] * t.num_rows, pa.int64()))
    ),
    "event buffer length negative": _store_table(
        0, lambda t: _set(t, "ev_len", pa.array([-1] * t.num_rows, pa.int32()))
    ),
    "events fewer than the buffers": _store_table(1, lambda t: t.slice(1)),
    "events more than the buffers": _store_table(1, lambda t: pa.concat_tables([t, t])),
    "pair of an unknown user": _store_table(
        2, lambda t: _set(t, "user", pa.array([50] * t.num_rows, pa.int64()))
    ),
    "pair of an unknown kind": _store_table(
        2, lambda t: _set(t, "kind_code", pa.array([7 << 30] * t.num_rows, pa.int64()))
    ),
    "pair kind negative": _store_table(
        2, lambda t: _set(t, "kind_code", pa.array([-1] * t.num_rows, pa.int64()))
    ),
    "pair key outside its vocab": _store_table(
        2, lambda t: _set(t, "kind_code", pa.array([10**6] * t.num_rows, pa.int64()))
    ),
    "a pair twice": _store_table(2, lambda t: pa.concat_tables([t, t])),
    "a vocab key twice": _store_table(
        3, lambda t: pa.table({"key": pa.array(["Paris"] * (t.num_rows + 1))})
    ),
    "a vocab empty": _store_table(3, lambda t: t.slice(0, 0)),
}


@pytest.mark.parametrize("case", list(STORE_TABLE_ATTACKS))
def test_store_tables_that_do_not_fit_are_refused(case: str) -> None:
    with _bounded():
        blob = _rebuilt("store", STORE_TABLE_ATTACKS[case])
        assert _refused("store", blob).startswith("corrupt")


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_a_table_stream_of_garbage_is_refused(fmt: str) -> None:
    magic = FORMATS[fmt][0]
    blob = _blob(fmt)
    rng = np.random.default_rng(7)
    for at in _table_length_offsets(blob, magic):
        (length,) = struct.unpack_from("<Q", blob, at)
        for garbage in (
            rng.bytes(length),
            b"\x00" * length,
            b"\xff" * length,
            blob[at + 8 : at + 8 + length][::-1],
        ):
            bad = blob[: at + 8] + garbage + blob[at + 8 + length :]
            assert _refused(fmt, bad).startswith("corrupt")
