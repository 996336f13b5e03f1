"""The offline driver: fold a whole history through the kernel, then join merchant risk.

:func:`build_features` runs the vectorised :func:`rtfd.features.batch.step_batch` once over the
whole history from an empty state — the same code the stream runs per micro-batch — so training
sees exactly the features the stream serves. :func:`fold_reference` folds the reference
:func:`rtfd.features.reference.step` transaction by transaction; it is slow and exists to prove
the fast path right (tests) and to explain a single user's features.

Both then fill the risk features with :func:`join_merchant_risk`: the merchant risk table is its
own step after the per-user kernel, so the kernel never depends on it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from rtfd.features.arithmetic import DEFAULT_CONFIG, KernelConfig
from rtfd.features.batch import step_batch
from rtfd.features.columns import BatchColumns, batch_columns
from rtfd.features.names import FEATURE_NAMES, RISK_FEATURES
from rtfd.features.reference import UserState, step
from rtfd.features.state import KernelState

if TYPE_CHECKING:
    from rtfd.features.merchant_risk import MerchantRiskTable


def join_merchant_risk(
    features: pd.DataFrame, cols: BatchColumns, merchant_risk: MerchantRiskTable | None
) -> pd.DataFrame:
    """``features`` (rows aligned with ``cols``) with the risk columns looked up in
    ``merchant_risk`` at each row's merchant and event time; unchanged (zeros) without a table.

    Merchants are matched by their text, as the kernel keys them (``str(merchant_id)``).
    """
    if merchant_risk is None or not len(features):
        return features
    codes, uniques = cols.keys["merchant"]
    looked = merchant_risk.lookup_coded(codes, uniques, cols.t_ms)
    for name in RISK_FEATURES:
        features[name] = looked[name]
    return features


def build_features(
    history: pd.DataFrame,
    *,
    merchant_risk: MerchantRiskTable | None = None,
    config: KernelConfig = DEFAULT_CONFIG,
) -> pd.DataFrame:
    """Features of every row of ``history`` (columns in FEATURE_NAMES order, same index).

    ``history`` holds transaction fields in any order (location, lat and lon optional). Risk
    features come from ``merchant_risk`` — for training, the point-in-time table of
    :func:`rtfd.features.merchant_risk.point_in_time` — and are zeros without one.
    """
    return fold_history(history, merchant_risk=merchant_risk, config=config)[1]


def fold_history(
    history: pd.DataFrame,
    *,
    merchant_risk: MerchantRiskTable | None = None,
    config: KernelConfig = DEFAULT_CONFIG,
    state: KernelState | None = None,
) -> tuple[KernelState, pd.DataFrame]:
    """Like :func:`build_features`, also returning the final state (to warm up a stream)."""
    start = state if state is not None else KernelState(config)
    cols = batch_columns(history)
    end, features = step_batch(start, history, columns=cols)
    return end, join_merchant_risk(features, cols, merchant_risk)


def fold_reference(
    history: pd.DataFrame,
    *,
    merchant_risk: MerchantRiskTable | None = None,
    config: KernelConfig = DEFAULT_CONFIG,
    states: dict[str, UserState] | None = None,
) -> tuple[dict[str, UserState], pd.DataFrame]:
    """Fold the reference :func:`step` over ``history`` in (user, timestamp, id) order."""
    cols = batch_columns(history)
    uid = cols.users[cols.user]
    tid = [str(v) for v in cols.tid]
    order = sorted(range(len(history)), key=lambda i: (uid[i], int(cols.t_ms[i]), tid[i]))
    users: dict[str, UserState] = dict(states or {})
    out = np.zeros((len(history), len(FEATURE_NAMES)))
    records = history.to_dict("records")
    for i in order:
        txn = records[i]
        key = str(uid[i])
        users[key], feats = step(users.get(key), txn, config=config)
        out[i] = [feats[name] for name in FEATURE_NAMES]
    features = pd.DataFrame(out, columns=FEATURE_NAMES, index=history.index)
    return users, join_merchant_risk(features, cols, merchant_risk)
