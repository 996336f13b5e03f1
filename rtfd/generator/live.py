"""Live mode: simulated transactions to Kafka at a controlled rate, with delayed fraud labels.

The live stream is a time-lapse of the same simulated world as offline mode: simulated time runs
``generator_time_scale`` times faster than real time (600 by default: a simulated day in 2.4
minutes), and **the rate sets how many cards are active**, never how often a card pays: at
``rate`` tx/s, ``cards_for_rate`` = rate / (one card's transactions per second at the
time-lapse) cards are active (10,000 at 200 tx/s, 500,000 at 10,000 tx/s with the defaults).
Raising the rate brings cards in (drawn lazily by the world, in a background thread, so the
sender never stalls; the new rate starts when they are ready), lowering it lets cards go idle.
Velocity and recency features therefore look the same at every rate, and the same as in a history
simulated with the same time-lapse (``simulate_history(time_scale=...)``), which is what the
bootstrap model is trained on.

The simulator draws windows of behaviour in order and the generator sends them at the requested
rate with event time = the wall clock at sending: order and relative timing within a card's
activity are kept (a card-testing burst is still a burst). The rate is exact; the simulated clock
runs at the time-lapse on average (a little faster through quiet simulated hours, slower through
busy ones), at every rate alike.

:class:`LiveGenerator` runs on its own thread and is driven from any thread (CLI, TUI,
supervisor): start, pause/resume/toggle, set_rate, stop. Pacing is schedule-based on a monotonic
clock (message k is due at ``anchor + k / rate``) and messages go out in small bursts. Nothing
sent is ever lost or sent twice: a pause only stops taking from the source, and stop flushes
the producer. The idempotent producer (acks=all) keeps broker retries from duplicating.

Fraud labels follow like chargebacks: each fraudulent transaction gets a LABEL record on the
labels topic after a delay drawn from a gamma distribution with mean
``settings.generator_label_delay_s``; legitimate transactions get none. Labels keep flowing
while transactions are paused (the purchases happened); labels not yet due when the generator
stops are kept and sent if it starts again.
"""

from __future__ import annotations

import collections
import heapq
import logging
import math
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import numpy as np

from rtfd.generator.behaviour import DAY_S
from rtfd.generator.fraud import FRAUD_TYPES
from rtfd.generator.history import draw_label_delays, new_transaction_ids
from rtfd.generator.population import CAT_CHANNEL, CHANNELS
from rtfd.generator.simulator import Simulator, expected_card_tx_per_day
from rtfd.generator.wire import (
    TimestampFormatter,
    encode_label,
    finish_transaction,
    json_string,
    producer_config,
    transaction_prefix,
)
from rtfd.schemas import TRANSACTION, Topics

if TYPE_CHECKING:
    import pandas as pd

    from rtfd.config import Settings

log = logging.getLogger(__name__)

_ID_STREAM = 0x4944
_LABEL_STREAM = 0x4C4142


class ProducerLike(Protocol):
    """The part of confluent_kafka.Producer the generator uses (a fake can stand in for tests)."""

    def produce(self, topic: str, value: bytes, key: bytes) -> None: ...
    def poll(self, timeout: float) -> int: ...
    def flush(self, timeout: float) -> int: ...


ProducerFactory = Callable[[dict[str, Any]], ProducerLike]


class Row(NamedTuple):
    """One transaction to send, every field but the timestamp already JSON-encoded."""

    transaction_id: str
    prefix: str  # the JSON up to the timestamp value (wire.transaction_prefix)
    user_id: str
    label: bool  # fraud: a LABEL record follows after the label delay
    fraud_type: str | None = None
    timestamp: str | None = None  # keep this event time; None = stamp with the wall clock


class Source(Protocol):
    """Where a generator's transactions come from: the simulator, or a file for replay."""

    @property
    def finished(self) -> bool:
        """True when no transaction is left (never, for the simulator)."""
        ...

    def take(self, n: int) -> list[Row]:
        """The next ``n`` rows in order (fewer only when finished)."""
        ...


class TransactionSource:
    """An endless, ordered supply of simulated transactions (the behaviour time-lapse).

    Draws the simulator window by window, sized to hold about ``chunk`` transactions, and hands
    them out in order. Transaction ids come from a stream seeded with ``(seed, run_id)``: the
    behaviour is reproducible from the seed, while ids differ between runs unless ``run_id`` is
    fixed, so two runs never write the same id to a topic.

    :meth:`set_cards` changes the active cards: the rest of the current window (drawn for the
    old cards, not yet handed out) is dropped and simulation goes on from the next row's time
    with the new cards, so no card keeps the old pace after a change.
    """

    def __init__(self, sim: Simulator, *, start: float, run_id: int, chunk: int = 2_000) -> None:
        self.sim = sim
        self.chunk = chunk
        self._t = start
        self._index = 0
        self._rows: list[Row] = []
        self._times = np.zeros(0)
        self._pos = 0
        self._cards = sim.cards
        self._id_rng = np.random.default_rng(np.random.SeedSequence([sim.seed, _ID_STREAM, run_id]))
        pop = sim.pop
        self._merchants_json = np.array([json_string(m) for m in pop.merchant_ids], dtype=object)
        self._currency_json = {c: json_string(c) for c in set(pop.geo.currency) if c}
        self._cities_json = np.array([json_string(c) for c in pop.geo.names], dtype=object)
        self._channel_json = np.array([json_string(c) for c in CHANNELS], dtype=object)
        self._fraud_names = np.array([None, *FRAUD_TYPES], dtype=object)
        self.drawn = 0

    @property
    def cards(self) -> int:
        """Cards the source draws for (active from the next row handed out)."""
        return self._cards

    def set_cards(self, n: int) -> None:
        """Draw for the first ``n`` cards from now on (the world builds missing cards first:
        call ``sim.world.population(n)`` beforehand to keep this quick)."""
        if n < 1:
            raise ValueError("need at least one card")
        self._cards = n

    def _apply_cards(self) -> None:
        if self._cards == self.sim.cards:
            return
        if self._pos < len(self._rows):
            self._t = float(self._times[self._pos])  # go on from here with the new cards
            self._rows, self._times, self._pos = [], np.zeros(0), 0
        self.sim.set_cards(self._cards)

    def _draw(self) -> None:
        per_s = self.sim.expected_tx_per_day() / DAY_S
        span = float(np.clip(self.chunk / max(per_s, 1e-9), 60.0, DAY_S))
        batch = self.sim.window(self._t, self._t + span, self._index)
        self._t += span
        self._index += 1
        self._times = batch.t
        pop = self.sim.pop
        ids = new_transaction_ids(self._id_rng, len(batch)).tolist()
        # Per card in the window (not per card in the world, which may be hundreds of thousands).
        cards, at = np.unique(batch.user, return_inverse=True)
        user_ids = pop.user_ids[cards]
        users_json = np.array([json_string(u) for u in user_ids], dtype=object)[at].tolist()
        currency = self._currency_json
        currency_json = [currency[c] for c in pop.currency[cards]]
        cols = zip(
            [f'"{i}"' for i in ids],
            users_json,
            self._merchants_json[batch.merchant].tolist(),
            [repr(a) for a in batch.amount.tolist()],
            np.array(currency_json, dtype=object)[at].tolist(),
            self._cities_json[batch.city].tolist(),
            [repr(x) for x in np.round(batch.lat, 5).tolist()],
            [repr(x) for x in np.round(batch.lon, 5).tolist()],
            self._channel_json[CAT_CHANNEL[pop.merchant_cat[batch.merchant]]].tolist(),
            strict=True,
        )
        self._rows = [
            Row(tid, transaction_prefix(f), uid, ft is not None, ft)
            for tid, f, uid, ft in zip(
                ids,
                cols,
                user_ids[at].tolist(),
                self._fraud_names[batch.fraud.astype(np.int64)].tolist(),
                strict=True,
            )
        ]
        self._pos = 0

    @property
    def finished(self) -> bool:
        return False

    def take(self, n: int) -> list[Row]:
        """The next ``n`` transactions in behaviour order."""
        self._apply_cards()
        out: list[Row] = []
        while len(out) < n:
            if self._pos >= len(self._rows):
                self._draw()
                continue
            step = min(n - len(out), len(self._rows) - self._pos)
            out.extend(self._rows[self._pos : self._pos + step])
            self._pos += step
        self.drawn += n
        return out


@dataclass(frozen=True)
class GeneratorStats:
    """A snapshot of the live generator for the CLI, the TUI and the supervisor."""

    sent: int  # transactions handed to the producer
    acked: int  # transactions the broker acknowledged
    failed: int  # transactions whose delivery failed
    labels_sent: int
    labels_pending: int  # labels drawn but not yet due
    actual_rate: float  # transactions per second over the last few seconds
    target_rate: float
    running: bool
    paused: bool
    finished: bool = False  # the source is exhausted (replay of a file)
    error: str | None = None
    cards: int = 0  # simulated cards active (0 for a file replay)
    cards_pending: int = 0  # cards being brought in for a higher rate (0 when none)


class Pacer:
    """Schedule-based rate control: message k is due at ``anchor_t + (k - anchor_k) / rate``.

    Sending whatever is owed at each wake-up keeps the long-run rate exact whatever the sleep
    granularity; a backlog longer than ``max_lag_s`` (the machine was busy) is forgiven rather than
    sent as one burst. An infinite rate means as fast as possible.
    """

    def __init__(self, rate: float, now: float, max_lag_s: float = 0.5) -> None:
        self.rate = rate
        self.max_lag_s = max_lag_s
        self.count = 0
        self._anchor_t = now
        self._anchor_k = 0

    def reset(self, now: float, rate: float | None = None) -> None:
        if rate is not None:
            self.rate = rate
        self._anchor_t = now
        self._anchor_k = self.count

    def owed(self, now: float, cap: int) -> int:
        if self.rate <= 0:
            return 0
        if math.isinf(self.rate):
            return cap
        owed = int(self.rate * (now - self._anchor_t)) + self._anchor_k - self.count
        if owed > self.rate * self.max_lag_s + 1:
            self.reset(now - self.max_lag_s)
            owed = int(self.rate * self.max_lag_s)
        return min(max(0, owed), cap)

    def due_time(self, k: int, now: float) -> float:
        """When the k-th message (1-based, counted since the start) was due."""
        if math.isinf(self.rate) or self.rate <= 0:
            return now
        return self._anchor_t + (k - self._anchor_k) / self.rate

    def next_due(self, now: float) -> float:
        return self.due_time(self.count + 1, now) if self.rate > 0 else float("inf")


class LiveGenerator:
    """Transactions to Kafka at a controlled, changeable rate, on its own thread.

    The source is the simulator (sized by ``settings``) unless another is given (replay of a
    file). All control methods are thread-safe.
    """

    BURST_MAX = 5_000  # messages per wake-up at most, so control calls are seen promptly
    QUANTUM_S = 0.005  # shortest sleep: messages go out in small bursts, not one by one
    CHECK_TIMEOUT_S = 10.0  # how long start() waits for the broker's metadata

    def __init__(
        self,
        settings: Settings,
        *,
        topic: str = Topics.TRANSACTIONS,
        labels_topic: str | None = Topics.LABELS,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        seed: int | None = None,
        rate: float | None = None,
        label_delay_s: float | None = None,
        run_id: int | None = None,
        source: Source | None = None,
        producer_factory: ProducerFactory | None = None,
        check_topics: bool | None = None,
    ) -> None:
        self.settings = settings
        self.topic = topic
        self.labels_topic = labels_topic
        self._clock = clock
        self._mono = monotonic
        seed = settings.generator_seed if seed is None else seed
        self._rate = float(settings.generator_rate if rate is None else rate)
        if not self._rate >= 0:
            raise ValueError("rate must be >= 0")
        if source is None:
            source = simulated_source(
                settings,
                self._rate,
                seed=seed,
                run_id=secrets.randbits(63) if run_id is None else run_id,
                start=clock(),
            )
        self._source: Source = source
        self._label_delay_s = (
            settings.generator_label_delay_s if label_delay_s is None else label_delay_s
        )
        self._label_rng = np.random.default_rng(np.random.SeedSequence([seed, _LABEL_STREAM]))
        self._producer_factory = producer_factory
        self._check = producer_factory is None if check_topics is None else check_topics
        self._lock = threading.Condition()
        self._rate_changed = False
        self._pending: tuple[float, int] | None = None  # (rate, cards) waiting for its cards
        self._builder: threading.Thread | None = None
        self._paused = False
        self._stop_requested = False
        self._thread: threading.Thread | None = None
        self._error: str | None = None
        self._labels: list[tuple[float, int, str, str | None]] = []
        self._label_seq = 0
        self._sent = self._acked = self._failed = 0
        self._labels_sent = self._labels_failed = 0
        self._samples: collections.deque[tuple[float, int]] = collections.deque(maxlen=64)
        self._format_ts = TimestampFormatter()
        self._last_ts_ms = 0

    # -- control (any thread) --------------------------------------------------------------
    @property
    def running(self) -> bool:
        """True while the sending thread is alive (also while paused)."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def rate(self) -> float:
        """Target transactions per second (inf = as fast as possible)."""
        return self._rate

    @property
    def source(self) -> Source:
        return self._source

    def start(self) -> None:
        """Start sending (no-op when running). Raises BrokerUnavailable when no broker answers and
        BrokerError when a topic is missing."""
        with self._lock:
            if self.running:
                return
        if self._check:
            self._check_topics()
        with self._lock:
            self._stop_requested = False
            self._error = None
            self._thread = threading.Thread(target=self._run, name="rtfd-generator", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> GeneratorStats:
        """Stop after flushing everything sent to the broker; returns the final stats."""
        with self._lock:
            self._stop_requested = True
            self._lock.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                log.warning("generator thread still flushing after %.0f s", timeout)
        return self.stats()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the thread ends by itself (a replay that is done); True if it ended."""
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def pause(self) -> None:
        """Stop sending transactions (labels that fall due keep flowing)."""
        with self._lock:
            self._paused = True
            self._lock.notify_all()

    def resume(self) -> None:
        """Continue where the pause left off, at the current rate (no catch-up burst)."""
        with self._lock:
            self._paused = False
            self._rate_changed = True
            self._lock.notify_all()

    def toggle(self) -> bool:
        """Start if stopped, else pause or resume; returns True when now sending."""
        if not self.running:
            self.resume()
            self.start()
            return True
        if self._paused:
            self.resume()
            return True
        self.pause()
        return False

    @property
    def cards(self) -> int:
        """Simulated cards active (0 when the source is a file)."""
        source = self._source
        return source.cards if isinstance(source, TransactionSource) else 0

    def set_rate(self, tx_per_s: float) -> None:
        """Change the target rate (inf = as fast as possible, for a file replay).

        With the simulator, the rate sets how many cards are active (:func:`cards_for_rate`):
        a lower rate takes effect within milliseconds; a higher one as soon as its new cards are
        drawn (a background thread; seconds for hundreds of thousands), until then the old rate
        and cards go on. Raises ValueError for a negative rate, ConfigError for one that needs
        more than ``generator_max_cards`` cards.
        """
        if not tx_per_s >= 0:
            raise ValueError("rate must be >= 0")
        source = self._source
        if not isinstance(source, TransactionSource) or tx_per_s == 0:
            self._apply_rate(float(tx_per_s), None)
            return
        cards = cards_for_rate(self.settings, tx_per_s)
        world = source.sim.world
        if world is None or world.built >= cards:
            self._apply_rate(float(tx_per_s), cards)
            return
        with self._lock:
            self._pending = (float(tx_per_s), cards)
            if self._builder is None or not self._builder.is_alive():
                self._builder = threading.Thread(
                    target=self._build_cards, name="rtfd-generator-cards", daemon=True
                )
                self._builder.start()

    def _apply_rate(self, rate: float, cards: int | None) -> None:
        with self._lock:
            self._pending = None
            self._rate = rate
            if cards is not None and isinstance(self._source, TransactionSource):
                self._source.set_cards(cards)
                self._source.chunk = window_rows(rate)
            self._rate_changed = True
            self._lock.notify_all()

    def _build_cards(self) -> None:
        """Draw the cards of the newest pending rate, then switch to it (latest call wins)."""
        source = self._source
        assert isinstance(source, TransactionSource) and source.sim.world is not None
        while True:
            with self._lock:
                pending = self._pending
            if pending is None:
                return
            rate, cards = pending
            t0 = time.monotonic()
            source.sim.world.population(cards)
            log.info("drew %d cards for %.0f tx/s in %.1f s", cards, rate, time.monotonic() - t0)
            with self._lock:
                if self._pending != pending:
                    continue  # a newer rate came in meanwhile
            self._apply_rate(rate, cards)

    def stats(self) -> GeneratorStats:
        """Counters and the measured rate over the last few seconds."""
        with self._lock:
            samples = list(self._samples)
            actual = 0.0
            if len(samples) >= 2:
                now_t, now_n = samples[-1]
                t0, n0 = next(s for s in samples if now_t - s[0] <= 5.0)
                if now_t > t0:
                    actual = (now_n - n0) / (now_t - t0)
            return GeneratorStats(
                sent=self._sent,
                acked=self._acked,
                failed=self._failed,
                labels_sent=self._labels_sent,
                labels_pending=len(self._labels),
                actual_rate=actual,
                target_rate=self._rate,
                running=self.running,
                paused=self._paused,
                finished=self._source.finished,
                error=self._error,
                cards=self.cards,
                cards_pending=self._pending[1] if self._pending is not None else 0,
            )

    # -- the sending thread ----------------------------------------------------------------
    def _check_topics(self) -> None:
        from rtfd.broker import bootstrap_servers, client_config
        from rtfd.broker.admin import check_topics

        check_topics(
            client_config(self.settings),
            [t for t in (self.topic, self.labels_topic) if t],
            self.CHECK_TIMEOUT_S,
            unavailable=f"no broker answers at {bootstrap_servers(self.settings)}; "
            "start it with `rtfd broker up`",
        )

    def _make_producer(self) -> ProducerLike:
        config = producer_config(self.settings, on_delivery=self._on_delivery)
        if self._producer_factory is not None:
            return self._producer_factory(config)
        from rtfd.broker.clients import producer

        return producer(config)  # type: ignore[no-any-return]

    def _on_delivery(self, err: Any, msg: Any) -> None:
        is_label = self.labels_topic is not None and msg.topic() == self.labels_topic
        if err is not None:
            log.warning("delivery to %s failed: %s", msg.topic(), err)
        with self._lock:
            if is_label:
                self._labels_failed += err is not None
            elif err is None:
                self._acked += 1
            else:
                self._failed += 1

    def _run(self) -> None:
        try:
            producer = self._make_producer()
        except Exception as e:
            log.exception("could not create the producer")
            self._error = f"producer: {e}"
            return
        try:
            self._loop(producer)
        except Exception as e:
            log.exception("generator failed")
            self._error = str(e)
        finally:
            remaining = producer.flush(30.0)
            if remaining:
                log.warning("%d messages were not delivered before the flush timeout", remaining)

    def _loop(self, producer: ProducerLike) -> None:
        pacer = Pacer(self._rate, self._mono())
        last_sample = 0.0
        while True:
            with self._lock:
                if self._stop_requested:
                    return
                paused, rate = self._paused, self._rate
                if self._rate_changed:
                    pacer.reset(self._mono(), rate)
                    self._rate_changed = False
            now = self._mono()
            self._send_due_labels(producer, now)
            finished = self._source.finished
            if finished and not self._labels:
                return  # a replay is done: everything, labels included, has been sent
            sending = not paused and rate > 0 and not finished
            if sending:
                owed = pacer.owed(now, self.BURST_MAX)
                if owed:
                    self._send_transactions(producer, pacer, owed, now)
            producer.poll(0)
            if now - last_sample >= 0.2:
                last_sample = now
                with self._lock:
                    self._samples.append((now, self._sent))
            wake = self._labels[0][0] if self._labels else float("inf")
            if sending:
                wake = min(wake, pacer.next_due(now))
            delay = min(max(wake - self._mono(), self.QUANTUM_S), 0.05)
            if sending and math.isinf(rate):
                continue  # as fast as possible: no sleep (produce() blocks when the queue is full)
            with self._lock:
                if not self._stop_requested and not self._rate_changed:
                    self._lock.wait(delay)

    def _send_transactions(self, producer: ProducerLike, pacer: Pacer, n: int, now: float) -> None:
        # The source hands out each row exactly once, so a pause or stop loses nothing.
        rows = self._source.take(n)
        wall = self._clock()
        fmt = self._format_ts
        topic = self.topic
        fraud_rows: list[Row] = []
        for i, row in enumerate(rows):
            timestamp = row.timestamp
            if timestamp is None:
                # Stamped with the wall time at which the message was due (never the future).
                due = pacer.due_time(pacer.count + i + 1, now)
                ts_ms = max(int((wall - max(0.0, now - due)) * 1000), self._last_ts_ms)
                self._last_ts_ms = ts_ms
                timestamp = fmt(ts_ms)
            value = finish_transaction(row.prefix, timestamp)
            self._produce(producer, topic, value, row.user_id.encode())
            if row.label:
                fraud_rows.append(row)
        pacer.count += len(rows)
        with self._lock:
            self._sent += len(rows)
        if fraud_rows and self.labels_topic:
            delays = draw_label_delays(self._label_rng, len(fraud_rows), self._label_delay_s)
            for row, d in zip(fraud_rows, delays, strict=True):
                self._label_seq += 1
                heapq.heappush(
                    self._labels,
                    (now + float(d), self._label_seq, row.transaction_id, row.fraud_type),
                )

    def _send_due_labels(self, producer: ProducerLike, now: float) -> None:
        if not self._labels or self._labels[0][0] > now or not self.labels_topic:
            return
        reported = self._format_ts(int(self._clock() * 1000))
        sent = 0
        while self._labels and self._labels[0][0] <= now:
            _, _, tid, fraud_type = heapq.heappop(self._labels)
            value = encode_label(tid, fraud_type, reported)
            self._produce(producer, self.labels_topic, value, tid.encode())
            sent += 1
        with self._lock:
            self._labels_sent += sent

    @staticmethod
    def _produce(producer: ProducerLike, topic: str, value: bytes, key: bytes) -> None:
        while True:
            try:
                producer.produce(topic, value=value, key=key)
                return
            except BufferError:
                # The local queue is full (the broker is slow or away): wait for deliveries.
                producer.poll(0.05)


def card_tx_per_s(settings: Settings) -> float:
    """Transactions per second of one live card: its simulated pace times the time-lapse."""
    per_day = expected_card_tx_per_day(settings.generator_fraud_rate)
    return per_day * settings.generator_time_scale / DAY_S


def cards_for_rate(settings: Settings, rate: float | None = None) -> int:
    """Cards the live generator keeps active at ``rate`` tx/s (default: the settings' rate).

    Raises ConfigError when that is more than ``generator_max_cards``, saying what to change.
    """
    from rtfd.errors import ConfigError

    rate = settings.generator_rate if rate is None else rate
    if not math.isfinite(rate):
        raise ConfigError("the simulator needs a finite rate (as fast as possible is for replay)")
    cards = max(1, math.ceil(rate / card_tx_per_s(settings)))
    if cards > settings.generator_max_cards:
        top = settings.generator_max_cards * card_tx_per_s(settings)
        raise ConfigError(
            f"a rate of {rate:,.0f} tx/s needs {cards:,} cards at time-lapse "
            f"{settings.generator_time_scale:g}, more than generator_max_cards "
            f"({settings.generator_max_cards:,}; at most {top:,.0f} tx/s): lower the rate, or "
            "raise generator_max_cards or generator_time_scale"
        )
    return cards


def max_rate(settings: Settings) -> float:
    """The highest rate ``generator_max_cards`` cards can make at the time-lapse."""
    return settings.generator_max_cards * card_tx_per_s(settings)


def simulated_source(
    settings: Settings, rate: float, *, seed: int, run_id: int, start: float
) -> TransactionSource:
    """The live generator's source: the cards ``rate`` implies, simulated from ``start``."""
    sim = Simulator.from_settings(settings, seed=seed, users=cards_for_rate(settings, rate))
    return TransactionSource(sim, start=start, run_id=run_id, chunk=window_rows(rate))


def live_sample(
    settings: Settings,
    rate: float,
    seconds: float,
    *,
    start: float,
    run_id: int = 0,
    seed: int | None = None,
) -> pd.DataFrame:
    """What the live generator sends in ``seconds`` at ``rate`` from ``start`` (epoch seconds),
    without Kafka: the same source, the same messages, each stamped with the time it is due.

    Returns the TRANSACTION columns (timestamp as aware UTC ``datetime64[ms]``) plus the ground
    truth ``label`` (1 = fraud) and ``fraud_type``, in sending order; ``frame.attrs["cards"]``
    is the number of active cards. For measuring what the stream sees at a rate (the share of
    transactions alerted, a card's pace) and for tests.
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.json as pj

    seed = settings.generator_seed if seed is None else seed
    source = simulated_source(settings, rate, seed=seed, run_id=run_id, start=start)
    n = round(rate * seconds)
    fmt = TimestampFormatter()
    tables, labels, types = [], [], []
    schema = TRANSACTION.arrow_schema()
    options = pj.ParseOptions(
        explicit_schema=pa.schema(
            [f.with_type(pa.string()) if f.name == "timestamp" else f for f in schema]
        )
    )
    for first in range(0, n, 100_000):
        rows = source.take(min(100_000, n - first))
        lines = [
            finish_transaction(row.prefix, fmt(int((start + (first + i + 1) / rate) * 1000)))
            for i, row in enumerate(rows)
        ]
        tables.append(pj.read_json(pa.py_buffer(b"\n".join(lines)), parse_options=options))
        labels += [int(row.label) for row in rows]
        types += [row.fraud_type for row in rows]
    frame = pa.concat_tables(tables).to_pandas() if tables else schema.empty_table().to_pandas()
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True, format="ISO8601").astype(
        "datetime64[ms, UTC]"
    )
    frame["label"] = np.array(labels, dtype=np.int8)
    frame["fraud_type"] = np.array(types, dtype=object)
    frame.attrs["cards"] = source.cards
    return frame


def window_rows(rate: float) -> int:
    """Rows per simulated window: about a second of traffic, so a change of cards is quick."""
    return int(np.clip(rate if math.isfinite(rate) else 2_000, 200, 20_000))


def produce_transactions(
    settings: Settings,
    n: int,
    *,
    seed: int | None = None,
    topic: str = Topics.TRANSACTIONS,
    labels: bool = True,
    labels_topic: str = Topics.LABELS,
    malformed_share: float = 0.0,
    run_id: int | None = None,
    timeout: float = 120.0,
    clock: Callable[[], float] = time.time,
    producer_factory: ProducerFactory | None = None,
) -> list[str]:
    """Produce ``n`` messages of simulated transactions as fast as possible; return the ids of
    the valid ones, in order.

    With ``malformed_share`` > 0, about that share of the ``n`` messages are malformed (bad JSON,
    a wrong type, a missing field, a negative amount) at random positions; ``n - len(result)``
    is how many. With ``labels``, a LABEL record (``reported_at`` = now) goes to ``labels_topic``
    for each valid fraudulent transaction, after the transactions. Raises BrokerError unless
    every message is acknowledged within ``timeout`` seconds.
    """
    from rtfd.errors import BrokerError

    if n < 0 or not 0.0 <= malformed_share < 1.0:
        raise ValueError("need n >= 0 and 0 <= malformed_share < 1")
    sim = Simulator.from_settings(settings, seed=seed)
    source = TransactionSource(
        sim,
        start=clock(),
        run_id=secrets.randbits(63) if run_id is None else run_id,
        chunk=max(2_000, min(n, 200_000)),
    )
    rng = np.random.default_rng(np.random.SeedSequence([sim.seed, 0x424144, n]))  # "BAD"
    n_bad = round(n * malformed_share)
    bad_at = set(rng.choice(n, size=n_bad, replace=False).tolist()) if n_bad else set()
    failures: list[str] = []

    def on_delivery(err: Any, msg: Any) -> None:
        if err is not None:
            failures.append(str(err))

    config = producer_config(settings, on_delivery=on_delivery)
    from rtfd.broker.clients import producer as default_producer

    producer: ProducerLike = (producer_factory or default_producer)(config)
    fmt = TimestampFormatter()
    valid: list[str] = []
    fraud: list[Row] = []
    rows = source.take(n)
    for i, row in enumerate(rows):
        ts = fmt(int(clock() * 1000))
        value = finish_transaction(row.prefix, ts)
        if i in bad_at:
            value = malform(value, int(rng.integers(0, len(MALFORMATIONS))))
        else:
            valid.append(row.transaction_id)
            if row.fraud_type is not None:
                fraud.append(row)
        LiveGenerator._produce(producer, topic, value, row.user_id.encode())
        if i % 10_000 == 0:
            producer.poll(0)
    if labels and fraud:
        reported = fmt(int(clock() * 1000))
        for row in fraud:
            LiveGenerator._produce(
                producer,
                labels_topic,
                encode_label(row.transaction_id, row.fraud_type, reported),
                row.transaction_id.encode(),
            )
    remaining = producer.flush(timeout)
    if remaining or failures:
        raise BrokerError(
            f"{remaining} messages undelivered after {timeout:.0f} s, {len(failures)} failed"
            + (f" (first: {failures[0]})" if failures else "")
        )
    return valid


MALFORMATIONS = ("malformed_json", "type:amount", "missing:merchant_id", "range:amount")


def malform(value: bytes, kind: int) -> bytes:
    """Break a valid transaction message in one of the MALFORMATIONS ways."""
    import json

    if kind == 0:
        return value[: len(value) // 2]
    record = json.loads(value)
    if kind == 1:
        record["amount"] = f"{record['amount']} EUR"
    elif kind == 2:
        del record["merchant_id"]
    else:
        record["amount"] = -abs(record["amount"])
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
