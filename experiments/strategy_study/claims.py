"""What the study's numbers say about the notes' claims, as values for the report's template.

Each function returns the numbers and verdicts one passage of `report.md.j2` needs; the prose
is the template's. A verdict (does a strategy train, is one better than another) compares means
against the spread over seeds (`compare`); a claim whose runs are not in the study is left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

Cells = dict[tuple[str, str], dict[str, np.ndarray]]

# The bars, which the report checks the measurements against.
DCGAN_TARGET = {"score": 9.0, "classes": 10, "frechet_distance": 10.0, "seeds": 2}
MLP_TARGET = {"score": 6.5, "classes": 10}
# The pixel range of each model's documented default command, whose group the targets judge.
HEADLINE_RANGES = {"mlp": "unit", "dcgan": "symmetric"}


def mean_std(values: np.ndarray) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1; 0 for one value)."""
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return float(np.mean(values)), std


def fmt(value: float) -> str:
    """A number for prose and tables: 3 significant digits, integers from 100 on."""
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}" if value == 0 or abs(value) >= 0.01 else f"{value:.1e}"


def cell(values: np.ndarray) -> str:
    """`mean ± std` over seeds."""
    mean, std = mean_std(values)
    return f"{fmt(mean)} ± {fmt(std)}"


def compare(a: np.ndarray, b: np.ndarray) -> int:
    """+1 when `a`'s mean exceeds `b`'s by more than the sum of their seed spreads, -1 when it
    falls short by more, 0 when the seeds cannot tell them apart."""
    (mean_a, std_a), (mean_b, std_b) = mean_std(a), mean_std(b)
    if abs(mean_a - mean_b) <= std_a + std_b:
        return 0
    return 1 if mean_a > mean_b else -1


def better(a: dict, b: dict, key: str, higher_is_better: bool = True) -> str:
    sign = compare(a[key], b[key]) * (1 if higher_is_better else -1)
    return {1: "better", -1: "worse", 0: "indistinguishable"}[sign]


def summary(c: dict[str, np.ndarray]) -> str:
    """The collapse-related numbers of one (group, strategy), for a sentence."""
    return (
        f"classifier score {cell(c['classifier_score'])}, {cell(c['classes_covered'])} classes "
        f"covered, KL from uniform {cell(c['class_kl_uniform'])}, Fréchet distance "
        f"{cell(c['frechet_distance'])}"
    )


def commonest(results: dict[str, Any], group: str, strategy: str) -> str:
    """Per seed, the class the samples fall into most often, and its share."""
    parts = []
    for run in _runs(results, group, strategy):
        fractions = run["evaluation"]["generated"]["class_fractions"]
        top = int(np.argmax(fractions))
        parts.append(f"seed {run['seed']}: {fractions[top]:.0%} '{top}'s")
    return "; ".join(parts)


def _runs(results: dict[str, Any], group: str, strategy: str) -> list[dict[str, Any]]:
    return [r for r in results["runs"] if r["group"] == group and r["strategy"] == strategy]


def group_claims(group: str, results: dict[str, Any], cells: Cells) -> dict[str, Any] | None:
    """The notes' claims about the strategies, tested on one group of runs."""
    tp, joint, seq, acc, first = (
        cells.get((group, s))
        for s in ("two_pass", "shared_joint", "shared_sequential", "shared_accumulate", "d_first")
    )
    if tp is None or all(x is None for x in (joint, seq, acc, first)):
        return None
    claim: dict[str, Any] = {"group": group, "two_pass": summary(tp), "joint": None,
                             "method_2": None, "one_pass": None, "d_first": None}  # fmt: skip
    if joint is not None:
        d_fake, _ = mean_std(joint["last_epoch_d_fake"])
        claim["joint"] = {
            "trains": compare(joint["classifier_score"], tp["classifier_score"]) >= 0,
            "d_fake": d_fake,
            "d_real": mean_std(joint["last_epoch_d_real"])[0],
            "at_half": abs(d_fake - 0.5) < 0.05,
            "summary": summary(joint),
            "commonest": commonest(results, group, "shared_joint"),
        }
    if seq is not None and acc is not None:
        claim["method_2"] = {
            "seq_fake": mean_std(seq["last_epoch_d_fake"])[0],
            "acc_fake": mean_std(acc["last_epoch_d_fake"])[0],
            "acc": summary(acc),
            "seq": summary(seq),
            "by_score": better(acc, seq, "classifier_score"),
            "by_fd": better(acc, seq, "frechet_distance", False),
        }
    if seq is not None:
        claim["one_pass"] = {
            "by_score": better(seq, tp, "classifier_score"),
            "by_fd": better(seq, tp, "frechet_distance", False),
            "seq_score": cell(seq["classifier_score"]),
            "seq_fd": cell(seq["frechet_distance"]),
            "tp_score": cell(tp["classifier_score"]),
            "tp_fd": cell(tp["frechet_distance"]),
            "time_ratio": np.mean(seq["peak_steps_per_sec"]) / np.mean(tp["peak_steps_per_sec"]),
            "same": compare(seq["frechet_distance"], tp["frechet_distance"]) == 0,
        }
    if first is not None:
        claim["d_first"] = {
            "by_score": better(first, tp, "classifier_score"),
            "by_fd": better(first, tp, "frechet_distance", False),
            "summary": summary(first),
        }
    mine = {s: c for (g, s), c in cells.items() if g == group}
    claim["zero_recall"] = [s for s, c in mine.items() if np.mean(c["recall"]) < 0.01]
    claim["covered"] = [(s, mean_std(c["classes_covered"])[0]) for s, c in mine.items()]
    claim["two_pass_collapsed"] = mean_std(tp["classes_covered"])[0] < MLP_TARGET["classes"]
    claim["two_pass_commonest"] = commonest(results, group, "two_pass")
    return claim


def range_claims(
    models: Sequence[str], results: dict[str, Any], cells: Cells
) -> list[dict[str, Any]]:
    """[-1, 1] with tanh against [0, 1] with sigmoid, for every strategy trained at both."""
    claims = []
    for model in models:
        for strategy in ("two_pass", "shared_sequential"):
            unit = cells.get((f"{model}-unit", strategy))
            sym = cells.get((f"{model}-symmetric", strategy))
            if unit is None or sym is None:
                continue
            verdicts = [
                better(sym, unit, "classes_covered"),
                better(sym, unit, "class_kl_uniform", False),
                better(sym, unit, "classifier_score"),
                better(sym, unit, "frechet_distance", False),
            ]
            other = cells.get((f"{model}-unit", "two_pass"))
            claims.append({
                "model": model,
                "strategy": strategy,
                "symmetric": summary(sym),
                "unit": summary(unit),
                "symmetric_commonest": commonest(results, f"{model}-symmetric", strategy),
                "unit_commonest": commonest(results, f"{model}-unit", strategy),
                "verdicts": verdicts,
                "same": all(v == "indistinguishable" for v in verdicts),
                "strategy_same": strategy != "two_pass" and other is not None and all(
                    compare(other[k], unit[k]) == 0 for k in ("classes_covered", "class_kl_uniform")
                ),
            })  # fmt: skip
    return claims


def headline(
    group: str, model: str, epochs: int, results: dict[str, Any], cells: Cells, curve: list
) -> dict[str, Any] | None:
    """The issue's target for the model's default command (`two_pass`), checked per seed.

    Args:
      group: the group's name; model: its model; epochs: its length.
      results: `run_study`'s result; cells: `aggregate(results)`.
      curve: the mean over seeds of each epoch's sample score (the training loop's).
    """
    c = cells.get((group, "two_pass"))
    if c is None:
        return None
    score, covered, fd = c["classifier_score"], c["classes_covered"], c["frechet_distance"]
    if model == "dcgan":
        t = DCGAN_TARGET
        target = (f"classifier score ≥ {t['score']}, all {t['classes']} classes and Fréchet "
                  f"distance < {t['frechet_distance']:g} on at least {t['seeds']} of the "
                  f"seeds")  # fmt: skip
        ok = (score >= t["score"]) & (covered >= t["classes"]) & (fd < t["frechet_distance"])
        reached = int(ok.sum()) >= min(t["seeds"], len(ok))
        verdict = f"{int(ok.sum())} of {len(ok)} seeds meet all three"
        missing = max(0.0, t["score"] - float(np.median(score)))
    else:
        t = MLP_TARGET
        target = (f"all {t['classes']} classes on every seed and a mean classifier score ≥ "
                  f"{t['score']}")  # fmt: skip
        all_classes = bool(np.all(covered >= t["classes"]))
        mean = float(np.mean(score))
        reached = all_classes and mean >= t["score"]
        verdict = (f"{int(np.sum(covered >= t['classes']))} of {len(covered)} seeds cover every "
                   f"class; the mean score is {mean:.2f}")  # fmt: skip
        missing = max(0.0, t["score"] - mean)
    why = None
    if missing and np.mean(c["class_kl_uniform"]) < 0.1:  # balanced: the score lacks confidence
        mean = float(np.mean(score))
        why = {
            "kl": cell(c["class_kl_uniform"]),
            "mean": mean,
            "entropy": np.log(10) - np.log(mean),
            "target": t["score"],
            "allowed": np.log(10) - np.log(t["score"]),
        }
    return {
        "title": f"the {model.upper() if model == 'mlp' else 'DCGAN'}'s default command",
        "group": group,
        "target": target,
        "epochs": epochs,
        "score": cell(score),
        "covered": cell(covered),
        "fd": cell(fd),
        "seed_scores": [f"{v:.2f}" for v in score],
        "seed_covered": [f"{v:.0f}" for v in covered],
        "seed_fd": [f"{v:.1f}" for v in fd],
        "reached": reached,
        "verdict": verdict,
        "why": why,
        "curve": {"samples": curve[0], "points": curve[1]} if curve else None,
    }
