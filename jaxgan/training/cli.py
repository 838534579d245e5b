"""`jaxgan-train` (also `python -m jaxgan train`, `python scripts/train.py`): train a GAN.

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
import contextlib
import dataclasses
import sys
import types
import typing
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jaxgan.training.config import ConfigError, TrainConfig, resumable_settings

if TYPE_CHECKING:
    from jaxgan.training.loop import SampleScorer

PROG = "jaxgan-train"

EXIT_BAD_SETTING = 2
EXIT_NON_FINITE = 3
EXIT_INTERRUPTED = 130  # the shell's convention for SIGINT


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def value_type(hint: Any) -> type:
    """The type a flag parses, from its field's annotation (`int | None` parses `int`)."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        (inner,) = [a for a in args if a is not type(None)]
        return value_type(inner)
    if typing.get_origin(hint) is typing.Literal:
        return type(args[0])
    return hint


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per `TrainConfig` field, from the field. A flag left out is absent from the
    parsed namespace (not filled with its default), so that `--resume` knows what was given."""
    hints = typing.get_type_hints(TrainConfig)
    for field in dataclasses.fields(TrainConfig):
        kind = value_type(hints[field.name])
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
        prog=PROG,
        description="Train a GAN on MNIST (or Fashion-MNIST) with one of jaxgan's gradient "
        "strategies.",
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


def main(
    argv: list[str] | None = None,
    *,
    scorer_for: Callable[[str], SampleScorer | None] | None = None,
) -> int:
    """Runs the train command; returns the exit status (0, or why it stopped).

    Args:
      argv: the arguments (default: the process's).
      scorer_for: builds what scores each epoch's samples for a dataset (see
        `jaxgan.training.train`), or `None` where it cannot; `python -m jaxgan train` passes
        the evaluation kit's classifier scorer. `None`: the epochs are not scored.
    """
    args = parser().parse_args(argv)
    try:
        config = config_from_args(args)
        config.validate()
    except ConfigError as e:
        return fail(PROG, f"invalid setting: {e}")

    multi = (args.coordinator_address, args.num_processes, args.process_id)
    if any(v is not None for v in multi):
        if any(v is None for v in multi):
            return fail(PROG, "a multi-process run needs --coordinator-address, "
                        "--num-processes and --process-id together")  # fmt: skip
        from jaxgan.training.distributed import initialize

        initialize(*multi)  # before any JAX computation

    from jaxgan.training.data import DataError, DataUnavailableError  # jax starts here
    from jaxgan.training.loop import Interrupted, NonFiniteLossError, train

    with warnings_to_stderr(PROG):
        scorer = scorer_for(config.dataset) if scorer_for and config.score_samples else None
        try:
            state = train(config, args.workdir, resume=args.resume,
                          progress=not args.no_progress, sample_scorer=scorer)  # fmt: skip
        except ConfigError as e:
            return fail(PROG, f"invalid setting: {e}")
        except (DataUnavailableError, DataError, FileNotFoundError) as e:
            return fail(PROG, f"data: {e}")
        except NonFiniteLossError as e:
            return fail(PROG, f"training diverged: {e}", EXIT_NON_FINITE)
        except Interrupted as e:
            return fail(PROG, str(e), EXIT_INTERRUPTED)
    print(summary(Path(args.workdir), int(state.step)))
    return 0


def summary(workdir: Path, step: int) -> str:
    """What a finished run leaves behind, and the commands that use it."""
    from jaxgan.training.logs import read_metrics

    records = read_metrics(workdir / "metrics.jsonl")
    last = records[-1]
    lines = [
        f"done: {step} steps in {workdir}",
        f"  last losses: g_loss {last['g_loss']:.3f}, d_loss {last['d_loss']:.3f} "
        f"(D(x) {last['d_real']:.2f}, D(G(z)) {last['d_fake']:.2f})",
    ]
    scores = read_metrics(workdir / "metrics.jsonl", "sample_classifier_score")
    if scores:
        s = scores[-1]
        lines.append(
            f"  epoch {s['epoch']} samples: classifier score {s['sample_classifier_score']:.2f}, "
            f"{s['sample_classes_covered']:.0f} classes covered"
        )
    grids = sorted((workdir / "samples").glob("epoch_*.png"))
    if grids:
        lines.append(f"  samples: {grids[-1]} (real images: {workdir / 'samples' / 'real.png'})")
    lines += [
        f"  loss curves: {workdir / 'losses.png'}; TensorBoard: tensorboard --logdir {workdir}",
        f"  more samples: jaxgan-sample {workdir} --out grid.png",
        f"  scores: jaxgan-evaluate {workdir}",
    ]
    return "\n".join(lines)


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """`--help` shows an option's default, unless it is None or the help text already says it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def fail(prog: str, message: str, status: int = EXIT_BAD_SETTING) -> int:
    """Prints `prog: message` to stderr and returns `status`, for a command's `main`."""
    print(f"{prog}: {message}", file=sys.stderr)
    return status


@contextlib.contextmanager
def warnings_to_stderr(prog: str) -> Iterator[None]:
    """Shows every warning once, as one line `prog: warning: ...` on stderr."""

    def show(message, category, filename, lineno, file=None, line=None):
        print(f"{prog}: warning: {message}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.simplefilter("always", UserWarning)
        warnings.showwarning = show
        yield
