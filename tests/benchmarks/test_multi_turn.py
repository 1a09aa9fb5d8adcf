"""The multi-turn chat resends the whole history with the server's own replies, and the report
shows per-turn medians, the TTFT target against llama-server and whether Shard stays flat."""

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from benchmarks import multi_turn
from benchmarks.chat_client import ChatClient
from benchmarks.harness import Journal
from benchmarks.multi_turn import (
    FOLLOW_UPS,
    MultiTurnOutcome,
    MultiTurnPlan,
    TurnSample,
    chat_tokens,
    growth,
    last_turns_ratio,
    summarize_multi_turn,
    turn_seed,
    user_messages,
)
from benchmarks.report import RunInfo, SuiteResults, markdown


def test_each_run_opens_with_its_own_topic_then_follows_up() -> None:
    first, second = user_messages(0, 8), user_messages(1, 8)
    assert first[0].startswith("Tell me a story about ") and first[0] != second[0]
    assert first[1:] == second[1:] == list(FOLLOW_UPS)
    assert user_messages(2, 2) == [user_messages(2, 8)[0], "Tell me more."]
    with pytest.raises(ValueError):
        user_messages(0, 9)
    assert turn_seed(0, 1) != turn_seed(0, 2) != turn_seed(1, 1)
    assert chat_tokens(8, 150) <= 2048  # the default chat fits the default context


def turn(
    server: str, run: int, number: int, ttft: float, prompt: int, cached: int | None = None
) -> TurnSample:
    return TurnSample(server, run, number, ttft, ttft + 1.0, 150, prompt, cached)


def outcome(shard: list[list[float]], peer: list[list[float]]) -> MultiTurnOutcome:
    """TTFTs per run and turn for Shard and llama-server; prompts grow 180 tokens a turn."""
    samples = []
    for name, runs in (("shard", shard), ("llama-server", peer)):
        for run, ttfts in enumerate(runs):
            for number, ttft in enumerate(ttfts, start=1):
                cached = 180 * (number - 1) + run if name == "shard" else None
                samples.append(turn(name, run, number, ttft, 20 + 180 * (number - 1), cached))
    return MultiTurnOutcome(samples, {"shard": 0.01, "llama-server": 0.02})


def test_turns_are_medians_over_runs() -> None:
    rows = summarize_multi_turn(
        outcome(
            shard=[[0.05, 0.06, 0.07], [0.04, 0.08, 0.09], [0.09, 0.07, 0.08]],
            peer=[[0.05, 0.10, 0.20], [0.06, 0.12, 0.22], [0.05, 0.11, 0.21]],
        )
    )
    assert [row.turn for row in rows] == [1, 2, 3]
    assert rows[0].ttft_s == {"shard": 0.05, "llama-server": 0.05}
    assert rows[1].ttft_s["shard"] == 0.07 and rows[2].ttft_s["llama-server"] == 0.21
    assert rows[2].prompt_tokens == {"shard": 380, "llama-server": 380}
    assert rows[2].cached_tokens == {"shard": 361, "llama-server": None}  # median of 360-362
    # last two turns: (0.07 + 0.08) / (0.11 + 0.21)
    assert last_turns_ratio(rows, "shard", "llama-server") == pytest.approx(0.15 / 0.32)
    assert growth(rows, "shard") == pytest.approx(0.08 / 0.07)
    assert growth(rows[:2], "shard") is None  # turn 2 is the base: nothing to compare yet
    assert last_turns_ratio(rows, "shard", "llama-server-ngram") is None


@pytest.fixture
def info(tmp_path: Path) -> RunInfo:
    model = tmp_path / "model.gguf"
    model.write_bytes(b"\0" * 1024)
    return RunInfo("python -m benchmarks.suite", model, 2, 8, 2048, 3, 0.05, 2)


def report(info: RunInfo, chats: MultiTurnOutcome, servers: tuple[str, ...]) -> str:
    results = SuiteResults(
        info=info,
        journal=Journal(),
        multi_turn_plan=MultiTurnPlan(servers, 3, 150),
        multi_turn=chats,
    )
    return markdown(results, {})


def test_report_meets_both_targets(info: RunInfo) -> None:
    chats = outcome(shard=[[0.05, 0.06, 0.07]], peer=[[0.05, 0.10, 0.20]])
    chats.samples.append(turn("llama-server-ngram", 0, 1, 0.04, 20))
    text = report(info, chats, ("shard", "llama-server", "llama-server-ngram"))
    assert (
        "| turn | prompt tokens (shard) | cached tokens (shard) | TTFT shard (s) "
        "| TTFT llama-server (s) | TTFT llama-server-ngram (s) | Shard / llama-server |" in text
    )
    assert "| 1 | 20 | 0 | 0.050 | 0.050 | 0.040 | 1.00x |" in text
    assert "| 3 | 380 | 360 | 0.070 | 0.200 | n/a | 0.35x |" in text
    assert (
        "TTFT at the last two turns is 0.43x llama-server's (Shard's median TTFTs at turns "
        "2, 3 summed, over llama-server's; target <= 1.1x): met." in text
    )
    assert (
        "Shard's TTFT at turn 3 is 1.17x its TTFT at turn 2; llama-server's 2.00x "
        "(flat means at most 1.5x;" in text
    )
    assert "Other CPU while measuring: shard 1%, llama-server 2%, llama-server-ngram n/a." in text
    assert "Prompt tokens at turn 3: shard 380, llama-server 380, llama-server-ngram n/a" in text


def test_report_misses_both_targets(info: RunInfo) -> None:
    chats = outcome(shard=[[0.05, 0.10, 0.30]], peer=[[0.05, 0.10, 0.12]])
    text = report(info, chats, ("shard", "llama-server"))
    assert "TTFT at the last two turns is 1.82x llama-server's" in text
    assert "summed, over llama-server's; target <= 1.1x): **not met**." in text
    assert "Shard's TTFT at turn 3 is 3.00x its TTFT at turn 2; llama-server's 1.20x" in text
    assert "turn 2 is the base): **not met**." in text


def test_report_without_llama_server_has_no_ratio(info: RunInfo) -> None:
    chats = outcome(shard=[[0.05, 0.06, 0.07]], peer=[])
    text = report(info, chats, ("shard",))
    assert "| turn | prompt tokens (shard) | cached tokens (shard) | TTFT shard (s) |\n" in text
    assert "TTFT at the last two turns" not in text
    assert "Shard's TTFT at turn 3 is 1.17x its TTFT at turn 2 (flat" in text


def _sse(content: str, prompt_tokens: int, cached: int) -> bytes:
    usage = {
        "completion_tokens": 3,
        "prompt_tokens": prompt_tokens,
        "prompt_tokens_details": {"cached_tokens": cached},
    }
    events = [
        {"choices": [{"index": 0, "delta": {"content": content}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]},
        {"choices": [], "usage": usage},
    ]
    return "".join(f"data: {json.dumps(e)}\n\n" for e in events).encode() + b"data: [DONE]\n\n"


def test_every_turn_resends_the_history_with_the_servers_replies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bodies: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        bodies.append(body)
        count = len(bodies)
        return httpx.Response(200, content=_sse(f"reply {count}", 10 * count, 5 * count))

    async def fake_connect(base_url: str, api_key: str) -> ChatClient:
        return ChatClient(base_url, api_key, "m", transport=httpx.MockTransport(handler))

    monkeypatch.setattr(multi_turn, "connect", fake_connect)
    plan = MultiTurnPlan(("shard",), 3, 150)
    samples = asyncio.run(multi_turn._chat("http://test", "k", "shard", plan, runs=2))
    warmup, *chat = bodies
    assert warmup["temperature"] == 0 and "seed" not in warmup
    assert len(chat) == 6 and len(samples) == 6
    first, second, third = chat[:3]
    opening = user_messages(0, 3)[0]
    assert first["messages"] == [{"role": "user", "content": opening}]
    assert [m["role"] for m in second["messages"]] == ["user", "assistant", "user"]
    assert third["messages"] == [
        {"role": "user", "content": opening},
        {"role": "assistant", "content": "reply 2"},
        {"role": "user", "content": "Tell me more."},
        {"role": "assistant", "content": "reply 3"},
        {"role": "user", "content": "What happened next?"},
    ]
    assert [b["seed"] for b in chat] == [turn_seed(r, t) for r in (0, 1) for t in (1, 2, 3)]
    assert all(b["temperature"] == 0.7 and b["max_tokens"] == 150 for b in chat)
    assert chat[3]["messages"] == [{"role": "user", "content": user_messages(1, 3)[0]}]
    assert [(s.run, s.turn) for s in samples] == [(r, t) for r in (0, 1) for t in (1, 2, 3)]
    assert (samples[1].prompt_tokens, samples[1].cached_tokens) == (30, 15)
