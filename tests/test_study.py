"""The strategy study on a slice of real MNIST: training, reuse, resume, the report."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

import experiments.strategy_study.study as study_module
from experiments.strategy_study.__main__ import main as study_main
from experiments.strategy_study.claims import compare
from experiments.strategy_study.report import write_report
from experiments.strategy_study.study import (
    Group,
    Study,
    StudyError,
    ensure_trained,
    evaluation,
    run_study,
)
from jaxgan import STRATEGIES
from jaxgan.eval import Evaluator
from jaxgan.training import Checkpointer, load_idx_split


def test_group_specs_parse_and_print_back():
    group = Group.parse("mlp:unit:10:all")
    assert group == Group("mlp", "unit", 10, tuple(STRATEGIES))
    assert group.name == "mlp-unit" and group.spec() == "mlp:unit:10:all"
    two = Group.parse("dcgan:symmetric:3:two_pass,d_first")
    assert two.strategies == ("two_pass", "d_first") and Group.parse(two.spec()) == two
    for bad in ("mlp:unit:10", "mlp:unit:0:all", "mlp:unit:x:all", "mlp:unit:2:simultaneous",
                "mpl:unit:2:all", "mlp:signed:2:all"):  # fmt: skip
        with pytest.raises(ValueError, match="group"):
            Group.parse(bad)


def test_a_typo_in_a_group_stops_the_study_before_any_work(mnist_dir, tmp_path, capsys):
    out = tmp_path / "runs"
    status = study_main(["--group", "dcgan:unit:1:two_pass", "--group", "mpl:unit:1:all",
                          "--data-dir", str(mnist_dir), "--out", str(out)])  # fmt: skip
    assert status == 2
    assert "'mpl:unit:1:all': model must be one of ['mlp', 'dcgan']" in capsys.readouterr().err
    assert not out.exists()  # no reference scored, no run trained


def test_compare_needs_a_gap_larger_than_the_seed_spread():
    assert compare(np.array([5.0, 5.2]), np.array([3.0, 3.1])) == 1
    assert compare(np.array([3.0, 3.1]), np.array([5.0, 5.2])) == -1
    assert compare(np.array([4.0, 5.0]), np.array([4.6, 4.7])) == 0


@pytest.fixture(scope="module")
def study_and_results(mnist_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    study = Study(
        groups=(Group("mlp", "unit", 2, ("two_pass", "shared_joint")),),
        seeds=(0,),
        batch_size=64,
        features=8,
        num_samples=100,
        out=out / "runs",
        data_dir=str(mnist_dir),
        train_examples=640,  # 10 updates per epoch
        trend_groups=("mlp-unit",),
    )
    train = load_idx_split(mnist_dir, "train")
    test = load_idx_split(mnist_dir, "test")
    with pytest.warns(UserWarning, match="only 10 updates"):
        results = run_study(study, train, test.take(500))
    return study, results, train, test


def test_study_trains_every_run_and_scores_it(study_and_results):
    study, results, _, _ = study_and_results
    runs = {(r["strategy"], r["seed"]): r for r in results["runs"]}
    assert set(runs) == {("two_pass", 0), ("shared_joint", 0)}
    for (strategy, seed), run in runs.items():
        workdir = Path(run["workdir"])
        assert workdir == study.out / "mlp-unit" / strategy / f"seed{seed}"
        config = json.loads((workdir / "config.json").read_text())
        assert (config["strategy"], config["seed"], config["epochs"]) == (strategy, seed, 2)
        assert run["evaluation"]["step"] == 20 and run["previous"]["step"] == 10
        assert 1 <= run["evaluation"]["generated"]["metrics"]["classifier_score"] <= 10
        assert 0 <= run["training"]["last_epoch_d_fake"] <= 1
        assert run["training"]["train_seconds"] > 0
    assert results["reference"]["metrics"]["classes_covered"] == 10


def test_a_second_study_reuses_runs_and_scores(study_and_results, monkeypatch):
    study, results, train, test = study_and_results

    def forbidden(*args, **kwargs):
        raise AssertionError("nothing should be trained or scored again")

    monkeypatch.setattr(study_module, "train", forbidden)
    monkeypatch.setattr(study_module, "evaluate_run", forbidden)
    again = run_study(study, train, test.take(500))
    assert [r["evaluation"] for r in again["runs"]] == [r["evaluation"] for r in results["runs"]]


def test_cached_scores_are_not_reused_for_other_test_images_or_seeds(study_and_results,
                                                                    monkeypatch):  # fmt: skip
    study, results, _, test = study_and_results
    workdir = Path(results["runs"][0]["workdir"])
    calls = []
    monkeypatch.setattr(study_module, "evaluate_run", lambda *a, **k: calls.append(k) or {})
    evaluation(study, workdir, Evaluator(test.images[:500]), 20)
    assert calls == []  # the cached scores match: same step, samples, seed and test images
    evaluation(study, workdir, Evaluator(test.images[500:1000]), 20)
    other_seed = dataclasses.replace(study, seed=1)
    evaluation(other_seed, workdir, Evaluator(test.images[:500]), 20)
    assert [k["seed"] for k in calls] == [0, 1]


def test_a_shorter_run_is_resumed_and_a_longer_one_refused(study_and_results, monkeypatch):
    study, _, train, _ = study_and_results
    longer = Group("mlp", "unit", 3, ("two_pass",))
    calls = []
    original = study_module.train
    monkeypatch.setattr(
        study_module, "train", lambda config, workdir, **k: calls.append((config, k)) or
        original(config, workdir, **k),
    )  # fmt: skip
    with pytest.warns(UserWarning, match="only 10 updates"):
        assert ensure_trained(study, longer, "two_pass", 0, train)
    assert calls[0][1]["resume"] and calls[0][0].epochs == 3
    assert Checkpointer(study.workdir(longer, "two_pass", 0)).latest_step() == 30
    with pytest.raises(StudyError, match="a run of 30 steps, more than 20"):
        ensure_trained(study, study.groups[0], "two_pass", 0, train)


def test_report_names_its_command_and_holds_tables_claims_and_small_figures(
    study_and_results, tmp_path
):
    study, results, _, _ = study_and_results
    report = tmp_path / "docs" / "strategies.md"
    report.parent.mkdir()
    write_report(study, results, "python -m experiments.strategy_study --x", report)
    text = report.read_text()
    words = " ".join(text.split())  # the template wraps its prose
    assert "python -m experiments.strategy_study --x" in text
    # The study trained on the first 640 images: 10 updates per epoch, not 60,000 / 64.
    assert "on 640 MNIST training images in batches of 64 (10 updates per epoch)" in words
    assert "| mlp-unit (2 ep) | `two_pass` |" in text and "| real data | train vs test |" in text
    assert "Method 1 (`shared_joint`)" in text and "Mode collapse" in text
    figures = sorted((tmp_path / "docs" / "strategies").iterdir())
    names = ["mlp-unit-shared_joint.png", "mlp-unit-training.png", "mlp-unit-two_pass.png"]
    assert [f.name for f in figures] == names
    assert all(f.stat().st_size < 150_000 for f in figures)
    for name in names:
        assert f"](strategies/{name})" in text


def test_the_recipe_table_reports_every_trial_and_which_covered_every_class():
    from experiments.strategy_study.report import recipes_section

    def run(scores, classes, final=None):
        return {"epoch_scores": scores, "epoch_classes": classes} | (
            {"final": {"metrics": final}} if final else {}
        )

    metrics = {"classifier_score": 7.41, "classes_covered": 10.0, "frechet_distance": 31.6}
    recipes = {
        "commands": ["python -m experiments.recipes --trial a:"],
        "score_samples": 2000,
        "trials": {
            "notes": {"overrides": {"g_lr": 2e-4}, "epochs": 2,
                      "runs": {"0": run([3.0, 4.0], [6, 7])}},
            "slow": {"overrides": {}, "epochs": 2, "runs": {
                "0": run([5.0, 7.0], [9, 10], metrics), "1": run([6.0, 7.5], [10, 10], metrics),
                "2": run([6.5, 6.5], [10, 10], metrics)}},
            "two": {"overrides": {}, "epochs": 2,
                    "runs": {"0": run([5.0, 6.0], [10, 10]), "1": run([5.0, 6.0], [10, 10])}},
        },
    }  # fmt: skip
    section = recipes_section(recipes)
    rows = section["table"].splitlines()[2:]
    assert rows[0] == "| notes | `g_lr=0.0002` | 2 | 0 | 4 | 7 | 4.00 (2) | - |"
    assert rows[1].startswith("| slow | defaults | 2 | 0, 1, 2 | ")
    assert "| 10, 10, 10 | 7.00 (2) | 7.41, 10, 32; 7.41, 10, 32; 7.41, 10, 32 |" in rows[1]
    # Every class on every seed, but only "slow" has the 3 seeds the target asks for.
    assert section["verdict"].endswith("seeds: slow.")


def test_recipe_trials_parse_each_value_as_its_settings_type():
    from experiments.recipes.__main__ import parse_trial

    name, overrides = parse_trial("t:g_lr=1e-4,train_examples=640,conditional=True,model=dcgan")
    assert name == "t"
    assert overrides == {"g_lr": 1e-4, "train_examples": 640, "conditional": True,
                         "model": "dcgan"}  # fmt: skip
    assert type(overrides["train_examples"]) is int and type(overrides["g_lr"]) is float
    assert parse_trial("defaults:") == ("defaults", {})
    with pytest.raises(SystemExit, match="'lr' is not a training setting"):
        parse_trial("t:lr=1e-4")
    with pytest.raises(SystemExit, match="conditional='yes': expected bool"):
        parse_trial("t:conditional=yes")
    with pytest.raises(SystemExit, match="epochs='ten': expected int"):
        parse_trial("t:epochs=ten")
