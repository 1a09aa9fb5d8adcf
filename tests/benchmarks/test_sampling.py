"""Which server runs which sampling preset at which levels, what a preset sends, how the third
peer starts, and what the command line (and smoke mode) chooses."""

from pathlib import Path

import pytest

from benchmarks.sampling import GREEDY, PRESENCE, SAMPLED, TOP_P, seed_for
from benchmarks.servers import ServerConfig, launch_spec
from benchmarks.suite import parse_args
from benchmarks.throughput import ComparisonPlan


def test_only_sampled_presets_send_a_seed() -> None:
    assert GREEDY.body(5) == {"temperature": 0.0}
    assert SAMPLED.body(5) == {"temperature": 0.7, "seed": 5}
    assert TOP_P.body(6) == {"temperature": 0.7, "top_p": 0.9, "seed": 6}
    assert PRESENCE.body(7) == {"temperature": 0.7, "presence_penalty": 0.5, "seed": 7}
    seeds = {seed_for(client, request) for client in range(16) for request in range(64)}
    assert len(seeds) == 16 * 64 and max(seeds) < 2**31


def test_each_server_runs_its_presets_at_their_levels() -> None:
    plan = ComparisonPlan(
        ("shard", "llama-cpp-python", "llama-server", "llama-server-ngram"),
        (1, 4, 8, 16),
        2,
        None,
        128,
        samplings=("greedy", "sampled", "top-p", "presence"),
        processed_clients=(1, 8),
    )

    def levels(server: str) -> list[tuple[str, int]]:
        return [(sampling.name, clients) for sampling, clients in plan.levels(server)]

    every = [1, 4, 8, 16]
    assert levels("llama-cpp-python") == [("greedy", c) for c in every]
    assert levels("llama-server-ngram") == [(s, c) for s in ("greedy", "sampled") for c in every]
    processed = [(s, c) for s in ("top-p", "presence") for c in (1, 8)]
    assert levels("shard") == [(s, c) for s in ("greedy", "sampled") for c in every] + processed
    assert levels("llama-server") == levels("shard")
    only_top_p = ComparisonPlan(("llama-cpp-python",), (1,), 2, None, 8, samplings=("top-p",))
    assert only_top_p.levels("llama-cpp-python") == []  # not even started


def test_the_ngram_peer_is_llama_server_plus_ngram_mod() -> None:
    config = ServerConfig(
        model=Path("/m.gguf"),
        threads=2,
        parallel=8,
        ctx_per_sequence=2048,
        chat_template="gemma",
        llama_server_binary=Path("/bin/llama-server"),
        api_key="k",
        work_dir=Path("/tmp"),
    )
    plain = launch_spec("llama-server", config, 1234).command
    ngram = launch_spec("llama-server-ngram", config, 1234).command
    assert ngram == [*plain, "--spec-type", "ngram-mod"]
    assert plain.index("--no-jinja") < plain.index("--chat-template")


def test_smoke_runs_greedy_and_sampled_and_a_short_chat() -> None:
    args = parse_args(["--smoke", "--servers", "shard"])
    assert args.samplings == ["greedy", "sampled"]
    assert (args.clients, args.processed_clients) == ([1], [1])
    assert (args.turns, args.multi_turn_max_tokens, args.runs) == (2, 16, 1)
    assert args.grounded_modes == ["off", "ngram", "prediction", "scout"]  # peers: --servers
    full = parse_args([])
    assert full.samplings == ["greedy", "sampled", "top-p", "presence"]
    assert (full.processed_clients, full.turns, full.multi_turn_max_tokens) == ([1, 8], 8, 150)
    assert full.sections == [
        "comparison",
        "multi-turn",
        "grounded",
        "scout-failures",
        "structured",
        "weight-types",
        "testbed",
    ]
    assert "testbed" not in args.sections  # the smoke run makes no 1 GB F32 file
    assert full.grounded_modes[-2:] == ["llama-server", "llama-server-ngram"]
    chosen = parse_args(["--smoke", "--samplings", "top-p"])
    assert chosen.samplings == ["top-p"]


def test_a_chat_that_cannot_fit_the_context_is_refused() -> None:
    with pytest.raises(SystemExit):
        parse_args(["--turns", "8", "--multi-turn-max-tokens", "400"])
    assert parse_args(["--sections", "comparison", "--multi-turn-max-tokens", "400"]).turns == 8
