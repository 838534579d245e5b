"""Layers that compute exactly what their PyTorch counterparts compute, NHWC.

- `BatchNorm`: `torch.nn.BatchNorm{1,2}d`, running statistics included.
- `UpConv`: `ConvTranspose2d(c, o, 4, stride=2, padding=1, bias=False)`, in the sub-pixel or
  the scatter (col2im) form, whichever moves less data.
- `DownConv`: `Conv2d(c, o, 4, stride=2, padding=1, bias=False)`.
- `SameConv`: `Conv2d(c, o, 3, stride=1, padding=1, bias=False)`.
- `patch_matmul`: the matmul the three convolutions share, with a kernel gradient that XLA:CPU
  computes without transposing the output gradient inside other loops.
- initializers matching PyTorch's `nn.Linear` default and the DCGAN paper's.

The three convolutions are written as matmuls. They compute the same sums as
`lax.conv_transpose` and `lax.conv_general_dilated`, and they are what keeps a DCGAN train step
fast on XLA:CPU, whose convolutions are slow in gradients and inside loops (`lax.scan`,
`lax.fori_loop`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Literal

import flax.linen as nn
import jax
import jax.numpy as jnp


class BatchNorm(nn.Module):
    """Batch normalization over all axes but the last, with PyTorch's semantics.

    Training mode normalizes with the batch mean and the biased batch variance, and updates the
    running statistics as `torch.nn.BatchNorm{1,2}d` does:
    `running = (1 - momentum) * running + momentum * batch_stat`, where the variance that enters
    the running average is the *unbiased* one (`n / (n - 1)` times the biased one). Flax's own
    `BatchNorm` averages the biased variance and counts momentum the other way round; this module
    exists so that jaxgan's running statistics are PyTorch's, not merely close to them.

    With `groups > 1` the batch is cut into that many equal consecutive groups, each normalized
    with its own statistics. When a batch is sharded over `groups` devices, each group is one
    device's share: that is PyTorch DDP's default (BatchNorm per replica, no communication),
    where `groups=1` on a sharded batch is `SyncBatchNorm`. The running statistics then average
    the groups' statistics (DDP keeps rank 0's; the average is the better estimate).

    Attributes:
      momentum: PyTorch's momentum, the weight of the new batch statistic (PyTorch default 0.1;
        flax's `momentum=0.9` is this module's `momentum=0.1`).
      epsilon: added to the variance before the square root.
      scale_init: initializer of the scale (PyTorch's `weight`).
      groups: how many groups of the batch get their own statistics.

    A low-precision input (bfloat16) is normalized in float32, the statistics' dtype, and the
    result returned in the input's dtype; float32 and float64 inputs compute in their own.
    """

    momentum: float = 0.1
    epsilon: float = 1e-5
    scale_init: nn.initializers.Initializer = nn.initializers.ones
    groups: int = 1

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        dtype = x.dtype
        x = x.astype(jnp.promote_types(dtype, jnp.float32))
        features = x.shape[-1]
        scale = self.param("scale", self.scale_init, (features,))
        bias = self.param("bias", nn.initializers.zeros, (features,))
        running_mean = self.variable("batch_stats", "mean", jnp.zeros, (features,))
        running_var = self.variable("batch_stats", "var", jnp.ones, (features,))
        # Broadcast per-feature vectors explicitly (implicit rank promotion hides shape bugs).
        shape = (1,) * x.ndim + (features,)
        if not train:
            mean, var = running_mean.value.reshape(shape), running_var.value.reshape(shape)
            y = (x[None] - mean) * jax.lax.rsqrt(var + self.epsilon)
            return (y * scale.reshape(shape) + bias.reshape(shape))[0].astype(dtype)
        if x.shape[0] % self.groups:
            raise ValueError(f"a batch of {x.shape[0]} does not split into {self.groups} groups")
        grouped = x.reshape(self.groups, x.shape[0] // self.groups, *x.shape[1:])
        axes = tuple(range(1, grouped.ndim - 1))
        mean = grouped.mean(axes, keepdims=True)
        var = jnp.square(grouped - mean).mean(axes, keepdims=True)
        if not self.is_initializing():
            n = grouped[0].size // features
            m = self.momentum
            unbiased = var.reshape(self.groups, features) * (n / (n - 1))
            running_mean.value = (1 - m) * running_mean.value + m * mean.reshape(-1, features).mean(
                0
            )
            running_var.value = (1 - m) * running_var.value + m * unbiased.mean(0)
        y = (grouped - mean) * jax.lax.rsqrt(var + self.epsilon)
        y = y * scale.reshape(shape) + bias.reshape(shape)
        return y.reshape(x.shape).astype(dtype)


def torch_linear_bias_init(fan_in: int) -> nn.initializers.Initializer:
    bound = 1 / math.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


# PyTorch's nn.Linear default: kaiming_uniform(a=sqrt(5)), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
torch_linear_kernel_init = nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform")


def dcgan_kernel_init(key, shape, dtype=jnp.float32):
    """The DCGAN paper's N(0, 0.02) weights: `nn.initializers.normal(0.02)`, drawn flat.

    The same values bit for bit (threefry numbers the elements of a draw in row-major order, so
    a flat draw reshaped is the shaped draw), but XLA:CPU compiles a draw of a 4-D convolution
    kernel ~5x slower than a flat one: 2.5 s against 0.5 s for a `(4, 4, 16, 8)` kernel on one
    core, most of the time a DCGAN's initialization took to compile.
    """
    flat = jax.random.normal(key, (math.prod(shape),), dtype)
    return flat.reshape(shape) * 0.02


def dcgan_scale_init(key, shape, dtype=jnp.float32):
    """The DCGAN paper's BatchNorm scale: N(1, 0.02)."""
    return 1 + 0.02 * jax.random.normal(key, shape, dtype)


class UpConv(nn.Module):
    """PyTorch's `ConvTranspose2d(c, features, 4, stride=2, padding=1, bias=False)`, NHWC.

    Doubles the spatial size. The kernel is stored as `[ky, kx, c_in, c_out]` with
    `kernel[ky, kx, c, o] = torch_weight[c, o, ky, kx]`. Two forms compute the same sum as a
    transposed convolution, each as one matmul (on XLA:CPU the gradient of `lax.conv_transpose`
    is several times slower: its kernel gradient falls back to a slow convolution there):

    - `"subpixel"`: output pixel `(2m + a, 2n + b)` sums input pixels `m + r - 1 + a` (`r` in
      {0, 1}) against kernel tap `3 - 2r - a`, so the four output phases are one matmul over the
      2x2 patches of the padded input, `[(h+1)(w+1), 4c] @ [4c, 4o]`, followed by an interleave.
    - `"scatter"`: every input pixel times the whole kernel, `[hw, c] @ [c, 16o]`, and each
      output pixel the sum of the four columns that land on it (col2im, the transposed
      convolution's definition). Exact FLOPs, where the sub-pixel form computes `(h+1)(w+1)`
      positions for `hw` inputs.

    `"auto"` picks the form whose intermediate array is smaller: the patches, `(h+1)(w+1) 4c`
    per image, or the columns, `hw 16o`. That is the sub-pixel form for a DCGAN's wide layers
    and the scatter form for its last, `c -> 1` (measured: a DCGAN train step 10% faster at
    batch 64 and 9% at batch 256, docs/performance.md).

    Attributes:
      features: output channels.
      dtype: what the matmul computes in (e.g. `"bfloat16"`); None: the input's and kernel's.
      form: `"auto"`, `"subpixel"` or `"scatter"`: the same sums in another order, so only
        rounding and speed differ.
    """

    features: int
    dtype: str | None = None
    form: Literal["auto", "subpixel", "scatter"] = "auto"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h, w, c = x.shape[1:]
        kernel = self.param("kernel", dcgan_kernel_init, (4, 4, c, self.features))
        form = self.form
        if form == "auto":
            scatter = h * w * 16 * self.features < (h + 1) * (w + 1) * 4 * c
            form = "scatter" if scatter else "subpixel"
        if form == "subpixel":
            return _upconv_subpixel(x, kernel, self.dtype)
        if form == "scatter":
            return _upconv_scatter(x, kernel, self.dtype)
        raise ValueError(f"form must be 'auto', 'subpixel' or 'scatter', got {self.form!r}")


def _upconv_subpixel(x: jax.Array, kernel: jax.Array, dtype: str | None) -> jax.Array:
    b, h, w, c = x.shape
    o = kernel.shape[-1]
    tap = 3 - 2 * jnp.arange(2)[:, None] - jnp.arange(2)[None, :]  # tap[r, a]
    # phase_kernel[(r, t, c), (a, b, o)] = kernel[tap[r, a], tap[t, b], c, o]
    phase_kernel = kernel[tap[:, None, :, None], tap[None, :, None, :]]  # [r, t, a, b, c, o]
    phase_kernel = phase_kernel.transpose(0, 1, 4, 2, 3, 5).reshape(4 * c, 4 * o)
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    patches = _shifted_windows(padded, 2, h + 1, w + 1)  # channels ordered (r, t, c)
    patches, phase_kernel = _compute_in(dtype, patches, phase_kernel)
    y = patch_matmul(patches, phase_kernel).reshape(b, h + 1, w + 1, 2, 2, o)
    return _interleave(lambda a, b_: y[:, a : a + h, b_ : b_ + w, a, b_])


# Output phase a (row 2m + a) of a 4-2-1 transposed convolution receives kernel tap `ky` from
# input row `m + offset`: phase 0 from taps 1 (offset 0) and 3 (offset -1), phase 1 from taps
# 2 (offset 0) and 0 (offset +1). The same for columns.
_SCATTER_TAPS = (((1, 0), (3, -1)), ((2, 0), (0, 1)))


def _upconv_scatter(x: jax.Array, kernel: jax.Array, dtype: str | None) -> jax.Array:
    b, h, w, c = x.shape
    o = kernel.shape[-1]
    flat_kernel = kernel.transpose(2, 0, 1, 3).reshape(c, 16 * o)  # [c, (ky, kx, o)]
    x, flat_kernel = _compute_in(dtype, x, flat_kernel)
    # XLA:CPU transposes the 16o-wide columns' gradient slowly (15 ms of a DCGAN step at batch
    # 256 for o = 1), so the kernel gradient transposes the input instead.
    columns = patch_matmul(x, flat_kernel, transpose="patches").reshape(b, h, w, 4, 4, o)
    # The four columns of each output pixel are summed in float32 at least (as a matmul
    # accumulates): bfloat16 columns are not rounded again after every addition.
    out_dtype = columns.dtype
    columns = columns.astype(jnp.promote_types(out_dtype, jnp.float32))
    columns = jnp.pad(columns, ((0, 0), (1, 1), (1, 1), (0, 0), (0, 0), (0, 0)))

    def phase(a: int, b_: int) -> jax.Array:  # output pixels (2m + a, 2n + b_), [b, h, w, o]
        t0, t1, t2, t3 = (
            columns[:, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w, ky, kx]
            for ky, dy in _SCATTER_TAPS[a]
            for kx, dx in _SCATTER_TAPS[b_]
        )
        return t0 + t1 + t2 + t3

    return _interleave(phase).astype(out_dtype)


def _interleave(phase: Callable[[int, int], jax.Array]) -> jax.Array:
    """The `[b, 2h, 2w, o]` image whose pixels `(2m + a, 2n + b_)` are `phase(a, b_)[:, m, n]`,
    for the four output phases of a stride-2 transposed convolution, each `[b, h, w, o]`."""
    rows = [jnp.stack([phase(a, b_) for b_ in range(2)], axis=3) for a in range(2)]
    y = jnp.stack(rows, axis=2)  # [b, h, a, w, b_, o]
    b, h, _, w, _, o = y.shape
    return y.reshape(b, 2 * h, 2 * w, o)


class DownConv(nn.Module):
    """PyTorch's `Conv2d(c, features, 4, stride=2, padding=1, bias=False)`, NHWC.

    Halves the spatial size (which must be even). The kernel is stored as flax's `nn.Conv`
    stores it, `[ky, kx, c_in, c_out]` with `kernel[ky, kx, c, o] = torch_weight[o, c, ky, kx]`.
    It is computed as one matmul: the padded input is folded 2x2 into channels (space to depth),
    after which the strided 4x4 convolution is a 2x2 convolution whose four shifted windows are
    concatenated. The same sum as `lax.conv_general_dilated`; but inside a loop (`lax.scan`,
    the training loop's `lax.fori_loop`), XLA:CPU runs convolutions through a slow generic
    loop (measured: a DCGAN discriminator's gradient took 1350 ms per step in a scan against
    41 ms outside one), and matmuls do not suffer this.

    Attributes:
      features: output channels.
      dtype: what the matmul computes in (e.g. `"bfloat16"`); None: the input's and kernel's.
    """

    features: int
    dtype: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b, h, w, c = x.shape
        kernel = self.param("kernel", dcgan_kernel_init, (4, 4, c, self.features))
        padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        hb, wb = h // 2 + 1, w // 2 + 1
        folded = padded.reshape(b, hb, 2, wb, 2, c).transpose(0, 1, 3, 2, 4, 5)
        folded = folded.reshape(b, hb, wb, 4 * c)  # channels ordered (ry, rx, c)
        patches = _shifted_windows(folded, 2, h // 2, w // 2)  # channels (dy, dx, ry, rx, c)
        # Tap ky = 2 dy + ry and kx = 2 dx + rx, reordered to match the patches.
        folded_kernel = kernel.reshape(2, 2, 2, 2, c, self.features).transpose(0, 2, 1, 3, 4, 5)
        patches, folded_kernel = _compute_in(self.dtype, patches, folded_kernel)
        return patch_matmul(patches, folded_kernel.reshape(16 * c, self.features))


class SameConv(nn.Module):
    """PyTorch's `Conv2d(c, features, 3, stride=1, padding=1, bias=False)`, NHWC.

    Keeps the spatial size. The kernel is stored as flax's `nn.Conv` stores it, `[ky, kx, c_in,
    c_out]` with `kernel[ky, kx, c, o] = torch_weight[o, c, ky, kx]`. It is computed as one
    matmul over the nine shifted windows of the padded input (im2col), for the reason
    `DownConv` gives: XLA:CPU's own convolutions are slow inside the training loop.

    Attributes:
      features: output channels.
      dtype: what the matmul computes in (e.g. `"bfloat16"`); None: the input's and kernel's.
    """

    features: int
    dtype: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h, w, c = x.shape[1:]
        kernel = self.param("kernel", dcgan_kernel_init, (3, 3, c, self.features))
        padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        patches = _shifted_windows(padded, 3, h, w)  # channels ordered (ky, kx, c)
        patches, kernel = _compute_in(self.dtype, patches, kernel)
        return patch_matmul(patches, kernel.reshape(9 * c, self.features))


def _shifted_windows(x: jax.Array, size: int, h: int, w: int) -> jax.Array:
    """The `size x size` windows `x[:, dy : dy + h, dx : dx + w]` of an NHWC array, concatenated
    along the channels in `(dy, dx, c)` order: the patches each convolution above multiplies."""
    windows = [x[:, dy : dy + h, dx : dx + w] for dy in range(size) for dx in range(size)]
    return jnp.concatenate(windows, axis=-1)


def patch_matmul(
    patches: jax.Array, kernel: jax.Array, transpose: Literal["narrower", "patches"] = "narrower"
) -> jax.Array:
    """`patches @ kernel` for `patches [..., k]`, `kernel [k, n]`: a convolution as a matmul.

    The same product and the same gradients as `@`; only the kernel's gradient is scheduled
    differently. That gradient, `rows(patches)^T @ rows(grad)`, contracts the long axis (every
    pixel of the batch). Left to itself XLA:CPU materializes the output gradient transposed, and
    fuses that transpose into whatever produced it (the previous layer's col2im and activation
    gradient): a loop that writes channel-major while reading pixel-major, measured at 36% of
    the DCGAN step's thread time at batch 256. Here one operand is transposed on its own
    (`optimization_barrier` keeps XLA from fusing the transpose back), and the product is a
    plain matmul: by default the narrower of the two (`"narrower"`), or the patches
    (`"patches"`), for a caller that knows its output gradient transposes slowly.
    """
    if transpose not in ("narrower", "patches"):
        raise ValueError(f"transpose must be 'narrower' or 'patches', got {transpose!r}")
    return _patch_matmul(patches, kernel, transpose)


@partial(jax.custom_vjp, nondiff_argnums=(2,))
def _patch_matmul(patches: jax.Array, kernel: jax.Array, transpose: str) -> jax.Array:
    return patches @ kernel


def _patch_matmul_fwd(patches: jax.Array, kernel: jax.Array, transpose: str):
    return patches @ kernel, (patches, kernel)


def _patch_matmul_bwd(transpose: str, residuals, grad: jax.Array):
    patches, kernel = residuals
    barrier = jax.lax.optimization_barrier
    # Both operands are materialized first (the input gradient needs `grad` anyway), so that
    # the transpose below is a copy of its own, not a loop fused into their producers.
    rows, grad_rows = barrier(
        (patches.reshape(-1, patches.shape[-1]), grad.reshape(-1, grad.shape[-1]))
    )
    if transpose == "patches" or rows.shape[1] <= grad_rows.shape[1]:
        kernel_grad = barrier(rows.T) @ grad_rows
    else:
        # The barrier on the product keeps XLA from folding the final (small) transpose into
        # the matmul, which it would do by reading `rows` transposed.
        kernel_grad = barrier(barrier(grad_rows.T) @ rows).T
    return grad @ kernel.T, kernel_grad


_patch_matmul.defvjp(_patch_matmul_fwd, _patch_matmul_bwd)


def _compute_in(dtype: str | None, *arrays: jax.Array) -> tuple[jax.Array, ...]:
    """The arrays cast to `dtype` (a matmul's operands), or unchanged when it is None."""
    return arrays if dtype is None else tuple(a.astype(dtype) for a in arrays)
