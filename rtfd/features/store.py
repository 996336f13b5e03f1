"""Kernel state for a stream: the work and the bytes of a batch follow the batch, not the users.

:class:`~rtfd.features.state.KernelState` holds every user's state as columns, and
:func:`~rtfd.features.batch.step_batch` rebuilds all of it on each call: right for a history
folded at once, but O(users in state) per micro-batch. :class:`UserStore` holds the same state
addressed by user slot and (user, key) hash, so that one batch

1. gathers the state of the users it touches — their accumulators, their recent events and only
   the (user, key) histories its own rows look up — into a small ``KernelState``;
2. runs the one :func:`step_batch` on it (so features stay bit-for-bit those of the offline
   kernel and of :func:`~rtfd.features.reference.step`);
3. scatters the touched users' new state back.

Every step is O(rows + touched users' events). A (user, key) history the batch does not look up
stays as it was: the kernel treats an entry older than the TTL as absent, so keeping it (instead
of pruning it the way ``step_batch`` prunes a user it rewrites) never changes a feature; memory
is bounded by :meth:`UserStore.evict`, which drops idle users with all their histories.

Layout (per user slot): the accumulators as int64/float64 columns; the recent-event buffer as
three planes ``[event, slot]`` — event time as an int32 offset back from the user's last event
(the buffer spans at most 7 days < 2^31 ms), cents as int32 (< 2^27), flags as uint8 — 9 bytes an
event; the (user, key) histories in an :class:`~rtfd.features.intmap.Int64Index` keyed by
``slot << 32 | kind << 30 | key code``, with count and last event time columns. Keys are coded
through one vocabulary per kind.

:meth:`UserStore.to_bytes` / :meth:`UserStore.from_bytes` serialise it (Arrow IPC, zstd, no
pickle) for the stream's snapshots.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from rtfd.features import framing
from rtfd.features.arithmetic import DEFAULT_CONFIG, PAIR_KINDS, KernelConfig
from rtfd.features.batch import step_batch
from rtfd.features.columns import BatchColumns, batch_columns
from rtfd.features.intmap import Int64Index
from rtfd.features.state import KernelState

_I64 = np.int64
_SCALARS = ("n", "sum_c", "sq_hi", "sq_lo", "last_te")
_COORDS = ("last_lat", "last_lon")
_KIND_SHIFT = 30
_SLOT_SHIFT = 32
_MAX_CODE = (1 << _KIND_SHIFT) - 1
_MAGIC = b"RTFDUS1\n"
_WHAT = "user store snapshot"
_TABLES = ("users", "events", "pairs", *(f"vocab_{kind}" for kind in PAIR_KINDS))
FORMAT = 1


class UserStore:
    """Per-user kernel state for incremental batches (see the module docstring)."""

    def __init__(self, config: KernelConfig = DEFAULT_CONFIG, capacity: int = 1024) -> None:
        self.config = config
        self._slot: dict[str, int] = {}
        self._uid: list[str | None] = []
        self._free: list[int] = []
        cap = max(capacity, 16)
        self._cols: dict[str, np.ndarray] = {c: np.zeros(cap, _I64) for c in _SCALARS}
        self._cols.update({c: np.full(cap, np.nan) for c in _COORDS})
        self._ev_len = np.zeros(cap, np.int32)
        self._ev_off = np.zeros((0, cap), np.int32)  # planes [event, slot], grown on demand
        self._ev_c = np.zeros((0, cap), np.int32)
        self._ev_f = np.zeros((0, cap), np.uint8)
        self._pairs = Int64Index()
        self._pair_count = np.zeros(1024, _I64)
        self._pair_last = np.zeros(1024, _I64)
        self._vocab: dict[str, dict[str, int]] = {k: {} for k in PAIR_KINDS}
        self._words: dict[str, list[str]] = {k: [] for k in PAIR_KINDS}

    # -- size ----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._slot)

    @property
    def pairs(self) -> int:
        return len(self._pairs)

    @property
    def events(self) -> int:
        return int(self._ev_len[: len(self._uid)].sum())

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays (not the user-id dict and vocabularies)."""
        arrays = [*self._cols.values(), self._ev_len, self._ev_off, self._ev_c, self._ev_f]
        arrays += [self._pair_count, self._pair_last]
        return int(sum(a.nbytes for a in arrays) + self._pairs.nbytes)

    def __repr__(self) -> str:
        return f"UserStore(users={len(self)}, events={self.events}, pairs={self.pairs})"

    # -- the batch step ------------------------------------------------------------------------
    def step(self, txns: pd.DataFrame) -> pd.DataFrame:
        """Fold a batch into the store; return its features (like :func:`step_batch`).

        Features are those :func:`step_batch` returns for the same rows on a ``KernelState``
        holding the same history (risk features zeros: the stream joins them when it scores).
        The caller removes duplicate deliveries.
        """
        cols = batch_columns(txns)
        if not len(cols.t_ms):
            return step_batch(KernelState(self.config), txns)[1]
        sub, slots = self._gather(cols)
        result, features = step_batch(sub, txns, columns=cols)
        # step_batch returns the batch's users in the order of their codes, the order of
        # cols.users: the slots found while gathering serve the scatter too.
        if not np.array_equal(result.users["uid"], cols.users):
            slots = np.fromiter(
                (self._slot.get(u, -1) for u in result.users["uid"].tolist()),
                dtype=_I64,
                count=len(result.users["uid"]),
            )
        self._scatter(result, slots)
        return features

    def _gather(self, cols: BatchColumns) -> tuple[KernelState, np.ndarray]:
        """The touched users' state as a small KernelState, and the slot of each batch user
        (-1 for users the store does not hold)."""
        uniques = cols.users
        slots = np.fromiter(
            (self._slot.get(u, -1) for u in uniques.tolist()), dtype=_I64, count=len(uniques)
        )
        held = np.flatnonzero(slots >= 0)
        hs = slots[held]
        sub = KernelState(self.config)
        sub.users = {
            "uid": uniques[held],
            **{c: self._cols[c][hs].copy() for c in (*_SCALARS, *_COORDS)},
        }
        # Events, user by user in their stored (processing) order.
        lens = self._ev_len[hs].astype(_I64)
        depth = int(lens.max()) if len(lens) else 0
        if depth:
            planes = np.arange(depth)
            take = planes[None, :] < lens[:, None]  # (users, depth), user-major
            rows = np.broadcast_to(np.arange(len(hs))[:, None], take.shape)[take]
            last = self._cols["last_te"][hs]
            off = self._ev_off[:depth, hs].T[take]
            sub.events = {
                "u": rows.astype(_I64),
                "te": last[rows] - off.astype(_I64),
                "c": self._ev_c[:depth, hs].T[take].astype(_I64),
                "f": self._ev_f[:depth, hs].T[take].astype(_I64),
            }
        # Only the (user, key) histories this batch's rows look up; the sub-state's vocabulary
        # is the batch's own keys, so step_batch never rebuilds a big vocabulary index.
        sub_row = np.full(len(uniques), -1, dtype=_I64)
        sub_row[held] = np.arange(len(held))
        for k, kind in enumerate(PAIR_KINDS):
            codes, words = cols.keys[kind]
            sub.vocab[kind] = np.asarray(words, dtype=object)
            gcode = self._codes_of(kind, words, add=False)
            rows_ok = (codes >= 0) & (slots[cols.user] >= 0)
            if not rows_ok.any() or not len(self._pairs):
                continue
            rc = codes[rows_ok]
            known = gcode[rc] >= 0
            bu = cols.user[rows_ok][known]
            local = rc[known]
            if not len(bu):
                continue
            pair = np.unique(bu * len(words) + local)
            bu, local = pair // len(words), pair % len(words)
            keys = (slots[bu] << _SLOT_SHIFT) | (k << _KIND_SHIFT) | gcode[local]
            at = self._pairs.get(keys)
            hit = at >= 0
            sub.pairs[kind] = {
                "u": sub_row[bu[hit]],
                "k": local[hit].astype(_I64),
                "count": self._pair_count[at[hit]],
                "last": self._pair_last[at[hit]],
            }
        return sub, slots

    def _scatter(self, result: KernelState, slots: np.ndarray) -> None:
        """Write the batch users' new state back (``result`` holds exactly the batch's users;
        ``slots`` are their slots in that order, -1 for users the store does not hold yet)."""
        uids = result.users["uid"]
        at = slots.copy()
        new = np.flatnonzero(at < 0)
        if len(new):
            at[new] = self._allocate([str(u) for u in uids[new]])
        for c in (*_SCALARS, *_COORDS):
            self._cols[c][at] = result.users[c]
        # Events: each batch user's whole buffer is rewritten (at most max_events entries).
        ev = result.events
        counts = np.bincount(ev["u"], minlength=len(uids)).astype(np.int32)
        self._ev_len[at] = counts
        if len(ev["u"]):
            order = np.argsort(ev["u"], kind="stable")
            u = ev["u"][order]
            start = np.concatenate([[0], np.cumsum(counts)[:-1]])
            plane = np.arange(len(u)) - start[u]
            self._ensure_depth(int(plane.max()) + 1)
            col = at[u]
            self._ev_off[plane, col] = (result.users["last_te"][u] - ev["te"][order]).astype(
                np.int32
            )
            self._ev_c[plane, col] = ev["c"][order].astype(np.int32)
            self._ev_f[plane, col] = ev["f"][order].astype(np.uint8)
        # (user, key) histories: update the looked-up ones, add the new ones.
        for k, kind in enumerate(PAIR_KINDS):
            p = result.pairs[kind]
            if not len(p["u"]):
                continue
            gcode = self._codes_of(kind, result.vocab[kind], add=True)
            keys = (at[p["u"]] << _SLOT_SHIFT) | (k << _KIND_SHIFT) | gcode[p["k"]]
            rows, _ = self._pairs.get_or_add(keys)
            self._ensure_pair_rows(len(self._pairs))
            self._pair_count[rows] = p["count"]
            self._pair_last[rows] = p["last"]

    # -- helpers -------------------------------------------------------------------------------
    def _codes_of(self, kind: str, words: np.ndarray, *, add: bool) -> np.ndarray:
        """Global codes of key strings (-1 for unknown ones unless ``add``)."""
        vocab = self._vocab[kind]
        out = np.fromiter((vocab.get(w, -1) for w in words.tolist()), dtype=_I64, count=len(words))
        if add:
            for i in np.flatnonzero(out < 0).tolist():
                word = str(words[i])
                code = vocab.get(word)
                if code is None:
                    code = len(self._words[kind])
                    if code > _MAX_CODE:
                        raise OverflowError(f"more than {_MAX_CODE} distinct {kind} keys")
                    vocab[word] = code
                    self._words[kind].append(word)
                out[i] = code
        return out

    def _allocate(self, uids: list[str]) -> np.ndarray:
        n = len(uids)
        reuse = [self._free.pop() for _ in range(min(n, len(self._free)))]
        first = len(self._uid)
        fresh = list(range(first, first + n - len(reuse)))
        self._uid.extend([None] * len(fresh))
        self._ensure_slots(len(self._uid))
        out = reuse + fresh
        for uid, slot in zip(uids, out, strict=True):
            self._slot[uid] = slot
            self._uid[slot] = uid
        return np.asarray(out, dtype=_I64)

    def _ensure_slots(self, n: int) -> None:
        cap = len(self._ev_len)
        if n <= cap:
            return
        new = max(n, cap + cap // 2)

        def grow(a: np.ndarray, fill: Any) -> np.ndarray:
            out = np.full(new, fill, dtype=a.dtype)
            out[:cap] = a
            return out

        for c in _SCALARS:
            self._cols[c] = grow(self._cols[c], 0)
        for c in _COORDS:
            self._cols[c] = grow(self._cols[c], np.nan)
        self._ev_len = grow(self._ev_len, 0)
        for name in ("_ev_off", "_ev_c", "_ev_f"):
            old = getattr(self, name)
            planes = np.zeros((old.shape[0], new), dtype=old.dtype)
            planes[:, :cap] = old
            setattr(self, name, planes)

    def _ensure_depth(self, depth: int) -> None:
        have = self._ev_off.shape[0]
        if depth <= have:
            return
        depth = min(max(depth, have * 2, 8), self.config.max_events)
        for name in ("_ev_off", "_ev_c", "_ev_f"):
            old = getattr(self, name)
            planes = np.zeros((depth, old.shape[1]), dtype=old.dtype)
            planes[:have] = old
            setattr(self, name, planes)

    def _ensure_pair_rows(self, n: int) -> None:
        cap = len(self._pair_count)
        if n <= cap:
            return
        new = max(n, cap * 2)
        for name in ("_pair_count", "_pair_last"):
            out = np.zeros(new, dtype=_I64)
            out[:cap] = getattr(self, name)
            setattr(self, name, out)

    # -- bounding ------------------------------------------------------------------------------
    def newest_ms(self) -> int | None:
        """The newest event time in state (ms), None when empty."""
        n = len(self._uid)
        if not n or not len(self):
            return None
        live = np.array([u is not None for u in self._uid], dtype=bool)
        return int(self._cols["last_te"][:n][live].max())

    def evict(self, now_ms: int, ttl_s: float) -> int:
        """Forget users idle for more than ``ttl_s`` at ``now_ms`` with all their histories
        (with ``ttl_s`` at least the kernel's TTL this never changes a feature). Returns how
        many users went; O(users + pairs) when some do, O(users) otherwise."""
        n = len(self._uid)
        if not n:
            return 0
        live = np.array([u is not None for u in self._uid], dtype=bool)
        idle = live & (self._cols["last_te"][:n] < now_ms - round(ttl_s * 1000))
        gone = np.flatnonzero(idle)
        if not len(gone):
            return 0
        for slot in gone.tolist():
            uid = self._uid[slot]
            assert uid is not None
            del self._slot[uid]
            self._uid[slot] = None
            self._free.append(slot)
        self._ev_len[gone] = 0
        for c in _SCALARS:
            self._cols[c][gone] = 0
        for c in _COORDS:
            self._cols[c][gone] = np.nan
        keys, rows = self._pairs.items()
        keep = ~idle[keys >> _SLOT_SHIFT]
        self._pairs = Int64Index.from_keys(keys[keep])
        self._pair_count = self._pair_count[rows[keep]].copy()
        self._pair_last = self._pair_last[rows[keep]].copy()
        return len(gone)

    # -- conversion ----------------------------------------------------------------------------
    def kernel_state(self) -> KernelState:
        """Everything as one :class:`KernelState` (tests, small stores)."""
        slots = np.array(sorted(self._slot.values()), dtype=_I64)
        uids = np.array([self._uid[s] for s in slots.tolist()], dtype=object)
        state = KernelState(self.config)
        state.users = {
            "uid": uids,
            **{c: self._cols[c][slots].copy() for c in (*_SCALARS, *_COORDS)},
        }
        lens = self._ev_len[slots].astype(_I64)
        depth = int(lens.max()) if len(lens) else 0
        if depth:
            take = np.arange(depth)[None, :] < lens[:, None]
            rows = np.broadcast_to(np.arange(len(slots))[:, None], take.shape)[take]
            state.events = {
                "u": rows.astype(_I64),
                "te": self._cols["last_te"][slots][rows]
                - self._ev_off[:depth, slots].T[take].astype(_I64),
                "c": self._ev_c[:depth, slots].T[take].astype(_I64),
                "f": self._ev_f[:depth, slots].T[take].astype(_I64),
            }
        dense = np.full(len(self._uid), -1, dtype=_I64)
        dense[slots] = np.arange(len(slots))
        keys, rows = self._pairs.items()
        for k, kind in enumerate(PAIR_KINDS):
            m = ((keys >> _KIND_SHIFT) & 3) == k
            state.vocab[kind] = np.array(self._words[kind], dtype=object)
            state.pairs[kind] = {
                "u": dense[keys[m] >> _SLOT_SHIFT],
                "k": keys[m] & _MAX_CODE,
                "count": self._pair_count[rows[m]].copy(),
                "last": self._pair_last[rows[m]].copy(),
            }
        return state

    # -- serialisation -------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """The whole store as Arrow IPC tables (zstd), no pickle; see :meth:`from_bytes`."""
        import pyarrow as pa

        slots = np.array(sorted(self._slot.values()), dtype=_I64)
        lens = self._ev_len[slots]
        depth = int(lens.max()) if len(lens) else 0
        take = np.arange(depth)[None, :] < lens[:, None].astype(_I64)
        keys, rows = self._pairs.items()
        dense = np.full(len(self._uid), -1, dtype=_I64)
        dense[slots] = np.arange(len(slots))
        tables = {
            "users": pa.table(
                {
                    "uid": pa.array([self._uid[s] for s in slots.tolist()], type=pa.string()),
                    **{c: self._cols[c][slots] for c in (*_SCALARS, *_COORDS)},
                    "ev_len": lens,
                }
            ),
            "events": pa.table(
                {
                    "off": self._ev_off[:depth, slots].T[take],
                    "c": self._ev_c[:depth, slots].T[take],
                    "f": self._ev_f[:depth, slots].T[take],
                }
            ),
            "pairs": pa.table(
                {
                    "user": dense[keys >> _SLOT_SHIFT],
                    "kind_code": keys & ((1 << _SLOT_SHIFT) - 1),
                    "count": self._pair_count[rows],
                    "last": self._pair_last[rows],
                }
            ),
            **{
                f"vocab_{kind}": pa.table({"key": pa.array(self._words[kind], type=pa.string())})
                for kind in PAIR_KINDS
            },
        }
        header = {
            "format": FORMAT,
            "config": self.config.to_dict(),
            "pairs": list(PAIR_KINDS),
            "tables": list(tables),
        }
        return framing.pack(_MAGIC, header, tables.values())

    @classmethod
    def from_bytes(cls, blob: bytes) -> UserStore:
        """Inverse of :meth:`to_bytes`; ValueError on anything else (a clear message)."""

        unpacked = framing.unpack(blob, _MAGIC, what=_WHAT)
        header = unpacked.header
        if header.get("format") != FORMAT or header.get("pairs") != list(PAIR_KINDS):
            raise ValueError("user store snapshot of another format")
        names = header.get("tables")
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            raise ValueError(f"corrupt {_WHAT}: its header lists no tables")
        tables = dict(zip(names, unpacked.tables(len(names)), strict=True))
        missing = [name for name in _TABLES if name not in tables]
        if missing:
            raise ValueError(f"corrupt {_WHAT}: missing {', '.join(missing)}")
        try:
            out = cls(KernelConfig(**header["config"]), capacity=tables["users"].num_rows)
        except (TypeError, KeyError, ValueError) as e:
            raise ValueError(f"corrupt {_WHAT}: bad config ({e})") from e

        col = unpacked.column

        users = tables["users"]
        n = users.num_rows
        uids = col(users, "uid", object).tolist()
        if len(set(uids)) != n:
            raise ValueError(f"corrupt {_WHAT}: a user twice")
        out._allocate(uids)
        for c in (*_SCALARS, *_COORDS):
            out._cols[c][:n] = col(users, c, out._cols[c].dtype)
        lens = col(users, "ev_len", _I64)
        if (lens < 0).any() or (lens > out.config.max_events).any():
            raise ValueError(f"corrupt {_WHAT}: event buffer length out of range")
        ev = tables["events"]
        # Checked before the planes are sized from the lengths.
        if ev.num_rows != int(lens.sum()):
            raise ValueError(f"corrupt {_WHAT}: event count mismatch")
        out._ev_len[:n] = lens
        depth = int(lens.max()) if n else 0
        if depth:
            out._ensure_depth(depth)
            take = np.arange(depth)[None, :] < lens[:, None]
            for name, plane in (("off", out._ev_off), ("c", out._ev_c), ("f", out._ev_f)):
                block = np.zeros((n, depth), dtype=plane.dtype)
                block[take] = col(ev, name, plane.dtype)
                plane[:depth, :n] = block.T
        for kind in PAIR_KINDS:
            words = col(tables[f"vocab_{kind}"], "key", object).tolist()
            if len(set(words)) != len(words):
                raise ValueError(f"corrupt {_WHAT}: a {kind} key twice in its vocab")
            out._words[kind] = words
            out._vocab[kind] = {w: i for i, w in enumerate(words)}
        pairs = tables["pairs"]
        user = col(pairs, "user", _I64)
        if len(user) and (user.min() < 0 or user.max() >= n):
            raise ValueError(f"corrupt {_WHAT}: a pair of an unknown user")
        kind_code = col(pairs, "kind_code", _I64)
        kinds, codes = kind_code >> _KIND_SHIFT, kind_code & _MAX_CODE
        for k, kind in enumerate(PAIR_KINDS):
            if (codes[kinds == k] >= len(out._words[kind])).any():
                raise ValueError(f"corrupt {_WHAT}: a pair key outside its vocab")
        if len(kinds) and not 0 <= kinds.min() <= kinds.max() < len(PAIR_KINDS):
            raise ValueError(f"corrupt {_WHAT}: a pair of an unknown kind")
        keys = (user << _SLOT_SHIFT) | kind_code
        ordered = np.sort(keys)
        if (ordered[1:] == ordered[:-1]).any():
            raise ValueError(f"corrupt {_WHAT}: a pair twice")
        out._pairs = Int64Index.from_keys(keys)
        out._pair_count = col(pairs, "count", _I64).copy()
        out._pair_last = col(pairs, "last", _I64).copy()
        out._ensure_pair_rows(max(len(keys), 1024))
        return out

    def copy(self) -> UserStore:
        """An independent copy (a consistent point to serialise while the stream goes on)."""
        out = UserStore.__new__(UserStore)
        out.config = self.config
        out._slot = dict(self._slot)
        out._uid = list(self._uid)
        out._free = list(self._free)
        out._cols = {c: a.copy() for c, a in self._cols.items()}
        out._ev_len = self._ev_len.copy()
        depth = int(self._ev_len.max()) if len(self._uid) else 0
        n = len(self._ev_len)
        for name in ("_ev_off", "_ev_c", "_ev_f"):
            old = getattr(self, name)
            planes = np.zeros((old.shape[0], n), dtype=old.dtype)
            planes[:depth] = old[:depth]
            setattr(out, name, planes)
        out._pairs = self._pairs.copy()
        used = len(self._pairs)
        out._pair_count = self._pair_count[:used].copy()
        out._pair_last = self._pair_last[:used].copy()
        out._ensure_pair_rows(max(used, 1024))
        out._vocab = {k: dict(v) for k, v in self._vocab.items()}
        out._words = {k: list(v) for k, v in self._words.items()}
        return out
