"""PyTorch's side of the benchmark, run in a fresh process by `benchmarks.benchmark`.

`python -m benchmarks.bench_torch SPEC_JSON` prints one JSON object. Nothing here imports JAX, so
the process's peak memory (`ru_maxrss`) is PyTorch's own.

Training is a per-step Python loop over the whole training set held in memory as one float32
NCHW tensor on the device: each step indexes a batch out of an epoch's permutation, draws its
noise and calls a strategy, `parity.reference`'s (the notes' code) or `benchmarks.fast`'s (the same
update without wasted gradients). `warmup` steps run first (with `compile`, they include
`torch.compile`'s compilation) and are timed apart; the timed steps sync with the device only
after the last one, and are timed `rounds` times in a row, the fastest window counting.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from benchmarks import fast
from parity import reference

IMPLEMENTATIONS = {"notes": reference, "best": fast}


def _setup(spec: dict[str, Any]) -> torch.device:
    torch.set_num_threads(spec["threads"])
    if spec["device"] == "cuda" and not spec["tf32"]:
        torch.backends.cuda.matmul.fp32_precision = "ieee"
        torch.backends.cudnn.conv.fp32_precision = "ieee"
    return torch.device(spec["device"])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _batches(
    images: torch.Tensor, batch_size: int, generator: torch.Generator
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Full batches of shuffled epochs, forever, and standard normal noise for each."""
    device = images.device
    while True:
        order = torch.randperm(len(images), generator=generator, device=device)
        for start in range(0, len(images) - batch_size + 1, batch_size):
            shape = (batch_size, reference.LATENT_DIM)
            noise = torch.randn(shape, generator=generator, device=device)
            yield images[order[start : start + batch_size]], noise


def train(spec: dict[str, Any]) -> dict[str, Any]:
    """Throughput of `spec["steps"]` training steps of one strategy after `spec["warmup"]`, the
    fastest of `spec["rounds"]` such windows."""
    device = _setup(spec)
    pixels = torch.from_numpy(np.load(spec["data"])).permute(0, 3, 1, 2)  # NHWC -> NCHW
    images = (pixels.to(torch.float32) / 255).contiguous().to(device)  # ToTensor's x / 255
    implementation = IMPLEMENTATIONS[spec["implementation"]]
    torch.manual_seed(0)
    G, D = (m.to(device) for m in reference.make_models(spec["model"]))
    optimizers = implementation.make_optimizer(G), implementation.make_optimizer(D)
    if spec["compile"]:
        G, D = torch.compile(G), torch.compile(D)
    strategy = implementation.STRATEGIES[spec["strategy"]]
    batches = _batches(images, spec["batch_size"], torch.Generator(device).manual_seed(0))

    def steps(count: int) -> tuple[float, tuple[torch.Tensor, torch.Tensor]]:
        started = time.perf_counter()
        for _ in range(count):
            losses = strategy(G, D, *optimizers, *next(batches))
        _sync(device)
        return time.perf_counter() - started, losses

    warmup_s, _ = steps(spec["warmup"])
    windows = [steps(spec["steps"]) for _ in range(spec["rounds"])]
    seconds, losses = min(window for window, _ in windows), windows[-1][1]
    return {
        "steps": spec["steps"],
        "seconds": seconds,
        "steps_per_s": spec["steps"] / seconds,
        "round_steps_per_s": [spec["steps"] / window for window, _ in windows],
        "compile_s": warmup_s,
        "final_losses": [loss.item() for loss in losses],
        "compiled": spec["compile"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_device_mb": (
            torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
        ),
    }


def matmul(spec: dict[str, Any]) -> dict[str, Any]:
    """Best of `spec["repeats"]` timed float32 `n x n` matmuls, as GFLOP/s."""
    device = _setup(spec)
    n = spec["size"]
    generator = torch.Generator(device).manual_seed(0)
    a, b = (torch.randn(n, n, generator=generator, device=device) for _ in range(2))
    torch.mm(a, b)
    best = float("inf")
    for _ in range(spec["repeats"]):
        _sync(device)
        started = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        best = min(best, time.perf_counter() - started)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return {
        "gflops": 2 * n**3 / best / 1e9,
        "device": f"{device.type}: {name}",
        "threads": torch.get_num_threads(),
        "version": f"torch {torch.__version__}",
    }


if __name__ == "__main__":
    spec = json.loads(sys.argv[1])
    print(json.dumps({"train": train, "matmul": matmul}[spec["task"]](spec)))
