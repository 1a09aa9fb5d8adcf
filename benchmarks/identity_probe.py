"""Probe for the testbed's losslessness (docs/benchmarks.md, 20 ms, 4 clients, T 0.7):
repeats that workload against the oracle alone's output and prints every difference.

The F32 oracle runs on core 0 with one thread, one scout on core 1 with 20 ms added, as in
the testbed. Four clients send one seeded T=0.7 request each, then pause (9 s lets the
oracle idle and write golden tickets' text). Answers are compared with every token's logprob,
so a difference in the logits shows even where it changes no token. Before session 9's fix
(docs/architecture.md, invariant 1: no graph run of one row) nearly every round differed
this way, and one text differed in the testbed; extra oracle flags
(`--oracle-flag=--no-prefix-cache`) help tell causes apart.

    python -m benchmarks.identity_probe --seconds 600 --pause 9
"""

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai

from benchmarks.llama_server_build import default_cache_dir
from benchmarks.sampling import seed_for
from benchmarks.servers import free_port, shard_env
from benchmarks.workload import prompt_for

KEY = "sk-oracle-" + "p" * 40
CLIENTS = 4


def _wait_healthy(base_url: str) -> None:
    for _ in range(480):
        try:
            if httpx.get(f"{base_url}/health").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit("the oracle did not become healthy")


def _workload(client: openai.OpenAI, model: str) -> list[str]:
    """Each client's answer, with every token's logprob after it: any difference in the
    logits shows, not only one that changes a token."""

    def one(index: int) -> str:
        response = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": prompt_for(index, 0)}],
            max_tokens=128,
            temperature=0.7,
            seed=seed_for(index, 0),
            logprobs=True,
        )
        choice = response.choices[0]
        tokens = choice.logprobs.content if choice.logprobs and choice.logprobs.content else []
        return "".join(f"{entry.token}[{entry.logprob!r}]" for entry in tokens)

    with ThreadPoolExecutor(CLIENTS) as pool:
        return list(pool.map(one, range(CLIENTS)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--pause", type=float, default=9.0)
    parser.add_argument("--oracle-flag", action="append", default=[])
    parser.add_argument("--logs", type=Path, default=Path("/tmp/identity-probe"))
    args = parser.parse_args()
    args.logs.mkdir(parents=True, exist_ok=True)
    model = default_cache_dir() / "weight-types" / "gemma-3-270m-f32.gguf"
    if not model.exists():
        raise SystemExit(f"{model} is missing: run the suite's weight-types section first")
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {**os.environ, **shard_env(KEY, args.logs / "probe.db")}
    (args.logs / "probe.db").unlink(missing_ok=True)
    oracle_command = [
        "taskset", "-c", "0", sys.executable, "-m", "shard", "oracle", "--model", str(model),
        "--port", str(port), "--threads", "1", "--parallel", str(CLIENTS), "--no-ngram-drafts",
        "--chat-template", "gemma", "--n-ctx", "2048", *args.oracle_flag,
    ]  # fmt: skip
    with (args.logs / "oracle.log").open("w") as log:
        oracle = subprocess.Popen(oracle_command, env=env, stdout=log, stderr=subprocess.STDOUT)
    scout: subprocess.Popen[bytes] | None = None
    try:
        _wait_healthy(base_url)
        client = openai.OpenAI(base_url=f"{base_url}/v1", api_key=KEY, timeout=300, max_retries=0)
        served = client.models.list().data[0].id
        alone = _workload(client, served)
        scout_command = [
            "taskset", "-c", "1", sys.executable, "-m", "shard", "scout", "--oracle", base_url,
            "--key", KEY, "--threads", "1", "--added-latency-ms", "20",
        ]  # fmt: skip
        with (args.logs / "scout.log").open("w") as log:
            scout = subprocess.Popen(scout_command, env=env, stdout=log, stderr=subprocess.STDOUT)
        time.sleep(8)
        deadline = time.monotonic() + args.seconds
        rounds = differences = 0
        while time.monotonic() < deadline:
            rounds += 1
            for index, (want, got) in enumerate(zip(alone, _workload(client, served), strict=True)):
                if want != got:
                    differences += 1
                    pairs = enumerate(zip(want, got, strict=False))
                    at = next((i for i, (a, b) in pairs if a != b), min(len(want), len(got)))
                    print(f"round {rounds}, client {index}, char {at}: alone "
                          f"{want[max(0, at - 40) : at + 40]!r} / with scout "
                          f"{got[max(0, at - 40) : at + 40]!r}", flush=True)  # fmt: skip
            print(f"{rounds} rounds, {differences} differences", flush=True)
            time.sleep(args.pause)
    finally:
        for process in (scout, oracle):
            if process is not None:
                process.terminate()
                process.wait(30)


if __name__ == "__main__":
    main()
