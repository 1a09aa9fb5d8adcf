"""A new user's first swarm: `shard oracle` and `shard scout` on one machine, default flags.

    python -m benchmarks.one_machine [--alone-seconds 120] [--with-scout-seconds 300]
        [--scout-args "--threads 1"]

Four clients send sampled requests (temperature 0.7, 128 tokens) back to back, first to the
oracle alone, then with a default `shard scout` beside it. It prints the oracle's throughput
with the scout over alone (issue 13 asks for at least 0.9x) and whether the scout stayed
connected throughout (no reconnects in its log), with the scout's own start-up advice. On a
machine too small to spare the scout a core (fewer than 10), the scout declines to start and
says what to do: the check then shows that message. `--scout-args` adds flags to the scout's
command: `--threads 1` starts it there anyway, as the defaults would on a bigger machine (one
thread, which the oracle cedes).
"""

import argparse
import asyncio
import secrets
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from benchmarks.servers import free_port, shard_env, started_process
from benchmarks.workload import prompt_for

CLIENTS = 4
MAX_TOKENS = 128


async def _steady(base_url: str, key: str, seconds: float) -> float:
    """Completion tokens per second of CLIENTS clients sending requests for `seconds`."""
    tokens = 0
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=300) as client:
        model = (await client.get("/v1/models")).json()["data"][0]["id"]
        end = time.monotonic() + seconds

        async def one_client(number: int) -> None:
            nonlocal tokens
            request = 0
            while time.monotonic() < end:
                body = {
                    "model": model,
                    "messages": [{"role": "user", "content": prompt_for(number, request)}],
                    "max_tokens": MAX_TOKENS,
                    "temperature": 0.7,
                    "seed": number * 1009 + request,
                }
                response = await client.post("/v1/chat/completions", json=body)
                response.raise_for_status()
                tokens += int(response.json()["usage"]["completion_tokens"])
                request += 1

        started = time.monotonic()
        await asyncio.gather(*(one_client(number) for number in range(CLIENTS)))
        return tokens / (time.monotonic() - started)


def _wait(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"timed out waiting for {what}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.one_machine", description=__doc__)
    parser.add_argument("--alone-seconds", type=float, default=120.0)
    parser.add_argument("--with-scout-seconds", type=float, default=300.0)
    parser.add_argument("--scout-args", default="", help="more flags for `shard scout`")
    parser.add_argument("--log-dir", type=Path, default=Path("/tmp/shard-one-machine"))
    args = parser.parse_args(argv)
    key = f"sk-oracle-{secrets.token_urlsafe(32)}"
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = shard_env(key, args.log_dir / f"one-machine-{port}.db")
    args.log_dir.mkdir(parents=True, exist_ok=True)
    oracle = [sys.executable, "-m", "shard", "oracle", "--port", str(port)]
    scout = [sys.executable, "-m", "shard", "scout", "--oracle", base_url, "--key", key]
    scout += ["--scout-id", "one-machine", *shlex.split(args.scout_args)]
    headers = {"Authorization": f"Bearer {key}"}
    status_url = f"{base_url}/scouts/one-machine/status"
    with started_process(oracle, args.log_dir / "oracle.log", env):
        _wait(lambda: httpx.get(f"{base_url}/health").status_code == 200, 600, "the oracle")
        alone = asyncio.run(_steady(base_url, key, args.alone_seconds))
        print(f"oracle alone: {alone:.1f} tok/s", flush=True)
        scout_log = args.log_dir / "scout.log"
        with started_process(scout, scout_log) as process:
            _wait(
                lambda: (
                    process.poll() is not None
                    or bool(httpx.get(status_url, headers=headers).json().get("connected"))
                ),
                120,
                "scout",
            )
            if process.poll() is not None:  # it declined to share this machine
                log = scout_log.read_text(errors="replace")
                print(f"the scout did not start (exit {process.returncode}):")
                print(log.strip().splitlines()[-1])
                return 0 if process.returncode == 2 and "not starting" in log else 1
            beside = asyncio.run(_steady(base_url, key, args.with_scout_seconds))
            status = httpx.get(status_url, headers=headers).json()
        log = scout_log.read_text(errors="replace")
    reconnects = log.count("connection to the oracle lost")
    advice = [line.split("scout: ", 1)[-1] for line in log.splitlines() if "WARNING" in line]
    ratio = beside / alone
    scout_is = f"a scout with {args.scout_args}" if args.scout_args else "a default scout"
    print(f"with {scout_is}: {beside:.1f} tok/s, {ratio:.2f}x alone (target at least 0.9x)")
    print(
        f"scout connected at the end: {status['connected']}; reconnects: {reconnects}; "
        f"tasks {status['tasks_completed']}; accepted draft tokens {status['accepted_tokens']}"
    )
    if advice:
        print(f"the scout's advice at start: {advice[0]}")
    return 0 if ratio >= 0.9 and status["connected"] and not reconnects else 1


if __name__ == "__main__":
    sys.exit(main())
