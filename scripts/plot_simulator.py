"""Plot the simulator's profile and print the observed figures quoted in docs/simulator.md.

    .venv/bin/python scripts/plot_simulator.py [--days 30] [--seed 42] [--out FILE.png]

Draws an offline history (nothing is written but the PNG), then plots hourly volume by class
(in the card holder's local time and in UTC), the weekly pattern and the amount distribution
by class, and prints a Markdown table of the observed share of each fraud type.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd


def local_hours(df: pd.DataFrame, seed: int, users: int, merchants: int) -> pd.Series:
    """Each transaction's hour in its card holder's home time zone."""
    from rtfd.generator.population import build_population

    pop = build_population(seed, users, merchants)
    offset = pd.Series(pop.geo.utc_offset[pop.home], index=pop.user_ids)
    local = df["timestamp"] + pd.to_timedelta(df["user_id"].map(offset), unit="h")
    return local


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=30)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--merchants", type=int, default=2_000)
    parser.add_argument("--out", default="docs/img/simulator_profile.png")
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rtfd.generator.fraud import FRAUD_TYPES
    from rtfd.generator.history import simulate_history

    started = time.perf_counter()
    df = simulate_history(args.days, seed=args.seed, users=args.users, merchants=args.merchants)
    seconds = time.perf_counter() - started
    local = local_hours(df, args.seed, args.users, args.merchants)
    fraud = df["label"] == 1

    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    ax = axes[0, 0]
    for mask, name, style in ((~fraud, "legitimate", "-"), (fraud, "fraud", "--")):
        share = local[mask].dt.hour.value_counts(normalize=True).sort_index()
        ax.plot(share.index, share.to_numpy() * 100, style, marker="o", ms=3, label=name)
    ax.set(title="Hourly volume, card holder's local time", xlabel="hour", ylabel="% of class")
    ax.set_xticks(range(0, 24, 3))
    ax.legend()

    ax = axes[0, 1]
    utc = df.groupby([df["timestamp"].dt.hour, fraud]).size().unstack(fill_value=0)
    ax.bar(utc.index, utc[False], color="tab:blue", label="legitimate")
    ax2 = ax.twinx()
    ax2.plot(utc.index, utc[True], color="tab:red", marker="o", ms=3, label="fraud (right axis)")
    ax.set(title="Hourly volume, UTC (all days)", xlabel="hour (UTC)", ylabel="transactions")
    ax2.set_ylabel("fraudulent transactions")
    ax.set_xticks(range(0, 24, 3))
    ax.legend(loc="upper left")
    ax2.legend(loc="upper right")

    ax = axes[1, 0]
    # Per calendar day of each weekday present (a 30-day window has some weekdays five times);
    # local dates cut by the window's ends (time zones) are left out.
    day = local.dt.normalize()
    full = day[(day > day.min() + pd.Timedelta(days=1)) & (day < day.max() - pd.Timedelta(days=1))]
    n_days = pd.Series(full.unique()).dt.dayofweek.value_counts().sort_index()
    days = (full.dt.dayofweek.value_counts() / n_days).reindex(range(7)).fillna(0.0)
    ax.bar(["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"], days.to_numpy())
    ax.set(title="Transactions per weekday (local time)", ylabel="transactions per day")

    ax = axes[1, 1]
    bins = np.logspace(-0.5, 4.5, 60)

    def percent_weights(values: pd.Series) -> np.ndarray:
        return np.full(len(values), 100.0 / max(len(values), 1))

    legit_amounts = df.loc[~fraud, "amount"]
    ax.hist(
        legit_amounts,
        bins=bins,
        weights=percent_weights(legit_amounts),
        histtype="stepfilled",
        alpha=0.3,
        color="grey",
        label="legitimate",
    )
    for name in FRAUD_TYPES:
        amounts = df.loc[df["fraud_type"] == name, "amount"]
        ax.hist(
            amounts,
            bins=bins,
            weights=percent_weights(amounts),
            histtype="step",
            lw=1.5,
            label=name,
        )
    ax.set_xscale("log")
    ax.set(title="Amount by class", xlabel="amount (log scale)", ylabel="% of class per bin")
    ax.legend(fontsize=8)

    fig.suptitle(
        f"rtfd simulator: {args.days:g} days, {args.users:,} users, {args.merchants:,} merchants, "
        f"seed {args.seed} - {len(df):,} transactions, {fraud.mean():.2%} fraud"
    )
    fig.tight_layout()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)

    print(f"{len(df):,} transactions in {seconds:.1f} s ({len(df) / seconds * 60:,.0f} tx/min)")
    print(f"fraud rate {fraud.mean():.3%}; wrote {out}\n")
    legit_median = df[~fraud].groupby("user_id")["amount"].median()
    print("| fraud_type | transactions | share of fraud | % of all | median amount / user median |")
    print("|---|---:|---:|---:|---:|")
    for name in FRAUD_TYPES:
        rows = df[df["fraud_type"] == name]
        ratio = (rows["amount"] / rows["user_id"].map(legit_median)).median()
        print(
            f"| {name} | {len(rows):,} | {len(rows) / fraud.sum():.1%} | "
            f"{len(rows) / len(df):.3%} | {ratio:.1f} |"
        )
    away = (
        df.loc[~fraud, "location"]
        != df.loc[~fraud, "user_id"].map(
            df[~fraud].groupby("user_id")["location"].agg(lambda s: s.mode().iat[0])
        )
    ).mean()
    print(f"\nlegitimate transactions away from the home city: {away:.1%}")
    print(f"channels: {df['channel'].value_counts(normalize=True).round(3).to_dict()}")
    print(f"legitimate amount median {df.loc[~fraud, 'amount'].median():.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
