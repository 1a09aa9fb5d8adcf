"""Decode timings measured at start are kept for the next start with the same key, and
measured afresh when missing, unreadable, stale or for other settings."""

from pathlib import Path

from shard.engine.spec.calibration import CalibrationCache, calibration_key
from shard.engine.spec.planner import DraftPlanner
from tests.fake_model import FakeModel


def calibrated(cache: CalibrationCache, key: str) -> tuple[DraftPlanner, int]:
    model = FakeModel(step_seconds=lambda tokens: 0.0005 * tokens)
    planner = DraftPlanner()
    planner.calibrate(model, model.new_batch(64), 8, cache, key)
    return planner, len(model.decoded_batches)


def test_a_restart_reuses_the_timings(tmp_path: Path) -> None:
    cache = CalibrationCache(tmp_path / "timings.json")
    first, decodes = calibrated(cache, "k")
    assert decodes == 2 * 8  # sizes 1..8, each warmed up once
    again, decodes = calibrated(cache, "k")
    assert decodes == 0
    assert again.cost.measured() == first.cost.measured()
    assert first.cost.estimate(8) > first.cost.estimate(1)  # type: ignore[operator]


def test_other_settings_stale_or_broken_files_measure_again(tmp_path: Path) -> None:
    path = tmp_path / "timings.json"
    calibrated(CalibrationCache(path), "k")
    assert calibrated(CalibrationCache(path), "other")[1] == 16
    assert calibrated(CalibrationCache(path, max_age_s=-1), "k")[1] == 16
    path.write_text("{not json")
    assert calibrated(CalibrationCache(path), "k")[1] == 16
    assert calibrated(CalibrationCache(path), "k")[1] == 0  # rewritten


def test_the_key_changes_with_the_model_file_and_settings(tmp_path: Path) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"one")
    key = calibration_key(model, 2048, 8)
    assert key == calibration_key(model, 2048, 8)
    assert key != calibration_key(model, 2048, 4)
    model.write_bytes(b"other")
    assert key != calibration_key(model, 2048, 8)
