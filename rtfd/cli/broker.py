"""``rtfd broker up|down|status``."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rtfd.config import Settings


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("broker", help="start, stop or inspect the Kafka-protocol broker")
    actions = parser.add_subparsers(dest="broker_action", metavar="ACTION", required=True)
    up = actions.add_parser("up", help="start the broker (detached) and create the topics")
    up.set_defaults(func=cmd_up)
    down = actions.add_parser("down", help="stop the broker rtfd started")
    down.set_defaults(func=cmd_down)
    status = actions.add_parser("status", help="backend, address, topics and message counts")
    status.set_defaults(func=cmd_status)


def start_broker(settings: Settings, *, detach: bool) -> object:
    """Start (or adopt) the configured broker and create the topics; returns the broker."""
    from rtfd.broker import make_broker
    from rtfd.broker.admin import ensure_topics, topic_specs

    broker = make_broker(settings)
    broker.start(detach=detach)
    ensure_topics(broker.client_config(), topic_specs(settings))
    return broker


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    broker = start_broker(settings, detach=True)
    print(f"rtfd: {broker.name} broker running at {broker.bootstrap_servers}")  # type: ignore[attr-defined]
    return cmd_status(args, settings)


def cmd_down(args: argparse.Namespace, settings: Settings) -> int:
    from rtfd.broker import make_broker

    broker = make_broker(settings)
    broker.stop()
    print(f"rtfd: {broker.name} broker stopped")
    return 0


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from rtfd.broker import make_broker

    broker = make_broker(settings)
    status = broker.status()
    state = "running" if status.running else "not running"
    print(f"backend  {status.backend}\naddress  {status.bootstrap_servers}\nstate    {state}")
    if status.detail:
        print(f"detail   {status.detail}")
    if status.running:
        print(f"\n{'topic':<20} {'partitions':>10} {'messages':>12}")
        for t in status.topics:
            print(f"{t.name:<20} {t.partitions:>10} {t.messages:>12,}")
    return 0 if status.running else 1
