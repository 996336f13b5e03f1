"""The live model: read ``models/CURRENT`` before every batch and hot-swap when it changes.

Replays are scored by the model that scored the batch the first time: the version used for each
batch id is recorded in the checkpoint (:class:`BatchLog`) before the batch writes anything, so
a batch replayed after a crash writes the same rows, scores and alert ids even if a new model was
promoted in between.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from rtfd.config import Settings
from rtfd.progress import Progress, no_progress

log = logging.getLogger(__name__)

MODEL_CACHE = 3
BATCH_LOG_KEEP = 50


class ModelHolder:
    """Loads the registry's current model and keeps a few recent versions for replays."""

    def __init__(self, settings: Settings, registry: Any | None = None) -> None:
        if registry is None:
            from rtfd.ml.registry import Registry

            registry = Registry(settings.models_dir)
        self.registry = registry
        self._models: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._current: str | None = None

    @property
    def current_version(self) -> str | None:
        """The version the last batch used."""
        return self._current

    def current(self) -> Any:
        """The model ``models/CURRENT`` names now (the previous one if the new one fails)."""
        try:
            version = self.registry.current()
        except Exception as e:  # a torn read of CURRENT must not stop the stream
            log.warning("cannot read the current model version: %s", e)
            version = self._current
        if version is None:
            raise LookupError("no model in the registry")
        try:
            model = self.get(version)
        except Exception as e:
            if self._current is None or self._current == version:
                raise
            log.error("model %s cannot be loaded (%s); keeping %s", version, e, self._current)
            return self.get(self._current)
        if version != self._current:
            if self._current is not None:
                log.info("hot reload: model %s -> %s", self._current, version)
            self._current = version
        return model

    def get(self, version: str) -> Any:
        """A specific version, loaded once and cached."""
        with self._lock:
            if version in self._models:
                self._models.move_to_end(version)
                return self._models[version]
        model = self.registry.load(version)
        with self._lock:
            self._models[version] = model
            while len(self._models) > MODEL_CACHE:
                self._models.popitem(last=False)
        return model

    def for_batch(self, batch_log: BatchLog, batch_id: int) -> Any:
        """The model of a batch: the recorded one on a replay, else the current one (recorded).
        A replay whose model cannot be loaded stops with a clear error: scored by another
        model, the batch would send other scores and alert ids."""
        recorded = batch_log.read(batch_id)
        if recorded is not None:
            try:
                return self.get(recorded)
            except Exception as e:
                from rtfd.errors import RtfdError

                raise RtfdError(
                    f"batch {batch_id} was scored by model {recorded}, which cannot be loaded "
                    f"now ({e}); it must score the batch again so that the same alerts go out: "
                    "restore that version in the model registry",
                    title="Stream state",
                ) from e
        model = self.current()
        batch_log.write(batch_id, model.version)
        return model


class BatchLog:
    """Per-batch facts kept next to Spark's checkpoint: which model scored which batch."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def _path(self, batch_id: int) -> Path:
        return self.directory / f"{batch_id:012d}.json"

    def read(self, batch_id: int) -> str | None:
        """The model version recorded for a batch; None when none was. An unreadable record
        is an error: hiding it would let another model score a replay."""
        from rtfd.errors import RtfdError

        path = self._path(batch_id)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            version = data.get("model_version")
        except FileNotFoundError:
            return None
        except (OSError, ValueError, AttributeError) as e:
            raise RtfdError(
                f"the record of which model scored batch {batch_id} ({path}) is unreadable "
                f"({e}); delete it only if that batch may be scored by another model",
                title="Stream state",
            ) from e
        return str(version) if version else None

    def write(self, batch_id: int, model_version: str) -> None:
        path = self._path(batch_id)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"model_version": model_version}), encoding="utf-8")
        os.replace(tmp, path)
        old = self._path(batch_id - BATCH_LOG_KEEP)
        with contextlib.suppress(OSError):
            old.unlink()


def ensure_model(settings: Settings, progress: Progress = no_progress) -> str:
    """The current model version, training a bootstrap model first when there is none.

    ``progress(message, fraction)`` is told how the training goes.
    """
    from rtfd.ml.registry import Registry

    version = Registry(settings.models_dir).current()
    if version is not None:
        return str(version)
    from rtfd.ml.train import ensure_bootstrap_model

    log.warning("no model in %s: training a bootstrap model first", settings.models_dir)
    return str(ensure_bootstrap_model(settings, progress=progress))
