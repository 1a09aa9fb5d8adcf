"""The weight-types section of the report: exactness per type, prompt and step costs, the draft
cost and its break-even acceptance, what the padding costs, and the build it ran on; plus the
command-line defaults and where the converted files go."""

from pathlib import Path

import pytest

from benchmarks.harness import Journal
from benchmarks.report import RunInfo, SuiteResults, markdown
from benchmarks.suite import parse_args
from benchmarks.weight_types import (
    WEIGHT_TYPES,
    BuildInfo,
    WeightTypeRow,
    WeightTypesOutcome,
    WeightTypesPlan,
    weight_type_file,
)

LLAMAFILE_BUILD = BuildInfo(
    "0.3.36",
    "/venv/site-packages/llama_cpp",
    "CPU : AVX2 = 1 | LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1 |",
)
PLAIN_BUILD = BuildInfo("0.3.36", "/tmp/nolf/llama_cpp", "CPU : AVX2 = 1 | OPENMP = 1 |")


def steps(*values: float) -> dict[tuple[int, int], float]:
    shapes = ((1, 1), (1, 2), (1, 4), (8, 1), (8, 2), (8, 4))
    return dict(zip(shapes, values, strict=True))


def rows() -> list[WeightTypeRow]:
    return [
        # F16 is exact only padded: Shard pads it
        WeightTypeRow(
            "F16", 518.2, False, True, 854.6, 900.0, steps(15.8, 34.33, 37.72, 54.01, 77.52, 145.82)
        ),
        WeightTypeRow(
            "Q4_K_M",
            241.4,
            True,
            True,
            939.6,
            950.0,
            steps(13.48, 24.51, 30.37, 43.44, 69.69, 126.04),
            other_cpu=0.02,
        ),
        # a draft cost under 2x at 1 sequence: a one-token draft pays above 40% acceptance
        WeightTypeRow(
            "Q8_0", 276.0, True, True, 686.1, 690.0, steps(20.0, 28.0, 31.52, 42.97, 63.59, 113.88)
        ),
    ]


@pytest.fixture
def results(tmp_path: Path) -> SuiteResults:
    model = tmp_path / "model.gguf"
    model.write_bytes(b"\0" * 1024)
    info = RunInfo(
        "python -m benchmarks.suite --sections weight-types", model, 2, 8, 2048, 3, 0.05, 2
    )
    outcome = WeightTypesOutcome(
        LLAMAFILE_BUILD,
        Path("/cache/gemma-3-270m-q4_k_m.gguf"),
        Path("/cache/bench/weight-types"),
        rows=rows(),
    )
    return SuiteResults(
        info=info,
        journal=Journal(),
        weight_types_plan=WeightTypesPlan(("F16", "Q4_K_M", "Q8_0"), 2),
        weight_types=outcome,
    )


def _section(text: str) -> str:
    start = text.index("## Weight types: exactness and kernel costs\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def test_one_row_per_type_with_exactness_costs_and_draft_cost(results: SuiteResults) -> None:
    text = _section(markdown(results, {}))
    assert (
        "| type | file (MiB) | exact as is | exact padded | Shard pads | prompt tok/s "
        "| prompt padded tok/s | 1x1 (ms) | 1x2 (ms) | 1x4 (ms) | 8x1 (ms) | 8x2 (ms) "
        "| 8x4 (ms) | draft cost 1 seq (1x2 / 1x1) | draft cost 8 seqs (8x2 / 8x1) | other CPU |"
        in text
    )
    # 500 tokens in 854.6 ms = 585 tokens/s (padded: 900 ms, 556); 34.33 / 15.8 = 2.17x,
    # 77.52 / 54.01 = 1.44x; no CPU meter: n/a
    assert (
        "| F16 | 518 | no | yes | yes | 585 | 556 | 15.8 | 34.3 | 37.7 | 54.0 | 77.5 | 145.8 "
        "| 2.17x | 1.44x | n/a |" in text
    )
    assert (
        "| Q4_K_M | 241 | yes | yes | no | 532 | 526 | 13.5 | 24.5 | 30.4 | 43.4 | 69.7 | 126.0 "
        "| 1.82x | 1.60x | 2% |" in text
    )
    assert text.index("| F16 |") < text.index("| Q4_K_M |") < text.index("| Q8_0 |")


def test_build_line_and_mechanism_on_a_llamafile_build(results: SuiteResults) -> None:
    text = _section(markdown(results, {}))
    assert (
        "Build: llama-cpp-python 0.3.36 from `/venv/site-packages/llama_cpp`, llamafile **on** "
        "(`LLAMAFILE = 1` in `llama_print_system_info()`): "
        "`CPU : AVX2 = 1 | LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1 |`" in text
    )
    assert "llamafile's sgemm computes matmuls of 2+ rows" in text
    assert "Measured: not exact as is: F16." in text
    assert "`ContextShape(n_ctx_per_seq=1024, n_seq=8, n_batch=512, threads=2)`" in text
    assert "`gemma-3-270m-q4_k_m.gguf`" in text and "`/cache/bench/weight-types`" in text
    assert "median of 15 after a warm-up" in text and "median of 3 after a warm-up" in text


def test_what_the_padding_costs_names_the_padded_types_only(results: SuiteResults) -> None:
    text = _section(markdown(results, {}))
    assert (
        "Shard pads single rows for F16: a decode that would have one row with logits gets a "
        "second" in text
    )
    assert (
        "a lone sequence without a draft pays the 1x2 step instead of 1x1 "
        "(F16 34.3 ms instead of 15.8, 2.17x); a lone prompt's last chunk asks for two rows "
        "of logits (F16 556 instead of 585 tokens/s)." in text
    )
    assert "With 2+ sequences decoding together, or with a draft," in text
    assert "Q4_K_M 24.5 ms instead of" not in text  # exact as is: not padded
    assert "Not exact even padded" not in text


def test_break_even_acceptance_of_a_one_token_draft(results: SuiteResults) -> None:
    text = _section(markdown(results, {}))
    # 1 sequence: F16 is padded (its plain step is 1x2 already), Q4_K_M 1.82x, Q8_0 28/20
    assert "- 1 sequence: F16 0% (padded), Q4_K_M 82%, Q8_0 40%\n" in text
    # 8 sequences: 77.52/54.01, 69.69/43.44, 63.59/42.97
    assert "- 8 sequences: F16 44%, Q4_K_M 60%, Q8_0 48%\n" in text


def test_a_draft_cost_of_two_or_more_never_pays(results: SuiteResults) -> None:
    assert results.weight_types is not None
    results.weight_types.rows = [
        WeightTypeRow("Q6_K", 200.0, True, True, 800.0, 800.0, steps(10, 25, 30, 40, 80, 120))
    ]
    text = _section(markdown(results, {}))
    assert "- 1 sequence: Q6_K -\n- 8 sequences: Q6_K -\n" in text
    assert "| 2.50x | 2.00x |" in text
    assert "No type needs the padding on this build, so it costs nothing here." in text
    assert "Measured: every type is exact as is." in text


def test_a_type_not_exact_even_padded_is_flagged(results: SuiteResults) -> None:
    assert results.weight_types is not None
    results.weight_types.rows.append(
        WeightTypeRow("BF16", 518.0, False, False, 1100.0, 1100.0, steps(15, 27, 33, 41, 54, 89))
    )
    text = _section(markdown(results, {}))
    assert "| BF16 | 518 | no | **NO** | no |" in text
    assert "**Not exact even padded: BF16**" in text
    assert "Measured: not exact as is: F16 and BF16." in text
    assert "(F16 34.3 ms instead of 15.8, 2.17x)" in text  # BF16 is not padded
    assert "Shard pads single rows for F16:" in text


def test_a_build_without_llamafile(results: SuiteResults) -> None:
    assert results.weight_types is not None
    results.weight_types.build = PLAIN_BUILD
    text = _section(markdown(results, {}))
    assert "llamafile **off** (no `LLAMAFILE = 1` in `llama_print_system_info()`)" in text
    assert "This build has no llamafile" in text
    assert "llamafile's sgemm computes matmuls" not in text


def test_missing_steps_and_skipped_types(results: SuiteResults) -> None:
    assert results.weight_types is not None
    results.weight_types.rows = [
        WeightTypeRow("TQ1_0", 180.0, True, True, 900.0, 900.0, {(1, 1): 11.0, (8, 2): 66.0})
    ]
    results.weight_types.skipped["TQ2_0"] = "llama_model_quantize to TQ2_0 returned 1"
    text = _section(markdown(results, {}))
    assert (
        "| TQ1_0 | 180 | yes | yes | no | 556 | 556 | 11.0 | n/a | n/a | n/a | 66.0 | n/a " in text
    )
    assert "| n/a | n/a | n/a |" in text  # both draft costs and the CPU share
    assert "Type TQ2_0 was not measured: llama_model_quantize to TQ2_0 returned 1." in text


def test_no_section_when_not_run(results: SuiteResults) -> None:
    results.weight_types = None
    assert "## Weight types" not in markdown(results, {})


def test_command_line_defaults() -> None:
    full = parse_args(["--sections", "weight-types"])
    assert full.weight_types == list(WEIGHT_TYPES) and full.weight_type_repetitions == 15
    assert "weight-types" in parse_args([]).sections  # a full run includes it
    smoke = parse_args(["--smoke"])
    assert smoke.weight_types == ["Q4_K_M"] and smoke.weight_type_repetitions == 3
    chosen = parse_args(["--smoke", "--weight-types", "Q8_0,F16"])
    assert chosen.weight_types == ["Q8_0", "F16"]
    with pytest.raises(SystemExit):
        parse_args(["--weight-types", "Q3_K"])


def test_converted_files_are_made_once_and_reused(tmp_path: Path) -> None:
    source = tmp_path / "gemma-3-270m-q4_k_m.gguf"
    assert weight_type_file("Q4_K_M", source, tmp_path / "types") == source  # itself
    made = tmp_path / "types" / "gemma-3-270m-f16.gguf"
    made.parent.mkdir()
    made.write_bytes(b"GGUF")
    assert weight_type_file("F16", source, tmp_path / "types") == made  # no quantizing
