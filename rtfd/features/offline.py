"""The offline driver: fold a whole history through the kernel.

:func:`build_features` runs the vectorised :func:`rtfd.features.kernel.step_batch` once over the
whole history from an empty state — the same code the stream runs per micro-batch — so training
sees exactly the features the stream serves. :func:`fold_reference` folds the reference
:func:`rtfd.features.kernel.step` transaction by transaction; it is slow and exists to prove the
fast path right (tests) and to explain a single user's features.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from rtfd.features.kernel import (
    DEFAULT_CONFIG,
    KernelConfig,
    KernelState,
    UserState,
    batch_columns,
    step,
    step_batch,
)
from rtfd.features.names import FEATURE_NAMES

if TYPE_CHECKING:
    from rtfd.features.merchant_risk import MerchantRiskTable


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
    return step_batch(start, history, merchant_risk=merchant_risk)


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
        users[key], feats = step(users.get(key), txn, config=config, merchant_risk=merchant_risk)
        out[i] = [feats[name] for name in FEATURE_NAMES]
    return users, pd.DataFrame(out, columns=FEATURE_NAMES, index=history.index)
