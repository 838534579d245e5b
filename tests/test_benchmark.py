"""`python -m benchmarks` end to end at tiny settings, and XLA's FLOP count against arithmetic.

No timing is asserted: the numbers depend on the machine. The test checks that every
measurement ran and reported what the README's table needs.
"""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.bench_jax import step_flops
from benchmarks.profile_step import _kind, profile
from jaxgan.training.config import TrainConfig
from jaxgan.training.run import Run

ROOT = Path(__file__).parents[1]


def test_benchmark_runs_end_to_end_and_writes_json(mnist_dir, tmp_path):
    out = tmp_path / "bench.json"
    args = ["--data-dir", str(mnist_dir), "--model", "mlp", "--strategy", "two_pass",
            "--batch-size", "8", "--chunk", "2", "--repeats", "1", "--rounds", "2",
            "--torch-warmup", "1", "--train-examples", "64", "--matmul-size", "128",
            "--matmul-repeats", "2", "--devices-sweep", "1,2", "--json", str(out)]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", *args],
        capture_output=True, text=True, timeout=1200, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| mlp | two_pass | 8 |" in proc.stdout
    report = json.loads(out.read_text())

    assert report["machine"]["peak_gflops"] > 0
    (row,) = report["rows"]
    assert (row["model"], row["strategy"], row["batch_size"]) == ("mlp", "two_pass", 8)
    for framework in ("jax", "notes", "best"):
        result = row[framework]
        assert result["steps"] == 2
        for field in ("steps_per_s", "images_per_s", "gflops", "compile_s", "peak_rss_mb"):
            assert result[field] > 0, (framework, field)
        assert all(math.isfinite(x) for x in result["final_losses"])
        # Each side timed twice in its process; the fastest window is the measurement.
        rounds = result["round_steps_per_s"]
        assert len(rounds) == 2 and result["steps_per_s"] == max(rounds), framework
        assert result["seconds"] == pytest.approx(result["steps"] / max(rounds))
    assert row["jax"]["flops_per_step"] > 0
    assert row["jax_over_notes"] > 0 and row["jax_over_best"] > 0
    assert [(p["devices"], p["steps"]) for p in report["sweep"]] == [(1, 2), (2, 2)]
    assert all(p["steps_per_s"] > 0 for p in report["sweep"])
    # The sweep's 1-device point is the row's jaxgan measurement, not a second one.
    one_device = report["sweep"][0]
    assert one_device["steps_per_s"] == row["jax"]["steps_per_s"] and "gflops" not in one_device


def test_missing_data_is_a_message_and_status_2(tmp_path, capsys):
    from benchmarks.benchmark import main

    assert main(["--data-dir", str(tmp_path / "none"), "--model", "mlp"]) == 2
    err = capsys.readouterr().err
    assert "no MNIST to train on" in err and str(tmp_path / "none") in err


# The MLP's layers, (inputs, outputs): G 100 -> 128 -> 256 -> 512 -> 1024 -> 784, D 784 -> 1.
G_LAYERS = [(100, 128), (128, 256), (256, 512), (512, 1024), (1024, 784)]
D_LAYERS = [(784, 512), (512, 256), (256, 1)]


def _matmul_flops(layers, batch):
    """One forward pass's matmul FLOPs, 2 B i o per layer."""
    return sum(2 * batch * i * o for i, o in layers)


@pytest.mark.parametrize("batch", [64, 256])
def test_xla_flop_count_of_the_mlp_step_matches_its_matmuls(batch):
    # two_pass, counted by hand: a matmul's backward costs one forward for the weights' gradient
    # and one for its input's, which the first layer of a network fed data or noise skips.
    g, d = _matmul_flops(G_LAYERS, batch), _matmul_flops(D_LAYERS, batch)
    g_inputs, d_inputs = (g - _matmul_flops(G_LAYERS[:1], batch),
                          d - _matmul_flops(D_LAYERS[:1], batch))  # fmt: skip
    g_step = (g + d) + d + (g + g_inputs)  # forward; D's input gradients; G's gradients
    d_step = (g + 2 * d) + 2 * (d + d_inputs)  # G again, D on fakes and reals; D's gradients
    xla = step_flops(Run.build(TrainConfig(model="mlp", strategy="two_pass", batch_size=batch)))
    # XLA also counts elementwise work (BatchNorm, losses, Adam): measured 1.03 at batch 64.
    assert 1.0 <= xla / (g_step + d_step) < 1.5


def test_profile_step_splits_the_step_into_gemms_and_the_rest():
    assert [_kind(n) for n in ("ynn_fusion.3", "dot.12", "add_fusion.1", "copy.2")] == [
        "gemm", "gemm", "elementwise", "copy"
    ]  # fmt: skip
    wall, by_kind, by_op = profile("mlp", "two_pass", batch_size=32, chunk=2, repeats=1)
    assert wall > 0
    assert sum(by_op.values()) == pytest.approx(sum(by_kind.values()))  # the same time, split
    assert list(by_op.values()) == sorted(by_op.values(), reverse=True)
    # The MLP step is matrix multiplies plus elementwise work; both must have been seen, and the
    # multiplies (98% of the step's FLOPs) must take a real share of the thread time.
    assert by_kind["gemm"] > 0 and by_kind["elementwise"] > 0
    assert by_kind["gemm"] / sum(by_kind.values()) > 0.2
