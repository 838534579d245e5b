"""The strategy study's report: `report.md.j2` filled from the results, with tables and figures.

The template holds the prose; this module computes everything it prints, from the study's
results and settings (`claims` turns the numbers into verdicts), so the report has no number
that was not measured by the run that wrote it.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
from PIL import Image

from experiments.strategy_study import claims
from experiments.strategy_study.claims import cell, fmt
from experiments.strategy_study.study import Study
from jaxgan.eval import metrics
from jaxgan.eval.evaluation import draw_samples
from jaxgan.training import TrainConfig, image_grid, load_run, read_metrics

TEMPLATE = Path(__file__).with_name("report.md.j2")
# Columns of the main table: (key, header); "↑" higher is better, "↓" lower is better.
COLUMNS = [
    ("classifier_score", "classifier score ↑"),
    ("classes_covered", "classes ↑"),
    ("class_kl_uniform", "KL from uniform ↓"),
    ("frechet_distance", "Fréchet distance ↓"),
    ("kid", "KID ↓"),
    ("precision", "precision ↑"),
    ("recall", "recall ↑"),
    ("last_epoch_d_real", "D(x)"),
    ("last_epoch_d_fake", "D(G(z))"),
]
SAMPLES_PER_SEED = 16  # a 4x4 grid per seed in each strategy's sample strip
MODEL_NAMES = {
    "mlp": "the notes' MLP (PyTorch-GAN's `gan.py`: G 100-128-256-512-1024-784, D 784-512-256-1)",
    "dcgan": "the DCGAN (transposed-convolution G, strided-convolution D, BatchNorm)",
}
RANGE_NAMES = {
    "unit": "images in [0, 1] and a sigmoid G (the notes' setting: `ToTensor()`)",
    "symmetric": "images in [-1, 1] and a tanh G (PyTorch-GAN's and the DCGAN paper's setting)",
}


def run_values(run: dict[str, Any]) -> dict[str, float]:
    """One run's metrics and training summary in one flat dict."""
    return {**run["evaluation"]["generated"]["metrics"], **run["training"]}


def aggregate(results: dict[str, Any]) -> claims.Cells:
    """`{(group, strategy): {key: values over seeds}}` for every metric and summary value."""
    table: dict[tuple[str, str], dict[str, list[float]]] = {}
    for run in results["runs"]:
        values = table.setdefault((run["group"], run["strategy"]), {})
        for key, value in run_values(run).items():
            values.setdefault(key, []).append(value)
    return {k: {m: np.asarray(v) for m, v in c.items()} for k, c in table.items()}


def plot_training(results: dict[str, Any], group: str, path: Path) -> None:
    """Losses and D's mean outputs against the step, one row per strategy, seeds overlaid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for r in results["runs"] if r["group"] == group]
    strategies = list(dict.fromkeys(r["strategy"] for r in runs))
    fig, axes = plt.subplots(
        len(strategies), 2, figsize=(9, 1.9 * len(strategies)), sharex=True, squeeze=False
    )
    for row, strategy in zip(axes, strategies, strict=True):
        for i, run in enumerate(r for r in runs if r["strategy"] == strategy):
            records = read_metrics(Path(run["workdir"]) / "metrics.jsonl")
            steps = [r["step"] for r in records]
            for ax, names in ((row[0], ("g_loss", "d_loss")), (row[1], ("d_real", "d_fake"))):
                for name, colour in zip(names, ("tab:blue", "tab:orange"), strict=True):
                    ax.plot(steps, [r[name] for r in records], colour, lw=0.7, alpha=0.7,
                            label=name if i == 0 else None)  # fmt: skip
        row[0].set_ylabel(strategy, fontsize=8)
        row[1].set_ylim(0, 1)
    axes[0, 0].set_title("losses (seeds overlaid)", fontsize=9)
    axes[0, 1].set_title("mean D output: D(x) = d_real, D(G(z)) = d_fake", fontsize=9)
    axes[0, 0].legend(fontsize=7, loc="upper right")
    axes[0, 1].legend(fontsize=7, loc="upper right")
    for ax in axes[-1]:
        ax.set_xlabel("step")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=60)
    plt.close(fig)


def save_samples(workdirs: list[Path], path: Path) -> None:
    """A strip of 4x4 grids, one per seed's final generator (evaluation mode), as a PNG at
    twice the images' size."""
    grids = []
    for workdir in workdirs:
        config, run, state = load_run(workdir)
        images = draw_samples(config, run.generator, state, SAMPLES_PER_SEED, seed=1)
        grids.append(image_grid(images, padding=0).repeat(2, axis=0).repeat(2, axis=1))
    gap = np.full((grids[0].shape[0], 8), 128, np.uint8)
    strip = np.concatenate([part for grid in grids for part in (grid, gap)][:-1], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(strip, mode="L").save(path, optimize=True)


def results_table(study: Study, cells: claims.Cells, reference: dict[str, Any]) -> str:
    lines = [
        "| group | strategy | " + " | ".join(h for _, h in COLUMNS) + " | train time per run |",
        "|---" * (len(COLUMNS) + 3) + "|",
    ]
    for group in study.groups:
        for strategy in group.strategies:
            c = cells[(group.name, strategy)]
            values = [cell(c[key]) for key, _ in COLUMNS]
            minutes = np.mean(c["train_seconds"]) / 60
            lines.append(
                f"| {group.name} ({group.epochs} ep) | `{strategy}` | "
                + " | ".join(values) + f" | {minutes:.0f} min |"
            )  # fmt: skip
    ref = reference["metrics"]
    values = [fmt(ref[key]) if key in ref else "-" for key, _ in COLUMNS]
    lines.append("| real data | train vs test | " + " | ".join(values) + " | - |")
    return "\n".join(lines)


def per_seed_table(results: dict[str, Any]) -> str:
    lines = [
        "| group | strategy | seed | classifier score | classes | commonest class (share) | "
        "Fréchet distance | D(x) | D(G(z)) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for run in results["runs"]:
        v = run_values(run)
        fractions = run["evaluation"]["generated"]["class_fractions"]
        top = int(np.argmax(fractions))
        lines.append(
            f"| {run['group']} | `{run['strategy']}` | {run['seed']} | "
            f"{v['classifier_score']:.2f} | {v['classes_covered']:.0f} | "
            f"{top} ({fractions[top]:.0%}) | {v['frechet_distance']:.1f} | "
            f"{v['last_epoch_d_real']:.2f} | {v['last_epoch_d_fake']:.2f} |"
        )
    return "\n".join(lines)


def epoch_curve(results: dict[str, Any], group: str) -> tuple[int, list[str]] | None:
    """`(samples scored, mean score per epoch over the seeds)` of a group's `two_pass` runs."""
    curves, samples = [], 0
    for run in results["runs"]:
        if run["group"] == group and run["strategy"] == "two_pass":
            key = "sample_classifier_score"
            records = read_metrics(Path(run["workdir"]) / "metrics.jsonl", key)
            curves.append([r[key] for r in records])
            samples = TrainConfig.load(Path(run["workdir"]) / "config.json").score_samples
    if not curves or not all(curves) or len({len(c) for c in curves}) != 1:
        return None
    means = np.mean(curves, axis=0)
    return samples, [f"{e}: {m:.2f}" for e, m in enumerate(means, 1)]


def recipes_section(recipes: dict[str, Any]) -> dict[str, Any]:
    """The recipe search's table (`python -m experiments.recipes`'s results.json)."""
    lines = [
        "| trial | settings | epochs | seeds | last-epoch score | classes per seed | best mean "
        "score (epoch) | 10k samples: score, classes, FD per seed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    met = []
    for name, trial in recipes["trials"].items():
        runs = trial["runs"]
        scores = np.array([r["epoch_scores"] for r in runs.values()])
        classes = np.array([r["epoch_classes"] for r in runs.values()])
        best = int(np.argmax(scores.mean(0)))
        changed = ", ".join(f"`{k}={v}`" for k, v in trial["overrides"].items()) or "defaults"
        finals = "; ".join(
            f"{m['classifier_score']:.2f}, {m['classes_covered']:.0f}, {m['frechet_distance']:.0f}"
            for m in (r["final"]["metrics"] for r in runs.values() if "final" in r)
        )  # fmt: skip
        last = cell(scores[:, -1]) if len(runs) > 1 else f"{scores[0, -1]:.3g}"  # no spread of 1
        lines.append(
            f"| {name} | {changed} | {trial['epochs']} | {', '.join(map(str, runs))} | {last} |"
            f" {', '.join(f'{c:.0f}' for c in classes[:, -1])} | "
            f"{scores[:, best].mean():.2f} ({best + 1}) | {finals or '-'} |"
        )
        if len(runs) >= 3 and np.all(classes[:, -1] >= claims.MLP_TARGET["classes"]):
            met.append(name)
    verdict = (
        f"Trials whose last epoch covered every class on each of 3 or more seeds: "
        f"{', '.join(met)}."
        if met else "No trial covered every class on each of 3 seeds at its last epoch."
    )  # fmt: skip
    return {**recipes, "table": "\n".join(lines), "verdict": verdict}


def context(study: Study, results: dict[str, Any], command: str, figures: str) -> dict:
    """Everything `report.md.j2` prints."""
    cells = aggregate(results)
    steps = results["train_examples"] // study.batch_size
    defaults = inspect.signature(metrics.evaluate_features).parameters
    groups, total = [], 0.0
    for group in study.groups:
        seconds = [np.mean(cells[(group.name, s)]["train_seconds"]) for s in group.strategies]
        total += sum(seconds) * len(study.seeds)
        groups.append({
            "name": group.name, "model": group.model, "pixel_range": group.pixel_range,
            "epochs": group.epochs, "updates": group.epochs * steps,
            "strategies": group.strategies,
            "minutes_per_epoch": np.mean(seconds) / 60 / group.epochs,
        })  # fmt: skip
    speed = {
        g.model: np.mean(cells[(g.name, "two_pass")]["peak_steps_per_sec"])
        for g in study.groups
        if (g.name, "two_pass") in cells
    }
    headlines = []
    for group in study.groups:
        found = claims.headline(group.name, group.model, group.epochs, results, cells,
                                epoch_curve(results, group.name))  # fmt: skip
        if found is not None and group.pixel_range == claims.HEADLINE_RANGES[group.model]:
            headlines.append(found)
    config = study.config(study.groups[0], "two_pass", 0)
    return {
        "command": command,
        "out": study.out,
        "figures": figures,
        "seeds": study.seeds,
        "train_examples": results["train_examples"],
        "batch_size": study.batch_size,
        "steps_per_epoch": steps,
        "adam": {"lr": config.g_lr, "beta1": config.beta1, "beta2": config.beta2},
        "bn_epsilon": study.bn_epsilon,
        "features": study.features,
        "groups": groups,
        "model_names": MODEL_NAMES,
        "range_names": RANGE_NAMES,
        "total_hours": total / 3600,
        "machine": results["machine"],
        "dcgan_ratio": speed["mlp"] / speed["dcgan"] if len(speed) == 2 else None,
        "classifier_accuracy": results["classifier_accuracy"],
        "kid_subsets": defaults["kid_subsets"].default,
        "kid_subset_size": defaults["kid_subset_size"].default,
        "score_splits": defaults["score_splits"].default,
        "feature_dim": results["feature_dim"],
        "num_classes": len(results["reference"]["class_fractions"]),
        "ln_classes": np.log(len(results["reference"]["class_fractions"])),
        "num_samples": study.num_samples,
        "num_test_images": results["num_test_images"],
        "reference_samples": results["reference"]["num_samples"],
        "results_table": results_table(study, cells, results["reference"]),
        "recipes": recipes_section(results["recipes"]) if results.get("recipes") else None,
        "group_claims": [
            c for g in study.groups if (c := claims.group_claims(g.name, results, cells))
        ],
        "range_claims": claims.range_claims(
            list(dict.fromkeys(g.model for g in study.groups)), results, cells
        ),
        "headlines": headlines,
        "per_seed_table": per_seed_table(results),
    }


def write_report(study: Study, results: dict[str, Any], command: str, path: Path) -> None:
    """Writes the markdown report and its figures (in `<path without .md>/`).

    Args:
      study: the study that produced `results`.
      results: `run_study`'s result (with `recipes`, the recipe search's, when given).
      command: the command line that reproduces the report.
      path: the markdown file to write.
    """
    figures = path.with_suffix("")
    for group in study.groups:
        plot_training(results, group.name, figures / f"{group.name}-training.png")
        for strategy in group.strategies:
            workdirs = [study.workdir(group, strategy, s) for s in study.seeds]
            save_samples(workdirs, figures / f"{group.name}-{strategy}.png")
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE.parent),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    environment.filters["code"] = lambda name: f"`{name}`"
    text = environment.get_template(TEMPLATE.name).render(
        context(study, results, command, figures.name)
    )
    path.write_text(text)
