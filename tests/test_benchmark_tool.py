"""tools/benchmark.py: rows print as a table and write as the documented JSON."""

import importlib.util
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _benchmark_module():
    spec = importlib.util.spec_from_file_location("benchmark_tool", REPO / "tools" / "benchmark.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rows_print_and_serialise(tmp_path, capsys, monkeypatch):
    tool = _benchmark_module()
    from benchmarks.common import Row

    rows = [Row("hard voxelize", "KITTI", 0.002, "spconv PointToVoxel", 0.005), Row("simulate sweep", "32-beam", 0.01)]
    monkeypatch.setattr(tool, "ops_rows", lambda repeats, areas: rows)
    assert tool.main(["ops", "--json", str(tmp_path / "rows.json"), "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "hard voxelize" in out and "2.50x" in out
    document = json.loads((tmp_path / "rows.json").read_text())
    assert document[0] == {"name": "hard voxelize", "input": "KITTI", "seconds": 0.002,
                           "baseline": "spconv PointToVoxel", "baseline_seconds": 0.005, "speedup": 2.5,
                           "peak_mib": None, "baseline_peak_mib": None}
    assert document[1]["speedup"] is None and document[1]["baseline"] == ""


def test_median_seconds_takes_the_median():
    _benchmark_module()
    from benchmarks.common import median_seconds

    calls = []
    assert median_seconds(lambda: calls.append(1), repeats=3, warmup=1) >= 0
    assert len(calls) == 4


def test_memory_columns_appear_only_when_measured(capsys):
    tool = _benchmark_module()
    from benchmarks.common import Row

    tool.print_rows("models", [Row("backbone", "cloud", 0.5, "spconv", 1.0, peak_mib=120.0, baseline_peak_mib=300.0)])
    out = capsys.readouterr().out
    assert "peak (MiB)" in out and "120" in out and "300" in out
    tool.print_rows("ops", [Row("op", "cloud", 0.5)])
    assert "peak" not in capsys.readouterr().out
