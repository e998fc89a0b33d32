"""The benchmark harness in quick mode, so it keeps working. Its numbers are not checked:
benchmarks are never timed tests. What is checked is that every scenario ran against both
gateways, through the real servers and kernels, and produced a report."""

import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
BENCH = ROOT / "target" / "debug" / "lab-bench"
LAB = ROOT / "target" / "debug" / "lab"


def test_quick_benchmark_runs_every_scenario_against_both_gateways(tmp_path):
    out, results = tmp_path / "BENCHMARKS.md", tmp_path / "results.json"
    run = subprocess.run(
        [str(BENCH), "--quick", "--strict", "--lab", str(LAB), "--venv", sys.prefix,
         "--out", str(out), "--json", str(results)],
        cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-4000:]
    r = json.loads(results.read_text())
    servers = dict((kind, res) for kind, res in r["servers"])
    assert set(servers) == {"Lab", "KernelGateway"}
    for kind, res in servers.items():
        for kernel in ("python3", "academy-candle"):
            k = res["per_kernel"][kernel]
            assert k["one"]["n"] == r["plan"]["round_trips"], (kind, kernel)
            assert k["many"][1] > 0 and k["stream"]["messages"] > r["plan"]["lines"], (kind, kernel)
            if kind == "Lab":  # we never drop output with rate limits off
                assert k["stream"]["lines"] == r["plan"]["lines"], (kernel, k["stream"])
            assert k["cold"]["n"] == r["plan"]["starts"], (kind, kernel)
        assert res["kernels"]["reached"] == r["plan"]["running_kernels"], kind
    lab_held = servers["Lab"]["held"]
    assert [h["reached"] for h in lab_held] == r["plan"]["held"]
    assert r["warm_start"]["n"] == r["plan"]["starts"]
    for kernel in ("python3", "academy-candle"):
        assert r["direct"][kernel][0]["n"] == r["plan"]["round_trips"]
    report = out.read_text()
    assert "## Goals" in report and "Quick mode" in report and "| academy-candle | 1 |" in report
