"""Where jaxgan's training step spends its time on XLA:CPU: a profile of the real loop.

    python -m benchmarks.profile_step --model mlp --strategy two_pass --batch-size 64

Runs the training loop's hot path (`jaxgan.training.HotLoop`, set up by `benchmarks.bench_jax`
as the benchmark times it) under `jax.profiler`, reads the trace's XPlane protobuf (TensorFlow's
`xplane_pb2`, from the `tfds` extra) and sums the time XLA's worker threads spend in each kind
of operation, per training step:

- `gemm`: matrix multiplies, as YNNPACK fusions (`ynn_fusion.*`) or Eigen `dot`s;
- `elementwise`: XLA's other fusions (BatchNorm, activations, losses, Adam, data, noise);
- `copy`, `wait` (threads waiting on each other inside the step) and the rest.

The wall time per step is the executor's own span divided by the steps. Random images stand
in for MNIST: the step's cost does not depend on pixel values.
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
from pathlib import Path

from jaxgan.training.cli import DefaultsHelpFormatter


def _kind(name: str) -> str:
    if name.startswith("ynn_fusion") or name.startswith("dot"):
        return "gemm"
    if "fusion" in name:
        return "elementwise"
    if name.startswith("copy"):
        return "copy"
    if "Await" in name:
        return "wait"
    return "other"


def profile(
    model: str, strategy: str, batch_size: int, chunk: int = 20, repeats: int = 3
) -> tuple[float, dict[str, float], dict[str, float]]:
    """Profiles `repeats` dispatches of `chunk` training steps.

    Returns:
      `(wall, by_kind, by_op)`: milliseconds per step of wall time, and of worker-thread time
      per kind of operation (`gemm`, `elementwise`, `copy`, `wait`, `other`) and per operation
      (XLA's names), most expensive first.
    """
    import jax
    import numpy as np
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    from benchmarks.bench_jax import training_loop
    from jaxgan.state import DEFAULT_LEARNING_RATE
    from jaxgan.training import TrainConfig

    config = TrainConfig(model=model, strategy=strategy, batch_size=batch_size, log_every=chunk,
                         g_lr=DEFAULT_LEARNING_RATE, d_lr=DEFAULT_LEARNING_RATE)  # fmt: skip
    images = np.random.default_rng(0).integers(0, 256, (60_000, 28, 28, 1), dtype=np.uint8)
    _, state, dispatch = training_loop(config, images)
    for _ in range(2):  # compile, and settle the state's placement
        state, metrics = jax.block_until_ready(dispatch(state))
    with tempfile.TemporaryDirectory() as trace_dir:
        jax.profiler.start_trace(trace_dir)
        for _ in range(repeats):
            state, metrics = dispatch(state)
        jax.block_until_ready((state, metrics))
        jax.profiler.stop_trace()
        (path,) = Path(trace_dir).rglob("*.xplane.pb")
        space = xplane_pb2.XSpace.FromString(path.read_bytes())

    steps = chunk * repeats
    by_op: collections.Counter[str] = collections.Counter()
    wall_us = 0.0
    for plane in space.planes:
        names = {k: v.name for k, v in plane.event_metadata.items()}
        for line in plane.lines:
            for event in line.events:
                name, us = names.get(event.metadata_id, ""), event.duration_ps / 1e6
                if name == "ThunkExecutor::Execute (wait for completion)":
                    wall_us += us
                elif "XLAEigen" in line.name and not name.startswith("ThunkExecutor"):
                    by_op[name] += us
    by_kind: collections.Counter[str] = collections.Counter()
    for name, us in by_op.items():
        by_kind[_kind(name)] += us
    per_step = lambda counter: {k: us / steps / 1e3 for k, us in counter.most_common()}  # noqa: E731
    return wall_us / steps / 1e3, per_step(by_kind), per_step(by_op)


def main(argv: list[str] | None = None) -> int:
    """Profiles one configuration and prints the time per step by kind of operation."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.profile_step",
        description=__doc__.splitlines()[0],
        formatter_class=DefaultsHelpFormatter,
    )
    p.add_argument("--model", default="mlp", choices=("mlp", "dcgan"))
    p.add_argument("--strategy", default="two_pass")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--chunk", type=int, default=20, help="steps per dispatch")
    p.add_argument("--repeats", type=int, default=3, help="profiled dispatches")
    p.add_argument("--top", type=int, default=0, help="also list the N most expensive operations")
    args = p.parse_args(argv)
    wall, by_kind, by_op = profile(
        args.model, args.strategy, args.batch_size, args.chunk, args.repeats
    )
    busy = sum(by_kind.values())
    print(f"{args.model} {args.strategy} batch {args.batch_size}: {wall:.2f} ms per step "
          f"(wall); worker threads busy {busy:.2f} ms per step in all")  # fmt: skip
    for kind, ms in by_kind.items():
        print(f"  {kind:12s} {ms:7.2f} ms  {ms / busy:6.1%}")
    if args.top:
        print(f"the {args.top} most expensive operations:")
        for name, ms in list(by_op.items())[: args.top]:
            print(f"  {ms:7.2f} ms  {ms / busy:6.1%}  {_kind(name):12s} {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
