"""Sample-quality metrics for GANs on MNIST-format data, in a classifier's feature space.

Every metric compares generated images with real ones through a classifier trained on the
dataset (`jaxgan.eval.classifier`): its 128-d penultimate features stand in for Inception's
pool features and its softmax for Inception's class probabilities. Absolute values are
therefore comparable only between runs scored with the same classifier weights, never with
published Inception-based numbers; compare a model with real training images scored the same
way (`jaxgan.eval.Evaluator.reference`).

The statistics run in float64 numpy on the host, where the matrix square root and the kernel
sums are accurate; only the classifier's forward passes run under jit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import numpy as np

from jaxgan.eval.classifier import Classifier, features_and_logits


class Coverage(NamedTuple):
    """How generated samples spread over the classes the classifier predicts for them."""

    fractions: np.ndarray  # float64[num_classes]: share of samples predicted as each class
    num_covered: int  # classes holding at least `min_fraction` of the samples
    kl_uniform: float  # KL(fractions || uniform) in nats: 0 when balanced, log K for one class


def features(
    images: np.ndarray | jax.Array, classifier: Classifier, batch_size: int = 500
) -> tuple[np.ndarray, np.ndarray]:
    """The classifier's penultimate features and class probabilities for a set of images.

    Args:
      images: NHWC `[N, 28, 28, 1]`, `uint8` in `[0, 255]` or float in `[0, 1]`.
      classifier: the dataset's (`jaxgan.eval.load_classifier(dataset)`).
      batch_size: images per jitted forward pass.

    Returns:
      `(features float32[N, 128], probabilities float64[N, 10])`; the softmax runs in float64
      so that confident predictions keep their small probabilities for the KL terms.

    Raises:
      ValueError: the shape is not `[N, 28, 28, 1]`, or float pixels leave `[0, 1]` (a tanh
        generator's `[-1, 1]` output must be mapped with `(x + 1) / 2` first).
    """
    images = np.asarray(images)
    if images.dtype != np.uint8 and images.size:
        low, high = float(images.min()), float(images.max())
        if low < -1e-3 or high > 1 + 1e-3:
            raise ValueError(
                f"float images must lie in [0, 1], got values in [{low:.3g}, {high:.3g}]; map a "
                f"tanh output in [-1, 1] with (x + 1) / 2"
            )
    feats, logits = features_and_logits(classifier, images, batch_size)
    shifted = np.asarray(logits, np.float64) - logits.max(axis=-1, keepdims=True)
    return feats, np.exp(shifted) / np.exp(shifted).sum(axis=-1, keepdims=True)


def _sqrtm_psd(matrix: np.ndarray) -> np.ndarray:
    eigenvalues, eigenvectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0, None))) @ eigenvectors.T


def frechet_distance_from_stats(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
    """Fréchet (2-Wasserstein) distance between the Gaussians N(mu1, sigma1) and N(mu2, sigma2).

    `d^2 = ||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^{1/2})`, where the trace term is
    computed as `tr((S1^{1/2} S2 S1^{1/2})^{1/2})`: the same eigenvalues (`S1 S2` is similar to
    it), but a symmetric PSD matrix, so `eigh` gives its square root stably and without the
    complex round-off that `scipy.linalg.sqrtm(S1 @ S2)` produces.

    Args:
      mu1, mu2: means, `[d]`.
      sigma1, sigma2: covariances, symmetric positive semidefinite `[d, d]`.

    Returns:
      The squared distance `d^2` (what FID reports), as a float64 scalar.

    References:
      Dowson & Landau, "The Fréchet distance between multivariate normal distributions", 1982.
      Heusel et al., "GANs trained by a two time-scale update rule converge to a local Nash
      equilibrium", NeurIPS 2017 (FID).
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    root1 = _sqrtm_psd(sigma1)
    inner = np.linalg.eigvalsh(root1 @ sigma2 @ root1)
    trace_sqrt = np.sum(np.sqrt(np.clip(inner, 0, None)))
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt)


def frechet_distance(features1: np.ndarray, features2: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (FID with our features).

    Args:
      features1, features2: `[n1, d]` and `[n2, d]`; each needs at least two rows.

    Returns:
      `frechet_distance_from_stats` of their means and unbiased (`n - 1`) covariances.
    """
    stats = []
    for feats in (features1, features2):
        feats = np.asarray(feats, np.float64)
        stats += [feats.mean(axis=0), np.cov(feats, rowvar=False)]
    return frechet_distance_from_stats(*stats)


def _kl_rows(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    # Terms with p = 0 are 0 (the limit of p log p); q > 0 wherever p > 0, as q is p's mean.
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = p * (np.log(p) - np.log(q))
    return np.sum(np.where(p > 0, terms, 0.0), axis=-1)


def classifier_score(probs: np.ndarray, splits: int = 1) -> tuple[float, float]:
    """The Inception score computed with our classifier: `exp(E_x KL(p(y|x) || p(y)))`.

    `p(y)` is the mean of `p(y|x)` over the samples. The score runs from 1 (every sample gets the
    same distribution) to the number of classes (confident predictions, classes balanced). With
    `splits > 1` the samples are cut into that many contiguous, equal chunks (the remainder is
    dropped), each scored with its own `p(y)`, and the mean and standard deviation over the
    chunks are returned, as Salimans et al. report it (with 10 splits).

    Args:
      probs: `[N, num_classes]`, rows summing to 1.
      splits: how many chunks to score separately.

    Returns:
      `(mean, std)` of the per-chunk scores; `std` is 0 for one split.

    References:
      Salimans et al., "Improved techniques for training GANs", NeurIPS 2016.
    """
    probs = np.asarray(probs, np.float64)
    if splits < 1 or len(probs) < splits:
        raise ValueError(f"splits must be in [1, {len(probs)}] (the sample count), got {splits}")
    chunk = len(probs) // splits
    scores = []
    for i in range(splits):
        p = probs[i * chunk : (i + 1) * chunk]
        scores.append(np.exp(np.mean(_kl_rows(p, p.mean(axis=0, keepdims=True)))))
    return float(np.mean(scores)), float(np.std(scores))


def class_coverage(probs: np.ndarray, min_fraction: float = 0.01) -> Coverage:
    """How the samples' predicted classes (argmax of `probs`) spread over the classes.

    A class counts as covered when at least `min_fraction` of the samples are predicted as it
    (default 1%, a tenth of a balanced class's share for MNIST), so that a few stray samples do
    not hide a collapsed mode. `kl_uniform = sum_k f_k log(K f_k) = log K - H(f)` measures the
    imbalance: 0 for a balanced set, `log K` when every sample falls in one class.

    Args:
      probs: `[N, K]` class probabilities (or logits: only the argmax is used).
      min_fraction: the share of samples a class needs to count as covered.

    Returns:
      A `Coverage` of the per-class fractions, covered count and KL from uniform.
    """
    num_classes = probs.shape[-1]
    counts = np.bincount(np.argmax(probs, axis=-1), minlength=num_classes)
    fractions = counts / max(1, counts.sum())
    nonzero = fractions[fractions > 0]
    kl = float(np.sum(nonzero * np.log(nonzero * num_classes)))
    return Coverage(fractions, int(np.sum(fractions >= min_fraction)), kl)


def class_accuracy(probs: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """How often the classifier assigns a conditional sample to the class it was drawn for.

    Args:
      probs: `[N, K]` class probabilities (or logits: only the argmax is used).
      labels: `int[N]`, the class each sample was generated for.

    Returns:
      `(overall, per_class)`: the fraction of all samples predicted as their requested class,
      and `float64[K]` of that fraction among the samples requested for each class (NaN for a
      class nobody requested).
    """
    labels = np.asarray(labels)
    if labels.shape != probs.shape[:1]:
        raise ValueError(f"{len(labels)} labels for {len(probs)} samples")
    hits = np.argmax(probs, axis=-1) == labels
    num_classes = probs.shape[-1]
    requested = np.bincount(labels, minlength=num_classes)
    correct = np.bincount(labels, weights=hits, minlength=num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(requested > 0, correct / requested, np.nan)
    return float(hits.mean()), per_class


def _polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (x @ y.T / x.shape[1] + 1) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 between two equal-size samples under `k(a, b) = (a.b / d + 1)^3`.

    `MMD^2 = sum_{i!=j} k(x_i, x_j) / (m(m-1)) + sum_{i!=j} k(y_i, y_j) / (m(m-1))
    - 2 sum_{i,j} k(x_i, y_j) / m^2`, the U-statistic of Gretton et al. (2012, Lemma 6).

    Args:
      x, y: `[m, d]` each, `m >= 2`.

    Returns:
      The estimate, float64; it can be slightly negative when the distributions match.
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    m = len(x)
    k_xx, k_yy, k_xy = _polynomial_kernel(x, x), _polynomial_kernel(y, y), _polynomial_kernel(x, y)
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within - 2 * k_xy.mean())


def kernel_inception_distance(
    features1: np.ndarray,
    features2: np.ndarray,
    num_subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """KID: `mmd2_unbiased` averaged over random subsets, as Binkowski et al. compute it.

    Each of the `num_subsets` rounds draws `subset_size` rows of each set without replacement
    (independently of the other rounds) and estimates MMD^2 on them; the result is the mean and
    standard deviation of those estimates. Unlike FID the estimator is unbiased, so it is
    comparable across sample counts and is about 0 for two samples of one distribution.

    Args:
      features1, features2: `[n1, d]` and `[n2, d]`.
      num_subsets: rounds to average.
      subset_size: rows per set per round; capped at `min(n1, n2)`.
      seed: seeds the subset draws.

    Returns:
      `(mean, std)` of the per-subset MMD^2 estimates.

    References:
      Binkowski et al., "Demystifying MMD GANs", ICLR 2018.
    """
    size = min(subset_size, len(features1), len(features2))
    if size < 2:
        raise ValueError(f"KID needs at least 2 rows per set, got {size}")
    rng = np.random.default_rng(seed)
    estimates = [
        mmd2_unbiased(
            features1[rng.choice(len(features1), size, replace=False)],
            features2[rng.choice(len(features2), size, replace=False)],
        )
        for _ in range(num_subsets)
    ]
    return float(np.mean(estimates)), float(np.std(estimates))


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # The expanded form is a matmul; clipping removes the tiny negatives its round-off leaves.
    sq = np.sum(a**2, axis=1)[:, None] + np.sum(b**2, axis=1)[None, :] - 2 * a @ b.T
    return np.clip(sq, 0, None)


def _knn_radii(points: np.ndarray, k: int, batch_size: int) -> np.ndarray:
    radii = []
    for start in range(0, len(points), batch_size):
        sq = _squared_distances(points[start : start + batch_size], points)
        # Column 0 after partitioning is the point itself (distance 0), so column k is its k-th
        # nearest other point.
        radii.append(np.partition(sq, k, axis=1)[:, k])
    return np.concatenate(radii)


def _fraction_inside(queries: np.ndarray, centres: np.ndarray, radii: np.ndarray, bs: int) -> float:
    inside = [
        np.any(_squared_distances(queries[start : start + bs], centres) <= radii[None, :], axis=1)
        for start in range(0, len(queries), bs)
    ]
    return float(np.mean(np.concatenate(inside)))


def precision_recall(
    real: np.ndarray, generated: np.ndarray, k: int = 3, batch_size: int = 1000
) -> tuple[float, float]:
    """Improved precision and recall with k-nearest-neighbour manifolds.

    Each set's manifold is the union of balls around its points, each ball's radius the
    distance to that point's `k`-th nearest neighbour within the set. Precision is the fraction
    of generated points inside the real manifold (fidelity); recall is the fraction of real
    points inside the generated manifold (diversity). A point on a ball's boundary is inside.

    Args:
      real, generated: feature sets `[n_real, d]` and `[n_gen, d]`, each with more than `k` rows.
      k: the neighbour that sets each radius (3, as the paper recommends).
      batch_size: rows per block of the pairwise-distance computation (memory bound).

    Returns:
      `(precision, recall)`, each in `[0, 1]`.

    References:
      Kynkäänniemi et al., "Improved precision and recall metric for assessing generative
      models", NeurIPS 2019.
    """
    real, generated = np.asarray(real, np.float64), np.asarray(generated, np.float64)
    if min(len(real), len(generated)) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} points in each set")
    precision = _fraction_inside(generated, real, _knn_radii(real, k, batch_size), batch_size)
    recall = _fraction_inside(real, generated, _knn_radii(generated, k, batch_size), batch_size)
    return precision, recall


def evaluate_features(
    sample_features: np.ndarray,
    sample_probs: np.ndarray,
    reference_features: np.ndarray,
    *,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    score_splits: int = 10,
    seed: int = 0,
    labels: np.ndarray | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, float]:
    """Every metric of this module from classifier outputs (see `features`), computed once each.

    Args:
      sample_features, sample_probs: `features(samples)` of the generated images.
      reference_features: `features(reference_images)[0]` of the real images.
      kid_subsets, kid_subset_size: see `kernel_inception_distance`.
      score_splits: see `classifier_score`.
      seed: seeds KID's subset draws.
      labels: for conditional samples, the class each was drawn for; adds `class_accuracy`
        and `class_accuracy_<k>` for each class k (see `class_accuracy`).
      progress: told the name of each metric as its computation starts.

    Returns:
      A flat dict: `frechet_distance`; `kid` and `kid_std` (MMD^2 over subsets); `precision`
      and `recall` (k=3); `classifier_score` and `classifier_score_std`; `classes_covered`
      (classes with at least 1% of the samples) and `class_kl_uniform` (nats), of the samples.
    """
    stage = progress or (lambda name: None)
    stage("Fréchet distance")
    fd = frechet_distance(sample_features, reference_features)
    stage("KID")
    kid, kid_std = kernel_inception_distance(
        sample_features, reference_features, kid_subsets, kid_subset_size, seed
    )
    stage("precision and recall")
    precision, recall = precision_recall(reference_features, sample_features)
    stage("classifier score")
    score, score_std = classifier_score(sample_probs, score_splits)
    coverage = class_coverage(sample_probs)
    conditional = {}
    if labels is not None:
        overall, per_class = class_accuracy(sample_probs, labels)
        conditional = {"class_accuracy": overall}
        conditional.update({f"class_accuracy_{k}": float(a) for k, a in enumerate(per_class)})
    return {
        "frechet_distance": fd,
        "kid": kid,
        "kid_std": kid_std,
        "precision": precision,
        "recall": recall,
        "classifier_score": score,
        "classifier_score_std": score_std,
        "classes_covered": float(coverage.num_covered),
        "class_kl_uniform": coverage.kl_uniform,
        **conditional,
    }


def format_table(results: dict[str, dict[str, float]]) -> str:
    """Renders metric dicts side by side: one column per dict, one row per metric.

    A metric `m` with a companion `m_std` is shown as `mean ± std` on one row. Metrics missing
    from a column show as `-`.

    Args:
      results: column name (e.g. `"generated"`, `"real reference"`) to metric dict.

    Returns:
      A plain-text table with a header row, columns padded to align.
    """
    names = list(dict.fromkeys(key for metrics in results.values() for key in metrics))
    rows = [["metric", *results]]
    for name in (n for n in names if not (n.endswith("_std") and n[:-4] in names)):
        row = [name]
        for metrics in results.values():
            if name not in metrics:
                row.append("-")
            elif f"{name}_std" in metrics:
                row.append(f"{metrics[name]:.4g} ± {metrics[f'{name}_std']:.2g}")
            else:
                row.append(f"{metrics[name]:.4g}")
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )
