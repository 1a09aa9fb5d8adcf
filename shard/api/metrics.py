"""What the oracle has been doing: Prometheus series for scrapers and a rolling minute for
/system/status. One registry per app, so several apps in one process never collide."""

import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from shard.engine.types import DraftOutcome

_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 40, 80, 160)
_WINDOW_SECONDS = 60.0


@dataclass(frozen=True)
class _Finished:
    at: float
    latency: float
    completion_tokens: int


_HISTORY_MINUTES = 10


@dataclass
class MinuteCount:
    """Requests finished and completion tokens made in one wall-clock minute."""

    minute: int
    """Unix time of the minute's start."""
    requests: int = 0
    tokens: int = 0


@dataclass(frozen=True)
class RecentPerformance:
    """The last minute, as /system/status reports it."""

    requests_per_minute: int
    average_latency_ms: float
    tokens_per_second: float


class OracleMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "shard_chat_requests",
            "Chat completion requests by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.prompt_tokens = Counter(
            "shard_prompt_tokens", "Prompt tokens processed", registry=self.registry
        )
        self.completion_tokens = Counter(
            "shard_completion_tokens", "Completion tokens generated", registry=self.registry
        )
        self.latency = Histogram(
            "shard_chat_request_seconds",
            "Time from admission to the last token",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.first_token = Histogram(
            "shard_time_to_first_token_seconds",
            "Time from admission to the first token",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.drafts_proposed = Counter(
            "shard_draft_tokens_proposed",
            "Draft tokens offered for verification, by source",
            ["source"],
            registry=self.registry,
        )
        self.drafts_accepted = Counter(
            "shard_draft_tokens_accepted",
            "Draft tokens the oracle's own sampling confirmed, by source",
            ["source"],
            registry=self.registry,
        )
        self.scouts_connected = Gauge(
            "shard_scouts_connected", "Scouts connected now", registry=self.registry
        )
        self.in_flight = Gauge(
            "shard_requests_in_flight", "Requests admitted and not finished", registry=self.registry
        )
        self._recent: deque[_Finished] = deque()
        self._minutes: deque[MinuteCount] = deque(maxlen=_HISTORY_MINUTES)
        self.draft_totals = [0, 0]
        """Draft tokens verified and accepted since start, every source together."""
        self.started = time.time()

    def count_drafts(self, reports: Sequence[object]) -> None:
        """EngineClient listener: timely draft tokens scored and accepted, per source (late
        scout drafts are left out: they could be copied from the answer)."""
        for report in reports:
            if isinstance(report, DraftOutcome) and report.timely:
                self.drafts_proposed.labels(report.source).inc(report.proposed)
                self.drafts_accepted.labels(report.source).inc(report.accepted)
                self.draft_totals[0] += report.proposed
                self.draft_totals[1] += report.accepted

    @property
    def acceptance_rate(self) -> float | None:
        proposed, accepted = self.draft_totals
        return round(accepted / proposed, 4) if proposed else None

    def finished(self, latency: float, prompt_tokens: int, completion_tokens: int) -> None:
        self.requests.labels("ok").inc()
        self.latency.observe(latency)
        self.prompt_tokens.inc(prompt_tokens)
        self.completion_tokens.inc(completion_tokens)
        now = time.time()
        self._recent.append(_Finished(now, latency, completion_tokens))
        minute = int(now // 60 * 60)
        if not self._minutes or self._minutes[-1].minute != minute:
            self._minutes.append(MinuteCount(minute))
        self._minutes[-1].requests += 1
        self._minutes[-1].tokens += completion_tokens

    def history(self) -> list[MinuteCount]:
        """The last ten minutes, oldest first, one entry a minute (zero where idle)."""
        now = int(time.time() // 60 * 60)
        counted = {count.minute: count for count in self._minutes}
        minutes = range(now - 60 * (_HISTORY_MINUTES - 1), now + 1, 60)
        return [counted.get(minute, MinuteCount(minute)) for minute in minutes]

    def drafts_by_source(self) -> dict[str, dict[str, float]]:
        """Timely draft tokens proposed and accepted since start, per source."""
        found: dict[str, dict[str, float]] = {}
        for counter, field in (
            (self.drafts_proposed, "proposed"),
            (self.drafts_accepted, "accepted"),
        ):
            for metric in counter.collect():
                for sample in metric.samples:
                    if sample.name.endswith("_total"):
                        found.setdefault(sample.labels["source"], {})[field] = sample.value
        return found

    def failed(self, outcome: str) -> None:
        self.requests.labels(outcome).inc()

    def recent(self) -> RecentPerformance:
        cutoff = time.time() - _WINDOW_SECONDS
        while self._recent and self._recent[0].at < cutoff:
            self._recent.popleft()
        items = list(self._recent)
        if not items:
            return RecentPerformance(0, 0.0, 0.0)
        latency = sum(i.latency for i in items) / len(items)
        tokens = sum(i.completion_tokens for i in items)
        span = min(_WINDOW_SECONDS, max(time.time() - self.started, 1.0))
        return RecentPerformance(len(items), round(latency * 1000, 1), round(tokens / span, 2))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
