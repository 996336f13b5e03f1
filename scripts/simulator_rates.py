"""Measure what the stream sees at different generator rates, with one model.

For each rate (200, 1,000 and 10,000 tx/s by default) the script draws what the live generator
sends (``rtfd.generator.live.live_sample``: the same source, each message stamped with the time it
is due, no Kafka), computes the features the stream computes (the offline kernel, held to the
stream's output bit for bit by the parity tests), scores every transaction with the bootstrap
model the appliance trains for the default settings, and reports:

* the active cards and each card's transactions per simulated day;
* the share of transactions alerted and the alert precision (ground truth: every fraud label
  arrives, so precision on matured labels is precision on the ground truth);

over the last ``--measure`` seconds of a ``--seconds`` run (card histories grow at the same pace
at every rate, so the warm-up is the same). A lower rate is measured in several independent
worlds of its size (the next seeds: 50 at 200 tx/s, 10 at 1,000 tx/s, 1 at 10,000 tx/s), so every
rate is judged on about the same number of transactions: fraud comes in bursts (sprees,
compromised merchants), and one world of 10,000 cards has a fraud share of its own. The same
figures with the old generator's world (a fixed 10,000 cards whose pace grows with the rate, one
world each) show what changed. It rewrites the table
between the markers in docs/simulator.md and docs/simulator_rates.json.

    .venv/bin/python scripts/simulator_rates.py            # ~15 minutes on 2 cores
    .venv/bin/python scripts/simulator_rates.py --rates 200 1000 --seconds 120 --no-docs
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "simulator.md"
JSON_OUT = ROOT / "docs" / "simulator_rates.json"
START, END = "<!-- simulator-rates:start -->", "<!-- simulator-rates:end -->"
OLD_CARDS = 10_000


def measure(
    settings: Any, model: Any, rate: float, seconds: float, window: float, worlds: int = 1
) -> dict:
    """Alert share, precision and per-card pace of ``seconds`` of live traffic at ``rate``,
    pooled over ``worlds`` independent worlds (seeds ``generator_seed``, the next ones ...)."""
    import numpy as np

    from rtfd.generator.behaviour import DAY_S
    from rtfd.generator.live import cards_for_rate, live_sample
    from rtfd.generator.population import World
    from rtfd.ml.data import labelled_features

    t0 = time.perf_counter()
    pop = World(settings.generator_seed, settings.generator_merchants).population(
        cards_for_rate(settings, rate)
    )
    draw_s = time.perf_counter() - t0
    card_bytes = sum(
        getattr(pop, name).nbytes
        for name in (
            "home",
            "home_lat",
            "home_lon",
            "rate",
            "local_shift",
            "amount_scale",
            "amount_sigma",
            "cat_cum",
            "usual",
            "usual_cum",
            "usual_share",
            "trip_rate",
            "user_ids",
            "currency",
        )
    ) + sum(sys.getsizeof(u) for u in pop.user_ids)
    del pop
    t0 = time.perf_counter()
    start = datetime(2026, 3, 2, 8, tzinfo=UTC).timestamp()
    transactions = measured = alerted = frauds = hits = 0
    shares: list[float] = []
    for world in range(worlds):
        # Independent worlds of the same size (the next seeds): the lower rates are measured
        # over as many transactions as the highest, so sampling noise (fraud comes in bursts:
        # sprees, compromised merchants) is the same at every rate.
        frame = live_sample(
            settings, rate, seconds, start=start, seed=settings.generator_seed + world
        )
        cards = int(frame.attrs["cards"])
        feats = labelled_features(frame, label_delay_s=settings.label_maturity_days * DAY_S)
        late = feats["timestamp"] >= frame["timestamp"].max() - np.timedelta64(int(window), "s")
        scored = feats[late.to_numpy()]
        alert = model.score(scored) >= model.threshold
        label = scored["label"].to_numpy() > 0
        transactions += len(frame)
        measured += len(scored)
        alerted += int(alert.sum())
        frauds += int(label.sum())
        hits += int((alert & label).sum())
        shares.append(float(alert.mean()))
    sim_days = seconds * settings.generator_time_scale / DAY_S
    per_world = transactions / worlds
    return {
        "rate": rate,
        "cards": cards,
        "worlds": worlds,
        "seconds_to_draw_cards": round(draw_s, 2),
        "cards_mb": round(card_bytes / 1e6, 1),
        "time_scale": settings.generator_time_scale,
        "transactions": transactions,
        "measured": measured,
        "tx_per_card_per_sim_day": round(per_world / cards / sim_days, 4),
        "tx_per_card_per_minute": round(per_world / cards / (seconds / 60.0), 4),
        "fraud_share": round(frauds / measured, 5),
        "alerted": alerted,
        "alert_share": round(alerted / measured, 5),
        "alert_share_per_world_min": round(min(shares), 5),
        "alert_share_per_world_max": round(max(shares), 5),
        "precision": round(hits / alerted, 4) if alerted else None,
        "recall": round(hits / frauds, 4) if frauds else None,
        "seconds_to_measure": round(time.perf_counter() - t0, 1),
    }


def spread(rows: list[dict], key: str) -> float | None:
    """max / min of a figure over the rates (1.0 = identical)."""
    values = [r[key] for r in rows if r[key]]
    return round(max(values) / min(values), 3) if len(values) == len(rows) else None


def span(row: dict) -> str:
    """' (0.95–1.31%)': the alerted share of the least and most alerted world."""
    if row["worlds"] < 2:
        return ""
    return f" ({row['alert_share_per_world_min']:.2%}–{row['alert_share_per_world_max']:.2%})"


def table(rows: list[dict]) -> str:
    head = (
        "| world | rate (tx/s) | cards | drawn in | memory | tx per card per simulated day | "
        "per card per minute | worlds | measured | fraud | alerted (range over worlds) | "
        "alert precision | recall |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    lines = []
    for r in rows:
        world = "rate sets the cards" if r["world"] == "now" else "10,000 cards (before)"
        precision = "-" if r["precision"] is None else f"{r['precision']:.1%}"
        recall = "-" if r["recall"] is None else f"{r['recall']:.1%}"
        lines.append(
            f"| {world} | {r['rate']:,.0f} | {r['cards']:,} | {r['seconds_to_draw_cards']:.1f} s"
            f" | {r['cards_mb']:,.0f} MB | {r['tx_per_card_per_sim_day']:.2f}"
            f" | {r['tx_per_card_per_minute']:.2f} | {r['worlds']} | {r['measured']:,}"
            f" | {r['fraud_share']:.2%} | {r['alert_share']:.2%}{span(r)} | {precision}"
            f" | {recall} |"
        )
    return head + "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[200.0, 1_000.0, 10_000.0])
    parser.add_argument("--seconds", type=float, default=720.0, help="live seconds per rate")
    parser.add_argument("--measure", type=float, default=600.0, help="last seconds measured")
    parser.add_argument("--no-before", action="store_true", help="skip the old generator's world")
    parser.add_argument(
        "--one-world",
        action="store_true",
        help="measure each rate in one world (default: as many as the highest rate's volume)",
    )
    parser.add_argument("--no-docs", action="store_true", help="print only")
    args = parser.parse_args(argv)

    from rtfd.config import load_settings
    from rtfd.generator.behaviour import DAY_S
    from rtfd.generator.simulator import expected_card_tx_per_day
    from rtfd.ml.registry import Registry
    from rtfd.ml.train import ensure_bootstrap_model

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rtfd-rates-") as home:
        settings = load_settings({"home": home})
        settings.ensure_dirs()
        print("training the bootstrap model (default settings) ...", file=sys.stderr)
        version = ensure_bootstrap_model(settings)
        model = Registry(settings.models_dir).load(version)
        rows: list[dict] = []
        for rate in args.rates:
            print(f"{rate:,.0f} tx/s: the rate sets the cards ...", file=sys.stderr)
            worlds = 1 if args.one_world else max(1, round(max(args.rates) / rate))
            row = measure(settings, model, rate, args.seconds, args.measure, worlds)
            rows.append({"world": "now", **row})
            print(f"  {rows[-1]}", file=sys.stderr)
        before: list[dict] = []
        if not args.no_before:
            per_card = expected_card_tx_per_day(settings.generator_fraud_rate) / DAY_S
            for rate in args.rates:
                # The old generator: 10,000 cards, each as fast as the rate needs.
                old = load_settings(
                    {"home": home, "generator_time_scale": rate / (OLD_CARDS * per_card)}
                )
                print(f"{rate:,.0f} tx/s: 10,000 cards (before) ...", file=sys.stderr)
                before.append(
                    {"world": "before", **measure(old, model, rate, args.seconds, args.measure)}
                )
                print(f"  {before[-1]}", file=sys.stderr)
    result = {
        "command": "scripts/simulator_rates.py " + " ".join(argv or sys.argv[1:]),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": {"version": version, "threshold": model.threshold, "algo": model.algo},
        "seconds": args.seconds,
        "measured_seconds": args.measure,
        "one_world": args.one_world,
        "rows": rows + before,
        "alert_share_spread": spread(rows, "alert_share"),
        "precision_spread": spread(rows, "precision"),
        "pace_spread": spread(rows, "tx_per_card_per_sim_day"),
        "alert_share_spread_before": spread(before, "alert_share") if before else None,
        "seconds_total": round(time.perf_counter() - started, 1),
    }
    print(table(rows + before))
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=2))
    if not args.no_docs:
        JSON_OUT.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        doc = DOC.read_text(encoding="utf-8")
        a, b = doc.index(START) + len(START), doc.index(END)
        summary = (
            f"\n{table(rows + before)}\n\n"
            f"Spread (largest / smallest over the rates): alerted share "
            f"{result['alert_share_spread']}×, precision {result['precision_spread']}×, pace "
            f"{result['pace_spread']}×"
            + (
                f"; with the old generator's 10,000 cards the alerted share spread "
                f"{result['alert_share_spread_before']}×"
                if before
                else ""
            )
            + f". Model {version} ({model.algo}, threshold {model.threshold:.3f}); "
            f"{args.seconds:g} s of live traffic per world, the last {args.measure:g} s measured"
            + (
                ""
                if args.one_world
                else (
                    " (a lower rate in as many independent worlds, seeds "
                    f"{settings.generator_seed} on, as the highest rate's volume needs)"
                )
            )
            + "; "
            f"written by `{result['command'].strip()}` on {result['measured_at'][:10]} "
            f"({result['seconds_total'] / 60:.0f} min), figures in `docs/simulator_rates.json`.\n"
        )
        DOC.write_text(doc[:a] + summary + doc[b:], encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
