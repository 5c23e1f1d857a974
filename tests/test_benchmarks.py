"""The benchmarks run and report side-by-side ratios (speed itself is measured by running them, not here)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_throughput_benchmark_reports_a_ratio(tmp_path):
    out = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, "benchmarks/throughput.py", "--preset", "quick", "--vocab-size", "500", "--steps", "2",
         "--rounds", "2", "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert len(report["rounds"]) == 2
    assert report["sizes"] == {"vocab": 500, "embed": 64, "hidden": 128, "layers": 3, "batch": 16, "bptt": 35}
    for row in report["rounds"]:
        assert math.isclose(row["ratio"], row["awd_tok_s"] / row["plain_tok_s"], rel_tol=1e-9)
        assert row["awd_tok_s"] > 0 and row["plain_tok_s"] > 0
    assert "throughput:" in result.stderr
