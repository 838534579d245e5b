"""benchmarks.fast computes the reference's update: every strategy, both models, float64.

Both implementations start from the same weights and see the same real MNIST batches and
noise; after every step their parameters, BatchNorm running statistics, Adam moments and losses
must agree to rounding, so the benchmark's "best PyTorch" does the same work as the notes' code.
"""

import numpy as np
import pytest
import torch

from benchmarks import fast
from jaxgan import MODELS, STRATEGIES
from jaxgan.training.data import load_idx_split
from parity import compare, reference

STEPS = 3
FEATURES = 8  # float64 convolutions are slow on the CPU; the width changes no layout
# One step's reordering of float64 sums (one backward of a sum instead of two accumulated
# ones, fused Adam) is about 1e-16 relative; Adam divides by sqrt(nu), which amplifies it in
# near-zero gradients, as in the parity suite (compare.TOLERANCES: params 1e-10).
ATOL = 1e-10


@pytest.fixture(scope="module")
def batches(mnist_dir):
    images = load_idx_split(mnist_dir, "train").images
    real, noise = compare.mnist_batches(images, STEPS, 32)
    # A permuted NHWC view (channels-last strides): the update must not depend on the layout.
    real = torch.tensor(real, dtype=torch.float64).permute(0, 1, 4, 2, 3)
    return real, torch.tensor(noise, dtype=torch.float64)


def _initial(model):
    torch.manual_seed(0)
    G, D = reference.make_models(model, FEATURES)
    return G.double(), D.double()


def _train(model, module, strategy, batches):
    """`STEPS` steps of `module.STRATEGIES[strategy]` from seed 0 -> (G, D, optimizers, losses)."""
    G, D = _initial(model)
    optimizers = module.make_optimizer(G), module.make_optimizer(D)
    losses = []
    for real, noise in zip(*batches, strict=True):
        g_loss, d_loss = module.STRATEGIES[strategy](G, D, *optimizers, real, noise)
        losses.append([g_loss.item(), d_loss.item()])
    return G, D, optimizers, np.array(losses)


def _max_diff(a, b) -> float:
    """Largest absolute difference over losses, weights, running statistics and Adam moments."""
    (Ga, Da, opts_a, loss_a), (Gb, Db, opts_b, loss_b) = a, b
    diffs = [np.abs(loss_a - loss_b).max()]
    for x, y in ((Ga, Gb), (Da, Db)):
        sa, sb = x.state_dict(), y.state_dict()
        assert sa.keys() == sb.keys()
        diffs += [(sa[k].double() - sb[k].double()).abs().max().item() for k in sa]
    for oa, ob in zip(opts_a, opts_b, strict=True):
        for pa, pb in zip(oa.param_groups[0]["params"], ob.param_groups[0]["params"], strict=True):
            sa, sb = oa.state[pa], ob.state[pb]
            assert float(sa["step"]) == float(sb["step"]) == STEPS
            diffs += [(sa[k] - sb[k]).abs().max().item() for k in ("exp_avg", "exp_avg_sq")]
    return max(diffs)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_fast_update_is_the_reference_update(strategy, model, batches):
    ref = _train(model, reference, strategy, batches)
    assert _max_diff(ref, _train(model, fast, strategy, batches)) < ATOL
    initial, final = _initial(model)[0].state_dict(), ref[0].state_dict()
    first = next(iter(initial))  # G's first weight moved: the comparison is not of idle weights
    assert (final[first] - initial[first]).abs().max() > 1e4 * ATOL


def test_the_check_fails_for_another_strategy(batches):
    ref = _train("mlp", reference, "shared_sequential", batches)
    assert _max_diff(ref, _train("mlp", fast, "two_pass", batches)) > 1e4 * ATOL
