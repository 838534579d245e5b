"""Search for training defaults: trials (settings that differ from the defaults) x seeds.

    python -m experiments.recipes --data-dir ../shared/data/mnist --out runs/recipes \\
        --trial base: --trial lr1e-4:g_lr=1e-4,d_lr=1e-4 --seeds 0 1 2 --epochs 30

Each (trial, seed) is trained with `jaxgan.training.train` into `<out>/<trial>/seed<k>` (a
finished run is reused, an unfinished one resumed), scoring `TrainConfig.score_samples` samples
with the dataset's classifier after every epoch (`metrics.jsonl`). `--evaluate` also scores
each final checkpoint with 10,000 samples (`jaxgan.eval`, the numbers of `scripts/evaluate.py`).
Writes `<out>/results.json` (what `python -m experiments.strategy_study --recipes` reports),
adding to the trials an earlier search of the same folder wrote there (trials of other lengths
or seeds come from separate invocations), and prints, per trial, the mean and spread over seeds
of the per-epoch score and classes. A trial's settings are spelled out against the current
defaults; a run on disk with other settings stops the search rather than being reused.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import typing
from pathlib import Path

import numpy as np

from jaxgan.eval import Evaluator, classifier_scorer, evaluate_run
from jaxgan.training import TrainConfig, load_idx_split, read_metrics, saved_steps, train
from jaxgan.training.cli import DefaultsHelpFormatter, value_type


def parse_trial(spec: str) -> tuple[str, dict[str, typing.Any]]:
    """`NAME:KEY=VALUE,KEY=VALUE` -> (name, TrainConfig overrides), each value parsed as its
    field's type (as the training command's flag would be).

    Raises:
      SystemExit: a key that is not a setting, or a value its type does not parse.
    """
    name, _, body = spec.partition(":")
    hints = typing.get_type_hints(TrainConfig)
    overrides = {}
    for item in filter(None, body.split(",")):
        key, _, value = item.partition("=")
        if key not in hints:
            sys.exit(f"trial {name!r}: {key!r} is not a training setting")
        kind = value_type(hints[key])
        try:
            if kind is bool:
                overrides[key] = {"true": True, "false": False}[value.lower()]
            else:
                overrides[key] = kind(value)
        except (KeyError, ValueError):
            sys.exit(f"trial {name!r}: {key}={value!r}: expected {kind.__name__}")
    return name, overrides


def main() -> None:
    p = argparse.ArgumentParser(
        prog="python -m experiments.recipes", description=__doc__.splitlines()[0],
        formatter_class=DefaultsHelpFormatter,
    )  # fmt: skip
    p.add_argument("--trial", action="append", required=True, help="NAME:KEY=VALUE,...")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--model", default="mlp")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--evaluate", action="store_true", help="score final checkpoints, 10k samples")
    args = p.parse_args()

    train_set = load_idx_split(args.data_dir, "train")
    scorer = classifier_scorer("mnist")
    results = {}
    for seed in args.seeds:
        for spec in args.trial:
            name, overrides = parse_trial(spec)
            config = TrainConfig(model=args.model, epochs=args.epochs, seed=seed,
                                 data_dir=args.data_dir, **overrides)  # fmt: skip
            workdir = args.out / name / f"seed{seed}"
            done = (workdir / "config.json").exists()
            if done:
                saved = TrainConfig.load(workdir / "config.json")
                differ = [f"{k}: saved {getattr(saved, k)!r}, trial {getattr(config, k)!r}"
                          for k in (f.name for f in dataclasses.fields(config)) if k != "epochs"
                          and getattr(saved, k) != getattr(config, k)]  # fmt: skip
                if differ:
                    sys.exit(f"{workdir} was trained with other settings: {'; '.join(differ)}")
            final = args.epochs * config.steps_per_epoch(len(train_set))
            records = read_metrics(workdir / "metrics.jsonl") if done else []
            if not records or records[-1]["step"] < final:
                print(f"training {workdir}", flush=True)
                # A run killed before its first checkpoint starts again (train() says so).
                train(config, workdir, resume=bool(saved_steps(workdir)), dataset=train_set,
                      progress=sys.stderr.isatty(), sample_scorer=scorer)  # fmt: skip
            scores = read_metrics(workdir / "metrics.jsonl", "sample_classifier_score")
            trial = {"overrides": overrides, "epochs": args.epochs, "runs": {}}
            results.setdefault(name, trial)["runs"][seed] = {
                "epoch_scores": [r["sample_classifier_score"] for r in scores],
                "epoch_classes": [r["sample_classes_covered"] for r in scores],
            }
    if args.evaluate:
        test_set = load_idx_split(args.data_dir, "test")
        evaluator = Evaluator(test_set.images)
        for name, trial in results.items():
            for seed, run in trial["runs"].items():
                workdir = args.out / name / f"seed{seed}"
                cache = workdir / "evaluation.json"
                if not cache.exists():
                    result = evaluate_run(workdir, evaluator, train_images=train_set.images,
                                          train_labels=train_set.labels)  # fmt: skip
                    cache.write_text(json.dumps(result, indent=1))
                run["final"] = json.loads(cache.read_text())["generated"]
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "results.json"
    earlier = json.loads(path.read_text()) if path.exists() else {"commands": [], "trials": {}}
    command = "python -m experiments.recipes " + shlex.join(sys.argv[1:])
    report = {
        "commands": [c for c in earlier["commands"] if c != command] + [command],
        "model": args.model,
        "score_samples": TrainConfig().score_samples,
        "trials": earlier["trials"] | results,
    }
    path.write_text(json.dumps(report, indent=1))
    for name, trial in results.items():
        scores = np.array([r["epoch_scores"] for r in trial["runs"].values()])
        classes = np.array([r["epoch_classes"] for r in trial["runs"].values()])
        best = int(np.argmax(scores.mean(0)))
        print(f"{name}: last epoch score {scores[:, -1].mean():.2f} ± {scores[:, -1].std():.2f}, "
              f"classes {classes[:, -1].tolist()}; best mean at epoch {best + 1}: "
              f"{scores[:, best].mean():.2f}, classes {classes[:, best].tolist()}")  # fmt: skip
        for seed, run in trial["runs"].items():
            if "final" in run:
                m = run["final"]["metrics"]
                print(f"  seed {seed}: 10k samples: score {m['classifier_score']:.2f}, classes "
                      f"{m['classes_covered']:.0f}, FD {m['frechet_distance']:.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
