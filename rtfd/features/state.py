"""The kernel state of many users, held as columns, and its serialisation.

:class:`KernelState` is what :func:`rtfd.features.batch.step_batch` folds a batch into: one blob
per Spark bucket on a cluster (:meth:`KernelState.to_bytes` is what the state store moves), the
whole history offline. It converts to and from the reference :class:`UserState` of each user,
which is how the parity tests compare the two drivers.

:meth:`KernelState.evict` frees users that are idle longer than a TTL; with a TTL at least
``ttl_s`` this never changes a feature.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from rtfd.features import framing
from rtfd.features.arithmetic import DEFAULT_CONFIG, PAIR_KINDS, KernelConfig
from rtfd.features.reference import UserState
from rtfd.features.timeutil import timestamp_ms

_I64 = np.int64
_USER_COLS = ("n", "sum_c", "sq_hi", "sq_lo", "last_te")
_MAGIC = b"RTFDKS1\n"
_WHAT = "kernel state blob"


def _empty_pairs() -> dict[str, np.ndarray]:
    return {
        "u": np.zeros(0, _I64),
        "k": np.zeros(0, _I64),
        "count": np.zeros(0, _I64),
        "last": np.zeros(0, _I64),
    }


class KernelState:
    """Kernel state of many users, held as columns (one blob per Spark bucket).

    * users: ``uid`` and the per-user accumulators (:data:`_USER_COLS`, ``last_lat``/``last_lon``);
    * events: ``u`` (row in users), ``te``, ``c``, ``f`` — the bounded recent-event buffers;
    * pairs[kind] for each of :data:`PAIR_KINDS`: ``u``, ``k``, ``count``, ``last`` — the
      (user, key) histories, with keys as codes into ``vocab[kind]`` (the key strings), so that
      every pair operation is integer-only and serialisation copies no strings but the vocab.
    """

    def __init__(self, config: KernelConfig = DEFAULT_CONFIG) -> None:
        self.config = config
        self.users: dict[str, np.ndarray] = {
            "uid": np.zeros(0, object),
            **{c: np.zeros(0, _I64) for c in _USER_COLS},
            "last_lat": np.zeros(0),
            "last_lon": np.zeros(0),
        }
        self.events: dict[str, np.ndarray] = {
            "u": np.zeros(0, _I64),
            "te": np.zeros(0, _I64),
            "c": np.zeros(0, _I64),
            "f": np.zeros(0, _I64),
        }
        self.pairs: dict[str, dict[str, np.ndarray]] = {k: _empty_pairs() for k in PAIR_KINDS}
        self.vocab: dict[str, np.ndarray] = {k: np.zeros(0, object) for k in PAIR_KINDS}
        self._index: pd.Index | None = None

    def __len__(self) -> int:
        return len(self.users["uid"])

    def __repr__(self) -> str:
        return (
            f"KernelState(users={len(self)}, events={len(self.events['te'])}"
            + "".join(f", {k}={len(v['u'])}" for k, v in self.pairs.items())
            + ")"
        )

    def index(self) -> pd.Index:
        """user_id -> row, built lazily."""
        if self._index is None:
            self._index = pd.Index(self.users["uid"])
        return self._index

    # -- conversions to and from the reference representation ---------------------------
    def user_state(self, user_id: str) -> UserState | None:
        """The :class:`UserState` of one user (None when not held)."""
        row = self.index().get_indexer([user_id])[0]
        if row < 0:
            return None
        u = self.users
        ev = self.events["u"] == row
        order = np.argsort(self.events["te"][ev], kind="stable")

        def pairs(kind: str) -> dict[str, tuple[int, int]]:
            p = self.pairs[kind]
            m = p["u"] == row
            keys = self.vocab[kind][p["k"][m]]
            return {
                str(k): (int(c), int(t))
                for k, c, t in zip(keys, p["count"][m], p["last"][m], strict=True)
            }

        return UserState(
            n=int(u["n"][row]),
            sum_c=int(u["sum_c"][row]),
            sq_hi=int(u["sq_hi"][row]),
            sq_lo=int(u["sq_lo"][row]),
            last_te=int(u["last_te"][row]),
            last_lat=float(u["last_lat"][row]),
            last_lon=float(u["last_lon"][row]),
            events=[
                (int(t), int(c), int(f))
                for t, c, f in zip(
                    self.events["te"][ev][order],
                    self.events["c"][ev][order],
                    self.events["f"][ev][order],
                    strict=True,
                )
            ],
            pairs={kind: pairs(kind) for kind in PAIR_KINDS},
        )

    # -- bounding -------------------------------------------------------------------------
    def evict(self, now: datetime | float, ttl_s: float) -> int:
        """Forget users idle for more than ``ttl_s`` at ``now`` (datetime or epoch seconds).

        Returns the number of users removed. Their events and (user, key) histories go with
        them; keys no pair uses any more leave the vocab. Everything else a kept user holds is
        already pruned relative to that user's own last event, so nothing else is dropped. With
        ``ttl_s >= config.ttl_s`` no feature changes, as long as a user's next transaction is
        not older than ``now``.
        """
        if not len(self):
            return 0
        now_ms = timestamp_ms(now) if isinstance(now, datetime) else round(float(now) * 1000)
        keep = self.users["last_te"] >= now_ms - round(ttl_s * 1000)
        removed = int((~keep).sum())
        if removed == 0:
            return 0
        remap = np.cumsum(keep) - 1
        self.users = {k: v[keep] for k, v in self.users.items()}

        def sub(table: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            m = keep[table["u"]]
            out = {k: v[m] for k, v in table.items()}
            out["u"] = remap[out["u"]]
            return out

        self.events = sub(self.events)
        for kind in PAIR_KINDS:
            p = sub(self.pairs[kind])
            # Compact the vocab to the keys still in use, so it stays bounded too.
            used, codes = np.unique(p["k"], return_inverse=True)
            p["k"] = codes.astype(_I64)
            self.vocab[kind] = self.vocab[kind][used]
            self.pairs[kind] = p
        self._index = None
        return removed

    # -- serialisation ----------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """A compact, pickle-free blob: a JSON header and Arrow IPC tables (users, events, and
        per pair kind its vocab and its pairs), zstd-compressed. Event and pair times are
        stored back from their user's last event, and integer columns as int32 where they fit:
        with the compression, about a tenth of the bytes of the plain int64 columns (this blob
        is what Spark's state store moves and writes every batch on a cluster)."""
        import pyarrow as pa

        last = self.users["last_te"]

        def ints(values: np.ndarray) -> pa.Array:
            v = np.asarray(values, dtype=_I64)
            small = len(v) == 0 or (v.min() >= -(2**31) and v.max() < 2**31)
            return pa.array(v.astype(np.int32) if small else v)

        def back(table: dict[str, np.ndarray], col: str) -> np.ndarray:
            return last[table["u"]] - table[col] if len(table["u"]) else table[col]

        tables = [
            pa.table(
                {
                    "uid": pa.array(self.users["uid"], type=pa.string()),
                    **{c: ints(self.users[c]) for c in _USER_COLS if c != "last_te"},
                    "last_te": pa.array(last, type=pa.int64()),
                    "last_lat": pa.array(self.users["last_lat"], type=pa.float64()),
                    "last_lon": pa.array(self.users["last_lon"], type=pa.float64()),
                }
            ),
            pa.table(
                {
                    "u": ints(self.events["u"]),
                    "te": ints(back(self.events, "te")),
                    "c": ints(self.events["c"]),
                    "f": pa.array(np.asarray(self.events["f"], dtype=np.uint8)),
                }
            ),
        ]
        for kind in PAIR_KINDS:
            p = self.pairs[kind]
            tables.append(pa.table({"key": pa.array(self.vocab[kind], type=pa.string())}))
            tables.append(
                pa.table(
                    {
                        "u": ints(p["u"]),
                        "k": ints(p["k"]),
                        "count": ints(p["count"]),
                        "last": ints(back(p, "last")),
                    }
                )
            )
        header = {"version": 3, "config": self.config.to_dict(), "pairs": list(PAIR_KINDS)}
        return framing.pack(_MAGIC, header, tables)

    @classmethod
    def from_bytes(cls, blob: bytes) -> KernelState:
        """Inverse of :meth:`to_bytes`; raises ValueError on anything that is not such a blob."""

        unpacked = framing.unpack(blob, _MAGIC, what=_WHAT)
        header = unpacked.header
        version = header.get("version")
        if version not in (2, 3) or header.get("pairs") != list(PAIR_KINDS):
            raise ValueError("kernel state of another kernel version")
        tables = unpacked.tables(2 + 2 * len(PAIR_KINDS))
        try:
            out = cls(KernelConfig(**header["config"]))
        except (TypeError, KeyError, ValueError) as e:
            raise ValueError(f"corrupt {_WHAT}: bad config ({e})") from e

        col = unpacked.column

        users, events = tables[:2]
        out.users = {
            "uid": col(users, "uid", object),
            **{c: col(users, c, _I64) for c in _USER_COLS},
            "last_lat": col(users, "last_lat", np.float64),
            "last_lon": col(users, "last_lon", np.float64),
        }
        out.events = {k: col(events, k, _I64) for k in ("u", "te", "c", "f")}
        for i, kind in enumerate(PAIR_KINDS):
            vocab, pairs = tables[2 + 2 * i], tables[3 + 2 * i]
            out.vocab[kind] = col(vocab, "key", object)
            out.pairs[kind] = {k: col(pairs, k, _I64) for k in ("u", "k", "count", "last")}
            k = out.pairs[kind]["k"]
            if len(k) and not 0 <= k.min() <= k.max() < len(out.vocab[kind]):
                raise ValueError(f"corrupt {_WHAT}: pair key outside its vocab")
        for table in (out.events, *out.pairs.values()):
            if len(table["u"]) and not 0 <= table["u"].min() <= table["u"].max() < len(out):
                raise ValueError(f"corrupt {_WHAT}: row of an unknown user")
        if version == 3:  # times stored back from the user's last event
            last = out.users["last_te"]
            for table, c in ((out.events, "te"), *((p, "last") for p in out.pairs.values())):
                if len(table["u"]):
                    table[c] = last[table["u"]] - table[c]
        return out
