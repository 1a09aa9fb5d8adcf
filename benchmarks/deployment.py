"""What the swarm model predicts for the mission's deployment, which no machine here can run:
a 70B ternary oracle on one GPU box, and scouts with 1B drafters on consumer machines 20 to
80 ms away. Every input is an assumption, stated with where it comes from; the testbed is
what checks the model itself (benchmarks/testbed.py).
"""

from dataclasses import dataclass

from benchmarks.swarm_model import SwarmCase, alone, simulate

ORACLE_WEIGHTS_GB = 70e9 * 2.0625 / 8 / 1e9
"""70B parameters at 2.0625 bits each: llama.cpp's TQ2_0 ternary type (256 weights in 66
bytes, ggml-common.h `block_tq2_0`), about 18 GB."""
GPU_BANDWIDTH_GBS = 3350.0
"""One NVIDIA H100 SXM: 3.35 TB/s of HBM3 bandwidth (NVIDIA's H100 datasheet)."""
BANDWIDTH_USED = 0.6
"""Share of that bandwidth a decode step reaches: an assumption (decode kernels rarely pass
60-80% of peak; the lower end is taken)."""
ROW_COST = 0.02
"""Each extra row of a step (a draft token, another sequence) adds 2% to its time while the
step stays bound by reading the weights: an assumption for small batches on a GPU, where a
step of a few dozen rows costs about what one row does."""
SCOUT_RATES: tuple[float, ...] = (40.0, 300.0)
"""A 1B drafter at Q4_K_M (about 0.8 GB), one token at a time: on a consumer CPU, dual-channel
DDR5's ~80 GB/s bounds decode near 100 tok/s, and 40 is assumed; on a consumer GPU (an RTX
4090's ~1 TB/s, NVIDIA's datasheet) the bound is near 1,000, and 300 is assumed."""
ACCEPTANCES = (0.6, 0.8)
"""Chance a drafted token is the oracle's: assumed 0.6 to 0.8, the range speculative decoding
papers report for small drafters of the same family (Leviathan et al., 2023, "Fast
Inference from Transformers via Speculative Decoding"); not measured here."""
ROUND_TRIPS_MS = (20, 80)
"""Oracle to scout and back, as the mission states; half of it each way."""
SEQUENCES = (1, 8)


def oracle_step_s(sequences: int, rows: int) -> float:
    """The assumed oracle: weight reading at BANDWIDTH_USED of one H100, ROW_COST a row."""
    base = ORACLE_WEIGHTS_GB / (GPU_BANDWIDTH_GBS * BANDWIDTH_USED)
    return base * (1 + ROW_COST * (sequences * rows - 1))


@dataclass(frozen=True)
class Prediction:
    sequences: int
    scout_tok_s: float
    round_trip_ms: int
    acceptance: float
    alone_tok_s: float
    swarm_tok_s: float

    @property
    def speedup(self) -> float:
        return self.swarm_tok_s / self.alone_tok_s


def predictions() -> list[Prediction]:
    """Each sequence count with one scout per sequence's worth of work (scouts draft for one
    sequence each here, as Shard assigns one scout per request by default)."""
    rows = []
    for sequences in SEQUENCES:
        solo = alone(oracle_step_s, sequences, padded=False)
        for scout_tok_s in SCOUT_RATES:
            for round_trip in ROUND_TRIPS_MS:
                for acceptance in ACCEPTANCES:
                    case = SwarmCase(
                        sequences=sequences,
                        step_s=oracle_step_s,
                        scout_tok_s=scout_tok_s * sequences,  # one scout per sequence
                        draft_delay_s=round_trip / 2000,
                        news_delay_s=round_trip / 2000,
                        acceptance=acceptance,
                    )
                    swarm = simulate(case)
                    rows.append(
                        Prediction(sequences, scout_tok_s, round_trip, acceptance, solo, swarm)
                    )
    return rows


def deployment_markdown() -> list[str]:
    lines = [
        "### Predicted for the mission's deployment (not measured)",
        "",
        "`benchmarks/deployment.py` feeds the same model a 70B ternary oracle on one GPU and "
        "scouts with 1B drafters on consumer machines. Its assumptions, each with its source, "
        "are in that file's docstrings: TQ2_0 weights (2.0625 bits, about "
        f"{ORACLE_WEIGHTS_GB:.0f} GB), one H100's 3.35 TB/s at {BANDWIDTH_USED:.0%} use "
        f"({oracle_step_s(1, 1) * 1000:.1f} ms a step), {ROW_COST:.0%} more per extra row, "
        "drafters at 40 tok/s (a consumer CPU) or 300 (a consumer GPU), acceptance "
        f"{ACCEPTANCES[0]} to {ACCEPTANCES[-1]}, one scout per request.",
        "",
        "| requests | drafter tok/s | round trip | acceptance | oracle alone tok/s "
        "| with scouts tok/s | speedup |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in predictions():
        lines.append(
            f"| {row.sequences} | {row.scout_tok_s:.0f} | {row.round_trip_ms} ms "
            f"| {row.acceptance} | {row.alone_tok_s:.0f} | {row.swarm_tok_s:.0f} "
            f"| {row.speedup:.2f}x |"
        )
    lines += [
        "",
        "A scout only helps while it drafts faster than the oracle decides: a drafter slower "
        "than the oracle's own rate per request is never ahead, whatever its acceptance.",
    ]
    return [*lines, ""]
