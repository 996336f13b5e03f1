"""``rtfd up``: the whole appliance without the TUI, logging to the terminal."""

from __future__ import annotations

import argparse
import signal
import threading
from typing import TYPE_CHECKING

from rtfd.cli.flags import add_settings_flag

if TYPE_CHECKING:
    from rtfd.config import Settings


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "up", help="run the whole appliance headless (broker, model, stream, generator)"
    )
    add_settings_flag(parser, "--rate", "generator_rate", "generator transactions per second")
    parser.add_argument("--no-generator", action="store_true", help="do not start the generator")
    parser.add_argument("--console", action="store_true", help="print each alert")
    parser.set_defaults(func=cmd_up)


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    from rtfd.supervisor import ComponentChanged, Notice, StreamProgressEvent, Supervisor

    done = threading.Event()

    def on_event(event: object) -> None:
        if isinstance(event, ComponentChanged):
            s = event.status
            print(f"[{s.name}] {s.state.value} {s.detail}", flush=True)
        elif isinstance(event, Notice):
            print(f"[{event.level}] {event.message}", flush=True)
        elif isinstance(event, StreamProgressEvent):
            p = event.progress
            print(
                f"[stream] batch {p.batch_id}: {p.processed_rows_per_s:,.0f} rows/s, "
                f"p99 {p.latency_p99_ms or 0:,.0f} ms, "
                f"alerts {p.alerts}, dead letters {p.dead_letters}",
                flush=True,
            )

    supervisor = Supervisor(settings, with_generator=not args.no_generator, console=args.console)
    supervisor.subscribe(on_event)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: done.set())
    try:
        supervisor.start()
        print("rtfd: appliance running; Ctrl-C stops everything", flush=True)
        done.wait()
    except KeyboardInterrupt:
        pass
    finally:
        print("rtfd: stopping ...", flush=True)
        supervisor.stop()
        print("rtfd: stopped", flush=True)
    return 0
