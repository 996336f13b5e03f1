"""Helpers of the spark tier: read the outputs, consume topics, wait on conditions."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from rtfd.config import Settings


def wait_for(cond: Callable[[], Any], *, timeout: float, what: str, every: float = 0.5) -> Any:
    """Poll ``cond`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def read_enriched(settings: Settings, columns: str = "*") -> pd.DataFrame:
    """Every committed row of enriched_transactions (only *.parquet files count)."""
    return read_parquet_dir(settings.enriched_dir, columns)


def read_parquet_dir(directory: Path, columns: str = "*") -> pd.DataFrame:
    """What a reader of the lake sees (rtfd.lake.visible_files: each row once)."""
    import duckdb

    from rtfd.lake import visible_files

    files = visible_files(directory)
    if not files:  # nothing written yet: no rows, but the columns asked for
        names = [] if columns.strip() == "*" else [c.strip() for c in columns.split(",")]
        return pd.DataFrame(columns=names)
    with duckdb.connect() as con:
        return con.execute(
            f"SELECT {columns} FROM read_parquet(?, hive_partitioning = true)", [files]
        ).df()


def count_rows(directory: Path) -> int:
    import duckdb

    from rtfd.lake import visible_files

    files = visible_files(directory)
    if not files:
        return 0
    with duckdb.connect() as con:
        row = con.execute("SELECT count(*) FROM read_parquet(?)", [files]).fetchone()
    return int(row[0]) if row else 0


def consume_all(settings: Settings, topic: str, *, timeout: float = 30.0) -> list[Any]:
    """Every message of ``topic`` from the beginning to the current end (values and keys)."""
    from confluent_kafka import Consumer, TopicPartition

    from rtfd.broker import client_config

    consumer = Consumer(
        {
            **client_config(settings),
            "group.id": f"rtfd-test-{time.monotonic_ns()}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        md = consumer.list_topics(topic, timeout=10)
        parts = list(md.topics[topic].partitions) if topic in md.topics else []
        ends = {}
        for p in parts:
            _lo, hi = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            ends[p] = hi
        consumer.assign([TopicPartition(topic, p, 0) for p in parts])
        out: list[Any] = []
        done = {p for p, hi in ends.items() if hi == 0}
        deadline = time.monotonic() + timeout
        while len(done) < len(parts) and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            out.append(msg)
            if int(msg.offset() or 0) + 1 >= ends[msg.partition()]:
                done.add(msg.partition())
        if len(done) < len(parts):
            raise AssertionError(f"could not read {topic} to its end in {timeout:.0f} s")
        return out
    finally:
        consumer.close()


def listening_sockets(pids: set[int]) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN state owned by ``pids`` (from /proc)."""
    import ipaddress

    inodes: set[str] = set()
    for pid in pids:
        fd_dir = Path(f"/proc/{pid}/fd")
        try:
            links = [os.readlink(fd_dir / fd) for fd in os.listdir(fd_dir)]
        except OSError:
            continue
        inodes |= {link[8:-1] for link in links if link.startswith("socket:[")}
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            local, state, inode = cols[1], cols[3], cols[9]
            if state != "0A" or inode not in inodes:  # 0A = LISTEN
                continue
            hex_ip, hex_port = local.split(":")
            raw = bytes.fromhex(hex_ip)
            # /proc prints the address as 32-bit words in host (little-endian) order.
            raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            ip = ipaddress.ip_address(raw)
            found.append((str(ip), int(hex_port, 16)))
    return found
