"""The commands: `python -m jaxgan train|sample|evaluate|export ...`, also installed as
`jaxgan-train`, `jaxgan-sample`, `jaxgan-evaluate` and `jaxgan-export`.

The one module that sees every layer: it gives the training command the evaluation kit's
classifier, so that each epoch's samples are scored, which the training layer cannot import.
"""

from __future__ import annotations

import sys

COMMANDS = ("train", "sample", "evaluate", "export")


def train(argv: list[str] | None = None) -> int:
    """`jaxgan-train`: train a GAN (`jaxgan.training.cli`), scoring each epoch's samples."""
    from jaxgan.training import cli

    def scorer_for(dataset: str):
        from jaxgan.eval.quality import classifier_scorer

        return classifier_scorer(dataset)

    return cli.main(argv, scorer_for=scorer_for)


def sample(argv: list[str] | None = None) -> int:
    """`jaxgan-sample`: draw samples from a trained run (`jaxgan.training.sample_cli`)."""
    from jaxgan.training.sample_cli import sample_main

    return sample_main(argv)


def export(argv: list[str] | None = None) -> int:
    """`jaxgan-export`: write a run's generator to one file (`jaxgan.load_generator`)."""
    from jaxgan.training.sample_cli import export_main

    return export_main(argv)


def evaluate(argv: list[str] | None = None) -> int:
    """`jaxgan-evaluate`: score a trained run (`jaxgan.eval.cli`)."""
    from jaxgan.eval.cli import evaluate_main

    return evaluate_main(argv)


def main(argv: list[str] | None = None) -> int:
    """`python -m jaxgan COMMAND ...`."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: python -m jaxgan {{{','.join(COMMANDS)}}} [--help | ARGS...]",
              file=sys.stderr)  # fmt: skip
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    return globals()[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
