"""The model registry: versioned directories, an atomic CURRENT pointer, verified loading.

Layout under ``<data>/models``::

    v0001/  model.pkl  preprocess_scaler.pkl  features.json  threshold.json  metrics.json
            holdout.parquet  manifest.json
    CURRENT         the live version's name, replaced atomically (write a temp file, os.replace)
    history.json    promotions, newest last; rollback walks it back

A version directory is written under a temporary name and renamed into place, so a reader never
sees half a version. ``manifest.json`` holds the registry format, the SHA-256 of every other file,
the training data window, the library versions, and a digest of its own canonical text.
:meth:`Registry.load` checks all of it before reading any artifact: a tampered, truncated or
incomplete version is refused with an :class:`~rtfd.errors.ArtifactError`.

The hashes catch corruption and accidental edits; someone able to rewrite both a file and the
manifest can defeat them, as with any unsigned artifact. So no artifact can carry code either
(registry format 2): ``model.pkl`` and ``preprocess_scaler.pkl`` keep their old names but hold
plain arrays and a JSON header (:mod:`rtfd.ml.artifact`), the XGBoost booster in XGBoost's own
JSON format checked before XGBoost reads it (:mod:`rtfd.ml.booster`); nothing is unpickled.
Versions of format 1 (pickles) are refused with a message to retrain: converting them would mean
unpickling exactly the files that cannot be trusted.

Champion/challenger: :meth:`Registry.promote` scores both models (average precision) on both
holdouts — the challenger's and the champion's own time-ordered validation rows — and makes the
challenger live only if it is at least as good as the champion on the *newer* of the two (the
holdout whose last transaction is later; the challenger's on a tie), unless forced. The older
holdout's figures are recorded but do not decide: it is closer to the data one of the two models
was trained on. Every promotion's comparison is kept in ``history.json`` and read back as
:class:`Promotion` records by :meth:`Registry.promotions`.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from rtfd.errors import ArtifactError, RtfdError
from rtfd.ml.artifact import MAX_BYTES, ArtifactFormatError, one_line, strict_json
from rtfd.parallel import map_rows

if TYPE_CHECKING:
    import pandas as pd

    from rtfd.ml.calibration import ScoreMap
    from rtfd.ml.models import Model
    from rtfd.ml.preprocess import Preprocessor
    from rtfd.ml.thresholds import Expected

VERSION_RE = re.compile(r"^v(\d{4,})$")
REQUIRED_FILES = (
    "model.pkl",
    "preprocess_scaler.pkl",
    "features.json",
    "threshold.json",
    "metrics.json",
)
OPTIONAL_FILES = ("holdout.parquet", "reference.json")
MANIFEST = "manifest.json"
CURRENT = "CURRENT"
HISTORY = "history.json"
# Temporary names of writes in progress: a save's directory, CURRENT's and history's new text.
TEMP_PATTERNS = (".tmp-*", f".{CURRENT}.*", f".{HISTORY}.*")
# A temporary left older than this belongs to a save or promotion that was killed (kill -9, a
# power cut): it is never read, only removed, by the next save.
STALE_TEMP_S = 3600.0

T = TypeVar("T")
# The registry format written by save and the only one load reads. Format 1 held pickles.
FORMAT = 2
# A JSON artifact (features, threshold, metrics) is a few KiB; anything far larger is refused.
MAX_JSON_BYTES = 1 << 20


class PromotionRefused(RtfdError):
    """The challenger scored worse than the champion on the same holdout."""

    title = "Promotion refused"


class _Incomparable(Exception):
    """No holdout holds the features of both models (a forced promotion goes ahead anyway)."""


PROMOTION_RULE = (
    "challenger AP >= champion AP on the newer holdout (both models scored on both holdouts)"
)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _finite(value: Any) -> float | None:
    """A finite number from JSON, or None."""
    return float(value) if _is_number(value) else None


@dataclass(frozen=True)
class HoldoutScore:
    """Both models' average precision on one version's holdout (its validation rows)."""

    holdout_of: str
    role: str  # whose holdout it is: "challenger" or "champion"
    start: str | None
    end: str | None
    rows: int
    positives: int
    challenger_ap: float | None
    champion_ap: float | None
    decided: bool  # the newer holdout, the one the rule reads

    def describe(self, champion: str) -> str:
        ap = f"AP {_fmt_ap(self.challenger_ap)} vs {_fmt_ap(self.champion_ap)} for {champion}"
        newer = ", newer: decides" if self.decided else ""
        return f"{ap} on {self.holdout_of}'s holdout ({self.rows:,} rows{newer})"

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> HoldoutScore:
        return cls(
            holdout_of=_text(doc.get("holdout_of")) or "?",
            role=_text(doc.get("role")) or "?",
            start=_text(doc.get("start")),
            end=_text(doc.get("end")),
            rows=_count(doc.get("rows")),
            positives=_count(doc.get("positives")),
            challenger_ap=_finite(doc.get("challenger_ap")),
            champion_ap=_finite(doc.get("champion_ap")),
            decided=doc.get("decided") is True,
        )


def _fmt_ap(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


@dataclass(frozen=True)
class Comparison:
    """The same-holdout comparison behind a promotion (see :data:`PROMOTION_RULE`)."""

    challenger: str
    champion: str
    holdouts: tuple[HoldoutScore, ...]
    rule: str = PROMOTION_RULE
    notes: tuple[str, ...] = ()

    @property
    def deciding(self) -> HoldoutScore | None:
        return next((h for h in self.holdouts if h.decided), None)

    @property
    def challenger_worse(self) -> bool:
        """The rule's verdict: worse on the newer holdout."""
        h = self.deciding
        if h is None or h.challenger_ap is None or h.champion_ap is None:
            return False
        return h.challenger_ap + 1e-12 < h.champion_ap

    def describe(self) -> str:
        """One line: each holdout's two figures, the deciding one marked."""
        parts = [h.describe(self.champion) for h in self.holdouts]
        return "; ".join(parts + list(self.notes))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: Any) -> Comparison | None:
        """A comparison read back from history.json (None when absent or not an object)."""
        if not isinstance(doc, dict):
            return None
        holdouts = doc.get("holdouts")
        notes = doc.get("notes")
        return cls(
            challenger=_text(doc.get("challenger")) or "?",
            champion=_text(doc.get("champion")) or "?",
            holdouts=tuple(
                HoldoutScore.from_dict(h)
                for h in (holdouts if isinstance(holdouts, list) else [])
                if isinstance(h, dict)
            ),
            rule=_text(doc.get("rule")) or PROMOTION_RULE,
            notes=tuple(
                n for n in (notes if isinstance(notes, list) else []) if isinstance(n, str)
            ),
        )


@dataclass(frozen=True)
class Promotion:
    """One entry of history.json: which version went live, when, why, on what evidence."""

    version: str
    at: str | None
    reason: str
    forced: bool
    comparison: Comparison | None

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Promotion:
        return cls(
            version=str(doc.get("version")),
            at=_text(doc.get("at")),
            reason=_text(doc.get("reason")) or "",
            forced=doc.get("forced") is True,
            comparison=Comparison.from_dict(doc.get("comparison")),
        )


@dataclass(frozen=True)
class VersionInfo:
    """What a listing shows of one version (``rtfd models list``, the TUI's model panel and
    status bar), read from its small JSON files only, each checked against the manifest's
    SHA-256: nothing is unpickled. ``note`` says why a version could not be read; its other
    fields are then empty rather than figures that may be lies."""

    version: str
    live: bool = False
    algo: str | None = None
    mode: str | None = None
    threshold: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    created_at: str | None = None
    #: The live time-lapse the model was trained for (None: trained on a file in its own time).
    time_scale: float | None = None
    note: str = ""

    def metric(self, key: str) -> float | None:
        """The finite number ``metrics.json`` holds under ``key``, or None."""
        return _finite(self.metrics.get(key))


def _check_format(version: str, found: Any) -> None:
    if found == FORMAT and not isinstance(found, bool):
        return
    if found == 1:
        raise ArtifactError(
            f"model {version} was saved by an older rtfd as pickles (registry format 1), which "
            "are never loaded because unpickling can run code: retrain with `rtfd train`"
        )
    raise ArtifactError(
        f"model {version} has registry format {found!r} and this rtfd reads format {FORMAT} "
        "only: retrain with `rtfd train`"
    )


def _refused(version: str, file: str, reason: str) -> ArtifactError:
    return ArtifactError(f"model {version}: cannot load {file}: {reason}")


def _read_bounded(vdir: Path, version: str, file: str, limit: int) -> bytes:
    """The file's bytes, refused unread when it is larger than ``limit``."""
    size = (vdir / file).stat().st_size
    if size > limit:
        raise _refused(version, file, f"{size:,} bytes, more than the {limit:,} it may have")
    return (vdir / file).read_bytes()


def _json_object(vdir: Path, version: str, file: str) -> dict[str, Any]:
    try:
        doc = strict_json(_read_bounded(vdir, version, file, MAX_JSON_BYTES))
    except ValueError as e:
        raise _refused(version, file, f"not valid JSON ({e})") from e
    if not isinstance(doc, dict):
        raise _refused(version, file, f"a JSON object was expected, not {type(doc).__name__}")
    return doc


def _artifact(vdir: Path, version: str, file: str, decode: Callable[[bytes], T]) -> T:
    """Decode an array artifact; whatever is wrong with it becomes one line naming the file."""
    blob = _read_bounded(vdir, version, file, MAX_BYTES)
    try:
        return decode(blob)
    except ArtifactFormatError as e:
        raise _refused(version, file, str(e)) from e
    except Exception as e:  # a library's own error on crafted input is a refusal too
        raise _refused(version, file, one_line(e)) from e


def _is_number(value: Any) -> bool:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer of hundreds of digits
        return False


def _features(version: str, doc: dict[str, Any]) -> list[str]:
    names = doc.get("features")
    if not (
        isinstance(names, list)
        and names
        and all(isinstance(n, str) for n in names)
        and len(set(names)) == len(names)
    ):
        raise _refused(version, "features.json", "'features' must list distinct column names")
    return names


def _threshold(version: str, doc: dict[str, Any]) -> dict[str, Any]:
    from rtfd.ml.calibration import ScoreMap

    if not _is_number(doc.get("threshold")):
        raise _refused(version, "threshold.json", "'threshold' must be a finite number")
    if doc.get("mode") not in ("supervised", "unsupervised") or not isinstance(
        doc.get("algo"), str
    ):
        raise _refused(version, "threshold.json", "'mode' and 'algo' must name a model kind")
    try:
        ScoreMap.from_dict(doc.get("calibration"))
    except ValueError as e:
        raise _refused(version, "threshold.json", f"'calibration' {e}") from e
    return doc


def _check_consistent(
    version: str,
    features: list[str],
    threshold: dict[str, Any],
    model: Model,
    pre: Preprocessor,
) -> None:
    """The artifacts of one version describe one model (a forgery may mix several)."""
    if (model.algo, model.mode) != (threshold["algo"], threshold["mode"]):
        raise ArtifactError(
            f"model {version}: model.pkl holds algorithm {model.algo} ({model.mode}) but "
            f"threshold.json says {threshold['algo']} ({threshold['mode']})"
        )
    if pre.features != features:
        raise ArtifactError(
            f"model {version}: preprocess_scaler.pkl is for other features than features.json"
        )
    if model.n_features != len(features):
        raise ArtifactError(
            f"model {version}: model.pkl scores {model.n_features} features but features.json "
            f"lists {len(features)}"
        )


def _canonical(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_atomic(*files: tuple[Path, bytes]) -> None:
    """Write each ``(path, data)`` to a temporary file first, then rename them all into place:
    a write that fails (a full disk) leaves every file as it was and no temporary behind."""
    temps: list[tuple[str, Path]] = []
    try:
        for path, data in files:
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
            temps.append((tmp, path))
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        for tmp, path in temps:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _path in temps:
            Path(tmp).unlink(missing_ok=True)
        raise


def storage_error(e: OSError, path: Path, action: str) -> RtfdError:
    """A one-line error for a write that failed; a full disk says so and names the path."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return RtfdError(
            f"the disk holding {path} is full ({e.strerror or e}) while {action}: "
            "free some space and try again",
            title="Disk full",
        )
    return RtfdError(f"cannot write {path} while {action}: {e.strerror or e}", title="Write failed")


def library_versions() -> dict[str, str]:
    """Versions of the libraries a model depends on, recorded in the manifest."""
    import pandas
    import sklearn
    import xgboost

    return {
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "pandas": pandas.__version__,
        "scikit-learn": sklearn.__version__,
        "xgboost": xgboost.__version__,
    }


def _last_time(frame: pd.DataFrame) -> pd.Timestamp | None:
    if "timestamp" not in frame.columns or frame.empty:
        return None
    import pandas as pd

    return pd.Timestamp(pd.to_datetime(frame["timestamp"], utc=True).max())


def _same_window(a: HoldoutScore, b: HoldoutScore) -> bool:
    return (a.start, a.end, a.rows, a.positives) == (b.start, b.end, b.rows, b.positives)


def _order(when: pd.Timestamp | None) -> float:
    return float("-inf") if when is None else when.timestamp()


def _holdout_score(
    frame: pd.DataFrame, owner: str, role: str, challenger: LoadedModel, champion: LoadedModel
) -> HoldoutScore:
    from rtfd.ml.metrics import ranking_metrics

    y = frame["label"].to_numpy()
    times = None
    if "timestamp" in frame.columns:
        import pandas as pd

        ts = pd.to_datetime(frame["timestamp"], utc=True)
        times = (ts.min().isoformat(), ts.max().isoformat())
    return HoldoutScore(
        holdout_of=owner,
        role=role,
        start=times[0] if times else None,
        end=times[1] if times else None,
        rows=len(frame),
        positives=int((y > 0).sum()),
        challenger_ap=ranking_metrics(y, challenger.score(frame))["average_precision"],
        champion_ap=ranking_metrics(y, champion.score(frame))["average_precision"],
        decided=False,
    )


@dataclass
class LoadedModel:
    """A verified model version, ready to score whole batches."""

    version: str
    features: list[str]
    threshold: float
    mode: str
    algo: str
    model: Model
    preprocessor: Preprocessor
    calibration: dict[str, Any] | None
    metrics: dict[str, Any] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    score_map: ScoreMap = field(init=False, repr=False)

    def __post_init__(self) -> None:
        from rtfd.ml.calibration import ScoreMap

        # ``calibration`` is threshold.json's JSON (what a re-save writes back); the map parsed
        # from it is what scores. Registry.load has already refused one that does not parse.
        self.score_map = ScoreMap.from_dict(self.calibration)

    def _matrix(self, features_df: pd.DataFrame) -> np.ndarray:
        missing = [f for f in self.features if f not in features_df.columns]
        if missing:
            from rtfd.errors import DataError

            raise DataError(
                f"model {self.version} needs feature column(s) {', '.join(missing[:5])}"
                + (" …" if len(missing) > 5 else "")
            )
        return features_df[self.features].to_numpy(dtype=np.float64)

    def score(self, features_df: pd.DataFrame) -> np.ndarray:
        """Fraud scores in [0, 1] for every row (vectorised; columns matched by name)."""
        if len(features_df) == 0:
            return np.zeros(0)
        X = self._matrix(features_df)

        def rows(start: int, stop: int) -> np.ndarray:
            raw = self.model.raw(self.preprocessor.transform(X[start:stop]))
            return np.asarray(self.score_map.apply(raw), dtype=np.float64)

        if not self.model.ROWS_APART:
            return rows(0, len(X))
        # Each row's score is its own: a large batch is scored on a few threads.
        return np.concatenate(map_rows(rows, len(X)))

    def expected(self) -> Expected:
        """What the threshold promises live (expected precision and alerts per day), as
        measured on the validation window when the model was trained (see
        :class:`rtfd.ml.thresholds.Expected`); None where a figure was not recorded."""
        from rtfd.ml.thresholds import Expected

        def number(key: str) -> float | None:
            return _finite(self.metrics.get(key))

        return Expected(
            threshold=self.threshold,
            precision=number("expected_precision") if self.score_map.method else None,
            alerts_per_1000=number("alerts_per_1000") or 0.0,
            alerts_per_day=number("expected_alerts_per_day"),
            rate_per_s=number("live_rate_per_s"),
        )

    def explain(self, features_df: pd.DataFrame, top: int = 3) -> list[list[str]]:
        """The ``top`` strongest reasons (short phrases) behind each row's score."""
        from rtfd.ml.explain import explain_rows

        if len(features_df) == 0:
            return []
        values = self._matrix(features_df)
        contrib = self.model.contributions(self.preprocessor.transform(values))
        return explain_rows(contrib, values, self.features, top=top)

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary for ``rtfd models show`` and the TUI."""
        return {
            "version": self.version,
            "mode": self.mode,
            "algo": self.algo,
            "threshold": self.threshold,
            "calibration": self.score_map.method,
            "expected": self.expected().to_dict(),
            "features": len(self.features),
            "metrics": self.metrics,
            "created_at": self.manifest.get("created_at"),
            "data": self.manifest.get("data"),
        }


class Registry:
    """Model versions under ``models_dir``."""

    def __init__(self, models_dir: Path | str) -> None:
        self.root = Path(models_dir)

    # -- reading ---------------------------------------------------------------------------
    def versions(self) -> list[str]:
        """Complete-looking versions (a directory with a manifest), oldest first."""
        if not self.root.is_dir():
            return []
        found = [
            p.name
            for p in self.root.iterdir()
            if p.is_dir() and VERSION_RE.match(p.name) and (p / MANIFEST).is_file()
        ]
        return sorted(found, key=lambda v: int(v[1:]))

    def current(self) -> str | None:
        """The live version, or None."""
        path = self.root / CURRENT
        try:
            name = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        return name or None

    def history(self) -> list[dict[str, Any]]:
        """Promotions, oldest first (``version``, ``at``, ``reason``)."""
        path = self.root / HISTORY
        if not path.is_file():
            return []
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ArtifactError(f"{path} is not valid JSON: {e}") from e
        return list(doc.get("promotions", []))

    def promotions(self) -> list[Promotion]:
        """Promotions, oldest first, as records (what ``rtfd models list`` and the TUI show);
        entries written before comparisons were recorded have ``comparison`` None."""
        return [
            Promotion.from_dict(entry)
            for entry in self.history()
            if isinstance(entry, dict) and isinstance(entry.get("version"), str)
        ]

    def manifest(self, version: str) -> dict[str, Any]:
        """The verified manifest of ``version`` (its own digest checked)."""
        vdir = self._dir(version)
        path = vdir / MANIFEST
        if not path.is_file():
            raise ArtifactError(f"model {version} is incomplete: {MANIFEST} is missing")
        raw = path.read_bytes()
        try:
            doc = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ArtifactError(f"model {version}: {MANIFEST} is corrupt ({e})") from e
        if not isinstance(doc, dict) or _canonical(doc) != raw:
            raise ArtifactError(f"model {version}: {MANIFEST} was modified")
        body = {k: v for k, v in doc.items() if k != "manifest_sha256"}
        if hashlib.sha256(_canonical(body)).hexdigest() != doc.get("manifest_sha256"):
            raise ArtifactError(f"model {version}: {MANIFEST} was modified (digest mismatch)")
        return doc

    def verify(self, version: str) -> dict[str, Any]:
        """Check every file of ``version`` against its manifest; returns the manifest."""
        doc = self.manifest(version)
        _check_format(version, doc.get("format"))
        vdir = self._dir(version)
        files: dict[str, str] = doc.get("files", {})
        missing = [f for f in REQUIRED_FILES if f not in files]
        if missing:
            raise ArtifactError(f"model {version} is incomplete: manifest lacks {missing[0]}")
        for name, digest in files.items():
            path = vdir / name
            if "/" in name or name.startswith(".") or not path.is_file():
                raise ArtifactError(f"model {version} is incomplete: {name} is missing")
            if _sha256(path) != digest:
                raise ArtifactError(
                    f"model {version}: {name} does not match its SHA-256 in the manifest "
                    "(tampered or corrupt); refusing to load it"
                )
        extra = sorted(p.name for p in vdir.iterdir() if p.name not in files and p.name != MANIFEST)
        if extra:
            raise ArtifactError(f"model {version}: unexpected file {extra[0]} not in the manifest")
        return doc

    def load(self, version: str | None = None) -> LoadedModel:
        """Verify then load ``version`` (default: CURRENT)."""
        name = version or self.current()
        if name is None:
            raise ArtifactError(
                f"no model is live in {self.root}: run `rtfd train` (or `rtfd models promote`)"
            )
        from rtfd.ml.models import model_from_bytes
        from rtfd.ml.preprocess import Preprocessor

        doc = self.verify(name)
        vdir = self._dir(name)
        features = _features(name, _json_object(vdir, name, "features.json"))
        threshold = _threshold(name, _json_object(vdir, name, "threshold.json"))
        metrics = _json_object(vdir, name, "metrics.json")
        model = _artifact(vdir, name, "model.pkl", model_from_bytes)
        pre = _artifact(vdir, name, "preprocess_scaler.pkl", Preprocessor.from_bytes)
        _check_consistent(name, features, threshold, model, pre)
        return LoadedModel(
            version=name,
            features=features,
            threshold=float(threshold["threshold"]),
            mode=str(threshold["mode"]),
            algo=str(threshold["algo"]),
            model=model,
            preprocessor=pre,
            calibration=threshold.get("calibration"),
            metrics=metrics,
            manifest=doc,
            path=vdir,
        )

    def holdout(self, version: str) -> pd.DataFrame | None:
        """The verified holdout rows saved with ``version`` (None when it has none)."""
        import pandas as pd

        doc = self.verify(version)
        if "holdout.parquet" not in doc.get("files", {}):
            return None
        return pd.read_parquet(self._dir(version) / "holdout.parquet")

    def json_artifact(self, version: str, file: str) -> dict[str, Any] | None:
        """One JSON file of ``version`` (``reference.json``, ``metrics.json`` ...), checked
        against its SHA-256 in the verified manifest without reading the model; None when the
        version was saved without it."""
        digest = self.manifest(version).get("files", {}).get(file)
        if digest is None:
            return None
        vdir = self._dir(version)
        try:
            raw = _read_bounded(vdir, version, file, MAX_JSON_BYTES)
        except FileNotFoundError as e:
            raise ArtifactError(f"model {version} is incomplete: {file} is missing") from e
        if hashlib.sha256(raw).hexdigest() != digest:
            raise ArtifactError(
                f"model {version}: {file} does not match its SHA-256 in the manifest "
                "(tampered or corrupt); refusing to read it"
            )
        try:
            doc = strict_json(raw)
        except ValueError as e:
            raise _refused(version, file, f"not valid JSON ({e})") from e
        if not isinstance(doc, dict):
            raise _refused(version, file, f"a JSON object was expected, not {type(doc).__name__}")
        return doc

    def info(self, version: str, *, verify: bool = False) -> VersionInfo:
        """One version's :class:`VersionInfo` (never raises: a bad version gets a ``note``).

        ``verify`` checks every file's digest first, the model's too (what the live model
        deserves before its figures are shown as the ones scoring); otherwise only the manifest
        and the JSON files read are checked.
        """
        live = version == self.current()
        try:
            doc = self.verify(version) if verify else self.manifest(version)
            threshold = self.json_artifact(version, "threshold.json") or {}
            metrics = self.json_artifact(version, "metrics.json") or {}
        except RtfdError as e:
            return VersionInfo(version, live, note=e.message)
        except OSError as e:
            return VersionInfo(version, live, note=f"unreadable: {e}")
        return VersionInfo(
            version=version,
            live=live,
            algo=_text(doc.get("algo")) or _text(threshold.get("algo")),
            mode=_text(doc.get("mode")) or _text(threshold.get("mode")),
            threshold=_finite(threshold.get("threshold")),
            metrics=metrics,
            created_at=_text(doc.get("created_at")),
            time_scale=_finite(doc.get("time_scale")),
        )

    def live(self) -> VersionInfo | None:
        """The live version, every digest verified; None when no version is live."""
        current = self.current()
        return None if current is None else self.info(current, verify=True)

    def catalog(self) -> list[VersionInfo]:
        """Every version's :class:`VersionInfo`, newest first."""
        return [self.info(v) for v in reversed(self.versions())]

    # -- writing ---------------------------------------------------------------------------
    def save(
        self,
        *,
        model: Model,
        preprocessor: Preprocessor,
        features: list[str],
        threshold: dict[str, Any],
        metrics: dict[str, Any],
        holdout: pd.DataFrame | None = None,
        extra: dict[str, Any] | None = None,
        reference: dict[str, Any] | None = None,
    ) -> str:
        """Write a new version (not live until promoted); returns its name. ``reference`` is
        the drift reference (:mod:`rtfd.ml.reference`), saved as ``reference.json``.

        A failed write (a full disk) raises an RtfdError and leaves the registry as it was.
        """
        action = "saving a model version (the registry is unchanged)"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self._remove_stale_temps()
            tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=self.root))
        except OSError as e:
            raise storage_error(e, self.root, action) from e
        try:
            (tmp / "model.pkl").write_bytes(model.to_bytes())
            (tmp / "preprocess_scaler.pkl").write_bytes(preprocessor.to_bytes())
            (tmp / "features.json").write_bytes(_canonical({"features": list(features)}))
            (tmp / "threshold.json").write_bytes(_canonical(threshold))
            (tmp / "metrics.json").write_bytes(_canonical(metrics))
            if holdout is not None:
                holdout.to_parquet(tmp / "holdout.parquet", index=False)
            if reference is not None:
                (tmp / "reference.json").write_bytes(_canonical(reference))
            body: dict[str, Any] = {
                "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "mode": threshold.get("mode"),
                "algo": threshold.get("algo"),
                "libraries": library_versions(),
                "files": {p.name: _sha256(p) for p in sorted(tmp.iterdir())},
                **(extra or {}),
                "format": FORMAT,
            }
            body["manifest_sha256"] = hashlib.sha256(_canonical(body)).hexdigest()
            (tmp / MANIFEST).write_bytes(_canonical(body))
            for f in tmp.iterdir():
                with f.open("rb") as fh:
                    os.fsync(fh.fileno())
            while True:
                numbers = [int(v[1:]) for v in self._all_version_dirs()]
                name = f"v{max(numbers, default=0) + 1:04d}"
                try:
                    tmp.rename(self.root / name)
                    return name
                except OSError:
                    if not (self.root / name).exists():
                        raise
                    # Another process took that number in the meantime: take the next one.
        except BaseException as e:
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(e, OSError):
                raise storage_error(e, self.root, action) from e
            raise

    def promote(self, version: str, *, force: bool = False, reason: str = "") -> str:
        """Make ``version`` live if it is at least as good as the live one (the rule in the
        module docstring); the comparison is recorded in history.json.

        Returns a one-line account of the decision; raises :class:`PromotionRefused` when the
        challenger is worse (use ``force`` to override: the figures are still recorded).
        """
        challenger = self.load(version)
        champion_name = self.current()
        if champion_name == version:
            return f"{version} is already live"
        decision, comparison = "first model", None
        if champion_name is not None:
            try:
                decision, comparison = self._compare(challenger, champion_name)
            except _Incomparable as e:
                if not force:
                    raise PromotionRefused(f"{e} (use --force to promote anyway)") from e
                decision = str(e)
            if comparison is not None and comparison.challenger_worse and not force:
                raise PromotionRefused(
                    f"{version} is worse than the live {champion_name} on the newer holdout: "
                    f"{decision} (use --force to promote anyway)"
                )
        if force:
            decision = "forced" if champion_name is None else f"forced; {decision}"
        self._set_current(version, reason or decision, comparison=comparison, forced=force)
        return f"{version} is live ({decision})"

    def rollback(self) -> str:
        """Make the previously promoted version live again; returns its name."""
        history = self.history()
        current = self.current()
        while history and history[-1]["version"] == current:
            history.pop()
        if not history:
            raise ArtifactError("nothing to roll back to: no earlier promotion in history.json")
        target = history[-1]["version"]
        self.load(target)  # refuse to roll back onto a broken version
        self._write_pointer(target, history)
        return target

    # -- helpers -----------------------------------------------------------------------------
    def _dir(self, version: str) -> Path:
        if not VERSION_RE.match(version):
            raise ArtifactError(f"{version!r} is not a model version (like v0001)")
        path = self.root / version
        if not path.is_dir():
            known = ", ".join(self.versions()) or "none"
            raise ArtifactError(f"model {version} does not exist (versions: {known})")
        return path

    def _remove_stale_temps(self) -> None:
        now = time.time()
        for pattern in TEMP_PATTERNS:
            for p in self.root.glob(pattern):
                try:
                    if now - p.lstat().st_mtime < STALE_TEMP_S:
                        continue
                    if p.is_dir():
                        shutil.rmtree(p, ignore_errors=True)
                    else:
                        p.unlink(missing_ok=True)
                except OSError:
                    continue

    def _all_version_dirs(self) -> list[str]:
        return [p.name for p in self.root.iterdir() if p.is_dir() and VERSION_RE.match(p.name)]

    def _compare(
        self, challenger: LoadedModel, champion_name: str
    ) -> tuple[str, Comparison | None]:
        """Both models on both holdouts; the newer holdout decides (:data:`PROMOTION_RULE`).

        Returns the one-line verdict and the comparison (None when there is nothing to compare
        on); raises :class:`_Incomparable` when no holdout has the features of both.
        """
        try:
            champion = self.load(champion_name)
        except ArtifactError as e:
            return f"live {champion_name} cannot be loaded ({e.message})", None
        scored: list[tuple[pd.Timestamp | None, HoldoutScore]] = []
        notes: list[str] = []
        features = [*challenger.features, *champion.features]
        for role, owner in (("challenger", challenger.version), ("champion", champion_name)):
            frame = self.holdout(owner)
            if frame is None or "label" not in frame or frame["label"].nunique() < 2:
                notes.append(f"{owner}'s holdout has no labelled rows of both classes")
                continue
            if any(f not in frame.columns for f in features):
                notes.append(f"{owner}'s holdout lacks features of one of the models")
                continue
            score = _holdout_score(frame, owner, role, challenger, champion)
            twin = next((h for _, h in scored if _same_window(h, score)), None)
            if twin is not None:  # both trained on the same data: one window, listed once
                notes.append(f"{owner}'s holdout is the same window as {twin.holdout_of}'s")
                continue
            scored.append((_last_time(frame), score))
        if not scored:
            if any("lacks features" in n for n in notes):
                raise _Incomparable(
                    f"cannot compare {challenger.version} with {champion_name}: different features"
                )
            return "no labelled holdout to compare on", None
        # The newer holdout decides; the challenger's (listed first) on a tie or without times.
        newest = max(range(len(scored)), key=lambda i: (_order(scored[i][0]), -i))
        holdouts = tuple(
            HoldoutScore(**{**asdict(h), "decided": i == newest}) for i, (_, h) in enumerate(scored)
        )
        comparison = Comparison(challenger.version, champion_name, holdouts, notes=tuple(notes))
        return comparison.describe(), comparison

    def _set_current(
        self,
        version: str,
        reason: str,
        *,
        comparison: Comparison | None = None,
        forced: bool = False,
    ) -> None:
        history = self.history()
        history.append(
            {
                "version": version,
                "at": datetime.now(UTC).isoformat(timespec="seconds"),
                "reason": reason,
                "forced": forced,
                "comparison": None if comparison is None else comparison.to_dict(),
            }
        )
        self._write_pointer(version, history)

    def _write_pointer(self, version: str, history: list[dict[str, Any]]) -> None:
        """CURRENT and history.json, both or neither."""
        live = self.current()
        try:
            _write_atomic(
                (self.root / CURRENT, f"{version}\n".encode()),
                (self.root / HISTORY, _canonical({"promotions": history})),
            )
        except OSError as e:
            still = f"{live} stays live" if live else "no model is live"
            raise storage_error(e, self.root, f"making {version} live ({still})") from e
