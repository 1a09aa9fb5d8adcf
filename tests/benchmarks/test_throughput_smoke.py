"""A smoke run of the throughput benchmark (tiny settings, Shard only): the harness works."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_smoke_run_writes_a_report(tmp_path: Path) -> None:
    report = tmp_path / "benchmarks.md"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.throughput",
            "--smoke",
            "--servers",
            "shard",
            "--output",
            str(report),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    text = report.read_text()
    assert "python -m benchmarks.throughput" in text
    row = re.search(r"^\| shard \| ([0-9.]+) \|", text, re.MULTILINE)
    assert row is not None, text
    assert float(row.group(1)) > 0
