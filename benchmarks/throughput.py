"""Aggregate completion throughput of Shard against llama.cpp's two common servers.

    python -m benchmarks.throughput                       # full run, writes docs/benchmarks.md
    python -m benchmarks.throughput --smoke --servers llama-server --output /tmp/b.md

Servers run one at a time (they would fight for the same cores), each on a free port, and are
always stopped afterwards. See benchmarks/README.md.
"""

import argparse
import asyncio
import dataclasses
import os
import secrets
import shlex
import signal
import sys
from pathlib import Path

import httpx

from benchmarks.cpu import OtherLoadMeter, wait_for_idle
from benchmarks.llama_server_build import (
    default_cache_dir,
    ensure_llama_server,
    llama_server_version,
)
from benchmarks.report import RunInfo, console_table, write_report
from benchmarks.servers import (
    SERVER_NAMES,
    ServerConfig,
    ServerFailed,
    ensure_llama_cpp_server_extras,
    free_port,
    launch_spec,
    log_tail,
    running_server,
)
from benchmarks.workload import LevelResult, Workload, measure


def _int_list(text: str) -> list[int]:
    values = [int(part) for part in text.split(",") if part.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("expected positive integers like 1,4,8")
    return values


def _server_list(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in SERVER_NAMES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"choose from {','.join(SERVER_NAMES)}")
    return names


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; `--smoke` shrinks everything so a test can run it in seconds."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.throughput",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--servers",
        type=_server_list,
        default=list(SERVER_NAMES),
        help="comma-separated subset of " + ",".join(SERVER_NAMES),
    )
    parser.add_argument(
        "--clients",
        type=_int_list,
        default=[1, 4, 8],
        help="concurrency levels to measure (default 1,4,8)",
    )
    parser.add_argument(
        "--requests", type=int, default=4, help="sequential requests per client (default 4)"
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        help="seconds per level instead of a fixed request count",
    )
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help="GGUF to serve (default: shard's embedded Gemma 3 270M)",
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("SHARD_API_KEY") or f"sk-oracle-{secrets.token_urlsafe(32)}",
        help="bearer key for every server; Shard gets it as SHARD_API_KEY "
        "(default: $SHARD_API_KEY, else a fresh key per run)",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--parallel",
        type=int,
        default=8,
        help="sequences decoded together by Shard and llama-server",
    )
    parser.add_argument("--ctx", type=int, default=2048, help="context per sequence")
    parser.add_argument(
        "--chat-template",
        default="gemma",
        help="built-in chat template given to every server (the default GGUF has none)",
    )
    parser.add_argument("--startup-timeout", type=float, default=600.0)
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=default_cache_dir(),
        help="where the llama-server build and server logs live",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="Markdown report (default docs/benchmarks.md; smoke: cache dir)",
    )
    parser.add_argument(
        "--idle-wait",
        type=float,
        default=300.0,
        help="seconds to wait for other CPU work to stop before each server (smoke: 0)",
    )
    parser.add_argument(
        "--max-other-cpu",
        type=float,
        default=0.05,
        help="share of the CPU other processes may use during a level before it is re-measured",
    )
    parser.add_argument(
        "--retries", type=int, default=2, help="re-measurements of a disturbed level (smoke: 0)"
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="1 client, 2 requests, max_tokens 8: checks the harness works",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.clients, args.requests, args.max_tokens, args.duration = [1], 2, 8, None
        args.idle_wait, args.retries = 0.0, 0
    if args.output is None:
        args.output = args.cache_dir / "smoke.md" if args.smoke else Path("docs/benchmarks.md")
    return args


def resolve_model(explicit: Path | None) -> Path:
    """The GGUF to serve: `--model`, else the one Shard serves by default."""
    if explicit is not None:
        if not explicit.is_file():
            sys.exit(f"model file not found: {explicit}")
        return explicit.resolve()
    try:
        from shard.default_model import default_model_path
    except ImportError as error:
        sys.exit(f"cannot import shard.default_model ({error}); pass --model PATH")
    return default_model_path()


def _without_key(argv: list[str]) -> list[str]:
    """The command line for the report, with any --api-key value masked."""
    shown: list[str] = []
    for part in argv:
        if shown and shown[-1] == "--api-key":
            part = "<key>"
        elif part.startswith("--api-key="):
            part = "--api-key=<key>"
        shown.append(part)
    return shown


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def benchmark_server(
    name: str, config: ServerConfig, args: argparse.Namespace, info: RunInfo
) -> list[LevelResult]:
    """Start one server, measure every concurrency level on it, stop it."""
    busy = wait_for_idle(args.idle_wait)
    if busy is not None:
        info.busy_before[name] = busy
    port = free_port()
    spec = launch_spec(name, config, port)
    info.launch_commands[name] = spec.display(port)
    log = args.cache_dir / "logs" / f"{name}.log"
    results: list[LevelResult] = []
    try:
        with running_server(spec, log, args.startup_timeout) as server:
            for index, clients in enumerate(args.clients):
                workload = Workload(clients, args.requests, args.duration, args.max_tokens)
                for attempt in range(1 + args.retries):
                    if attempt:
                        wait_for_idle(args.idle_wait)
                    meter = OtherLoadMeter(server.pid)
                    meter.start()
                    warmup = index == 0 and attempt == 0
                    result = asyncio.run(
                        measure(name, server.base_url, args.api_key, workload, warmup)
                    )
                    result = dataclasses.replace(result, other_cpu=meter.stop())
                    print(
                        f"  {name} @ {clients} clients: {result.tokens_per_s:.1f} tok/s "
                        f"({result.completion_tokens} tokens in {result.elapsed_s:.1f} s, "
                        f"p50 {result.latency_p50_s:.2f} s, "
                        f"other CPU {_share(result.other_cpu)})",
                        flush=True,
                    )
                    if (result.other_cpu or 0.0) <= args.max_other_cpu:
                        break
                    if attempt < args.retries:
                        print("  other processes shared the CPU: measuring again", flush=True)
                results.append(result)
    except (ServerFailed, RuntimeError, OSError, httpx.HTTPError) as error:
        info.failures[name] = str(error).splitlines()[0]
        print(f"{name} failed: {error}\n{log_tail(log)}", file=sys.stderr, flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit status 1 if any requested server could not be measured."""
    args = parse_args(argv)
    # Turn SIGTERM into SystemExit so the servers' finally blocks stop them.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    model = resolve_model(args.model)
    binary = ensure_llama_server(args.cache_dir) if "llama-server" in args.servers else None
    if "llama-cpp-python" in args.servers:
        ensure_llama_cpp_server_extras()
    config = ServerConfig(
        model=model,
        threads=args.threads,
        parallel=args.parallel,
        ctx_per_sequence=args.ctx,
        chat_template=args.chat_template,
        llama_server_binary=binary,
        api_key=args.api_key,
        work_dir=args.cache_dir,
    )
    info = RunInfo(
        command=shlex.join(
            [
                "python",
                "-m",
                "benchmarks.throughput",
                *_without_key(sys.argv[1:] if argv is None else argv),
            ]
        ),
        model=model,
        servers=args.servers,
        clients=args.clients,
        requests_per_client=args.requests,
        duration_s=args.duration,
        max_tokens=args.max_tokens,
        threads=args.threads,
        parallel=args.parallel,
        ctx_per_sequence=args.ctx,
        max_other_cpu=args.max_other_cpu,
        retries=args.retries,
        llama_server_version=llama_server_version(binary) if binary else None,
    )
    results: list[LevelResult] = []
    for name in args.servers:
        results += benchmark_server(name, config, args, info)
    print()
    print(console_table(results))
    write_report(info, results, args.output)
    return 1 if info.failures else 0


if __name__ == "__main__":
    sys.exit(main())
