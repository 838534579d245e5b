"""`python scripts/train.py` (also installed as `jaxgan-train`): train a GAN on MNIST.

python scripts/train.py --strategy two_pass                      # MNIST through TFDS
python scripts/train.py --strategy two_pass --data-dir ../shared/data/mnist   # offline
python scripts/train.py --resume --workdir runs/latest --epochs 40           # train longer

Every `TrainConfig` field is a flag, generated from the field (its type, default, choices and
help). `--resume` continues the run in `--workdir` with its saved settings; flags given with it
may change only the resumable ones (`--epochs`, `--log-every`, `--data-dir`, `--devices`,
`--score-samples`), and any other that differs from the saved value is refused.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing
import warnings
from pathlib import Path
from typing import Any

from jaxgan.config import ConfigError, TrainConfig, resumable_settings
from jaxgan.data import DataError, DataUnavailableError

EXIT_BAD_SETTING = 2
EXIT_NON_FINITE = 3
EXIT_INTERRUPTED = 130  # the shell's convention for SIGINT


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _value_type(hint: Any) -> type:
    """The type a flag parses, from its field's annotation (`int | None` parses `int`)."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        (inner,) = [a for a in args if a is not type(None)]
        return _value_type(inner)
    if typing.get_origin(hint) is typing.Literal:
        return type(args[0])
    return hint


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per `TrainConfig` field, from the field. A flag left out is absent from the
    parsed namespace (not filled with its default), so that `--resume` knows what was given."""
    hints = typing.get_type_hints(TrainConfig)
    for field in dataclasses.fields(TrainConfig):
        kind = _value_type(hints[field.name])
        default = field.metadata["none"] if field.default is None else field.default
        help_text = f"{field.metadata['help']} (default: {default})"
        if field.metadata["resumable"]:
            help_text += "; may change on --resume"
        if kind is bool:
            parser.add_argument(
                _flag(field.name), action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS, help=help_text,
            )  # fmt: skip
            continue
        parser.add_argument(
            _flag(field.name),
            type=kind,
            choices=field.metadata["choices"],
            default=argparse.SUPPRESS,
            metavar=None if field.metadata["choices"] else field.name.upper(),
            help=help_text,
        )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="train.py",
        description="Train a GAN on MNIST with one of jaxgan's gradient strategies.",
    )
    add_config_flags(p)
    p.add_argument(
        "--lr", type=float, default=argparse.SUPPRESS, metavar="LR",
        help="learning rate of both networks: sets --g-lr and --d-lr",
    )  # fmt: skip
    p.add_argument(
        "--workdir", default="runs/latest",
        help="where config, metrics, TensorBoard events, samples and checkpoints go "
        "(default: runs/latest)",
    )  # fmt: skip
    p.add_argument(
        "--resume", action="store_true",
        help="continue the run in --workdir from its newest checkpoint, with its saved settings",
    )  # fmt: skip
    multi = p.add_argument_group("multi-process runs (every process runs the same command)")
    multi.add_argument("--coordinator-address", help="host:port of process 0 (default: none)")
    multi.add_argument("--num-processes", type=int, help="processes in all (default: none)")
    multi.add_argument("--process-id", type=int, help="this process, 0-based (default: none)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def given_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The `TrainConfig` settings the command line gave (`--lr` sets both learning rates)."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    given = {k: v for k, v in vars(args).items() if k in names}
    if "lr" in args:
        given["g_lr"] = given["d_lr"] = args.lr
    return given


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The `TrainConfig` of the command line: the run saved in `--workdir` when resuming, with
    the given resumable settings applied; otherwise the defaults with the given settings.

    Raises:
      ConfigError: resuming with a given setting that differs from the saved one and may not
        change (the message names each, with both values), or a bad saved `config.json`.
    """
    given = given_settings(args)
    if not args.resume:
        return TrainConfig(**given)
    path = Path(args.workdir) / "config.json"
    if not path.is_file():
        raise ConfigError(f"--resume given but {args.workdir} holds no run to resume")
    saved = TrainConfig.load(path)
    resumable = resumable_settings()
    refused = [
        f"--{name.replace('_', '-')}: saved {getattr(saved, name)!r}, given {value!r}"
        for name, value in given.items()
        if name not in resumable and value != getattr(saved, name)
    ]
    if refused:
        raise ConfigError(
            f"cannot resume the run in {args.workdir} with different settings ({'; '.join(refused)}"
            f"); a resumed run may change only {', '.join(_flag(n) for n in resumable)}"
        )
    return dataclasses.replace(saved, **given)


def main(argv: list[str] | None = None, *, sample_scorer=None) -> int:
    """Runs the CLI; returns the exit status (0, or why it stopped).

    Args:
      argv: the arguments (default: the process's).
      sample_scorer: what scores each epoch's samples (see `jaxgan.train.train`); `None`
        scores with the dataset's classifier when there is one.
    """
    args = parser().parse_args(argv)
    try:
        config = config_from_args(args)
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

    from jaxgan.quality import classifier_scorer  # jax starts only here
    from jaxgan.train import Interrupted, NonFiniteLossError, train

    if sample_scorer is None and config.score_samples:
        sample_scorer = classifier_scorer(config.dataset)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", UserWarning)
            warnings.showwarning = _show_warning
            train(config, args.workdir, resume=args.resume, progress=not args.no_progress,
                  sample_scorer=sample_scorer)  # fmt: skip
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
