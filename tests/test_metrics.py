"""jaxgan.eval.metrics against closed forms, scipy, and direct loops over the definitions."""

import itertools

import chex
import numpy as np
import pytest
import scipy.linalg

from jaxgan.eval import Evaluator, load_classifier, metrics
from jaxgan.training.data import load_idx_split


def _random_spd(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def test_frechet_distance_is_zero_for_identical_sets():
    feats = np.random.default_rng(0).normal(size=(500, 16)) * 3 + 1
    assert abs(metrics.frechet_distance(feats, feats)) < 1e-8


def test_frechet_distance_matches_the_closed_form_for_diagonal_gaussians():
    # For commuting covariances d^2 = ||mu1 - mu2||^2 + ||sqrt(s1) - sqrt(s2)||^2 (elementwise).
    mu1, mu2 = np.array([0.0, 1.0, 2.0, -1.0]), np.array([1.0, 1.0, 0.0, 0.5])
    var1, var2 = np.array([1.0, 4.0, 0.25, 9.0]), np.array([4.0, 1.0, 1.0, 9.0])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(var1) - np.sqrt(var2)) ** 2)
    got = metrics.frechet_distance_from_stats(mu1, np.diag(var1), mu2, np.diag(var2))
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert expected == pytest.approx(7.25 + 2.25)


def test_frechet_distance_matches_scipy_sqrtm_on_random_spd_matrices():
    rng = np.random.default_rng(1)
    d = 12
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = _random_spd(rng, d), _random_spd(rng, d)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * covmean)
    got = metrics.frechet_distance_from_stats(mu1, s1, mu2, s2)
    np.testing.assert_allclose(got, expected, rtol=1e-8)
    # The trace term matters: dropping it or using tr(sqrt(S1) sqrt(S2)) would not match.
    naive = np.trace(metrics._sqrtm_psd(s1) @ metrics._sqrtm_psd(s2))
    assert abs(np.trace(covmean) - naive) > 1e-3


def test_frechet_distance_of_samples_uses_their_mean_and_unbiased_covariance():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(300, 5)), rng.normal(size=(200, 5)) * 2 + 1
    expected = metrics.frechet_distance_from_stats(
        x.mean(0), np.cov(x.T, ddof=1), y.mean(0), np.cov(y.T, ddof=1)
    )
    np.testing.assert_allclose(metrics.frechet_distance(x, y), expected, rtol=1e-12)
    # Close to the population value 5 * 1 + 5 * (2 - 1)^2 = 10 of the two Gaussians sampled.
    assert metrics.frechet_distance(x, y) == pytest.approx(10.0, rel=0.2)


def test_classifier_score_known_answers():
    one_hot_spread = np.eye(10)[np.arange(1000) % 10]
    np.testing.assert_allclose(metrics.classifier_score(one_hot_spread)[0], 10.0, rtol=1e-12)
    one_class = np.eye(10)[np.zeros(1000, int)]
    np.testing.assert_allclose(metrics.classifier_score(one_class)[0], 1.0, rtol=1e-12)
    # Confident over 4 balanced classes: exp(log 4) = 4.
    four = np.eye(10)[np.arange(400) % 4]
    np.testing.assert_allclose(metrics.classifier_score(four)[0], 4.0, rtol=1e-12)


def test_classifier_score_matches_the_kl_definition_with_splits():
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.full(10, 0.3), size=1000)
    scores = []
    for chunk in np.split(probs, 5):
        marginal = chunk.mean(0)
        kl = [np.sum(p * np.log(p / marginal)) for p in chunk]
        scores.append(np.exp(np.mean(kl)))
    mean, std = metrics.classifier_score(probs, splits=5)
    np.testing.assert_allclose([mean, std], [np.mean(scores), np.std(scores)], rtol=1e-10)
    assert std > 0


def test_class_coverage_of_one_class_and_of_balanced_samples():
    one_class = np.eye(10)[np.full(500, 3)]
    coverage = metrics.class_coverage(one_class)
    assert coverage.num_covered == 1
    np.testing.assert_allclose(coverage.kl_uniform, np.log(10), rtol=1e-12)
    chex.assert_trees_all_close(coverage.fractions, np.eye(10)[3])

    balanced = metrics.class_coverage(np.eye(10)[np.arange(1000) % 10])
    assert balanced.num_covered == 10
    assert abs(balanced.kl_uniform) < 1e-12
    np.testing.assert_allclose(balanced.fractions, np.full(10, 0.1))


def test_class_coverage_threshold_ignores_stray_samples():
    # 995 samples of class 0 and 5 of class 1: class 1 holds 0.5% < 1%, so it is not covered.
    labels = np.r_[np.zeros(995, int), np.ones(5, int)]
    coverage = metrics.class_coverage(np.eye(10)[labels])
    assert coverage.num_covered == 1
    f = np.array([0.995, 0.005])
    np.testing.assert_allclose(coverage.kl_uniform, np.sum(f * np.log(10 * f)), rtol=1e-12)


def _mmd2_loops(x: np.ndarray, y: np.ndarray) -> float:
    d = x.shape[1]

    def k(a, b):
        return (a @ b / d + 1) ** 3

    m = len(x)
    pairs = [(i, j) for i, j in itertools.product(range(m), repeat=2) if i != j]
    xx = sum(k(x[i], x[j]) for i, j in pairs) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i, j in pairs) / (m * (m - 1))
    xy = sum(k(a, b) for a in x for b in y) / (m * m)
    return xx + yy - 2 * xy


def test_kid_matches_direct_double_sum_on_a_small_case():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(15, 6)), rng.normal(size=(15, 6)) + 0.5
    expected = _mmd2_loops(x, y)
    np.testing.assert_allclose(metrics.mmd2_unbiased(x, y), expected, rtol=1e-10)
    # With subsets as large as the sets, every subset is a permutation: the same U-statistic.
    mean, std = metrics.kernel_inception_distance(x, y, num_subsets=3, subset_size=100)
    np.testing.assert_allclose(mean, expected, rtol=1e-10)
    assert std < 1e-10


def test_kid_near_zero_for_one_distribution_and_positive_for_shifted():
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(2000, 32)), rng.normal(size=(2000, 32))
    same, same_std = metrics.kernel_inception_distance(a, b, num_subsets=20, subset_size=500)
    shifted, _ = metrics.kernel_inception_distance(a, b + 0.5, num_subsets=20, subset_size=500)
    assert abs(same) < 3 * same_std + 1e-3
    assert shifted > 20 * max(abs(same), same_std)


def _precision_recall_loops(real: np.ndarray, fake: np.ndarray, k: int) -> tuple[float, float]:
    def inside(queries, centres):
        radii = [np.sort(np.linalg.norm(centres - c, axis=1))[k] for c in centres]
        balls = list(zip(centres, radii, strict=True))
        return np.mean([any(np.linalg.norm(q - c) <= r for c, r in balls) for q in queries])

    return inside(fake, real), inside(real, fake)


def test_precision_recall_identical_and_disjoint_sets():
    rng = np.random.default_rng(6)
    real = rng.normal(size=(200, 8))
    assert metrics.precision_recall(real, real.copy()) == (1.0, 1.0)
    assert metrics.precision_recall(real, real + 100.0) == (0.0, 0.0)


def test_precision_recall_distinguish_fidelity_from_diversity():
    # Real data has modes A and B; the generator reproduces A and adds a spurious mode C. Half
    # of the generated points are real-looking (precision 1/2) and a quarter of the real points,
    # mode A, are covered (recall 10 / 40); swapping the two would give 1/4 and 1/2.
    rng = np.random.default_rng(7)
    mode_a = rng.normal(size=(10, 4))
    mode_b = rng.normal(size=(30, 4)) + 50.0
    mode_c = rng.normal(size=(10, 4)) - 50.0
    real, fake = np.r_[mode_a, mode_b], np.r_[mode_a, mode_c]
    assert metrics.precision_recall(real, fake) == (0.5, 0.25)


def test_precision_recall_radius_is_the_kth_neighbour_excluding_the_point_itself():
    # Real points 0..9 on a line: with k=3 the radius at the ends is 3, inside 2. A fake point at
    # 11.5 is inside only with the 3rd neighbour (not the 2nd, nor the 3rd counting itself).
    real = np.c_[np.arange(10.0), np.zeros(10)]
    fake = np.c_[[-3.1, -2.9, 4.5, 11.5, 12.5], np.zeros(5)]
    precision, recall = metrics.precision_recall(real, fake, k=3)
    assert precision == pytest.approx(3 / 5)
    assert (precision, recall) == pytest.approx(_precision_recall_loops(real, fake, k=3))
    rng = np.random.default_rng(8)
    real, fake = rng.normal(size=(60, 3)), rng.normal(size=(50, 3)) + 1.5
    got = metrics.precision_recall(real, fake, k=3, batch_size=16)
    assert got == pytest.approx(_precision_recall_loops(real, fake, k=3))
    assert 0.2 < got[0] < 0.8 and 0.2 < got[1] < 0.8


def test_format_table_aligns_columns_and_merges_std():
    table = metrics.format_table(
        {
            "generated": {"frechet_distance": 12.3456, "kid": 0.01, "kid_std": 0.002},
            "real reference": {"frechet_distance": 0.5, "kid": 0.0, "kid_std": 0.0001},
        }
    )
    lines = table.splitlines()
    assert lines[0].split() == ["metric", "generated", "real", "reference"]
    assert lines[1].split() == ["frechet_distance", "12.35", "0.5"]
    assert lines[2].split() == ["kid", "0.01", "±", "0.002", "0", "±", "0.0001"]
    assert len(lines) == 3
    assert lines[1].index("0.5") == lines[0].index("real reference")


def test_features_rejects_tanh_range_and_wrong_shapes():
    classifier = load_classifier("mnist")
    with pytest.raises(ValueError, match=r"\(x \+ 1\) / 2"):
        metrics.features(np.full((4, 28, 28, 1), -1.0, np.float32), classifier)
    with pytest.raises(ValueError, match="NHWC"):
        metrics.features(np.zeros((4, 1, 28, 28), np.uint8), classifier)


def test_evaluator_scores_real_digits_well_and_collapsed_samples_badly(mnist_dir):
    test = load_idx_split(mnist_dir, "test")
    train = load_idx_split(mnist_dir, "train")
    reference, real_like = test.images[:1000], test.images[1000:2000]
    collapsed = test.images[test.labels == 1][:500]
    evaluator = Evaluator(reference, "mnist", kid_subsets=10, kid_subset_size=400, score_splits=2)
    real = evaluator.score(real_like).metrics
    bad = evaluator.score(collapsed).metrics
    assert real["classes_covered"] == 10 and bad["classes_covered"] == 1
    assert real["classifier_score"] > 8 and bad["classifier_score"] < 1.1
    assert real["precision"] > 0.8 and real["recall"] > 0.8
    assert bad["recall"] < 0.3
    assert bad["frechet_distance"] > 20 * real["frechet_distance"]
    assert bad["kid"] > 20 * abs(real["kid"])
    np.testing.assert_allclose(bad["class_kl_uniform"], np.log(10), rtol=0.02)  # a few errors

    ref = evaluator.reference(train.images[:3000], train.labels[:3000], 1000).metrics
    assert ref.keys() == real.keys() | {
        "class_accuracy",
        *(f"class_accuracy_{k}" for k in range(10)),
    }
    assert ref["classes_covered"] == 10 and ref["precision"] > 0.8
    assert ref["class_accuracy"] > 0.97  # the shipped classifier's 99% on real digits
    table = metrics.format_table({"generated": bad, "real reference": ref})
    assert table.splitlines()[0].split() == ["metric", "generated", "real", "reference"]


def test_class_accuracy_on_known_cases():
    labels = np.array([0, 0, 1, 1, 2, 2, 2, 2])
    predicted = np.array([0, 1, 1, 1, 2, 0, 2, 2])
    probs = np.eye(4)[predicted]  # class 3 is never requested
    overall, per_class = metrics.class_accuracy(probs, labels)
    assert overall == pytest.approx(6 / 8)
    np.testing.assert_allclose(per_class[:3], [0.5, 1.0, 0.75])
    assert np.isnan(per_class[3])
    with pytest.raises(ValueError, match="3 labels for 8 samples"):
        metrics.class_accuracy(probs, labels[:3])
