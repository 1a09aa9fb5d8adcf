"""Speculative decoding with the local n-gram drafts is lossless (docs/architecture.md,
invariants 1 and 3): the shared oracle drafts, a second one never does, and their outputs
must be identical."""

import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import SERVED_ALIAS, RunningOracle, start_oracle, stop_oracle

SOURCE = Path(__file__).resolve().parents[2] / "shard" / "engine" / "sampling.py"
CODE = SOURCE.read_text()[:2400]  # about 600 tokens: past 512 cached cells, where kernels differ
ARTICLE = (
    "The Rhine is a river that begins in the Swiss Alps, flows through Liechtenstein, "
    "Austria, Germany, France and the Netherlands, and empties into the North Sea. "
    "It is about 1,230 kilometres long. Basel, Strasbourg, Cologne and Rotterdam lie on it. "
) * 3

COPYING = 2
"""The first cases copy their prompt: they run together, where drafting pays for both."""
CASES: list[dict[str, Any]] = [
    {"prompt": f"Repeat this code exactly, then stop:\n\n{CODE}", "temperature": 0},
    {"prompt": f"Copy this text word for word:\n\n{ARTICLE}", "temperature": 0},
    {"prompt": f"List the cities in this text:\n\n{ARTICLE}", "temperature": 0.8, "seed": 7},
    {
        "prompt": f"Repeat this code:\n\n{CODE[:800]}",
        "temperature": 0.6,
        "top_p": 0.9,
        "seed": 1234,
        "frequency_penalty": 0.3,
    },
    {
        "prompt": f"Summarise:\n\n{ARTICLE}",
        "temperature": 0,
        "presence_penalty": 0.5,
        "logit_bias": {"1": -100, "106": -100},
        "stop": ["Cologne"],
    },
]


@pytest.fixture(scope="module")
def no_drafts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningOracle]:
    running = start_oracle(
        tmp_path_factory.mktemp("no-drafts"),
        "--served-model-name",
        SERVED_ALIAS,
        "--parallel",
        "4",
        "--draft-max",
        "0",
        "--no-ngram-drafts",
        "--no-prefix-cache",
    )
    yield running
    stop_oracle(running)


def run(client: openai.OpenAI, case: dict[str, Any]) -> tuple[str, str | None]:
    options = {k: v for k, v in case.items() if k != "prompt"}
    response = client.chat.completions.create(
        model=SERVED_ALIAS,
        messages=[{"role": "user", "content": case["prompt"]}],
        max_tokens=72,
        **options,
    )
    choice = response.choices[0]
    return choice.message.content or "", choice.finish_reason


def accepted_drafts(oracle: RunningOracle) -> float:
    text = httpx.get(f"{oracle.base_url}/metrics").text
    found = re.search(r'^shard_draft_tokens_accepted_total\{source="ngram"\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def test_drafted_output_is_identical_to_undrafted(
    oracle: RunningOracle, client: openai.OpenAI, no_drafts: RunningOracle
) -> None:
    plain = no_drafts.client(max_retries=0, timeout=300)
    before = accepted_drafts(oracle)
    with ThreadPoolExecutor(len(CASES)) as pool:
        # beside sequences that copy less, drafts would slow those, so the planner drafts
        # little: the copying cases run together, then the rest, sampled and processed
        drafted = list(pool.map(lambda case: run(client, case), CASES[:COPYING]))
        drafted += list(pool.map(lambda case: run(client, case), CASES[COPYING:]))
        expected = list(pool.map(lambda case: run(plain, case), CASES))
    for case, got, want in zip(CASES, drafted, expected, strict=True):
        assert got == want, case["prompt"][:60]
    assert accepted_drafts(oracle) - before > 10, "the copying prompts should accept drafts"
    assert accepted_drafts(no_drafts) == 0


RECORD = {
    "river": "Rhine",
    "length_km": 1230,
    "countries": ["Switzerland", "Liechtenstein", "Austria", "Germany", "France", "Netherlands"],
    "cities": ["Basel", "Strasbourg", "Cologne", "Rotterdam"],
    "mouth": "North Sea",
}
BOUNDED = {
    "type": "object",
    "properties": {
        "river": {"type": "string", "maxLength": 20},
        "countries": {"type": "array", "items": {"type": "string", "maxLength": 16}, "maxItems": 6},
    },
    "required": ["river", "countries"],
    "additionalProperties": False,
}
STRUCTURED: list[dict[str, Any]] = [
    {
        # compact, as the grammar writes JSON, so n-gram drafts find it
        "prompt": f"Repeat this JSON exactly:\n{json.dumps(RECORD, separators=(',', ':'))}",
        "temperature": 0,
        "response_format": {"type": "json_object"},
    },
    {
        "prompt": f"Which countries does the river cross? Answer in JSON.\n\n{ARTICLE}",
        "temperature": 0.8,
        "seed": 3,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "river", "schema": BOUNDED, "strict": True},
        },
    },
]


def test_structured_output_with_drafts_is_identical_to_without(
    oracle: RunningOracle, client: openai.OpenAI, no_drafts: RunningOracle
) -> None:
    """A draft token the grammar forbids is rejected like any other wrong token."""
    plain = no_drafts.client(max_retries=0, timeout=300)
    before = accepted_drafts(oracle)
    drafted = [run(client, case) for case in STRUCTURED]
    expected = [run(plain, case) for case in STRUCTURED]
    assert drafted == expected
    assert accepted_drafts(oracle) - before > 10, "copying the record should accept drafts"
    copied, _ = drafted[0]
    assert isinstance(json.loads(copied), dict)


def test_a_chats_next_turn_reuses_its_cached_history_and_changes_nothing(
    oracle: RunningOracle, client: openai.OpenAI, no_drafts: RunningOracle
) -> None:
    """The prefix cache (on in the shared oracle, off in the reference) on the real model."""
    plain = no_drafts.client(max_retries=0, timeout=300)
    history: list[dict[str, str]] = [
        {"role": "system", "content": f"Answer from this text:\n\n{ARTICLE}"},
        {"role": "user", "content": "Which river is this about?"},
    ]
    for turn, options in enumerate([{"temperature": 0}, {"temperature": 0.8, "seed": 5}]):
        got, want = (
            c.chat.completions.create(
                model=SERVED_ALIAS,
                messages=history,  # type: ignore[arg-type]
                max_tokens=40,
                **options,
            )
            for c in (client, plain)
        )
        assert got.choices[0].message.content == want.choices[0].message.content
        assert got.usage is not None and got.usage.prompt_tokens_details is not None
        assert want.usage is not None and want.usage.prompt_tokens_details is not None
        assert want.usage.prompt_tokens_details.cached_tokens == 0
        if turn:  # everything the first turn decoded is still cached
            assert (got.usage.prompt_tokens_details.cached_tokens or 0) > 150
        history += [
            {"role": "assistant", "content": got.choices[0].message.content or ""},
            {"role": "user", "content": "Name a city on it."},
        ]
