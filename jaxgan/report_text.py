"""The prose of the strategy study's report, each statement computed from its numbers.

`setup` says what was run and why; `claims` takes the notes' claims one by one. A claim whose
runs are not in the study is left out rather than guessed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxgan.report import (
    TARGET_CLASSES,
    TARGET_SCORE,
    cell,
    compare,
    epochs_to,
    mean_std,
    shortfall,
)
from jaxgan.study import Group, Study

Cells = dict[tuple[str, str], dict[str, np.ndarray]]
MODELS = {
    "mlp": "the notes' MLP (PyTorch-GAN's `gan.py`: G 100-128-256-512-1024-784, D 784-512-256-1)",
    "dcgan": "the DCGAN (transposed-convolution G, strided-convolution D, BatchNorm)",
}
RANGES = {
    "unit": "images in [0, 1] and a sigmoid G (the notes' setting: `ToTensor()`)",
    "symmetric": "images in [-1, 1] and a tanh G (PyTorch-GAN's and the DCGAN paper's setting)",
}


def setup(study: Study, results: dict[str, Any], cells: Cells) -> list[str]:
    """The 'what was run, and why' section."""
    train_examples = results["train_examples"]
    steps = train_examples // study.batch_size
    lines = [
        "## What was run, and why",
        "",
        f"Every run trains on {train_examples:,} MNIST training images in batches of "
        f"{study.batch_size} ({steps} updates per epoch) with Adam(2e-4, betas (0.5, 0.999)) for "
        f"both networks and the notes' BCE loss, through `jaxgan.train.train`, the loop of "
        f"`scripts/train.py`; each (group, strategy) is trained once per seed "
        f"({', '.join(map(str, study.seeds))}), and a seed fixes initialization, data order and "
        f"noise. The groups:",
        "",
    ]
    total = 0.0
    for group in study.groups:
        seconds = [np.mean(cells[(group.name, s)]["train_seconds"]) for s in group.strategies]
        total += sum(seconds) * len(study.seeds)
        width = f", base width {study.features}" if group.model == "dcgan" else ""
        lines.append(
            f"- `{group.name}`: {MODELS[group.model]}{width}, with {RANGES[group.pixel_range]}; "
            f"{group.epochs} epochs ({group.epochs * steps:,} updates); strategies "
            f"{', '.join(f'`{s}`' for s in group.strategies)}. Training took "
            f"{np.mean(seconds) / 60 / group.epochs:.1f} min per epoch on average."
        )
    lines += [
        "",
        f"Training took {total / 3600:.1f} h in all, on 2 CPU cores that other jobs were using "
        "too (times are from each run's `metrics.jsonl` and include compilation; scoring took "
        "1 to 3 min more per run). That budget set the lengths. The MLP runs are long enough "
        "for the differences the notes argue about (D's fixed point, mode collapse) to settle, "
        "as the training curves below show. "
        + _dcgan_cost(study, cells)
        + "The DCGAN trains `two_pass` only, with the epochs the remaining time allowed.",
        "",
        "Scores: samples come from each run's final generator in evaluation mode (BatchNorm on "
        "its running statistics), with the same noise for every run. All metrics use the "
        "shipped MNIST classifier (`jaxgan.classifier`, 99.40% test accuracy) in place of "
        "Inception: Fréchet distance and KID (100 subsets of 1,000, polynomial kernel) on its "
        "128-d penultimate features; precision and recall with k = 3 nearest neighbours in "
        "the same space; the classifier score (Inception score with this classifier, 10 "
        "splits; 10 is the maximum); classes covered (classes holding at least 1% of the "
        "samples) and the KL divergence of the predicted-class shares from uniform (0 when "
        "balanced, ln 10 = 2.30 for one class). `scripts/evaluate.py RUN_DIR` prints the same "
        "table for any one run.",
    ]
    return lines


def _dcgan_cost(study: Study, cells: Cells) -> str:
    speed = {
        group.model: np.mean(cells[(group.name, "two_pass")]["peak_steps_per_sec"])
        for group in study.groups
        if (group.name, "two_pass") in cells
    }
    if len(speed) < 2:
        return ""
    ratio = speed["mlp"] / speed["dcgan"]
    return (
        f"At peak speed a DCGAN update (base width {study.features}) took {ratio:.0f} times as "
        f"long as an MLP update here. "
    )


def _get(cells: Cells, group: str, strategy: str) -> dict[str, np.ndarray] | None:
    return cells.get((group, strategy))


def _better(a, b, key: str, higher_is_better: bool = True) -> str:
    sign = compare(a[key], b[key]) * (1 if higher_is_better else -1)
    return {1: "better", -1: "worse", 0: "indistinguishable"}[sign]


def _collapse(c: dict[str, np.ndarray]) -> str:
    return (
        f"classifier score {cell(c['classifier_score'])}, {cell(c['classes_covered'])} classes "
        f"covered, KL from uniform {cell(c['class_kl_uniform'])}, Fréchet distance "
        f"{cell(c['frechet_distance'])}"
    )


def _commonest(results: dict[str, Any], group: str, strategy: str) -> str:
    parts = []
    for run in results["runs"]:
        if run["group"] == group and run["strategy"] == strategy:
            fractions = run["evaluation"]["generated"]["class_fractions"]
            top = int(np.argmax(fractions))
            parts.append(f"seed {run['seed']}: {fractions[top]:.0%} '{top}'s")
    return "; ".join(parts)


def claims(study: Study, results: dict[str, Any], cells: Cells) -> list[str]:
    """The 'what the numbers say about the notes' claims' section."""
    lines = [
        "## What the numbers say about the notes' claims",
        "",
        '"Better" or "worse" below means the means differ by more than the sum of the two '
        'standard deviations over seeds; "indistinguishable" means they do not.',
        "",
    ]
    for group in study.groups:
        lines += _group_claims(group.name, results, cells)
    lines += _pixel_range_claims(study, results, cells)
    lines += _headline(study, results, cells)
    return lines


def _group_claims(group: str, results: dict[str, Any], cells: Cells) -> list[str]:
    tp = _get(cells, group, "two_pass")
    joint = _get(cells, group, "shared_joint")
    seq = _get(cells, group, "shared_sequential")
    acc = _get(cells, group, "shared_accumulate")
    first = _get(cells, group, "d_first")
    if tp is None or sum(x is not None for x in (joint, seq, acc, first)) == 0:
        return []
    lines = [f"### `{group}`", ""]
    if joint is not None:
        trains = compare(joint["classifier_score"], tp["classifier_score"]) >= 0
        d_fake, _ = mean_std(joint["last_epoch_d_fake"])
        d_real, _ = mean_std(joint["last_epoch_d_real"])
        at_half = abs(d_fake - 0.5) < 0.05
        fixed_point = "the fixed point σ = 1/2 of the summed loss on fakes, " if at_half else ""
        lines += [
            f"- **Method 1 (`shared_joint`) {'trains' if trains else 'does not train'}.** In "
            f"the last epoch D said {d_fake:.3f} on fakes and {d_real:.3f} on real images: "
            f"{fixed_point}"
            f"while the real-image term, which only d_loss has, still teaches D to call real "
            f"images real. G is pushed only towards making D say one half, not towards the "
            f"data: {_collapse(joint)}, against {_collapse(tp)} for `two_pass` "
            f"(commonest class: {_commonest(results, group, 'shared_joint')}). "
            + (
                "The notes are right that method 1 does not train; the reason, which they do "
                "not give, is that both networks minimise the same sum."
                if not trains
                else "The notes are wrong here: method 1 trained as well as `two_pass`."
            ),
        ]
    if seq is not None and acc is not None:
        acc_fake, _ = mean_std(acc["last_epoch_d_fake"])
        seq_fake, _ = mean_std(seq["last_epoch_d_fake"])
        lines += [
            f"- **Method 2 as written (`shared_sequential`) against as described "
            f"(`shared_accumulate`).** Adding ∇_D g_loss to D's gradient, as the notes "
            f"believe happens, moves D's answer on fakes from {seq_fake:.3f} to {acc_fake:.3f}: "
            f"on a fake logit the two terms sum to (2σ - 1)/B, so D stops pushing fakes below "
            f"one half. With it: {_collapse(acc)}; as written: {_collapse(seq)}. By classifier "
            f"score the accumulated version is {_better(acc, seq, 'classifier_score')} and by "
            f"Fréchet distance {_better(acc, seq, 'frechet_distance', False)}. The code as "
            f"written never accumulates (D's `zero_grad()` after G's backward discards it), so "
            f"the notes' account of method 2 describes a different algorithm from their code.",
        ]
    if seq is not None:
        same = compare(seq["frechet_distance"], tp["frechet_distance"]) == 0
        ratio = np.mean(seq["peak_steps_per_sec"]) / np.mean(tp["peak_steps_per_sec"])
        lines += [
            f"- **One forward pass or two (`shared_sequential` against `two_pass`).** The only "
            f"difference is whether D sees fakes from G_t (one pass) or from the updated G_t+1 "
            f"(two). One pass is {_better(seq, tp, 'classifier_score')} by classifier score "
            f"and {_better(seq, tp, 'frechet_distance', False)} by Fréchet distance "
            f"({cell(seq['classifier_score'])} and {cell(seq['frechet_distance'])} against "
            f"{cell(tp['classifier_score'])} and {cell(tp['frechet_distance'])}). The second "
            f"forward pass made an update take {ratio:.2f} times as long (peak speeds) and "
            f"bought "
            f"{'nothing these seeds can see' if same else 'the difference above'}.",
        ]
    if first is not None:
        lines += [
            f"- **D first (`d_first`, the PyTorch DCGAN example's order) against G first "
            f"(`two_pass`).** D first is {_better(first, tp, 'classifier_score')} by classifier "
            f"score and {_better(first, tp, 'frechet_distance', False)} by Fréchet distance: "
            f"{_collapse(first)}.",
        ]
    covered = {s: mean_std(c["classes_covered"])[0] for (g, s), c in cells.items() if g == group}
    collapsed = [s for s, n in covered.items() if n < TARGET_CLASSES]
    lines += [
        _recall_note(cells, group)
        + "- **Mode collapse.** Classes covered (mean over seeds): "
        + ", ".join(f"`{s}` {n:.1f}" for s, n in covered.items())
        + ". "
        + (
            f"Commonest class per seed for `two_pass`: {_commonest(results, group, 'two_pass')}."
            if "two_pass" in collapsed
            else "`two_pass` covers every class."
        ),
        "",
    ]
    return lines


def _recall_note(cells: Cells, group: str) -> str:
    zero = [s for (g, s), c in cells.items() if g == group and np.mean(c["recall"]) < 0.01]
    if not zero:
        return ""
    return (
        f"- **Recall.** {', '.join(f'`{s}`' for s in zero)}: recall below 0.01, against the "
        f"real images' in the table's last row. Almost no test image lies within the "
        f"3-nearest-neighbour balls of the generated samples: their features crowd into a "
        f"small part of the space the test images fill.\n"
    )


def _pixel_range_claims(study: Study, results: dict[str, Any], cells: Cells) -> list[str]:
    lines = []
    for model in dict.fromkeys(g.model for g in study.groups):
        for strategy in ("two_pass", "shared_sequential"):
            unit = _get(cells, f"{model}-unit", strategy)
            sym = _get(cells, f"{model}-symmetric", strategy)
            if unit is None or sym is None:
                continue
            verdicts = [
                _better(sym, unit, "classes_covered"),
                _better(sym, unit, "class_kl_uniform", False),
                _better(sym, unit, "classifier_score"),
                _better(sym, unit, "frechet_distance", False),
            ]
            same = all(v == "indistinguishable" for v in verdicts)
            other = _get(cells, f"{model}-unit", "two_pass")
            strategy_same = other is not None and all(
                compare(other[k], unit[k]) == 0 for k in ("classes_covered", "class_kl_uniform")
            )
            lines.append(
                f"- **{model}, `{strategy}`: [-1, 1] with tanh against [0, 1] with sigmoid.** "
                f"Symmetric: {_collapse(sym)} (commonest class: "
                f"{_commonest(results, f'{model}-symmetric', strategy)}); unit: "
                f"{_collapse(unit)} (commonest class: "
                f"{_commonest(results, f'{model}-unit', strategy)}). The symmetric setting is "
                f"{verdicts[0]} by classes covered, {verdicts[1]} by KL from uniform, "
                f"{verdicts[2]} by classifier score and {verdicts[3]} by Fréchet distance"
                + (
                    ": G's output range has to match the data's, and [0, 1] is one choice, not "
                    "a requirement. An earlier single run that seemed to show varied digits "
                    "with [-1, 1] (`shared_sequential`) and a collapse to '1's with [0, 1] "
                    "(`two_pass`) changed two things at once; over three seeds the range does "
                    "not separate the runs"
                    + (
                        ", nor does the strategy (`two_pass` against `shared_sequential` at "
                        "[0, 1], by classes covered and KL from uniform)."
                        if strategy_same
                        else "."
                    )
                    if same
                    else "."
                )
            )
    if not lines:
        return [
            "### Pixel range",
            "",
            "No group here trains one strategy at both pixel ranges, so this report says "
            "nothing about the notes' claim that G's last layer must output [0, 1]; "
            "`--group mlp:symmetric:10:shared_sequential` beside `mlp:unit:10:all` would.",
            "",
        ]
    return [
        "### Pixel range",
        "",
        "The notes say the last layer must output values in [0, 1]; PyTorch-GAN scales images "
        "to [-1, 1] and ends G with tanh instead:",
        "",
        *lines,
        "",
    ]


def _headline(study: Study, results: dict[str, Any], cells: Cells) -> list[str]:
    lines = []
    for group in study.groups:
        c = _get(cells, group.name, "two_pass")
        if group.model != "dcgan" or c is None:
            continue
        score, covered = c["classifier_score"], c["classes_covered"]
        missing = shortfall(score, TARGET_SCORE)
        all_classes = bool(np.all(covered >= TARGET_CLASSES))
        verdict = (
            "reached."
            if missing == 0 and all_classes
            else "not reached: "
            + (f"the mean score falls short by {missing:.2f}" if missing else "the score is met")
            + ("; every seed covers every class." if all_classes else "; classes are missing.")
        )
        lines += [
            f"### Headline: the DCGAN trained by the CLI with `two_pass` (`{group.name}`)",
            "",
            f"Target: classifier score ≥ {TARGET_SCORE} and all {TARGET_CLASSES} classes. "
            f"Measured after {group.epochs} epochs: classifier score {cell(score)} (seeds: "
            f"{', '.join(f'{v:.2f}' for v in score)}), classes covered {cell(covered)}, "
            f"Fréchet distance {cell(c['frechet_distance'])}. The target is {verdict}",
        ]
        if missing:
            lines += ["", _why(group, c, results)]
        mlp = _get(cells, "mlp-unit", "two_pass")
        if mlp is not None:
            lines += [
                "",
                f"The MLP beside it (`mlp-unit`, `two_pass`): classifier score "
                f"{cell(mlp['classifier_score'])}, classes covered {cell(mlp['classes_covered'])}, "
                f"Fréchet distance {cell(mlp['frechet_distance'])}.",
            ]
        lines.append("")
    return lines


def _why(group: Group, c: dict[str, np.ndarray], results: dict[str, Any]) -> str:
    mean = float(np.mean(c["classifier_score"]))
    # score = exp(H(mean p) - mean H(p)), H(mean p) <= ln 10: mean H(p) <= ln 10 - ln score.
    entropy = np.log(10) - np.log(mean)
    text = (
        f"Why: the classes are nearly balanced (KL from uniform {cell(c['class_kl_uniform'])}), "
        f"so what the score misses is confidence. Since score = exp(H(mean p(y|x)) - mean "
        f"H(p(y|x))) and the first entropy is at most ln 10 and, with classes this balanced, "
        f"close to it, the classifier's mean entropy per sample is close to (and at most) "
        f"ln 10 - ln {mean:.2f} = {entropy:.2f} nats, where a score of "
        f"{TARGET_SCORE} allows at most {np.log(10) - np.log(TARGET_SCORE):.2f}: many samples "
        f"are digits the classifier cannot place with confidence."
    )
    pairs = [
        (r["previous"]["generated"]["metrics"]["classifier_score"],
         r["evaluation"]["generated"]["metrics"]["classifier_score"])
        for r in results["runs"]
        if r["group"] == group.name and r["strategy"] == "two_pass" and "previous" in r
    ]  # fmt: skip
    if not pairs:
        return text
    before, now = np.mean(pairs, axis=0)
    needed = epochs_to(TARGET_SCORE, now, before)
    hours = needed * np.mean(c["train_seconds"]) / group.epochs / 3600
    text += (
        f" Over the {len(pairs)} seeds whose checkpoint from one epoch earlier is on disk, the "
        f"score went from {before:.2f} to {now:.2f} in the last epoch ({now - before:+.2f}); "
    )
    if not np.isfinite(needed):
        return text + "it no longer improves, so more epochs alone will not reach the target."
    return text + (
        f"a straight line through that gain reaches the target in {needed:.0f} more epochs "
        f"({hours:.1f} h per seed on these cores), but a score's gains shrink as training goes "
        f"on, so the true number is larger, and this study could not afford to find it."
    )
