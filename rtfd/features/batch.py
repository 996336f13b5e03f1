"""The vectorised batch step: the reference fold over many users at once, with NumPy.

:func:`step_batch` folds a batch of transactions (a Spark bucket's micro-batch, or a whole history
offline) into a :class:`~rtfd.features.state.KernelState`. It must give *identical* results to
folding the reference :func:`rtfd.features.reference.step` over each user's transactions in
``(timestamp, transaction_id)`` order; hypothesis tests hold it to that, bit for bit. Exactness
comes from integer accumulators (:mod:`rtfd.features.arithmetic`): prefix sums over integers are
associative, so a ``cumsum`` equals the sequential loop.

The step (at the end of this module) is a sequence of phases, each a function:

1. :func:`_sort_rows` — the rows in processing order, users renumbered in sorted order;
2. :func:`_match_state` — which of the batch's users the state already holds;
3. :func:`_user_totals` — clamped event time, history resets, prior per-user totals;
4. :func:`_pair_phase` — prior counts of each (user, key) pair, and the pairs' new entries;
   :func:`_event_flags` — what each event adds to the buffer (first at a merchant, in a city);
5. :func:`_window_phase` — velocity windows over buffered events followed by the batch's rows;
6. :func:`_raw_quantities` then :func:`~rtfd.features.arithmetic.finish` — the features, and
   :func:`_features_in_input_order` — in the caller's row order;
7. :func:`_next_state` — the new state: untouched users kept, the batch's users rebuilt.

The input columns come from :func:`rtfd.features.columns.batch_columns`; the helpers above the
phases are the vectorised building blocks (sorting, runs, window bounds, pair counts).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from rtfd.features.arithmetic import (
    CHANNEL_CODES,
    MAX_WINDOW_MS,
    PAIR_KINDS,
    WINDOWS_MS,
    KernelConfig,
    RawQuantities,
    amount_cents,
    finish,
    neutral_risk,
    square_limbs,
)
from rtfd.features.columns import BatchColumns, batch_columns
from rtfd.features.names import FEATURE_NAMES
from rtfd.features.state import KernelState

_I64 = np.int64


def _sort_by_user_time(u: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Stable order by (u, t): a radix sort of one composite key when it fits in 62 bits."""
    if not len(u):
        return np.zeros(0, dtype=_I64)
    tmin = int(t.min())
    span = int(t.max()) - tmin + 1
    if (int(u.max()) + 1) * span < (1 << 62):
        return np.argsort(u * span + (t - tmin), kind="stable")
    return np.lexsort((t, u))


def _processing_order(ucode: np.ndarray, t_ms: np.ndarray, tid: pd.Series) -> np.ndarray:
    """Rows sorted by (user, timestamp, transaction_id); ties are rare, so ids are compared
    only inside runs of equal (user, timestamp)."""
    order = _sort_by_user_time(ucode, t_ms)
    us, ts = ucode[order], t_ms[order]
    same = (us[1:] == us[:-1]) & (ts[1:] == ts[:-1])  # sorted row k + 1 ties with row k
    if same.any():
        involved = np.zeros(len(order), dtype=bool)
        involved[1:] |= same
        involved[:-1] |= same
        p = np.flatnonzero(involved)
        group = np.cumsum(~np.concatenate([[False], same])[p])
        ids = np.array([str(v) for v in tid.to_numpy(dtype=object)[order[p]]])
        rank = np.argsort(np.argsort(ids, kind="stable"), kind="stable")
        order[p] = order[p][np.lexsort((rank, group))]
    return order


def _runs(start: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For run-start flags: (run id per row, start row of each run, position within its run)."""
    run_id = np.cumsum(start) - 1
    starts = np.flatnonzero(start)
    pos = np.arange(len(start)) - starts[run_id]
    return run_id, starts, pos


def _window_lower_bounds(cu: np.ndarray, cte: np.ndarray, q_pos: np.ndarray, w: int) -> np.ndarray:
    """First index j in the (user, time)-sorted arrays with the same user as q and
    ``cte[j] > cte[q] - w``, for each query position q."""
    base = int(cte.min()) - MAX_WINDOW_MS - 1
    span = int(cte.max()) - base + 1
    n_users = int(cu.max()) + 1 if len(cu) else 1
    if n_users * span < (1 << 62):
        key = cu * span + (cte - base)
        return np.searchsorted(key, key[q_pos] - w, side="right")
    # Composite keys would overflow (decades of history with millions of users): split users.
    out = np.empty(len(q_pos), dtype=_I64)
    chunk = max(1, (1 << 62) // span)
    bounds = np.searchsorted(cu, np.arange(0, n_users + chunk, chunk), side="left")
    qb = np.searchsorted(q_pos, bounds, side="left")
    for a, b, qa, qz in zip(bounds[:-1], bounds[1:], qb[:-1], qb[1:], strict=True):
        if qa == qz:
            continue
        key = (cu[a:b] - cu[a]) * span + (cte[a:b] - base)
        local = q_pos[qa:qz] - a
        out[qa:qz] = a + np.searchsorted(key, key[local] - w, side="right")
    return out


def _vocab_codes(
    vocab: np.ndarray, uniques: np.ndarray, codes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The rows' key codes (into the batch's ``uniques``) as codes into the state's vocab,
    extended with the batch's new keys: (codes, extended vocab). -1 stays -1 (no key)."""
    if len(uniques) == 0:
        return codes, vocab
    where = (
        pd.Index(vocab).get_indexer(uniques).astype(_I64)
        if len(vocab)
        else np.full(len(uniques), -1, dtype=_I64)
    )
    new = where < 0
    where[new] = len(vocab) + np.arange(int(new.sum()))
    return np.append(where, -1)[codes], np.concatenate([vocab, uniques[new]])


def _pair_prior(
    codes: np.ndarray,
    n_vocab: int,
    u: np.ndarray,
    te: np.ndarray,
    pairs: dict[str, np.ndarray],
    inv: np.ndarray,
    ttl: int,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Prior (user, key) counts for the sorted rows, and the touched pairs' new entries.

    ``codes`` are the rows' vocab codes (-1 = no key), ``u`` their batch user codes, ``te``
    their event times, ``inv`` maps a state user row to its batch user code (-1 when not in the
    batch). The returned entries carry batch user codes in ``u``.
    """
    prior = np.zeros(len(codes), dtype=_I64)
    rows = np.flatnonzero(codes >= 0)
    if len(rows) == 0:
        return prior, {k: np.zeros(0, _I64) for k in ("u", "k", "count", "last")}
    pid = u[rows] * n_vocab + codes[rows]
    o = np.argsort(pid, kind="stable")  # by pair, then processing order (rows are sorted)
    r, p = rows[o], pid[o]
    gstart = np.concatenate([[True], p[1:] != p[:-1]])
    g_idx = np.flatnonzero(gstart)

    # The state's entry, if any, for each (batch user, key) the batch touches.
    hit = np.full(len(g_idx), -1, dtype=_I64)
    s_count = s_last = np.zeros(0, _I64)
    if len(pairs["u"]):
        bu = inv[pairs["u"]]
        m = bu >= 0
        spid = bu[m] * n_vocab + pairs["k"][m]
        s_count, s_last = pairs["count"][m], pairs["last"][m]
        if len(spid):
            so = np.argsort(spid)
            ss = spid[so]
            at = np.minimum(np.searchsorted(ss, p[g_idx]), len(ss) - 1)
            hit = np.where(ss[at] == p[g_idx], so[at], -1)

    found = hit >= 0
    prev_te = np.empty(len(r), dtype=_I64)
    prev_te[1:] = te[r[:-1]]
    prev_te[g_idx] = np.where(found, s_last[np.maximum(hit, 0)] if len(s_last) else 0, 0)
    has_prev = np.ones(len(r), dtype=bool)
    has_prev[g_idx] = found
    reset = ~has_prev | (te[r] - prev_te > ttl)
    run_id, starts, pos = _runs(gstart | reset)
    base = np.zeros(len(r), dtype=_I64)
    cont = found & ~reset[g_idx]
    base[g_idx[cont]] = s_count[hit[cont]]
    before = base[starts][run_id] + pos
    prior[r] = before

    last = np.concatenate([gstart[1:], [True]])
    return prior, {
        "u": u[r[last]],
        "k": codes[r[last]],
        "count": before[last] + 1,
        "last": te[r[last]],
    }


def _alive_untouched(
    pairs: dict[str, np.ndarray],
    inv: np.ndarray,
    new: dict[str, np.ndarray],
    final_te: np.ndarray,
    ttl: int,
    n_vocab: int,
) -> dict[str, np.ndarray]:
    """State entries of the batch's users that the batch did not touch and that are still alive
    at the user's last event (``u`` as batch user codes)."""
    if not len(pairs["u"]):
        return {k: v[:0] for k, v in pairs.items()}
    bu = inv[pairs["u"]]
    m = bu >= 0
    bu, k = bu[m], pairs["k"][m]
    untouched = ~np.isin(bu * n_vocab + k, new["u"] * n_vocab + new["k"])
    last = pairs["last"][m]
    keep = untouched & (final_te[bu] - last <= ttl)
    return {"u": bu[keep], "k": k[keep], "count": pairs["count"][m][keep], "last": last[keep]}


def _event_flags(
    n_before: np.ndarray, codes: dict[str, np.ndarray], priors: dict[str, np.ndarray]
) -> np.ndarray:
    """Each event's flags for the buffer: 1 = first at its merchant, 2 = first in its city (the
    first_time_* features of that transaction, so later windows can count new merchants)."""
    known = n_before > 0
    return (known & (priors["merchant"] == 0)).astype(_I64) | (
        (known & (codes["city"] >= 0) & (priors["city"] == 0)).astype(_I64) << 1
    )


@dataclass
class _Rows:
    """The batch's rows in processing order; users renumbered so that code order is sorted
    order."""

    order: np.ndarray  # input row of each sorted row
    u: np.ndarray  # user code of each row
    first: np.ndarray  # the row is its user's first in the batch
    last_idx: np.ndarray  # last row of each user code
    uniques: np.ndarray  # user id of each user code
    t: np.ndarray
    amount: np.ndarray
    c: np.ndarray  # integer cents
    lat: np.ndarray
    lon: np.ndarray


def _sort_rows(b: BatchColumns) -> _Rows:
    order = _processing_order(b.user, b.t_ms, b.tid)
    u_raw = b.user[order]
    first = np.concatenate([[True], u_raw[1:] != u_raw[:-1]])
    amount = b.amount[order]
    return _Rows(
        order=order,
        u=np.cumsum(first) - 1,
        first=first,
        last_idx=np.append(np.flatnonzero(first)[1:] - 1, len(order) - 1),
        uniques=b.users[u_raw[first]],
        t=b.t_ms[order],
        amount=amount,
        c=amount_cents(amount),
        lat=b.lat[order],
        lon=b.lon[order],
    )


@dataclass
class _Held:
    """Which of the batch's users the state holds."""

    state: KernelState
    su: np.ndarray  # state row of each batch user code (-1: new user)
    has_state: np.ndarray
    inv: np.ndarray  # batch user code of each state row (-1: not in the batch)

    def column(self, col: str, default: Any) -> np.ndarray:
        """A per-user state column for each batch user code (``default`` for new users)."""
        users = self.state.users
        if not len(self.state):
            return np.full(len(self.su), default, dtype=users[col].dtype)
        return np.where(self.has_state, users[col][np.maximum(self.su, 0)], default)


def _match_state(state: KernelState, uniques: np.ndarray) -> _Held:
    su = (
        state.index().get_indexer(uniques).astype(_I64)
        if len(state)
        else np.full(len(uniques), -1, dtype=_I64)
    )
    has_state = su >= 0
    inv = np.full(len(state), -1, dtype=_I64)
    inv[su[has_state]] = np.flatnonzero(has_state)
    return _Held(state, su, has_state, inv)


@dataclass
class _Totals:
    """Per row: clamped event time, gap to the previous event, and the user's prior totals."""

    te: np.ndarray
    gap: np.ndarray
    n: np.ndarray
    sum_c: np.ndarray
    sq_hi: np.ndarray
    sq_lo: np.ndarray
    hi: np.ndarray  # the row's own square limbs
    lo: np.ndarray
    prev_lat: np.ndarray
    prev_lon: np.ndarray


def _user_totals(rows: _Rows, held: _Held, ttl: int) -> _Totals:
    """Event time, clamped so that each user's state only moves forward; a gap over ``ttl``
    resets the history; totals are the state's (unless reset) plus the run's earlier rows."""
    u, first = rows.u, rows.first
    n_rows = len(u)
    s_last = held.column("last_te", 0)
    hs_row = held.has_state[u]
    te = np.where(hs_row, np.maximum(rows.t, s_last[u]), rows.t)
    prev_te = np.empty(n_rows, dtype=_I64)
    prev_te[1:] = te[:-1]
    prev_te[first] = s_last[u[first]]
    has_prev = ~first | hs_row
    gap = te - prev_te
    reset = has_prev & (gap > ttl)
    run_id, starts, _ = _runs(first | reset)
    cont = first & hs_row & ~reset

    def run_total(col: str, values: np.ndarray) -> np.ndarray:
        """State value carried into each run plus the run's earlier rows: prior totals."""
        base = np.zeros(n_rows, dtype=_I64)
        base[cont] = held.column(col, 0)[u[cont]]
        csum = np.concatenate([[0], np.cumsum(values)])[:-1]
        return (base - csum)[starts][run_id] + csum

    hi, lo = square_limbs(rows.c)
    prev_lat = np.empty(n_rows)
    prev_lon = np.empty(n_rows)
    prev_lat[1:], prev_lon[1:] = rows.lat[:-1], rows.lon[:-1]
    prev_lat[first] = held.column("last_lat", np.nan)[u[first]]
    prev_lon[first] = held.column("last_lon", np.nan)[u[first]]
    return _Totals(
        te=te,
        gap=gap,
        n=run_total("n", np.ones(n_rows, dtype=_I64)),
        sum_c=run_total("sum_c", rows.c),
        sq_hi=run_total("sq_hi", hi),
        sq_lo=run_total("sq_lo", lo),
        hi=hi,
        lo=lo,
        prev_lat=prev_lat,
        prev_lon=prev_lon,
    )


@dataclass
class _Pairs:
    """Per pair kind: the rows' key codes (into the batch's uniques), their prior (user, key)
    counts, the touched pairs' new entries, and the vocab extended with the batch's keys."""

    codes: dict[str, np.ndarray]
    priors: dict[str, np.ndarray]
    touched: dict[str, dict[str, np.ndarray]]
    vocab: dict[str, np.ndarray]


def _pair_phase(b: BatchColumns, rows: _Rows, held: _Held, te: np.ndarray, ttl: int) -> _Pairs:
    codes = {kind: b.keys[kind][0][rows.order] for kind in PAIR_KINDS}
    out = _Pairs(codes=codes, priors={}, touched={}, vocab={})
    for kind in PAIR_KINDS:
        vcodes, out.vocab[kind] = _vocab_codes(held.state.vocab[kind], b.keys[kind][1], codes[kind])
        out.priors[kind], out.touched[kind] = _pair_prior(
            vcodes, len(out.vocab[kind]), rows.u, te, held.state.pairs[kind], held.inv, ttl
        )
    return out


@dataclass
class _Windows:
    """The users' buffered events followed by the batch's rows, sorted by (user, time)
    (``cu``, ``cte``, ``cc``, ``cf``), and the batch rows' velocity windows (4 x rows)."""

    cu: np.ndarray
    cte: np.ndarray
    cc: np.ndarray
    cf: np.ndarray
    counts: np.ndarray
    sums: np.ndarray
    new_m: np.ndarray
    new_c: np.ndarray


def _window_phase(
    held: _Held, u: np.ndarray, te: np.ndarray, c: np.ndarray, flags: np.ndarray, cap: int
) -> _Windows:
    """Velocity windows over the users' buffered events followed by the batch's rows; a stable
    sort keeps buffered events before batch rows of the same time."""
    n_rows = len(u)
    events = held.state.events
    eb = held.inv[events["u"]] if len(events["u"]) else np.zeros(0, _I64)
    sel = eb >= 0
    cu = np.concatenate([eb[sel], u])
    cte = np.concatenate([events["te"][sel], te])
    cc = np.concatenate([events["c"][sel], c])
    cf = np.concatenate([events["f"][sel], flags])
    src = np.concatenate([np.zeros(int(sel.sum()), dtype=bool), np.ones(n_rows, dtype=bool)])
    if sel.any():
        co = _sort_by_user_time(cu, cte)
        cu, cte, cc, cf, src = cu[co], cte[co], cc[co], cf[co], src[co]
    pos_b = np.flatnonzero(src)

    def prefix(values: np.ndarray) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(values)])

    ccum, mcum, ncum = prefix(cc), prefix(cf & 1), prefix((cf >> 1) & 1)
    counts = np.empty((4, n_rows), dtype=_I64)
    sums = np.empty((4, n_rows), dtype=_I64)
    new_m = np.empty((4, n_rows), dtype=_I64)
    new_c = np.empty((4, n_rows), dtype=_I64)
    for k, w in enumerate(WINDOWS_MS):
        j = np.maximum(_window_lower_bounds(cu, cte, pos_b, w), pos_b - cap)
        counts[k] = pos_b - j
        sums[k] = ccum[pos_b] - ccum[j]
        new_m[k] = mcum[pos_b] - mcum[j]
        new_c[k] = ncum[pos_b] - ncum[j]
    return _Windows(cu, cte, cc, cf, counts, sums, new_m, new_c)


def _raw_quantities(
    b: BatchColumns, rows: _Rows, totals: _Totals, pairs: _Pairs, windows: _Windows
) -> RawQuantities:
    ch_text = b.keys["channel"][1]
    ch_map = np.array([CHANNEL_CODES.get(str(v), 0) for v in ch_text] + [0], dtype=_I64)
    return RawQuantities(
        t_ms=rows.t,
        amount=rows.amount,
        n=totals.n,
        sum_c=totals.sum_c,
        sq_hi=totals.sq_hi,
        sq_lo=totals.sq_lo,
        counts=windows.counts,
        sums_c=windows.sums,
        new_merchants=windows.new_m,
        new_cities=windows.new_c,
        gap_ms=np.where(totals.n > 0, totals.gap, 0),
        prior=pairs.priors,
        has_key={kind: pairs.codes[kind] >= 0 for kind in PAIR_KINDS},
        channel=ch_map[pairs.codes["channel"]],
        lat=rows.lat,
        lon=rows.lon,
        prev_lat=totals.prev_lat,
        prev_lon=totals.prev_lon,
    )


def _features_in_input_order(
    feats: dict[str, np.ndarray], order: np.ndarray, index: pd.Index
) -> pd.DataFrame:
    """One (features x rows) block in input order: pandas keeps it as a single block, uncopied."""
    n_rows = len(order)
    back = np.empty(n_rows, dtype=_I64)
    back[order] = np.arange(n_rows)
    block = np.empty((len(FEATURE_NAMES), n_rows))
    for j, name in enumerate(FEATURE_NAMES):
        block[j] = feats[name][back]
    return pd.DataFrame(block.T, columns=FEATURE_NAMES, index=index, copy=False)


def _next_state(
    held: _Held, rows: _Rows, totals: _Totals, pairs: _Pairs, windows: _Windows
) -> KernelState:
    """The new state: users outside the batch unchanged, the batch's users rebuilt and pruned
    (events to the cap and the longest window, pairs to the TTL) at their last event."""
    state = held.state
    cfg = state.config
    ttl, cap = cfg.ttl_ms, cfg.max_events
    last_idx = rows.last_idx
    final_te = totals.te[last_idx]
    cu, cte = windows.cu, windows.cte
    seg_end = np.searchsorted(cu, np.arange(len(rows.uniques)), side="right")
    keep_ev = (seg_end[cu] - 1 - np.arange(len(cu)) < cap) & (cte > final_te[cu] - MAX_WINDOW_MS)
    new_users = {
        "uid": rows.uniques,
        "n": totals.n[last_idx] + 1,
        "sum_c": totals.sum_c[last_idx] + rows.c[last_idx],
        "sq_hi": totals.sq_hi[last_idx] + totals.hi[last_idx],
        "sq_lo": totals.sq_lo[last_idx] + totals.lo[last_idx],
        "last_te": final_te,
        "last_lat": rows.lat[last_idx],
        "last_lon": rows.lon[last_idx],
    }
    new_events = {
        "u": cu[keep_ev],
        "te": cte[keep_ev],
        "c": windows.cc[keep_ev],
        "f": windows.cf[keep_ev],
    }

    def pair_table(kind: str) -> dict[str, np.ndarray]:
        new = pairs.touched[kind]
        untouched = _alive_untouched(
            state.pairs[kind], held.inv, new, final_te, ttl, len(pairs.vocab[kind])
        )
        alive = final_te[new["u"]] - new["last"] <= ttl
        return {k: np.concatenate([untouched[k], new[k][alive]]) for k in new}

    keep_users = np.ones(len(state), dtype=bool)
    keep_users[held.su[held.has_state]] = False
    n_keep = int(keep_users.sum())
    remap = np.cumsum(keep_users) - 1

    def merged(old: dict[str, np.ndarray], new: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if "uid" in old:
            return {k: np.concatenate([old[k][keep_users], new[k]]) for k in old}
        m = keep_users[old["u"]] if len(old["u"]) else np.zeros(0, dtype=bool)
        table = {k: np.concatenate([old[k][m], new[k]]) for k in old}
        table["u"] = np.concatenate([remap[old["u"][m]], new["u"] + n_keep]).astype(_I64)
        return table

    result = KernelState(cfg)
    result.users = merged(state.users, new_users)
    result.events = merged(state.events, new_events)
    result.pairs = {kind: merged(state.pairs[kind], pair_table(kind)) for kind in PAIR_KINDS}
    result.vocab = pairs.vocab
    return result


def step_batch(
    state: KernelState,
    txns: pd.DataFrame,
    *,
    columns: BatchColumns | None = None,
) -> tuple[KernelState, pd.DataFrame]:
    """Fold a batch of transactions (any order, many users) into ``state``.

    Returns the new state and the features of every input row (columns in
    :data:`FEATURE_NAMES` order, same index as ``txns``), exactly as if
    :func:`~rtfd.features.reference.step` had been applied to each user's transactions in
    ``(timestamp, transaction_id)`` order, after whatever the state already holds. The risk
    features are zeros until the merchant-risk join. ``state`` itself is not modified.
    Duplicate deliveries must be removed by the caller. ``columns`` is ``batch_columns(txns)``
    when the caller already has it.
    """
    cfg: KernelConfig = state.config
    b = batch_columns(txns) if columns is None else columns
    if len(b.t_ms) == 0:
        empty = pd.DataFrame({name: np.zeros(0) for name in FEATURE_NAMES}, index=txns.index)
        return state, empty
    rows = _sort_rows(b)
    held = _match_state(state, rows.uniques)
    totals = _user_totals(rows, held, cfg.ttl_ms)
    pairs = _pair_phase(b, rows, held, totals.te, cfg.ttl_ms)
    flags = _event_flags(totals.n, pairs.codes, pairs.priors)
    windows = _window_phase(held, rows.u, totals.te, rows.c, flags, cfg.max_events)
    feats = finish(_raw_quantities(b, rows, totals, pairs, windows), cfg)
    feats.update(neutral_risk(len(rows.t)))
    return _next_state(held, rows, totals, pairs, windows), _features_in_input_order(
        feats, rows.order, txns.index
    )
