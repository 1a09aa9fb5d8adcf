"""Start scouts beside a benchmark oracle, wait until the oracle counts them, always stop them.

Kinds: `scout` (a real `shard scout`), `slow` (one that answers 200 ms late), `hostile` (one
that answers with random token ids) and `dead` (benchmarks.dead_scout: joins, never answers).
Scout workloads need `shard scout`; without it they are skipped and the report says why.
"""

import asyncio
import contextlib
import importlib.util
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from benchmarks.oracle_metrics import scouts_connected
from benchmarks.servers import log_tail, started_process

SCOUT_KINDS: tuple[str, ...] = ("scout", "dead", "slow", "hostile")
_SHARD_SCOUT_FLAGS: dict[str, tuple[str, ...]] = {
    "scout": (),
    "slow": ("--added-latency-ms", "200"),
    "hostile": ("--hostile", "random"),
}


class ScoutFailed(RuntimeError):
    """A scout exited or never joined; the message points at its log."""


def shard_scout_missing() -> str | None:
    """Why `shard scout` cannot run here, or None when it can."""
    try:
        probe = subprocess.run(
            [sys.executable, "-m", "shard", "scout", "--help"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"`python -m shard scout --help` could not run: {error}"
    if probe.returncode == 0:
        return None
    last = (probe.stderr or probe.stdout).strip().splitlines()[-1:] or [""]
    return f"`python -m shard scout --help` exited with {probe.returncode}: {last[0]}"


def kind_missing(kind: str, shard_scout: str | None) -> str | None:
    """Why a scout kind cannot run here (given `shard_scout_missing()`), or None."""
    if shard_scout is not None:
        return shard_scout
    if kind == "dead" and importlib.util.find_spec("websockets") is None:
        return "the dead scout needs the websockets package (pip install websockets)"
    return None


def scout_command(
    kind: str,
    oracle_url: str,
    api_key: str,
    threads: int = 1,
    extra: tuple[str, ...] = (),
    prefix: tuple[str, ...] = (),
) -> list[str]:
    """How to start a scout of this kind against an oracle, with `extra` flags and behind a
    `prefix` command (`taskset -c 1`, say). A drafting scout gets `threads` llama.cpp
    threads: it shares this machine's cores with the oracle, where a real one would run on a
    machine of its own."""
    if kind == "dead":
        module = ["benchmarks.dead_scout"]
        flags: tuple[str, ...] = ()
    elif kind in _SHARD_SCOUT_FLAGS:
        module = ["shard", "scout"]
        flags = ("--threads", str(threads), *_SHARD_SCOUT_FLAGS[kind])
    else:
        raise ValueError(f"unknown scout kind {kind!r}; choose from {', '.join(SCOUT_KINDS)}")
    command = [sys.executable, "-m", *module, "--oracle", oracle_url, "--key", api_key]
    return [*prefix, *command, *flags, *extra]


def display(command: list[str]) -> str:
    """A scout command as the report shows it: `python`, no key, no port."""
    shown = ["python" if part == sys.executable else part for part in command]
    if "--key" in shown:
        shown[shown.index("--key") + 1] = "KEY"
    if "--oracle" in shown:
        shown[shown.index("--oracle") + 1] = "http://127.0.0.1:PORT"
    return " ".join(shown)


@dataclass(frozen=True)
class RunningScout:
    """A scout the oracle has counted: its pid (for CPU accounting) and its log."""

    kind: str
    pid: int
    log: Path
    process: subprocess.Popen[bytes]
    command: list[str]

    def alive(self) -> bool:
        """Whether the scout process is still running (a dead scout exits when dropped)."""
        return self.process.poll() is None


def _count(oracle_url: str, api_key: str) -> int:
    return asyncio.run(scouts_connected(oracle_url, api_key))


def _wait_for_count(
    oracle_url: str,
    api_key: str,
    done: Callable[[int], bool],
    timeout_s: float,
    process: subprocess.Popen[bytes] | None = None,
) -> bool:
    """Poll the oracle's scout count until `done(count)`; False on timeout or if `process`
    dies first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if done(_count(oracle_url, api_key)):
                return True
        if process is not None and process.poll() is not None:
            return False
        time.sleep(0.1)
    return False


@contextlib.contextmanager
def running_scout(
    kind: str,
    oracle_url: str,
    api_key: str,
    log: Path,
    timeout_s: float,
    threads: int,
    extra: tuple[str, ...] = (),
    prefix: tuple[str, ...] = (),
) -> Iterator[RunningScout]:
    """Start a scout, yield it once the oracle counts it, stop it and wait until the oracle
    has let it go, so the next measurement starts without it."""
    before = _count(oracle_url, api_key)
    command = scout_command(kind, oracle_url, api_key, threads, extra, prefix)
    print(f"starting {kind} scout: {display(command)}", flush=True)
    with started_process(command, log) as process:
        joined = _wait_for_count(
            oracle_url, api_key, lambda count: count > before, timeout_s, process
        )
        if not joined:
            state = (
                f"exited with code {process.returncode}"
                if process.poll() is not None
                else f"not counted by the oracle after {timeout_s:.0f} s"
            )
            raise ScoutFailed(f"{kind} scout {state}; log: {log}\n{log_tail(log, 5)}")
        yield RunningScout(kind, process.pid, log, process, command)
    if not _wait_for_count(oracle_url, api_key, lambda count: count <= before, 30.0):
        print(f"warning: the oracle still counts the stopped {kind} scout", file=sys.stderr)
