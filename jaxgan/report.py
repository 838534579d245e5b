"""The strategy study's report: tables over seeds, figures, and what the numbers say.

Every sentence about the notes' claims is built from the study's numbers: where a verdict
depends on them (does a strategy train, is one better than another), the comparison is made
here, against the spread over seeds, and the numbers are printed beside it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from jaxgan.evaluation import generate
from jaxgan.logs import image_grid, read_metrics
from jaxgan.study import Study
from jaxgan.train import load_run

# The bar for the DCGAN trained by the CLI with `two_pass`.
TARGET_SCORE = 9.0
TARGET_CLASSES = 10
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


def run_values(run: dict[str, Any]) -> dict[str, float]:
    """One run's metrics and training summary in one flat dict."""
    return {**run["evaluation"]["generated"]["metrics"], **run["training"]}


def aggregate(results: dict[str, Any]) -> dict[tuple[str, str], dict[str, np.ndarray]]:
    """`{(group, strategy): {key: values over seeds}}` for every metric and summary value."""
    table: dict[tuple[str, str], dict[str, list[float]]] = {}
    for run in results["runs"]:
        cell = table.setdefault((run["group"], run["strategy"]), {})
        for key, value in run_values(run).items():
            cell.setdefault(key, []).append(value)
    return {k: {m: np.asarray(v) for m, v in cell.items()} for k, cell in table.items()}


def mean_std(values: np.ndarray) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1; 0 for one value)."""
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return float(np.mean(values)), std


def _fmt(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}" if value == 0 or abs(value) >= 0.01 else f"{value:.1e}"


def cell(values: np.ndarray) -> str:
    """`mean ± std` over seeds, for a table cell."""
    mean, std = mean_std(values)
    return f"{_fmt(mean)} ± {_fmt(std)}"


def compare(a: np.ndarray, b: np.ndarray) -> int:
    """+1 when `a`'s mean exceeds `b`'s by more than the sum of their seed spreads, -1 when it
    falls short by more, 0 when the seeds cannot tell them apart."""
    (mean_a, std_a), (mean_b, std_b) = mean_std(a), mean_std(b)
    if abs(mean_a - mean_b) <= std_a + std_b:
        return 0
    return 1 if mean_a > mean_b else -1


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
            label = i == 0
            for ax, names in ((row[0], ("g_loss", "d_loss")), (row[1], ("d_real", "d_fake"))):
                for name, colour in zip(names, ("tab:blue", "tab:orange"), strict=True):
                    ax.plot(steps, [r[name] for r in records], colour, lw=0.7, alpha=0.7,
                            label=name if label else None)  # fmt: skip
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
        _, run, state = load_run(workdir)
        images = generate(run, state, SAMPLES_PER_SEED, seed=1)
        grids.append(image_grid(images).repeat(2, axis=0).repeat(2, axis=1))  # 2x, for viewing
    gap = np.full((grids[0].shape[0], 8), 128, np.uint8)
    strip = np.concatenate([part for grid in grids for part in (grid, gap)][:-1], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(strip, mode="L").save(path, optimize=True)


def _table(study: Study, cells, reference: dict[str, Any]) -> list[str]:
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
    values = [_fmt(ref[key]) if key in ref else "-" for key, _ in COLUMNS]
    lines.append("| real data | train vs test | " + " | ".join(values) + " | - |")
    return lines


def _per_seed_table(results: dict[str, Any]) -> list[str]:
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
    return lines


def write_report(study: Study, results: dict[str, Any], command: str, path: Path) -> None:
    """Writes the markdown report and its figures (in `<path without .md>/`).

    Args:
      study: the study that produced `results`.
      results: `jaxgan.study.run_study`'s result.
      command: the command line that reproduces the report.
      path: the markdown file to write.
    """
    from jaxgan.report_text import claims, setup  # the prose, kept apart from the mechanics

    figures = path.with_suffix("")
    cells = aggregate(results)
    reference = results["reference"]
    lines = [
        "# The five strategies on MNIST: what the numbers say",
        "",
        f"Written by `scripts/compare_strategies.py`. Reproduce it (runs are reused from "
        f"`{study.out}` when they are there, trained when they are not) with:",
        "",
        "```bash",
        command,
        "```",
        "",
        *setup(study, results, cells),
        "",
        "## Results",
        "",
        f"Mean ± standard deviation over seeds {', '.join(map(str, study.seeds))}; "
        f"{study.num_samples:,} samples per run against the 10,000 test images; the last row "
        f"is {reference['num_samples']:,} real training images scored the same way. D(x) and "
        "D(G(z)) are D's mean outputs over the last epoch of training (`metrics.jsonl`).",
        "",
        *_table(study, cells, reference),
        "",
        *claims(study, results, cells),
        "",
        "## Every run",
        "",
        *_per_seed_table(results),
        "",
        "## Figures",
        "",
    ]
    for group in study.groups:
        losses = figures / f"{group.name}-training.png"
        plot_training(results, group.name, losses)
        lines += [
            f"### {group.name}, {group.epochs} epochs",
            "",
            f"![losses and D outputs]({figures.name}/{losses.name})",
            "",
            f"Samples of each final generator (evaluation mode, the same noise for every run), "
            f"one 4x4 block per seed ({', '.join(map(str, study.seeds))}):",
            "",
        ]
        for strategy in group.strategies:
            strip = figures / f"{group.name}-{strategy}.png"
            save_samples([study.workdir(group, strategy, s) for s in study.seeds], strip)
            lines += [f"`{strategy}`", "", f"![{strategy}]({figures.name}/{strip.name})", ""]
    path.write_text("\n".join(lines).rstrip() + "\n")


def shortfall(values: np.ndarray, target: float) -> float:
    """How far the mean falls below `target` (0 when it reaches it)."""
    return max(0.0, target - float(np.mean(values)))


def epochs_to(target: float, now: float, before: float) -> float:
    """Epochs still needed at the last epoch's gain, `inf` when it did not improve."""
    gain = now - before
    return math.inf if gain <= 0 else max(0.0, (target - now) / gain)
