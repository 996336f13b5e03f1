"""A vectorised hash index from int64 keys to dense rows, for state that grows batch by batch.

NumPy has no hash table, and a Python ``dict`` costs ~100 bytes and ~100 ns per entry; the
per-user state behind the stream holds millions of (user, key) pairs and looks up thousands per
micro-batch. :class:`Int64Index` is open addressing with linear probing over NumPy arrays: a
batch of lookups or inserts is a few vectorised passes (one per probe step; the table is kept at
most half full, so a probe is one or two steps on average), and memory is 16 bytes per slot.

Keys are non-negative int64; rows are handed out in insertion order (0, 1, 2 ...), so a caller
keeps its values in plain arrays indexed by row. There is no delete: :meth:`Int64Index.rebuilt`
returns a new index over the rows a caller keeps (state eviction, rare).
"""

from __future__ import annotations

import numpy as np

_EMPTY = -1
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_I64 = np.int64


class Int64Index:
    """int64 key -> row (0 .. len - 1), vectorised."""

    def __init__(self, capacity: int = 1024) -> None:
        bits = max(4, int(np.ceil(np.log2(max(capacity, 8) * 2))))
        self._bits = bits
        self._keys = np.full(1 << bits, _EMPTY, dtype=_I64)
        self._rows = np.zeros(1 << bits, dtype=_I64)
        self._len = 0

    def __len__(self) -> int:
        return self._len

    @property
    def nbytes(self) -> int:
        return int(self._keys.nbytes + self._rows.nbytes)

    def _home(self, keys: np.ndarray) -> np.ndarray:
        # Fibonacci hashing: the top bits of key * 2^64 / phi (wrapping multiply).
        with np.errstate(over="ignore"):
            h = keys.astype(np.uint64) * _GOLDEN
        return (h >> np.uint64(64 - self._bits)).astype(_I64)

    def get(self, keys: np.ndarray) -> np.ndarray:
        """The row of each key, -1 where absent."""
        keys = np.asarray(keys, dtype=_I64)
        out = np.full(len(keys), -1, dtype=_I64)
        if not len(keys) or not self._len:
            return out
        mask = (1 << self._bits) - 1
        pos = self._home(keys)
        todo = np.arange(len(keys))
        while len(todo):
            found = self._keys[pos]
            hit = found == keys[todo]
            out[todo[hit]] = self._rows[pos[hit]]
            more = ~hit & (found != _EMPTY)
            todo, pos = todo[more], (pos[more] + 1) & mask
        return out

    def add(self, keys: np.ndarray) -> np.ndarray:
        """Insert keys that are absent and distinct; returns their new rows (in key order)."""
        keys = np.asarray(keys, dtype=_I64)
        n = len(keys)
        rows = self._len + np.arange(n, dtype=_I64)
        if not n:
            return rows
        if (self._len + n) * 2 > len(self._keys):
            self._grow(self._len + n)
        self._reinsert(keys, rows)
        return rows

    def get_or_add(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(rows, new) for distinct keys: existing rows, and fresh rows for absent keys."""
        rows = self.get(keys)
        new = rows < 0
        if new.any():
            rows[new] = self.add(np.asarray(keys, dtype=_I64)[new])
        return rows, new

    def _grow(self, need: int) -> None:
        live = self._keys != _EMPTY
        keys, rows = self._keys[live], self._rows[live]
        self._bits = max(self._bits + 1, int(np.ceil(np.log2(need * 2))))
        self._keys = np.full(1 << self._bits, _EMPTY, dtype=_I64)
        self._rows = np.zeros(1 << self._bits, dtype=_I64)
        self._len = 0
        order = np.argsort(rows, kind="stable")
        self._reinsert(keys[order], rows[order])

    def _reinsert(self, keys: np.ndarray, rows: np.ndarray) -> None:
        """Place absent, distinct keys with their rows (the table has room)."""
        mask = (1 << self._bits) - 1
        pos = self._home(keys)
        todo = np.arange(len(keys))
        while len(todo):
            # Two new keys may probe the same free slot: the first takes it, the rest go on.
            cand = np.flatnonzero(self._keys[pos] == _EMPTY)
            _, first = np.unique(pos[cand], return_index=True)
            won = np.zeros(len(todo), dtype=bool)
            won[cand[first]] = True
            self._keys[pos[won]] = keys[todo[won]]
            self._rows[pos[won]] = rows[todo[won]]
            todo, pos = todo[~won], (pos[~won] + 1) & mask
        self._len += len(keys)

    def items(self) -> tuple[np.ndarray, np.ndarray]:
        """(keys, rows) of every entry, ordered by row."""
        live = self._keys != _EMPTY
        keys, rows = self._keys[live], self._rows[live]
        order = np.argsort(rows, kind="stable")
        return keys[order], rows[order]

    @classmethod
    def from_keys(cls, keys: np.ndarray) -> Int64Index:
        """An index whose row i is ``keys[i]`` (distinct keys)."""
        out = cls(max(len(keys), 8))
        out._reinsert(np.asarray(keys, dtype=_I64), np.arange(len(keys), dtype=_I64))
        return out

    def copy(self) -> Int64Index:
        out = Int64Index.__new__(Int64Index)
        out._bits, out._len = self._bits, self._len
        out._keys, out._rows = self._keys.copy(), self._rows.copy()
        return out
