"""Read Shard's own Prometheus counters: draft acceptance by source, scouts connected.

Acceptance is the oracle's verdict on each draft token, so the benchmark reads it from the
oracle rather than guessing it from timings: the change of
`shard_draft_tokens_accepted_total{source}` over `shard_draft_tokens_proposed_total{source}`
across a workload.
"""

from dataclasses import dataclass, field

import httpx
from prometheus_client.parser import text_string_to_metric_families

PROPOSED = "shard_draft_tokens_proposed_total"
ACCEPTED = "shard_draft_tokens_accepted_total"
SCOUTS_CONNECTED = "shard_scouts_connected"


@dataclass(frozen=True)
class DraftCounts:
    """Draft tokens proposed and accepted so far, by source ("ngram", "scout")."""

    proposed: dict[str, float] = field(default_factory=dict)
    accepted: dict[str, float] = field(default_factory=dict)

    def since(self, earlier: "DraftCounts") -> "DraftCounts":
        """What was counted between `earlier` and this reading."""
        return DraftCounts(
            {s: n - earlier.proposed.get(s, 0.0) for s, n in self.proposed.items()},
            {s: n - earlier.accepted.get(s, 0.0) for s, n in self.accepted.items()},
        )

    def __add__(self, other: "DraftCounts") -> "DraftCounts":
        sources = {*self.proposed, *other.proposed}
        return DraftCounts(
            {s: self.proposed.get(s, 0.0) + other.proposed.get(s, 0.0) for s in sources},
            {s: self.accepted.get(s, 0.0) + other.accepted.get(s, 0.0) for s in sources},
        )

    def acceptance(self, source: str) -> float | None:
        """Share of the source's proposed tokens that were accepted; None if it proposed none."""
        proposed = self.proposed.get(source, 0.0)
        return self.accepted.get(source, 0.0) / proposed if proposed else None


def parse_draft_counts(exposition: str) -> DraftCounts:
    """The draft counters in a Prometheus text exposition."""
    counts = DraftCounts()
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            target = {PROPOSED: counts.proposed, ACCEPTED: counts.accepted}.get(sample.name)
            if target is not None and "source" in sample.labels:
                target[sample.labels["source"]] = sample.value
    return counts


def parse_scouts_connected(exposition: str) -> int | None:
    """The connected-scouts gauge, or None if this oracle does not export it."""
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == SCOUTS_CONNECTED:
                return int(sample.value)
    return None


async def read_exposition(base_url: str, api_key: str) -> str:
    """GET /metrics (with the key, in case the oracle requires an admin for it)."""
    async with httpx.AsyncClient(base_url=base_url, timeout=30.0) as http:
        response = await http.get("/metrics", headers={"Authorization": f"Bearer {api_key}"})
        response.raise_for_status()
        return response.text


async def draft_counts(base_url: str, api_key: str) -> DraftCounts:
    """The oracle's draft counters now."""
    return parse_draft_counts(await read_exposition(base_url, api_key))


async def scouts_connected(base_url: str, api_key: str) -> int:
    """How many scouts the oracle has now: the larger of its gauge and /system/status's
    count, so either one being wired up is enough."""
    gauge = parse_scouts_connected(await read_exposition(base_url, api_key)) or 0
    async with httpx.AsyncClient(base_url=base_url, timeout=30.0) as http:
        response = await http.get("/system/status", headers={"Authorization": f"Bearer {api_key}"})
        response.raise_for_status()
        status = int((response.json().get("scouts") or {}).get("connected") or 0)
    return max(gauge, status)
