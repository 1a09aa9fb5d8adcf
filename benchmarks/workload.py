"""The measured workload: N concurrent greedy clients, each sending requests back to back.

Every (client, request) pair gets its own prompt, so no server wins by replaying a cached
prompt; only the chat template's few leading tokens are shared between requests.
"""

import asyncio
import math
import time
from dataclasses import dataclass

import httpx

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


@dataclass(frozen=True)
class RequestResult:
    """One finished request: how long it took and how many tokens it produced."""

    latency_s: float
    completion_tokens: int


@dataclass(frozen=True)
class LevelResult:
    """Aggregate figures for one server at one concurrency."""

    server: str
    clients: int
    requests: int
    completion_tokens: int
    elapsed_s: float
    latency_p50_s: float
    latency_p95_s: float
    other_cpu: float | None = None  # share of all cores other processes used meanwhile

    @property
    def tokens_per_s(self) -> float:
        """Aggregate completion tokens per wall-clock second across all clients."""
        return self.completion_tokens / self.elapsed_s


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile: always a latency that was actually measured."""
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


class ApiClient:
    """Thin async chat-completions caller; raw httpx keeps client overhead out of the timing."""

    def __init__(self, base_url: str, api_key: str, model: str) -> None:
        self.model = model
        self._http = httpx.AsyncClient(
            base_url=base_url,
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=httpx.Timeout(900.0, connect=10.0),
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=256),
        )

    async def chat(self, prompt: str, max_tokens: int) -> RequestResult:
        """One greedy, non-streaming completion; tokens come from the server's own usage."""
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
            "temperature": 0,
            "max_tokens": max_tokens,
            "stream": False,
        }
        started = time.perf_counter()
        response = await self._http.post("/v1/chat/completions", json=body)
        latency = time.perf_counter() - started
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}: {response.text[:500]}")
        tokens = int(response.json()["usage"]["completion_tokens"])
        return RequestResult(latency, tokens)

    async def aclose(self) -> None:
        """Close pooled connections before the server is stopped."""
        await self._http.aclose()


async def served_model_id(base_url: str, api_key: str) -> str:
    """The id the server lists first: the name each server itself expects in `model`."""
    async with httpx.AsyncClient(base_url=base_url, timeout=30.0) as http:
        response = await http.get("/v1/models", headers={"Authorization": f"Bearer {api_key}"})
        response.raise_for_status()
        model_id: str = response.json()["data"][0]["id"]
        return model_id


async def _client_loop(
    api: ApiClient, client: int, workload: Workload, deadline: float | None
) -> list[RequestResult]:
    """Sequential requests for one client: a fixed count, or until the deadline passes
    (at least one request, so every client contributes a latency)."""
    results: list[RequestResult] = []
    request = 0
    while True:
        if deadline is None and request >= workload.requests_per_client:
            break
        if deadline is not None and request > 0 and time.perf_counter() >= deadline:
            break
        results.append(await api.chat(prompt_for(client, request), workload.max_tokens))
        request += 1
    return results


async def measure(
    server: str, base_url: str, api_key: str, workload: Workload, warmup: bool = True
) -> LevelResult:
    """Run one concurrency level against a ready server and summarise it."""
    api = ApiClient(base_url, api_key, await served_model_id(base_url, api_key))
    try:
        if warmup:
            await api.chat(WARMUP_PROMPT, workload.max_tokens)
        started = time.perf_counter()
        deadline = started + workload.duration_s if workload.duration_s else None
        per_client = await asyncio.gather(
            *(_client_loop(api, client, workload, deadline) for client in range(workload.clients))
        )
        elapsed = time.perf_counter() - started
    finally:
        await api.aclose()
    results = [result for client_results in per_client for result in client_results]
    latencies = [result.latency_s for result in results]
    return LevelResult(
        server=server,
        clients=workload.clients,
        requests=len(results),
        completion_tokens=sum(result.completion_tokens for result in results),
        elapsed_s=elapsed,
        latency_p50_s=percentile(latencies, 0.50),
        latency_p95_s=percentile(latencies, 0.95),
    )
