"""`python scripts/train.py` (also installed as `jaxgan-train`): train a GAN on MNIST.

python scripts/train.py --strategy two_pass                      # MNIST through TFDS
python scripts/train.py --strategy two_pass --data-dir ../shared/data/mnist   # offline
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import warnings

from jaxgan.config import ConfigError, TrainConfig
from jaxgan.data import DATA_DIR_ENV, DataError, DataUnavailableError
from jaxgan.losses import LOSSES
from jaxgan.models import MODELS
from jaxgan.strategies import STRATEGIES

EXIT_BAD_SETTING = 2
EXIT_NON_FINITE = 3
EXIT_INTERRUPTED = 130  # the shell's convention for SIGINT


def parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = argparse.ArgumentParser(
        prog="train.py",
        description="Train a GAN on MNIST with one of jaxgan's gradient strategies.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--strategy",
        choices=list(STRATEGIES),
        default=d.strategy,
        help="which gradients G and D receive (see README)",
    )
    p.add_argument("--model", choices=list(MODELS), default=d.model)
    p.add_argument("--loss", choices=sorted(LOSSES), default=d.loss)
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument(
        "--lr",
        type=float,
        default=None,
        help="learning rate of both networks (overrides --g-lr and --d-lr)",
    )
    p.add_argument("--g-lr", type=float, default=d.g_lr)
    p.add_argument("--d-lr", type=float, default=d.d_lr)
    p.add_argument("--beta1", type=float, default=d.beta1)
    p.add_argument("--beta2", type=float, default=d.beta2)
    p.add_argument("--latent-dim", type=int, default=d.latent_dim)
    p.add_argument("--features", type=int, default=d.features, help="DCGAN base width")
    p.add_argument(
        "--conditional",
        action="store_true",
        help="class-conditional G and D; the sample grid has one row per digit",
    )
    p.add_argument(
        "--pixel-range",
        choices=["unit", "symmetric"],
        default=d.pixel_range,
        help="unit: [0, 1] images and a sigmoid G; symmetric: [-1, 1] and tanh",
    )
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument(
        "--workdir",
        default="runs/latest",
        help="where config, metrics, TensorBoard events, samples and checkpoints go",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --workdir from its newest checkpoint",
    )
    p.add_argument(
        "--dataset",
        default=d.dataset,
        help="TFDS dataset when no --data-dir is given (mnist, fashion_mnist)",
    )
    p.add_argument(
        "--data-dir",
        default=None,
        help=f"folder of MNIST-format IDX files (default: ${DATA_DIR_ENV}, then TFDS)",
    )
    p.add_argument(
        "--train-examples", type=int, default=None, help="train on the first N examples only"
    )
    p.add_argument(
        "--log-every",
        type=int,
        default=d.log_every,
        help="steps per device dispatch; metrics are fetched and logged this often",
    )
    p.add_argument(
        "--devices",
        type=int,
        default=None,
        help="devices to split each batch over (default: all); batch-size is the global batch",
    )
    p.add_argument(
        "--bn-stats",
        choices=["global", "per_device"],
        default=d.bn_stats,
        help="BatchNorm statistics over the global batch (SyncBatchNorm) or per device (DDP)",
    )
    multi = p.add_argument_group("multi-process runs (every process runs the same command)")
    multi.add_argument("--coordinator-address", default=None, help="host:port of process 0")
    multi.add_argument("--num-processes", type=int, default=None)
    multi.add_argument("--process-id", type=int, default=None)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The `TrainConfig` the command line describes."""
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {k: v for k, v in vars(args).items() if k in fields}
    if args.lr is not None:
        values["g_lr"] = values["d_lr"] = args.lr
    return TrainConfig(**values)


def main(argv: list[str] | None = None) -> int:
    """Runs the CLI; returns the exit status (0, or why it stopped)."""
    args = parser().parse_args(argv)
    config = config_from_args(args)
    try:
        config.validate()
    except ConfigError as e:
        return _fail(f"invalid setting: {e}", EXIT_BAD_SETTING)

    multi = (args.coordinator_address, args.num_processes, args.process_id)
    if any(v is not None for v in multi):
        if any(v is None for v in multi):
            return _fail(
                "a multi-process run needs --coordinator-address, --num-processes and "
                "--process-id together",
                EXIT_BAD_SETTING,
            )
        from jaxgan.distributed import initialize

        initialize(*multi)  # before any JAX computation

    from jaxgan.train import Interrupted, NonFiniteLossError, train  # jax starts only here

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", UserWarning)
            warnings.showwarning = _show_warning
            train(config, args.workdir, resume=args.resume, progress=not args.no_progress)
    except ConfigError as e:
        return _fail(f"invalid setting: {e}", EXIT_BAD_SETTING)
    except (DataUnavailableError, DataError, FileNotFoundError) as e:
        return _fail(f"data: {e}", EXIT_BAD_SETTING)
    except NonFiniteLossError as e:
        return _fail(f"training diverged: {e}", EXIT_NON_FINITE)
    except Interrupted as e:
        return _fail(str(e), EXIT_INTERRUPTED)
    print(f"done: samples, metrics and checkpoints in {args.workdir}")
    return 0


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"train.py: warning: {message}", file=sys.stderr)


def _fail(message: str, status: int) -> int:
    print(f"train.py: {message}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
