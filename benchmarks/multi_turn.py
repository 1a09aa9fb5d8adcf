"""Section: a multi-turn chat, where each request resends the whole history and a server that
keeps the history's KV cache only has to process the newest turn.

One client holds an N-turn chat with each server in turn (a fresh start each): a story request
on a topic that differs per run, then short follow-ups. Every turn sends the history so far,
with the server's own streamed replies, sampled at temperature 0.7 with a seed fixed per
(run, turn). Time to first token per turn shows whether it stays flat as the history grows:
Shard copies the longest cached prefix into the new request's sequence, llama-server reuses
its slot's cached prompt (`cache_prompt`, on by default).
"""

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial

from benchmarks.chat_client import connect
from benchmarks.harness import Harness, Journal, measured_on_fresh_server
from benchmarks.servers import (
    ServerConfig,
    free_port,
    launch_spec,
)
from benchmarks.workload import TOPICS, WARMUP_PROMPT

MULTI_TURN_SERVERS: tuple[str, ...] = ("shard", "llama-server", "llama-server-ngram")
OPENING = "Tell me a story about {topic}."
FOLLOW_UPS: tuple[str, ...] = (
    "Tell me more.",
    "What happened next?",
    "Describe the place in more detail.",
    "Who else was there?",
    "How did it feel?",
    "What went wrong?",
    "How did it end?",
)
TEMPERATURE = 0.7
TTFT_TARGET = 1.1  # Shard's TTFT at the last two turns over llama-server's, at most
FLAT_LIMIT = 1.5  # Shard's TTFT at the last turn over turn 2's, at most, to count as flat
FLAT_FROM_TURN = 2  # turn 1 has no history to reuse
TURN_OVERHEAD = 30  # tokens of a user message and the chat template's markers, about


def chat_tokens(turns: int, max_tokens: int) -> int:
    """About the most tokens a chat's last request takes, its reply included: each turn adds
    a user message and a reply of up to max_tokens (150 + 30 a turn: 8 turns fit in 2048)."""
    return turns * (max_tokens + TURN_OVERHEAD)


def user_messages(run: int, turns: int) -> list[str]:
    """The user's side of one run's chat: a story request (its topic differs per run) and
    then the follow-ups, `turns` messages in all."""
    if not 1 <= turns <= 1 + len(FOLLOW_UPS):
        raise ValueError(f"turns must be 1 to {1 + len(FOLLOW_UPS)}")
    topic = TOPICS[(run * 7 + 3) % len(TOPICS)]
    return [OPENING.format(topic=topic), *FOLLOW_UPS[: turns - 1]]


def turn_seed(run: int, turn: int) -> int:
    """The seed of one turn's request: fixed per (run, turn), the same for every server."""
    return 7001 + 101 * run + turn


@dataclass(frozen=True)
class MultiTurnPlan:
    """Which servers, how many turns, how long each reply may be."""

    servers: tuple[str, ...]
    turns: int
    max_tokens: int


@dataclass(frozen=True)
class TurnSample:
    """One turn of one run's chat with one server."""

    server: str
    run: int
    turn: int  # from 1
    ttft_s: float  # the whole latency when the reply had no content
    latency_s: float
    completion_tokens: int
    prompt_tokens: int | None  # from the streamed usage
    cached_tokens: int | None  # usage.prompt_tokens_details.cached_tokens, if the server sent it


@dataclass
class MultiTurnOutcome:
    """Every turn measured, and the CPU other processes took while each server was measured."""

    samples: list[TurnSample] = field(default_factory=list)
    other_cpu: dict[str, float | None] = field(default_factory=dict)


@dataclass(frozen=True)
class TurnRow:
    """One turn over all runs: medians per server (absent: the server was not measured)."""

    turn: int
    ttft_s: dict[str, float]
    prompt_tokens: dict[str, int | None]
    cached_tokens: dict[str, int | None]


def _median_int(values: Sequence[int | None]) -> int | None:
    present = [value for value in values if value is not None]
    return round(statistics.median(present)) if present else None


def summarize_multi_turn(outcome: MultiTurnOutcome) -> list[TurnRow]:
    """Medians over runs for every turn and server, turns in order."""
    groups: dict[int, dict[str, list[TurnSample]]] = {}
    for sample in outcome.samples:
        groups.setdefault(sample.turn, {}).setdefault(sample.server, []).append(sample)
    return [
        TurnRow(
            turn=turn,
            ttft_s={name: statistics.median(s.ttft_s for s in runs) for name, runs in by.items()},
            prompt_tokens={
                name: _median_int([s.prompt_tokens for s in runs]) for name, runs in by.items()
            },
            cached_tokens={
                name: _median_int([s.cached_tokens for s in runs]) for name, runs in by.items()
            },
        )
        for turn, by in sorted(groups.items())
    ]


def last_turns_ratio(
    rows: Sequence[TurnRow], server: str, peer: str, last: int = 2
) -> float | None:
    """The server's median TTFTs summed over the last `last` turns, over the peer's; None
    unless both were measured at each of them."""
    tail = rows[-last:]
    if not tail or any(server not in r.ttft_s or peer not in r.ttft_s for r in tail):
        return None
    theirs = sum(r.ttft_s[peer] for r in tail)
    return sum(r.ttft_s[server] for r in tail) / theirs if theirs > 0 else None


def growth(rows: Sequence[TurnRow], server: str) -> float | None:
    """The server's TTFT at the last turn over its TTFT at turn FLAT_FROM_TURN; None with
    fewer than FLAT_FROM_TURN + 1 turns (nothing to compare) or without both figures."""
    by_turn = {row.turn: row.ttft_s.get(server) for row in rows}
    if not rows or rows[-1].turn <= FLAT_FROM_TURN:
        return None
    first, last = by_turn.get(FLAT_FROM_TURN), by_turn.get(rows[-1].turn)
    return last / first if first and last is not None else None


async def _chat(
    base_url: str, api_key: str, server: str, plan: MultiTurnPlan, runs: int
) -> list[TurnSample]:
    """Every run's chat with one ready server, turn by turn."""
    client = await connect(base_url, api_key)
    samples: list[TurnSample] = []
    try:
        await client.complete(WARMUP_PROMPT, 8)
        for run in range(runs):
            history: list[dict[str, str]] = []
            for turn, message in enumerate(user_messages(run, plan.turns), start=1):
                history.append({"role": "user", "content": message})
                sampling = {"temperature": TEMPERATURE, "seed": turn_seed(run, turn)}
                answer = await client.complete(history, plan.max_tokens, sampling)
                history.append({"role": "assistant", "content": answer.text})
                ttft = answer.first_token_s
                samples.append(
                    TurnSample(
                        server=server,
                        run=run,
                        turn=turn,
                        ttft_s=answer.latency_s if ttft is None else ttft,
                        latency_s=answer.latency_s,
                        completion_tokens=answer.completion_tokens,
                        prompt_tokens=answer.prompt_tokens,
                        cached_tokens=answer.cached_tokens,
                    )
                )
                print(
                    f"  {server} run {run + 1} turn {turn}: TTFT {samples[-1].ttft_s:.3f} s, "
                    f"{answer.prompt_tokens} prompt tokens ({answer.cached_tokens} cached), "
                    f"{answer.completion_tokens} completion tokens",
                    flush=True,
                )
    finally:
        await client.aclose()
    return samples


def run_multi_turn(
    plan: MultiTurnPlan, config: ServerConfig, harness: Harness, journal: Journal
) -> MultiTurnOutcome:
    """Every server in turn, each freshly started; one that fails is recorded and skipped."""
    outcome = MultiTurnOutcome()
    for name in plan.servers:
        label = f"{name}, multi-turn"
        journal.before_start(label, harness)
        port = free_port()
        spec = launch_spec(name, config, port)
        journal.launch_commands[label] = spec.display(port)
        measured = measured_on_fresh_server(
            label,
            spec,
            harness.log_dir / f"{name}-multi-turn.log",
            harness,
            journal,
            partial(_chat, api_key=config.api_key, server=name, plan=plan, runs=harness.runs),
        )
        if measured is not None:
            samples, outcome.other_cpu[name] = measured
            outcome.samples += samples
    return outcome
