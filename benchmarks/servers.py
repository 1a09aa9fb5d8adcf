"""Start, probe and always stop the servers under test, one at a time.

Every server gets the same GGUF, the same thread count and the same per-sequence context, so
the benchmark compares serving strategies rather than configurations.
"""

import contextlib
import importlib.util
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

SERVER_NAMES: tuple[str, ...] = ("shard", "llama-cpp-python", "llama-server", "llama-server-ngram")
LLAMA_SERVERS: tuple[str, ...] = ("llama-server", "llama-server-ngram")  # need the built binary
# llama-server's own n-gram drafting; its other speculative settings stay at their defaults
NGRAM_MOD_FLAGS: tuple[str, ...] = ("--spec-type", "ngram-mod")

# Modules llama-cpp-python's server imports beyond the core wheel (its `[server]` extra).
LLAMA_CPP_SERVER_EXTRAS: dict[str, str] = {
    "uvicorn": "uvicorn",
    "fastapi": "fastapi",
    "sse_starlette": "sse-starlette",
    "starlette_context": "starlette-context",
    "pydantic_settings": "pydantic-settings",
}


@dataclass(frozen=True)
class ServerConfig:
    """What every server is given: one model, one CPU budget, one context size per sequence."""

    model: Path
    threads: int
    parallel: int
    ctx_per_sequence: int
    chat_template: str
    llama_server_binary: Path | None
    api_key: str
    work_dir: Path
    shard_args: tuple[str, ...] = ()  # extra `shard oracle` flags, e.g. drafts off
    reuse_decode_timings: bool = False
    """Let Shard reuse decode timings from an earlier start (smoke runs: they measure nothing);
    a real run measures them at each start, on the machine as it is then."""


@dataclass(frozen=True)
class LaunchSpec:
    """How to start one server and how to tell that it is ready to answer."""

    name: str
    command: list[str]
    ready_path: str
    env: dict[str, str] = field(default_factory=dict)
    fresh_files: tuple[Path, ...] = ()  # deleted before start, so every run starts clean

    def display(self, port: int) -> str:
        """The command as the report shows it: `python`, `PORT`, and no key."""
        shown = ["python" if part == sys.executable else part for part in self.command]
        shown = ["PORT" if part == str(port) else part for part in shown]
        env = [
            f"{key}=<key>" if key == "SHARD_API_KEY" else f"{key}={value}"
            for key, value in self.env.items()
        ]
        return " ".join([*env, shlex.join(shown)])


def free_port() -> int:
    """Ask the kernel for an unused port so runs never collide with whatever else listens."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def server_url(port: int) -> str:
    """Where a benchmark server on this port answers: loopback only."""
    return f"http://127.0.0.1:{port}"


def shard_env(api_key: str, store: Path) -> dict[str, str]:
    """A throwaway store that knows the benchmark's key, and no chat, scout or system rate
    limits: the chat default, 10 requests a minute per key, would turn a benchmark into a
    rate-limit test, and scouts and the harness's polling use the same key."""
    return {
        "SHARD_API_KEY": api_key,
        "SHARD_DATABASE_URL": f"sqlite:///{store}",
        "SHARD_RATE_LIMIT_CHAT": "off",
        "SHARD_RATE_LIMIT_SCOUTS": "off",
        "SHARD_RATE_LIMIT_SYSTEM": "off",
    }


def launch_spec(name: str, config: ServerConfig, port: int) -> LaunchSpec:
    """The command line for each server, with equivalent settings.

    The default GGUF carries no chat template, and each server falls back to a different one
    (llama-cpp-python to llama-2, which makes Gemma stop at once), so all three are told the
    same built-in template by name.
    """
    model, threads = str(config.model), str(config.threads)
    if name == "shard":
        store = config.work_dir / "shard-bench.db"
        env = shard_env(config.api_key, store)
        if not config.reuse_decode_timings:
            env["SHARD_CALIBRATION_CACHE"] = "off"
        sqlite_files = (
            store,
            store.with_name(store.name + "-wal"),
            store.with_name(store.name + "-shm"),
        )
        command = [
            sys.executable, "-m", "shard", "oracle", "--model", model, "--port", str(port),
            "--host", "127.0.0.1", "--n-ctx", str(config.ctx_per_sequence),
            "--parallel", str(config.parallel), "--threads", threads,
            "--chat-template", config.chat_template, *config.shard_args,
        ]  # fmt: skip
        return LaunchSpec(name, command, "/health", env, sqlite_files)
    if name == "llama-cpp-python":
        # One sequence at a time by design, so its context is one sequence's context. By
        # default a new request cuts short the one being streamed (it ends with [DONE]);
        # --interrupt_requests False makes it wait its turn, as non-streaming requests do.
        command = [
            sys.executable, "-m", "llama_cpp.server", "--model", model,
            "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(config.ctx_per_sequence),
            "--n_threads", threads, "--n_threads_batch", threads,
            "--chat_format", config.chat_template, "--interrupt_requests", "False",
            "--verbose", "False",
        ]  # fmt: skip
        return LaunchSpec(name, command, "/v1/models")
    if name in LLAMA_SERVERS:
        if config.llama_server_binary is None:
            raise ValueError(f"{name} needs a built llama-server binary")
        # -c is the total KV cache; llama-server splits it across the -np slots.
        # With -np given, the KV cache is not unified: each slot gets exactly ctx_per_sequence.
        # Continuous batching is on by default in this version; the web UI is switched off.
        # llama-server-ngram adds only --spec-type ngram-mod: n-gram drafts from the context,
        # verified by the model, with every other speculative setting at its default.
        # --no-jinja must come first: with Jinja on (the default) `--chat-template gemma` is
        # taken as the literal template text "gemma" rather than the built-in template.
        command = [
            str(config.llama_server_binary), "-m", model, "--host", "127.0.0.1",
            "--port", str(port), "-np", str(config.parallel),
            "-c", str(config.ctx_per_sequence * config.parallel),
            "-t", threads, "-tb", threads, "--no-jinja", "--chat-template", config.chat_template,
            "--no-webui", *(NGRAM_MOD_FLAGS if name == "llama-server-ngram" else ()),
        ]  # fmt: skip
        return LaunchSpec(name, command, "/health")
    raise ValueError(f"unknown server {name!r}; choose from {', '.join(SERVER_NAMES)}")


def ensure_llama_cpp_server_extras() -> None:
    """Install llama-cpp-python's server extras if missing: without them it cannot start."""
    missing = [
        package
        for module, package in LLAMA_CPP_SERVER_EXTRAS.items()
        if importlib.util.find_spec(module) is None
    ]
    if missing:
        print(f"installing llama-cpp-python server extras: {' '.join(missing)}", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", *missing], check=True)


class ServerFailed(RuntimeError):
    """A server exited or never became ready; the message points at its log."""


def _wait_ready(process: subprocess.Popen[bytes], url: str, log: Path, timeout_s: float) -> None:
    """Poll the readiness URL; stop early if the process dies so failures show quickly."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=5.0) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise ServerFailed(f"exited with code {process.returncode}; log: {log}")
            with contextlib.suppress(httpx.HTTPError):
                if client.get(url).status_code == 200:
                    return
            time.sleep(0.1)
    raise ServerFailed(f"not ready after {timeout_s:.0f} s; log: {log}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate the whole process group (servers may fork), then kill it if it lingers."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def log_tail(log: Path, lines: int = 20) -> str:
    """Last lines of a server log, for an error message worth reading."""
    if not log.exists():
        return ""
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


@dataclass(frozen=True)
class RunningServer:
    """A ready server: where to reach it, and its pid for CPU accounting."""

    base_url: str
    pid: int


@contextlib.contextmanager
def started_process(
    command: list[str], log: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a command in its own process group with its output in a log; always stop it."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            command,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
        try:
            yield process
        finally:
            _stop(process)


@contextlib.contextmanager
def running_server(spec: LaunchSpec, log: Path, timeout_s: float) -> Iterator[RunningServer]:
    """Start a server in its own process group, yield it once ready, always stop it."""
    base_url = server_url(int(spec.command[spec.command.index("--port") + 1]))
    for path in spec.fresh_files:
        path.unlink(missing_ok=True)
    print(f"starting {spec.name}: {' '.join(spec.command)}", flush=True)
    with started_process(spec.command, log, spec.env) as process:
        _wait_ready(process, base_url + spec.ready_path, log, timeout_s)
        yield RunningServer(base_url, process.pid)
