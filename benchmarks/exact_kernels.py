"""What Shard's exact kernels cost a prompt that follows a long cached history.

Shard's context (shard/engine/llama_model.py) uses F16 K with BF16 V, flash attention, and no
tiled or repacked matmuls, so that decoding several tokens at once gives the logits of one at
a time, bit for bit. With K and V of different types ggml's flash attention runs its
one-query kernel for every row, where llama.cpp's defaults (F16 K and V, tiled attention and
matmuls, repacked weights) tile a prompt's rows. This measures, with llama.cpp alone (no HTTP,
no Python server), how long one decode of `new` prompt tokens takes after `cached` tokens
already in the KV cache, for both contexts: the cost a multi-turn chat's turn pays.

Each context runs in its own process (the tiled-matmul switch is read once per process),
the two alternate `--rounds` times, and each figure is the fastest of its repetitions.

    python -m benchmarks.exact_kernels --output /tmp/bench/kernels.md
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

CONTEXTS = ("shard", "llama.cpp defaults")
CASES = ((0, 1), (0, 16), (1000, 1), (1000, 16))  # (cached, new)
N_SEQ = 8
N_CTX_PER_SEQ = 2048


def measure(context: str, threads: int, repetitions: int) -> dict[str, float]:
    """Fastest seconds per case for one context, in this process."""
    exact = context == "shard"
    if exact:
        os.environ["GGML_CPU_TILED_MM"] = "0"  # before llama.cpp loads its CPU backend
    import llama_cpp

    from shard.default_model import default_model_path

    llama_cpp.llama_backend_init()
    model_params = llama_cpp.llama_model_default_params()
    model_params.use_extra_bufts = not exact  # repacked weights
    model = llama_cpp.llama_model_load_from_file(str(default_model_path()).encode(), model_params)
    params = llama_cpp.llama_context_default_params()
    params.n_ctx = N_CTX_PER_SEQ * N_SEQ
    params.n_seq_max = N_SEQ
    params.n_batch = 512 + N_SEQ
    params.n_ubatch = 512
    params.n_threads = params.n_threads_batch = threads
    params.kv_unified = not exact
    params.flash_attn_type = 1  # on
    params.type_k = 1  # F16
    params.type_v = 30 if exact else 1  # BF16 : F16
    params.no_perf = True
    context_ = llama_cpp.llama_init_from_model(model, params)
    memory = llama_cpp.llama_get_memory(context_)
    batch = llama_cpp.llama_batch_init(512, 0, 1)

    def decode(start: int, count: int) -> None:
        batch.n_tokens = count
        for i in range(count):
            batch.token[i] = 100 + (start + i) % 5000
            batch.pos[i] = start + i
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = i == count - 1
        if llama_cpp.llama_decode(context_, batch) != 0:
            raise RuntimeError("llama_decode failed")

    fastest: dict[str, float] = {}
    for cached, new in CASES:
        times = []
        for _ in range(repetitions):
            llama_cpp.llama_memory_seq_rm(memory, 0, -1, -1)
            for start in range(0, cached, 500):
                decode(start, min(500, cached - start))
            began = time.perf_counter()
            decode(cached, new)
            times.append(time.perf_counter() - began)
        fastest[f"{cached}+{new}"] = min(times)
    llama_cpp.llama_batch_free(batch)
    llama_cpp.llama_free(context_)
    llama_cpp.llama_model_free(model)
    return fastest


def report(results: dict[str, list[dict[str, float]]], args: argparse.Namespace) -> str:
    """Markdown: the fastest round per case and context, and Shard's over the defaults."""
    lines = [
        "## Exact kernels: one decode of a prompt's new tokens after a cached history",
        "",
        f"llama.cpp alone, {args.threads} threads, {N_SEQ} sequences of {N_CTX_PER_SEQ}; "
        f"each figure the fastest of {args.repetitions} repetitions over {args.rounds} "
        "alternating rounds. `shard` is Shard's context (F16 K, BF16 V, flash attention, no "
        "tiled or repacked matmuls); `llama.cpp defaults` is F16 K and V with tiled attention "
        "and matmuls and repacked weights, as llama-server runs.",
        "",
        "| cached tokens | new tokens | shard (ms) | llama.cpp defaults (ms) | shard / defaults |",
        "|---:|---:|---:|---:|---:|",
    ]
    for cached, new in CASES:
        key = f"{cached}+{new}"
        ours = min(r[key] for r in results["shard"])
        theirs = min(r[key] for r in results["llama.cpp defaults"])
        lines.append(
            f"| {cached} | {new} | {ours * 1000:.1f} | {theirs * 1000:.1f} | {ours / theirs:.2f}x |"
        )
    command = " ".join(["python -m benchmarks.exact_kernels", *sys.argv[1:]])
    lines += ["", f"Reproduce: `{command}`", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repetitions", type=int, default=8)
    parser.add_argument("--output", type=Path, default=None, help="Markdown file to write")
    parser.add_argument("--context", choices=CONTEXTS, help=argparse.SUPPRESS)  # a child
    args = parser.parse_args()
    if args.context:
        print(json.dumps(measure(args.context, args.threads, args.repetitions)))
        return
    results: dict[str, list[dict[str, float]]] = {name: [] for name in CONTEXTS}
    for round_ in range(args.rounds):
        for name in CONTEXTS:
            child = [
                sys.executable, "-m", "benchmarks.exact_kernels", "--context", name,
                "--threads", str(args.threads), "--repetitions", str(args.repetitions),
            ]  # fmt: skip
            out = subprocess.run(child, check=True, capture_output=True, text=True).stdout
            results[name].append(json.loads(out.strip().splitlines()[-1]))
            print(f"round {round_ + 1}, {name}: {results[name][-1]}", flush=True)
    text = report(results, args)
    print(text)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)


if __name__ == "__main__":
    main()
