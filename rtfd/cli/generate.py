"""``rtfd generate`` (live or offline history) and ``rtfd replay FILE``.

Only argparse at import time: the handlers import numpy, pandas and the Kafka client when they run.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from typing import TYPE_CHECKING

from rtfd.cli.flags import Number, add_settings_flag, output_file

if TYPE_CHECKING:
    from rtfd.config import Settings
    from rtfd.generator.live import GeneratorStats, LiveGenerator


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    gen = sub.add_parser(
        "generate",
        help="simulate card transactions: live to Kafka, or an offline history file",
        description=(
            "Live (default): send simulated transactions to the transactions topic at --rate, "
            "with fraud labels to fraud_labels after the label delay, until --duration or Ctrl-C. "
            "Offline: --history DAYS --out FILE.parquet writes a simulated history with ground "
            "truth (label, fraud_type)."
        ),
    )
    add_settings_flag(
        gen,
        "--rate",
        "generator_rate",
        "transactions per second (live); it sets how many cards are active, never a card's pace",
    )
    gen.add_argument(
        "--duration",
        type=Number(float, lo=0, lo_open=True),
        default=None,
        metavar="S",
        help="stop after S seconds (live)",
    )
    add_settings_flag(gen, "--seed", "generator_seed", "random seed")
    add_settings_flag(
        gen, "--users", "generator_users", "simulated cards (offline; live, --rate sets them)"
    )
    add_settings_flag(gen, "--merchants", "generator_merchants", "simulated merchants")
    add_settings_flag(gen, "--fraud-rate", "generator_fraud_rate", "share of fraud, e.g. 0.01")
    add_settings_flag(
        gen, "--label-delay", "generator_label_delay_s", "mean label delay, seconds (live)"
    )
    gen.add_argument("--topic", default=None, help="transactions topic (default: transactions)")
    gen.add_argument(
        "--labels-topic", default=None, help="fraud labels topic (default: fraud_labels)"
    )
    gen.add_argument(
        "--history",
        type=Number(float, lo=0, lo_open=True, hi=3650),
        default=None,
        metavar="DAYS",
        help="offline: simulate DAYS days (at most 3650)",
    )
    gen.add_argument("--out", default=None, metavar="FILE", help="offline: Parquet file to write")
    gen.set_defaults(func=cmd_generate)

    rep = sub.add_parser(
        "replay",
        help="stream a transactions file (Parquet or CSV) into Kafka",
        description=(
            "Send the rows of FILE (columns transaction_id, timestamp, user_id, merchant_id, "
            "amount; optional currency, location, lat, lon, channel, label, fraud_type) to the "
            "transactions topic in timestamp order, and a fraud label for each row with label 1."
        ),
    )
    rep.add_argument("file", metavar="FILE", help="Parquet or CSV file")
    pace = rep.add_mutually_exclusive_group()
    add_settings_flag(pace, "--rate", "generator_rate", "rows per second")  # type: ignore[arg-type]
    pace.add_argument("--as-fast-as-possible", action="store_true", help="no rate limit")
    rep.add_argument(
        "--retime", action="store_true", help="stamp rows with the wall clock instead of their time"
    )
    rep.add_argument("--currency", default="USD", help="currency when the file has none")
    add_settings_flag(rep, "--label-delay", "generator_label_delay_s", "mean label delay, seconds")
    rep.add_argument("--topic", default=None, help="transactions topic (default: transactions)")
    rep.add_argument(
        "--labels-topic", default=None, help="fraud labels topic (default: fraud_labels)"
    )
    rep.set_defaults(func=cmd_replay)


def _progress(text: str) -> None:
    """One status line on stderr, rewritten in place on a terminal."""
    if sys.stderr.isatty():
        print(f"\r{text}\033[K", end="", file=sys.stderr, flush=True)
    else:
        print(text, file=sys.stderr, flush=True)


def _stats_line(st: GeneratorStats) -> str:
    return (
        f"sent {st.sent:,}  acked {st.acked:,}  failed {st.failed:,}  "
        f"rate {st.actual_rate:,.0f}/s  labels {st.labels_sent:,} (+{st.labels_pending:,} pending)"
    )


def cmd_generate(args: argparse.Namespace, settings: Settings) -> int:
    from rtfd.errors import ConfigError

    if (args.history is None) != (args.out is None):
        raise ConfigError("offline mode needs both --history DAYS and --out FILE.parquet")
    if args.history is not None:
        return _offline(args, settings)
    from rtfd.generator.live import LiveGenerator
    from rtfd.schemas import Topics

    intro = live_world_line(settings)  # a rate needing too many cards fails here, at once
    gen = LiveGenerator(
        settings,
        topic=args.topic or Topics.TRANSACTIONS,
        labels_topic=args.labels_topic or Topics.LABELS,
    )
    return _drive(gen, duration=args.duration, until_finished=False, intro=intro)


def live_world_line(settings: Settings) -> str:
    """What a live run simulates: 'rtfd: 49,949 cards active at 1,000 tx/s; time-lapse 600
    (a simulated day every 2.4 min)'. Raises ConfigError when the rate needs too many cards."""
    from rtfd.generator.behaviour import DAY_S
    from rtfd.generator.live import cards_for_rate

    cards = cards_for_rate(settings)
    scale = settings.generator_time_scale
    return (
        f"rtfd: {cards:,} cards active at {settings.generator_rate:,g} tx/s; time-lapse "
        f"{scale:g} (a simulated day every {DAY_S / scale / 60:,.1f} min)"
    )


def _drive(
    gen: LiveGenerator, *, duration: float | None, until_finished: bool, intro: str = ""
) -> int:
    """Run a generator in the foreground with a status line until done, --duration or Ctrl-C
    (SIGTERM too: a supervisor stopping the command gets the same clean, flushed stop)."""
    import signal
    import threading

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)
    gen.start()
    if intro:  # after the start: a bad topic or broker stays a one-line error
        print(intro, file=sys.stderr, flush=True)
    started = time.monotonic()
    last = 0.0
    try:
        while gen.running:
            now = time.monotonic()
            if duration is not None and now - started >= duration:
                break
            if now - last >= (1.0 if sys.stderr.isatty() else 5.0):
                last = now
                _progress(_stats_line(gen.stats()))
            wait = 0.2 if duration is None else min(0.2, max(0.0, duration - (now - started)))
            if until_finished:
                gen.wait(wait)
            else:
                time.sleep(wait)
    except KeyboardInterrupt:
        _progress("interrupted: flushing")
    final = gen.stop()
    elapsed = time.monotonic() - started
    if sys.stderr.isatty():
        print(file=sys.stderr)
    rate = final.sent / max(elapsed, 1e-9)
    cards = f" from {final.cards:,} cards" if final.cards else ""
    print(
        f"rtfd: sent {final.sent:,} transactions{cards} in {elapsed:.1f} s ({rate:,.0f}/s); "
        f"acked {final.acked:,}, failed {final.failed:,}; "
        f"labels sent {final.labels_sent:,}, not yet due {final.labels_pending:,}"
    )
    if final.error:
        print(f"rtfd: generator error: {final.error}", file=sys.stderr)
        return 1
    return 1 if final.failed else 0


def _offline(args: argparse.Namespace, settings: Settings) -> int:
    from rtfd.generator.history import simulate_history, write_history

    output_file(args.out, "--out")  # before minutes of simulation, not after
    started = time.monotonic()

    shown = [-1.0]

    def progress(message: str, fraction: float | None) -> None:
        frac = fraction or 0.0
        # On a terminal the bar is redrawn in place; in a log, a line per quarter is enough.
        if not sys.stderr.isatty() and frac < 1.0 and frac - shown[0] < 0.25:
            return
        shown[0] = frac
        width = 30
        done = int(frac * width)
        _progress(f"simulating [{'#' * done}{' ' * (width - done)}] {frac:4.0%}")

    df = simulate_history(
        args.history,
        seed=settings.generator_seed,
        users=settings.generator_users,
        merchants=settings.generator_merchants,
        fraud_rate=settings.generator_fraud_rate,
        progress=progress,
    )
    path = write_history(df, args.out)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    elapsed = time.monotonic() - started
    fraud = int(df["label"].sum())
    print(
        f"rtfd: wrote {len(df):,} transactions ({args.history:g} days, {fraud:,} fraud = "
        f"{fraud / max(len(df), 1):.2%}) to {path} in {elapsed:.1f} s "
        f"({len(df) / max(elapsed, 1e-9) * 60:,.0f} tx/min)"
    )
    for name, count in df["fraud_type"].value_counts().items():
        print(f"  {name:<22} {count:>8,}")
    return 0


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    from rtfd.generator.live import LiveGenerator
    from rtfd.generator.replay import FileSource, read_transactions_file
    from rtfd.schemas import Topics

    df = read_transactions_file(args.file)
    source = FileSource(df, retime=args.retime, default_currency=args.currency)
    rate = math.inf if args.as_fast_as_possible else settings.generator_rate
    print(f"rtfd: replaying {len(source):,} rows from {args.file}", file=sys.stderr)
    gen = LiveGenerator(
        settings,
        topic=args.topic or Topics.TRANSACTIONS,
        labels_topic=(args.labels_topic or Topics.LABELS) if source.has_labels else None,
        rate=rate,
        source=source,
    )
    return _drive(gen, duration=None, until_finished=True)
