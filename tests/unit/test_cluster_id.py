"""The embedded broker's cluster id never looks like a command-line option."""

from __future__ import annotations

import uuid

import pytest

from rtfd.broker.kafka import EmbeddedKafka
from rtfd.config import load_settings

pytestmark = pytest.mark.unit


def test_a_cluster_id_starting_with_a_dash_is_drawn_again(monkeypatch: pytest.MonkeyPatch) -> None:
    dash_first = uuid.UUID(bytes=b"\xf8" + bytes(15))  # urlsafe base64 "-A..."
    draws = iter([dash_first, uuid.UUID(int=1)])
    monkeypatch.setattr(uuid, "uuid4", lambda: next(draws))
    broker = EmbeddedKafka(load_settings({"broker_backend": "kafka"}))
    broker.settings.broker_dir.mkdir(parents=True)
    (broker.settings.broker_dir / "cluster.id").write_text("-stale\n")
    cid = broker._cluster_id()
    assert not cid.startswith("-")
    assert broker._cluster_id() == cid  # kept once drawn
