"""`scripts/gpu_check.sh --dry-run`: the GPU command's stages, on the CPU at tiny sizes.

The figures of a dry run mean nothing; what is checked is that every stage ran, reported, and
landed in the JSON and the Markdown the way a GPU run's will.
"""

import json
import subprocess
from pathlib import Path

ROOT = Path(__file__).parents[1]


def _gpu_check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_check.sh"), *args],
        capture_output=True, text=True, timeout=1200,
    )  # fmt: skip


def test_dry_run_runs_parity_in_both_dtypes_and_the_benchmark(mnist_dir, tmp_path):
    proc = _gpu_check("--dry-run", "--out", str(tmp_path), "--data-dir", str(mnist_dir))
    assert proc.returncode == 0, proc.stderr[-3000:]
    check = json.loads((tmp_path / "gpu_check.json").read_text())
    assert check["dry_run"] and check["device"].startswith("cpu")
    assert [(name, s["status"]) for name, s in check["stages"].items()] == [
        ("parity float64", 0), ("parity float32", 0), ("benchmark", 0)
    ]  # fmt: skip
    every = {("mlp", "two_pass")}  # the dry run's parity stage
    for dtype in ("float64", "float32"):
        parity = check["parity"][dtype]
        assert parity["dtype"] == {"jaxgan": dtype, "pytorch": dtype}
        assert {(r["model"], r["strategy"]) for r in parity["rows"]} == every
    assert check["parity"]["float64"]["passed"]
    assert check["parity"]["float32"]["tolerances"] is None  # float32 is reported, not gated
    rows = check["benchmark"]["rows"]
    assert [(r["model"], r["strategy"]) for r in rows] == [("dcgan", "two_pass")]
    assert all(r["jax_over_best"] > 0 and r["jax_over_notes"] > 0 for r in rows)

    text = (tmp_path / "gpu_check.md").read_text()
    assert text.startswith(f"# GPU check: {check['device']}")
    assert "float64 gated: PASS" in text and "DRY RUN" in text
    assert text.count("| float64 | ") == text.count("| float32 | ") == len(every)
    assert "| dcgan | two_pass | 8 |" in text


def test_a_stage_that_fails_fails_the_check_and_says_so(tmp_path):
    # A report an earlier check left in the folder must not stand in for the failed stage's.
    (tmp_path / "benchmark.json").write_text(json.dumps({"rows": [], "stale": True}))
    proc = _gpu_check("--dry-run", "--out", str(tmp_path), "--data-dir", str(tmp_path / "none"))
    assert proc.returncode == 1
    assert not (tmp_path / "benchmark.json").exists()
    check = json.loads((tmp_path / "gpu_check.json").read_text())
    assert all(s["status"] != 0 for s in check["stages"].values())
    assert "not found" in check["stages"]["parity float64"]["output_tail"]
    text = (tmp_path / "gpu_check.md").read_text()
    assert text.count("(no report)") == 2 and "## Speed" not in text
