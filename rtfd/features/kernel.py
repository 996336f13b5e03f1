"""The per-user feature kernel: one definition of every user feature, two drivers.

The kernel lives in these modules (this one only re-exports their public names, for callers that
import ``rtfd.features.kernel``):

* :mod:`rtfd.features.timeutil` — event time as integer milliseconds;
* :mod:`rtfd.features.arithmetic` — the parameters (:class:`KernelConfig`) and the only
  floating-point formulas, shared by both drivers;
* :mod:`rtfd.features.reference` — :func:`step`, the reference: one user, one transaction; it
  defines what every feature means;
* :mod:`rtfd.features.state` — :class:`KernelState`, many users as columns, and its blob;
* :mod:`rtfd.features.columns` — :func:`batch_columns`, a batch of transactions as arrays;
* :mod:`rtfd.features.batch` — :func:`step_batch`, the same fold vectorised with NumPy, held to
  bit-exact parity with :func:`step` by hypothesis tests.

Merchant risk is not part of the kernel: it is joined after it
(:func:`rtfd.features.offline.join_merchant_risk`, and the stream's scoring step).
"""

from rtfd.features.arithmetic import DEFAULT_CONFIG, PAIR_KINDS, KernelConfig, amount_cents
from rtfd.features.batch import step_batch
from rtfd.features.columns import REQUIRED_COLUMNS, BatchColumns, batch_columns
from rtfd.features.reference import UserState, step
from rtfd.features.state import KernelState
from rtfd.features.timeutil import timestamp_ms, timestamps_ms

__all__ = [
    "DEFAULT_CONFIG",
    "PAIR_KINDS",
    "REQUIRED_COLUMNS",
    "BatchColumns",
    "KernelConfig",
    "KernelState",
    "UserState",
    "amount_cents",
    "batch_columns",
    "step",
    "step_batch",
    "timestamp_ms",
    "timestamps_ms",
]
