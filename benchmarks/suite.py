"""The benchmark suite: one command, one report (docs/benchmarks.md) and its plots.

    python -m benchmarks.suite                  # full run, about 45 minutes on 2 idle cores
    python -m benchmarks.suite --smoke --servers shard --output /tmp/bench/benchmarks.md

Sections, in order (`--sections` picks some):

- comparison: Shard against llama-cpp-python's server, llama-server and llama-server with its
  n-gram drafts (`llama-server-ngram`): tokens/s, latency, time to first token and
  single-stream decode at 1, 4, 8 and 16 concurrent clients, greedy and at temperature 0.7
  (`--samplings`), and with top_p 0.9 or a presence penalty at 1 and 8 clients
  (`--processed-clients`); about 25 minutes;
- multi-turn: one client's 8-turn chat with Shard, llama-server and llama-server-ngram, time
  to first token per turn as the history grows (`--turns`); about 3 minutes;
- grounded: input-grounded tasks (edit given code, extract from given text) with drafts off,
  n-gram drafts and a scout, and on both llama-servers; speedup, byte-identical output,
  acceptance; about 5 minutes;
- scout-failures: throughput beside a dead, a slow and a hostile scout; about 3 minutes;
- structured: the cost of a token held to a JSON schema, and whether the answers parse, on
  Shard with drafts off, Shard and llama-server (`--structured-prompts`); about 4 minutes;
- weight-types: per weight type made from the embedded model (F32 ... TQ2_0,
  `--weight-types`), loaded in this process: whether drafts are exact as is and with single
  rows padded to two, a 500-token prompt, and decode steps of 1 and 8 sequences x 1, 2 and 4
  tokens with the draft cost (1x2 / 1x1, 8x2 / 8x1); about 3 minutes (the first run also makes
  the files). It measures the llama-cpp-python that Python imports, so
  `PYTHONPATH=/path/to/other/build python -m benchmarks.suite --sections weight-types` measures
  another build (one made with `CMAKE_ARGS="-DGGML_LLAMAFILE=OFF"`, say);
- testbed: a scout on a core of its own (benchmarks/testbed.py): the F32 oracle pinned to one
  core, alone and beside a Q4_K_M scout pinned to the other, at 0 and 20 ms added latency, 1
  and 4 clients (4 requests each, back to back), greedy and seeded sampling; speedup,
  acceptance, identical output, efficiency against a ceiling, and the swarm model's
  prediction; about 9 minutes a run
  (`--testbed-runs`, default 1).

Servers run one at a time and are always stopped. See benchmarks/README.md.
"""

import argparse
import dataclasses
import os
import secrets
import shlex
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from benchmarks.grounded import (
    GROUNDED_MODES,
    PEER_MODES,
    GroundedPlan,
    drafts_changed_output,
    run_grounded,
    summarize_grounded,
)
from benchmarks.harness import Harness, Journal
from benchmarks.llama_server_build import (
    default_cache_dir,
    ensure_llama_server,
    llama_server_version,
)
from benchmarks.multi_turn import (
    FOLLOW_UPS,
    MULTI_TURN_SERVERS,
    MultiTurnPlan,
    chat_tokens,
    run_multi_turn,
)
from benchmarks.plots import comparison_plot, failure_plot, grounded_plot
from benchmarks.report import RunInfo, SuiteResults, markdown, results_markdown
from benchmarks.sampling import SAMPLINGS, SMOKE_SAMPLINGS
from benchmarks.scout_failures import (
    FAILURE_SCENARIOS,
    FailurePlan,
    run_scout_failures,
    summarize_failures,
)
from benchmarks.scouts import shard_scout_missing
from benchmarks.servers import (
    LLAMA_SERVERS,
    SERVER_NAMES,
    ServerConfig,
    ensure_llama_cpp_server_extras,
)
from benchmarks.structured import VARIANTS, StructuredPlan, run_structured
from benchmarks.testbed import FairTestbedPlan, run_testbed
from benchmarks.throughput import ComparisonPlan, run_comparison
from benchmarks.weight_types import (
    SMOKE_WEIGHT_TYPES,
    WEIGHT_TYPES,
    WeightTypesPlan,
    run_weight_types,
)
from benchmarks.workload import summarize

SECTIONS: tuple[str, ...] = (
    "comparison",
    "multi-turn",
    "grounded",
    "scout-failures",
    "structured",
    "weight-types",
    "testbed",
)
SMOKE_SKIPS = ("testbed",)  # it makes a 1 GB F32 file and runs for minutes


def _int_list(text: str) -> list[int]:
    values = [int(part) for part in text.split(",") if part.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("expected positive integers like 1,4,8")
    return values


def _latencies(text: str) -> list[int]:
    values = [int(part) for part in text.split(",") if part.strip()]
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError("expected milliseconds like 0,20")
    return values


def _choices(allowed: tuple[str, ...]) -> Callable[[str], list[str]]:
    """A comma-separated subset of `allowed`, as an argparse type."""

    def parse(text: str) -> list[str]:
        names = [part.strip() for part in text.split(",") if part.strip()]
        if not names or any(name not in allowed for name in names):
            raise argparse.ArgumentTypeError(f"choose from {','.join(allowed)}")
        return names

    return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; `--smoke` shrinks everything so a test can run it in seconds."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.suite",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--sections",
        type=_choices(SECTIONS),
        default=None,
        help=f"comma-separated subset of {','.join(SECTIONS)} (default: all; smoke: all "
        "but the testbed)",
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=None,
        help="times every measurement is taken; the report shows medians (default 3; smoke 1)",
    )
    group = parser.add_argument_group("comparison")
    group.add_argument(
        "--servers",
        type=_choices(SERVER_NAMES),
        default=list(SERVER_NAMES),
        help="comma-separated subset of " + ",".join(SERVER_NAMES),
    )
    group.add_argument(
        "--clients",
        type=_int_list,
        default=[1, 4, 8, 16],
        help="concurrency levels (default 1,4,8,16)",
    )
    group.add_argument(
        "--requests",
        type=int,
        default=2,
        help="sequential requests per client per level and run (default 2)",
    )
    group.add_argument(
        "--duration",
        type=float,
        default=None,
        help="seconds per level and run instead of a fixed request count",
    )
    group.add_argument(
        "--max-tokens",
        type=int,
        default=128,
        help="max_tokens of comparison and scout-failure requests (default 128)",
    )
    group.add_argument(
        "--samplings",
        type=_choices(tuple(SAMPLINGS)),
        default=None,
        help="sampling presets, subset of " + ",".join(SAMPLINGS) + " (default: all; smoke: "
        "greedy,sampled); each runs only on its servers, see benchmarks/sampling.py",
    )
    group.add_argument(
        "--processed-clients",
        type=_int_list,
        default=[1, 8],
        help="concurrency levels of the top-p and presence presets (default 1,8; smoke 1)",
    )
    group = parser.add_argument_group("multi-turn")
    group.add_argument(
        "--turns",
        type=int,
        default=8,
        choices=range(1, 2 + len(FOLLOW_UPS)),
        metavar=f"1..{1 + len(FOLLOW_UPS)}",
        help="turns of each chat (default 8; smoke 2)",
    )
    group.add_argument(
        "--multi-turn-max-tokens",
        type=int,
        default=150,
        help="max_tokens of each reply (default 150; smoke 16)",
    )
    group = parser.add_argument_group("structured")
    group.add_argument(
        "--structured-prompts",
        type=int,
        default=4,
        help="prompts per run, each free and constrained, greedy and sampled (default 4; smoke 1)",
    )
    group.add_argument(
        "--structured-max-tokens",
        type=int,
        default=200,
        help="max_tokens of each answer (default 200, room for the bounded schema; smoke 24)",
    )
    group = parser.add_argument_group("grounded")
    group.add_argument(
        "--grounded-modes",
        type=_choices(GROUNDED_MODES),
        default=list(GROUNDED_MODES),
        help="modes, subset of " + ",".join(GROUNDED_MODES) + " (the llama-server modes run "
        "only when --servers names them too)",
    )
    group.add_argument(
        "--grounded-max-tokens",
        type=int,
        default=384,
        help="max_tokens of each task's answer (default 384; smoke 32)",
    )
    group.add_argument(
        "--grounded-time-limit",
        type=float,
        default=30.0,
        help="seconds one answer may take; a slower one stops its mode (default 30; smoke 20)",
    )
    group = parser.add_argument_group("scout-failures")
    group.add_argument(
        "--failure-scouts",
        type=_choices(FAILURE_SCENARIOS),
        default=list(FAILURE_SCENARIOS),
        help="scenarios, subset of " + ",".join(FAILURE_SCENARIOS),
    )
    group.add_argument(
        "--failure-clients", type=int, default=4, help="concurrent clients (default 4; smoke 2)"
    )
    group.add_argument(
        "--failure-requests",
        type=int,
        default=3,
        help="requests per client per run (default 3; smoke 1)",
    )
    group.add_argument(
        "--failure-time-limit",
        type=float,
        default=60.0,
        help="seconds a run may take; a scenario whose run takes longer is stopped and "
        "reported as slower than that (default 60, about twice a run here; smoke 20)",
    )
    group = parser.add_argument_group("weight-types")
    group.add_argument(
        "--weight-types",
        type=_choices(WEIGHT_TYPES),
        default=None,
        help="weight types, subset of "
        + ",".join(WEIGHT_TYPES)
        + " (default: all; smoke: "
        + ",".join(SMOKE_WEIGHT_TYPES)
        + "); all but the embedded Q4_K_M are made once into the cache dir",
    )
    group.add_argument(
        "--weight-type-repetitions",
        type=int,
        default=15,
        help="timed repetitions of each decode step shape, after a warm-up (default 15; "
        "smoke 3); the prompt is timed 3 times (smoke 1)",
    )
    group = parser.add_argument_group("testbed")
    group.add_argument(
        "--testbed-latencies",
        type=_latencies,
        default=[0, 20],
        help="milliseconds added to each scout draft, one workload set each (default 0,20)",
    )
    group.add_argument("--testbed-clients", type=_int_list, default=[1, 4], help="default 1,4")
    group.add_argument(
        "--testbed-samplings",
        type=_choices(("greedy", "sampled")),
        default=["greedy", "sampled"],
        help="greedy and/or seeded temperature 0.7 (default both)",
    )
    group.add_argument(
        "--testbed-runs",
        type=int,
        default=1,
        help="times each testbed workload is measured (default 1: the section takes about "
        "9 minutes a run)",
    )
    group = parser.add_argument_group("servers")
    group.add_argument(
        "--model",
        type=Path,
        default=None,
        help="GGUF to serve (default: shard's embedded Gemma 3 270M)",
    )
    group.add_argument(
        "--api-key",
        default=os.environ.get("SHARD_API_KEY") or f"sk-oracle-{secrets.token_urlsafe(32)}",
        help="bearer key for every server and scout; Shard gets it as SHARD_API_KEY "
        "(default: $SHARD_API_KEY, else a fresh key per run)",
    )
    group.add_argument("--threads", type=int, default=2)
    group.add_argument(
        "--parallel",
        type=int,
        default=8,
        help="sequences decoded together by Shard and llama-server",
    )
    group.add_argument("--ctx", type=int, default=2048, help="context per sequence")
    group.add_argument(
        "--chat-template",
        default="gemma",
        help="built-in chat template given to every server (the default GGUF has none)",
    )
    group.add_argument("--startup-timeout", type=float, default=600.0)
    group.add_argument(
        "--scout-timeout",
        type=float,
        default=120.0,
        help="seconds a scout may take to join the oracle",
    )
    group.add_argument(
        "--scout-threads",
        type=int,
        default=1,
        help="llama.cpp threads of each drafting scout, which shares the cores with the "
        "oracle (default 1)",
    )
    group = parser.add_argument_group("harness")
    group.add_argument(
        "--cache-dir",
        type=Path,
        default=default_cache_dir(),
        help="where the llama-server build and the logs live",
    )
    group.add_argument(
        "--output",
        type=Path,
        default=None,
        help="Markdown report (default docs/benchmarks.md; smoke: cache dir)",
    )
    group.add_argument(
        "--idle-wait",
        type=float,
        default=300.0,
        help="seconds to wait for other CPU work to stop before each server (smoke: 0)",
    )
    group.add_argument(
        "--max-other-cpu",
        type=float,
        default=0.05,
        help="share of the CPU other processes may use during a measurement "
        "before it is taken again",
    )
    group.add_argument(
        "--retries",
        type=int,
        default=2,
        help="re-measurements of a disturbed measurement (smoke: 0)",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="1 client, 2 requests, max_tokens 8, greedy and temperature 0.7 only, 2 chat "
        "turns, 1 run, weight type Q4_K_M only: checks the harness works",
    )
    args = parser.parse_args(argv)
    if args.sections is None:
        skipped = SMOKE_SKIPS if args.smoke else ()
        args.sections = [section for section in SECTIONS if section not in skipped]
    if args.smoke:
        args.clients, args.requests, args.max_tokens, args.duration = [1], 2, 8, None
        args.idle_wait, args.retries = 0.0, 0
        args.grounded_max_tokens, args.failure_clients, args.failure_requests = 32, 2, 1
        args.failure_time_limit = args.grounded_time_limit = 20.0
        args.processed_clients, args.turns, args.multi_turn_max_tokens = [1], 2, 16
        args.weight_type_repetitions = 3
        args.structured_prompts, args.structured_max_tokens = 1, 24
    if args.weight_types is None:
        args.weight_types = list(SMOKE_WEIGHT_TYPES if args.smoke else WEIGHT_TYPES)
    if args.weight_type_repetitions < 1:
        parser.error("--weight-type-repetitions must be at least 1")
    if args.samplings is None:
        args.samplings = list(SMOKE_SAMPLINGS if args.smoke else SAMPLINGS)
    # a peer runs the grounded tasks only when it is one of the servers under test
    args.grounded_modes = [
        mode for mode in args.grounded_modes if mode not in PEER_MODES or mode in args.servers
    ]
    if (
        "multi-turn" in args.sections
        and chat_tokens(args.turns, args.multi_turn_max_tokens) > args.ctx
    ):
        parser.error(
            f"{args.turns} turns of up to {args.multi_turn_max_tokens} tokens may not fit in "
            f"--ctx {args.ctx} tokens per sequence: fewer turns or a larger --ctx"
        )
    if args.runs is None:
        args.runs = 1 if args.smoke else 3
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


def without_key(argv: list[str]) -> list[str]:
    """The command line for the report, with any --api-key value masked."""
    shown: list[str] = []
    for part in argv:
        if shown and shown[-1] == "--api-key":
            part = "<key>"
        elif part.startswith("--api-key="):
            part = "--api-key=<key>"
        shown.append(part)
    return shown


def write_report(results: SuiteResults, output: Path) -> None:
    """Write the Markdown report and, beside it, the plots it links to."""
    output.parent.mkdir(parents=True, exist_ok=True)
    plots: dict[str, Path] = {}
    path = output.with_suffix(".png")
    if comparison_plot(summarize(results.comparison), path):
        plots["comparison"] = path
    if results.grounded is not None:
        path = output.with_name(f"{output.stem}-grounded.png")
        if grounded_plot(summarize_grounded(results.grounded), path):
            plots["grounded"] = path
    if results.failures is not None and results.failure_plan is not None:
        path = output.with_name(f"{output.stem}-scouts.png")
        if failure_plot(summarize_failures(results.failures, results.failure_plan), path):
            plots["failures"] = path
    output.write_text(markdown(results, plots))
    print(results_markdown(results, {}))
    shown = " and ".join(str(path) for path in plots.values())
    print(f"wrote {output}" + (f" and {shown}" if shown else ""), flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run the chosen sections; exit status 1 if something could not be measured or greedy
    output differed with drafts."""
    args = parse_args(argv)
    # Turn SIGTERM into SystemExit so the servers' finally blocks stop them.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    model = resolve_model(args.model)
    comparing = "comparison" in args.sections
    chat_servers = [name for name in args.servers if name in MULTI_TURN_SERVERS]
    wanted = [
        *(args.servers if comparing else []),
        *(chat_servers if "multi-turn" in args.sections else []),
        *(args.grounded_modes if "grounded" in args.sections else []),
        *(args.servers if "structured" in args.sections else []),
    ]
    needs_binary = any(name in LLAMA_SERVERS for name in wanted)
    binary = ensure_llama_server(args.cache_dir) if needs_binary else None
    if comparing and "llama-cpp-python" in args.servers:
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
        reuse_decode_timings=args.smoke,
    )
    harness = Harness(
        log_dir=args.cache_dir / "logs",
        startup_timeout_s=args.startup_timeout,
        scout_timeout_s=args.scout_timeout,
        scout_threads=args.scout_threads,
        idle_wait_s=args.idle_wait,
        max_other_cpu=args.max_other_cpu,
        retries=args.retries,
        runs=args.runs,
    )
    argv_shown = without_key(sys.argv[1:] if argv is None else argv)
    results = SuiteResults(
        info=RunInfo(
            command=shlex.join(["python", "-m", "benchmarks.suite", *argv_shown]),
            model=model,
            threads=args.threads,
            parallel=args.parallel,
            ctx_per_sequence=args.ctx,
            runs=args.runs,
            max_other_cpu=args.max_other_cpu,
            retries=args.retries,
            llama_server_version=llama_server_version(binary) if binary else None,
        ),
        journal=Journal(),
    )
    if comparing:
        results.comparison_plan = ComparisonPlan(
            servers=tuple(args.servers),
            clients=tuple(args.clients),
            requests_per_client=args.requests,
            duration_s=args.duration,
            max_tokens=args.max_tokens,
            samplings=tuple(args.samplings),
            processed_clients=tuple(args.processed_clients),
        )
        results.comparison = run_comparison(
            results.comparison_plan, config, harness, results.journal
        )
    if "multi-turn" in args.sections:
        results.multi_turn_plan = MultiTurnPlan(
            servers=tuple(chat_servers),
            turns=args.turns,
            max_tokens=args.multi_turn_max_tokens,
        )
        results.multi_turn = run_multi_turn(
            results.multi_turn_plan, config, harness, results.journal
        )
    scout_missing = None
    if "grounded" in args.sections or "scout-failures" in args.sections:
        scout_missing = shard_scout_missing()
    if "grounded" in args.sections:
        results.grounded_plan = GroundedPlan(
            modes=tuple(args.grounded_modes),
            max_tokens=args.grounded_max_tokens,
            time_limit_s=args.grounded_time_limit,
        )
        results.grounded = run_grounded(
            results.grounded_plan, config, harness, results.journal, scout_missing
        )
    if "scout-failures" in args.sections:
        results.failure_plan = FailurePlan(
            scenarios=tuple(args.failure_scouts),
            clients=args.failure_clients,
            requests_per_client=args.failure_requests,
            max_tokens=args.max_tokens,
            time_limit_s=args.failure_time_limit,
        )
        results.failures = run_scout_failures(
            results.failure_plan, config, harness, results.journal, scout_missing
        )
    if "structured" in args.sections:
        results.structured_plan = StructuredPlan(
            variants=tuple(
                v.label
                for v in VARIANTS
                if (v.server == "shard" or v.server in args.servers)
                and not (args.smoke and v.shard_args == ())  # smoke: the constraint's own cost
            ),
            prompts=args.structured_prompts,
            max_tokens=args.structured_max_tokens,
        )
        results.structured = run_structured(
            results.structured_plan, config, harness, results.journal
        )
    if "weight-types" in args.sections:
        results.weight_types_plan = WeightTypesPlan(
            types=tuple(args.weight_types),
            threads=args.threads,
            step_repetitions=args.weight_type_repetitions,
            prompt_repetitions=1 if args.smoke else 3,
        )
        results.weight_types = run_weight_types(
            results.weight_types_plan, args.cache_dir, harness, results.journal
        )
    if "testbed" in args.sections:
        results.testbed_plan = FairTestbedPlan(
            latencies_ms=tuple(args.testbed_latencies),
            clients=tuple(args.testbed_clients),
            samplings=tuple(args.testbed_samplings),
        )
        results.testbed_runs = args.testbed_runs
        testbed_harness = dataclasses.replace(harness, runs=args.testbed_runs)
        results.testbed = run_testbed(
            results.testbed_plan, config, testbed_harness, results.journal, args.cache_dir
        )
    write_report(results, args.output)
    differing = results.grounded is not None and drafts_changed_output(
        summarize_grounded(results.grounded)
    )
    if differing:
        print("greedy output differed with drafts: see the report", file=sys.stderr)
    return 1 if results.journal.failures or differing else 0


if __name__ == "__main__":
    sys.exit(main())
