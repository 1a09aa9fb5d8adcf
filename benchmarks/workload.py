"""The measured workload: N concurrent streaming clients, each sending requests back to back
with one sampling preset (greedy, or sampled with a seed per request), and its figures
(tokens/s, latency, time to first token, decode rate), per run and as medians over runs.

Every (client, request) pair gets its own prompt, so no server wins by replaying a cached
prompt; only the chat template's few leading tokens are shared between requests.
"""

import asyncio
import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

from benchmarks.chat_client import ChatClient, StreamedCompletion, connect
from benchmarks.sampling import GREEDY, Sampling, seed_for

TOPICS: tuple[str, ...] = (
    "a lighthouse keeper", "the first rain on Mars", "a clockmaker's apprentice",
    "a library that never closes", "an old fishing boat", "a city made of glass",
    "a fox who learns to read", "the last train of the night", "a garden on a rooftop",
    "a violin found in an attic", "a cartographer lost at sea", "a robot that bakes bread",
    "a winter festival in the mountains", "a letter delivered fifty years late",
    "a beekeeper and her hives", "a bridge between two islands", "a forgotten spaceship",
    "a market at dawn", "a detective who hates coffee", "a tree that remembers everything",
    "a desert caravan", "the invention of the bicycle", "a quiet volcano", "a chess champion",
    "a whale singing under the ice", "a potter's wheel", "an astronaut's first day home",
    "a river that flows uphill", "a village without clocks", "a paper airplane contest",
    "a dragon afraid of heights", "the smell of old books",
)  # fmt: skip
TASKS: tuple[str, ...] = (
    "Write a short story about {topic}.",
    "Describe {topic} in vivid detail.",
    "Write a poem about {topic}.",
    "Explain to a child what makes {topic} interesting.",
    "Write a news report about {topic}.",
)


def prompt_for(client: int, request: int) -> str:
    """A distinct prompt per (client, request): walk topics by tasks, then add a variant."""
    index = client * 1009 + request  # clients far apart, so their sequences never overlap
    topic = TOPICS[index % len(TOPICS)]
    task = TASKS[(index // len(TOPICS)) % len(TASKS)]
    variant = index // (len(TOPICS) * len(TASKS))
    text = task.format(topic=topic)
    return f"{text} (Variant {variant}.)" if variant else text


WARMUP_PROMPT = "Say hello in one sentence."


@dataclass(frozen=True)
class Workload:
    """What every client does; identical for every server."""

    clients: int
    requests_per_client: int
    duration_s: float | None
    max_tokens: int
    time_limit_s: float | None = None  # give up on the level (TimeLimitExceeded) past this
    sampling: Sampling = GREEDY


class TimeLimitExceeded(RuntimeError):
    """A level's requests did not finish in the time allowed: the server is far too slow
    for the figure to be worth waiting for."""


@dataclass(frozen=True)
class LevelResult:
    """Figures for one server with one sampling preset at one concurrency in one run."""

    server: str
    sampling: str  # the preset's name
    clients: int
    requests: int
    completion_tokens: int
    elapsed_s: float
    latency_p50_s: float
    latency_p95_s: float
    ttft_p50_s: float
    ttft_p95_s: float
    decode_tokens_per_s: float | None  # median over requests; None if none made two tokens
    tokens_from_usage: bool  # False: some tokens were counted as streamed chunks
    other_cpu: float | None = None  # share of all cores other processes used meanwhile

    @property
    def tokens_per_s(self) -> float:
        """Aggregate completion tokens per wall-clock second across all clients."""
        return self.completion_tokens / self.elapsed_s


@dataclass(frozen=True)
class LevelSummary:
    """One server with one sampling preset at one concurrency over several runs: medians, so
    one noisy run cannot decide a comparison; the tokens/s range shows how much runs
    disagreed."""

    server: str
    sampling: str
    clients: int
    runs: int
    tokens_per_s: float
    tokens_per_s_min: float
    tokens_per_s_max: float
    latency_p50_s: float
    latency_p95_s: float
    ttft_p50_s: float
    ttft_p95_s: float
    decode_tokens_per_s: float | None
    requests: int  # per run
    completion_tokens: int  # per run (median)
    tokens_from_usage: bool
    other_cpu: float | None  # the most any run saw


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile: always a value that was actually measured."""
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def _median_or_none(values: Sequence[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return statistics.median(present) if present else None


def summarize(results: Sequence[LevelResult]) -> list[LevelSummary]:
    """Medians over runs for every (server, sampling, clients), in first-measured order."""
    groups: dict[tuple[str, str, int], list[LevelResult]] = {}
    for result in results:
        groups.setdefault((result.server, result.sampling, result.clients), []).append(result)
    summaries = []
    for (server, sampling, clients), runs in groups.items():
        rates = [run.tokens_per_s for run in runs]
        summaries.append(
            LevelSummary(
                server=server,
                sampling=sampling,
                clients=clients,
                runs=len(runs),
                tokens_per_s=statistics.median(rates),
                tokens_per_s_min=min(rates),
                tokens_per_s_max=max(rates),
                latency_p50_s=statistics.median(run.latency_p50_s for run in runs),
                latency_p95_s=statistics.median(run.latency_p95_s for run in runs),
                ttft_p50_s=statistics.median(run.ttft_p50_s for run in runs),
                ttft_p95_s=statistics.median(run.ttft_p95_s for run in runs),
                decode_tokens_per_s=_median_or_none([run.decode_tokens_per_s for run in runs]),
                requests=round(statistics.median(run.requests for run in runs)),
                completion_tokens=round(statistics.median(run.completion_tokens for run in runs)),
                tokens_from_usage=all(run.tokens_from_usage for run in runs),
                other_cpu=max(
                    (run.other_cpu for run in runs if run.other_cpu is not None), default=None
                ),
            )
        )
    return summaries


async def _client_loop(
    api: ChatClient, client: int, workload: Workload, deadline: float | None
) -> list[StreamedCompletion]:
    """Sequential requests for one client: a fixed count, or until the deadline passes
    (at least one request, so every client contributes a latency)."""
    results: list[StreamedCompletion] = []
    request = 0
    while True:
        if deadline is None and request >= workload.requests_per_client:
            break
        if deadline is not None and request > 0 and time.perf_counter() >= deadline:
            break
        sampling = workload.sampling.body(seed_for(client, request))
        results.append(
            await api.complete(prompt_for(client, request), workload.max_tokens, sampling)
        )
        request += 1
    return results


async def measure(
    server: str, base_url: str, api_key: str, workload: Workload, warmup: bool = True
) -> LevelResult:
    """Run one concurrency level against a ready server and summarise it."""
    api = await connect(base_url, api_key)
    try:
        if warmup:
            await api.complete(WARMUP_PROMPT, workload.max_tokens)
        started = time.perf_counter()
        deadline = started + workload.duration_s if workload.duration_s else None
        clients = asyncio.gather(
            *(_client_loop(api, client, workload, deadline) for client in range(workload.clients))
        )
        try:
            per_client = await asyncio.wait_for(clients, workload.time_limit_s)
        except TimeoutError:
            raise TimeLimitExceeded(
                f"{workload.clients} clients did not finish {workload.requests_per_client} "
                f"requests each in {workload.time_limit_s:g} s"
            ) from None
        elapsed = time.perf_counter() - started
    finally:
        await api.aclose()
    results = [result for client_results in per_client for result in client_results]
    latencies = [result.latency_s for result in results]
    # A request that streamed no content has no first token; its whole latency stands in.
    ttfts = [
        result.first_token_s if result.first_token_s is not None else result.latency_s
        for result in results
    ]
    return LevelResult(
        server=server,
        sampling=workload.sampling.name,
        clients=workload.clients,
        requests=len(results),
        completion_tokens=sum(result.completion_tokens for result in results),
        elapsed_s=elapsed,
        latency_p50_s=percentile(latencies, 0.50),
        latency_p95_s=percentile(latencies, 0.95),
        ttft_p50_s=percentile(ttfts, 0.50),
        ttft_p95_s=percentile(ttfts, 0.95),
        decode_tokens_per_s=_median_or_none([result.decode_tokens_per_s for result in results]),
        tokens_from_usage=all(result.tokens_from_usage for result in results),
    )
