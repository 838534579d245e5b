"""Exact weight conversion between jaxgan's flax state and the PyTorch reference's state dicts.

Every conversion is a transpose or reshape of the same float values, so a round trip
flax -> PyTorch -> flax returns identical bits. The layouts, per layer kind:

- `nn.Dense` (PyTorch `nn.Linear`): kernel `[in, out]` = weight `[out, in]` transposed.
- `nn.Dense` as the DCGAN's latent layer (`ConvTranspose2d(z, c, 7)` on a 1x1 input): kernel
  `[z, (h, w, c)]` = weight `[z, c, h, w]` with its axes ordered `(z, h, w, c)`.
- `UpConv` (`ConvTranspose2d(c_in, c_out, 4, 2, 1)`): kernel `[ky, kx, c_in, c_out]` = weight
  `[c_in, c_out, ky, kx]`.
- `DownConv` (`Conv2d(c_in, c_out, 4, 2, 1)`): kernel `[ky, kx, c_in, c_out]` = weight
  `[c_out, c_in, ky, kx]`, as flax's `nn.Conv` stores it.
- `SameConv` (`Conv2d(c_in, c_out, 3, 1, 1)`, the DCGAN's `extra_layers`): as `DownConv`.
- `nn.Dense` as the DCGAN's last layer (`Conv2d(c, o, 7)` on a 7x7 input): kernel
  `[(h, w, c), o]` = weight `[o, c, h, w]` with its axes ordered `(h, w, c, o)`.
- `BatchNorm` (`BatchNorm1d`/`2d`): params scale, bias = weight, bias; batch_stats mean, var =
  running_mean, running_var.
- `nn.Embed` (`nn.Embedding`), the conditional models' label embeddings: embedding
  `[classes, features]` = weight `[classes, features]`, unchanged; except the conditional DCGAN
  discriminator's projection, whose features are the flattened 7x7 map, `(h, w, c)` in flax and
  `(c, h, w)` in PyTorch (`h.flatten(1)` of an NCHW tensor), so the columns are reordered.

No kernel is flipped. `Conv2d` is a cross-correlation, which `DownConv` and the last layer
compute too. `ConvTranspose2d` adds `weight[c, o, ky, kx] * x[c, i, j]` to output
`(i s - p + ky, j s - p + kx)`, and `UpConv` (see its docstring) and the 1x1 -> 7x7 latent layer
index their kernels the same way; `tests/test_convert.py` checks the converted models' outputs
against PyTorch's.

jaxgan's `BatchNorm` keeps PyTorch's running statistics (momentum convention and unbiased
running variance), so they are copied unchanged. `num_batches_tracked` has no flax
counterpart: PyTorch reads it only when `momentum=None` (a cumulative average), which neither
model uses. flax -> PyTorch leaves the target module's counter as it is; PyTorch -> flax drops it.

Adam: optax's `(ScaleByAdamState(count, mu, nu), EmptyState())` holds what `torch.optim.Adam`
keeps per parameter as `step`, `exp_avg` and `exp_avg_sq`, in the same layout as the parameter.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import optax
import torch

from jaxgan.state import BatchStats, GANState, Params

Transform = Callable[[np.ndarray, tuple[int, ...]], np.ndarray]


def _same(x, shape):
    return x


def _transpose(x, shape):
    return x.T


def _conv_to_torch(k, shape):
    return k.transpose(3, 2, 0, 1)


def _conv_from_torch(w, shape):
    return w.transpose(2, 3, 1, 0)


def _conv_t_swap(x, shape):  # [ky, kx, c_in, c_out] <-> [c_in, c_out, ky, kx]; its own inverse
    return x.transpose(2, 3, 0, 1)


def _latent_to_torch(k, shape):  # [z, (h, w, c)] -> [z, c, h, w]
    z, c, h, w = shape
    return k.reshape(z, h, w, c).transpose(0, 3, 1, 2)


def _latent_from_torch(w, shape):
    return w.transpose(0, 2, 3, 1).reshape(w.shape[0], -1)


def _flat_conv_to_torch(k, shape):  # [(h, w, c), o] -> [o, c, h, w]
    o, c, h, w = shape
    return k.reshape(h, w, c, o).transpose(3, 2, 0, 1)


def _flat_conv_from_torch(w, shape):
    return w.transpose(2, 3, 1, 0).reshape(-1, w.shape[0])


# The conditional DCGAN discriminator's last feature map, 28x28 halved twice.
FEATURE_MAP = (7, 7)


def _flat_features_to_torch(e, shape):  # [n, (h, w, c)] -> [n, (c, h, w)]
    return e.reshape(e.shape[0], *FEATURE_MAP, -1).transpose(0, 3, 1, 2).reshape(e.shape[0], -1)


def _flat_features_from_torch(w, shape):  # [n, (c, h, w)] -> [n, (h, w, c)]
    return w.reshape(w.shape[0], -1, *FEATURE_MAP).transpose(0, 2, 3, 1).reshape(w.shape[0], -1)


@dataclasses.dataclass(frozen=True)
class Leaf:
    """One flax leaf and the PyTorch tensor it becomes."""

    collection: str  # "params" or "batch_stats"
    flax_name: str
    torch_name: str
    to_torch: Transform
    from_torch: Transform


LINEAR = (
    Leaf("params", "kernel", "weight", _transpose, _transpose),
    Leaf("params", "bias", "bias", _same, _same),
)
LATENT = (Leaf("params", "kernel", "weight", _latent_to_torch, _latent_from_torch),)
CONV_T = (Leaf("params", "kernel", "weight", _conv_t_swap, _conv_t_swap),)
CONV = (Leaf("params", "kernel", "weight", _conv_to_torch, _conv_from_torch),)
FLAT_CONV = (Leaf("params", "kernel", "weight", _flat_conv_to_torch, _flat_conv_from_torch),)
BATCHNORM = (
    Leaf("params", "scale", "weight", _same, _same),
    Leaf("params", "bias", "bias", _same, _same),
    Leaf("batch_stats", "mean", "running_mean", _same, _same),
    Leaf("batch_stats", "var", "running_var", _same, _same),
)
EMBEDDING = (Leaf("params", "embedding", "weight", _same, _same),)
FLAT_FEATURES_EMBEDDING = (
    Leaf("params", "embedding", "weight", _flat_features_to_torch, _flat_features_from_torch),
)

# (model, network, conditional) -> (flax module name, PyTorch module prefix, leaves), in forward
# order. The conditional generators are the plain ones on `[embed(labels), z]`; the conditional
# discriminators name their last layer `adv_layer` and their projection `projection`.
Layout = tuple[tuple[str, str, tuple[Leaf, ...]], ...]
MLP_G: Layout = (
    ("Dense_0", "model.0", LINEAR),
    ("Dense_1", "model.2", LINEAR),
    ("BatchNorm_0", "model.3", BATCHNORM),
    ("Dense_2", "model.5", LINEAR),
    ("BatchNorm_1", "model.6", BATCHNORM),
    ("Dense_3", "model.8", LINEAR),
    ("BatchNorm_2", "model.9", BATCHNORM),
    ("Dense_4", "model.11", LINEAR),
)
MLP_D_HIDDEN: Layout = (("Dense_0", "model.0", LINEAR), ("Dense_1", "model.2", LINEAR))


def _dcgan_blocks(extra_layers: int, first: int) -> Layout:
    """The DCGAN's `extra_layers` 3x3 blocks: flax's `SameConv_i` and `BatchNorm_{i+1}` (the
    network's first BatchNorm precedes them), PyTorch's `main.{first + 3i}` and the next."""
    return tuple(
        entry
        for i in range(extra_layers)
        for entry in (
            (f"SameConv_{i}", f"main.{first + 3 * i}", CONV),
            (f"BatchNorm_{i + 1}", f"main.{first + 3 * i + 1}", BATCHNORM),
        )
    )


def _dcgan_g(extra_layers: int) -> Layout:
    k = 3 * extra_layers  # PyTorch modules the blocks add to `main`, each conv, BatchNorm, ReLU
    return (
        ("Dense_0", "main.0", LATENT),
        ("BatchNorm_0", "main.1", BATCHNORM),
        *_dcgan_blocks(extra_layers, 3),
        ("UpConv_0", f"main.{3 + k}", CONV_T),
        (f"BatchNorm_{1 + extra_layers}", f"main.{4 + k}", BATCHNORM),
        ("UpConv_1", f"main.{6 + k}", CONV_T),
    )


def _dcgan_d_hidden(extra_layers: int) -> Layout:
    return (
        ("DownConv_0", "main.0", CONV),
        ("DownConv_1", "main.2", CONV),
        ("BatchNorm_0", "main.3", BATCHNORM),
        *_dcgan_blocks(extra_layers, 5),
    )


LABEL_EMBEDDING: Layout = (("Embed_0", "label_emb", EMBEDDING),)
MLP_LAYERS: dict[tuple[str, bool], Layout] = {
    ("G", False): MLP_G,
    ("D", False): (*MLP_D_HIDDEN, ("Dense_2", "model.4", LINEAR)),
    ("G", True): (*LABEL_EMBEDDING, *MLP_G),
    ("D", True): (
        *MLP_D_HIDDEN,
        ("projection", "projection", EMBEDDING),
        ("Dense_2", "adv_layer", LINEAR),
    ),
}


def _dcgan_layers(net: str, conditional: bool, extra_layers: int) -> Layout:
    if net == "G":
        return (
            (*LABEL_EMBEDDING, *_dcgan_g(extra_layers)) if conditional else _dcgan_g(extra_layers)
        )
    hidden = _dcgan_d_hidden(extra_layers)
    if conditional:
        return (
            *hidden,
            ("projection", "projection", FLAT_FEATURES_EMBEDDING),
            ("Dense_0", "adv_layer", FLAT_CONV),
        )
    return (*hidden, ("Dense_0", f"main.{5 + 3 * extra_layers}", FLAT_CONV))


def _layers(model: str, net: str, conditional: bool, extra_layers: int = 0) -> Layout:
    if net not in ("G", "D") or model not in ("mlp", "dcgan"):
        raise ValueError(f"no layout for model {model!r}, network {net!r}")
    if extra_layers and model != "dcgan":
        raise ValueError("extra_layers are the DCGAN's")
    if model == "mlp":
        return MLP_LAYERS[(net, conditional)]
    return _dcgan_layers(net, conditional, extra_layers)


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().copy()


def _tensor(x, like: torch.Tensor) -> torch.Tensor:
    # np.array copies: jax arrays are read-only, and torch must own what it will update in place.
    return torch.tensor(np.array(x), dtype=like.dtype, device=like.device)


def to_state_dict(
    model: str,
    net: str,
    params: Params,
    batch_stats: BatchStats,
    module: torch.nn.Module,
    *,
    conditional: bool = False,
    extra_layers: int = 0,
) -> dict[str, torch.Tensor]:
    """A flax network's variables as the `state_dict` of its PyTorch reference.

    Args:
      model: `"mlp"` or `"dcgan"`.
      net: `"G"` or `"D"`.
      params: the network's flax `params`.
      batch_stats: its flax `batch_stats` (`{}` without BatchNorm).
      module: the PyTorch reference network; supplies shapes, dtype, device and the
        `num_batches_tracked` counters, which are kept.
      conditional: whether the networks are the class-conditional ones (`num_classes`).
      extra_layers: the DCGAN's 3x3 blocks at 7x7 (`jaxgan.make_models`).

    Returns:
      A state dict for `module.load_state_dict(..., strict=True)`.
    """
    state = module.state_dict()
    layers = _layers(model, net, conditional, extra_layers)
    variables = {"params": params, "batch_stats": batch_stats}
    _check_layout(model, net, layers, variables, state)
    out = {name: t.clone() for name, t in state.items() if name.endswith("num_batches_tracked")}
    for flax_module, prefix, leaves in layers:
        for leaf in leaves:
            name = f"{prefix}.{leaf.torch_name}"
            value = np.asarray(variables[leaf.collection][flax_module][leaf.flax_name])
            value = leaf.to_torch(value, tuple(state[name].shape))
            if value.shape != state[name].shape:
                raise ValueError(
                    f"{name}: converted shape {value.shape}, expected {state[name].shape}"
                )
            out[name] = _tensor(value, state[name])
    return out


def _check_layout(model: str, net: str, layers: Layout, variables=None, state_dict=None) -> None:
    """Raises unless the layout names exactly the given flax leaves and PyTorch tensors."""
    problems = []
    if variables is not None:
        expected = {(x.collection, m, x.flax_name) for m, _, leaves in layers for x in leaves}
        given = {
            (collection, module, name)
            for collection, modules in variables.items()
            for module, leaves in modules.items()
            for name in leaves
        }
        problems += [f"flax {'/'.join(k)}" for k in sorted(given ^ expected)]
    if state_dict is not None:
        expected = {f"{p}.{x.torch_name}" for _, p, leaves in layers for x in leaves}
        given = {n for n in state_dict if not n.endswith("num_batches_tracked")}
        problems += [f"PyTorch {n}" for n in sorted(given ^ expected)]
    if problems:
        raise ValueError(f"{model} {net}: the layout does not match: {', '.join(problems)}")


def from_state_dict(
    model: str,
    net: str,
    state_dict: dict[str, torch.Tensor],
    *,
    conditional: bool = False,
    extra_layers: int = 0,
) -> tuple[Params, BatchStats]:
    """The flax `(params, batch_stats)` of a PyTorch reference network's `state_dict`.

    Args:
      model: `"mlp"` or `"dcgan"`.
      net: `"G"` or `"D"`.
      state_dict: the reference network's `state_dict()`.
      conditional: whether the networks are the class-conditional ones (`num_classes`).
      extra_layers: the DCGAN's 3x3 blocks at 7x7 (`jaxgan.make_models`).

    Returns:
      `(params, batch_stats)` as nested dicts of numpy arrays, `batch_stats` `{}` without
      BatchNorm; `num_batches_tracked` is dropped (see the module docstring).
    """
    layers = _layers(model, net, conditional, extra_layers)
    _check_layout(model, net, layers, state_dict=state_dict)
    variables: dict[str, dict] = {"params": {}, "batch_stats": {}}
    for flax_module, prefix, leaves in layers:
        for leaf in leaves:
            tensor = _numpy(state_dict[f"{prefix}.{leaf.torch_name}"])
            value = leaf.from_torch(tensor, tensor.shape)
            variables[leaf.collection].setdefault(flax_module, {})[leaf.flax_name] = value
    return variables["params"], variables["batch_stats"]


def _parameter_leaves(model: str, net: str, conditional: bool, extra_layers: int):
    """`(flax module, flax leaf name, PyTorch parameter name, leaf)` for each parameter."""
    for flax_module, prefix, leaves in _layers(model, net, conditional, extra_layers):
        for leaf in leaves:
            if leaf.collection == "params":
                yield flax_module, leaf.flax_name, f"{prefix}.{leaf.torch_name}", leaf


def _parameter_numbers(module: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """PyTorch parameter name -> the number the optimizer's state dict files it under."""
    (group,) = optimizer.param_groups
    if [id(p) for p in group["params"]] != [id(p) for p in module.parameters()]:
        raise ValueError("the optimizer must be built over module.parameters(), in their order")
    return {name: i for i, (name, _) in enumerate(module.named_parameters())}


def to_adam_state_dict(
    model: str,
    net: str,
    opt_state: optax.OptState,
    module: torch.nn.Module,
    optimizer: torch.optim.Adam,
    *,
    conditional: bool = False,
    extra_layers: int = 0,
) -> dict:
    """optax's Adam state as the `state_dict` of a `torch.optim.Adam` over the reference network.

    Args:
      model: `"mlp"` or `"dcgan"`.
      net: `"G"` or `"D"`.
      opt_state: `jaxgan.adam()`'s state, `(ScaleByAdamState(count, mu, nu), EmptyState())`.
      module: the reference network.
      optimizer: `torch.optim.Adam(module.parameters(), ...)`; supplies the hyperparameters.
      conditional: whether the networks are the class-conditional ones (`num_classes`).
      extra_layers: the DCGAN's 3x3 blocks at 7x7 (`jaxgan.make_models`).

    Returns:
      A state dict for `optimizer.load_state_dict`: `step` from `count`, `exp_avg` from `mu`,
      `exp_avg_sq` from `nu`, each moment in its parameter's PyTorch layout.
    """
    adam, _ = opt_state
    numbers = _parameter_numbers(module, optimizer)
    params = dict(module.named_parameters())
    state = {}
    for flax_module, flax_name, torch_name, leaf in _parameter_leaves(
        model, net, conditional, extra_layers
    ):
        param, shape = params[torch_name], tuple(params[torch_name].shape)

        def moment(tree, param=param, shape=shape, leaf=leaf, key=(flax_module, flax_name)):
            return _tensor(leaf.to_torch(np.asarray(tree[key[0]][key[1]]), shape), param)

        state[numbers[torch_name]] = {
            # PyTorch keeps the step as a float32 tensor (off-device unless capturable/fused).
            "step": torch.tensor(float(adam.count), dtype=torch.float32),
            "exp_avg": moment(adam.mu),
            "exp_avg_sq": moment(adam.nu),
        }
    return {"state": state, "param_groups": optimizer.state_dict()["param_groups"]}


def from_adam_state_dict(
    model: str,
    net: str,
    module: torch.nn.Module,
    optimizer: torch.optim.Adam,
    *,
    conditional: bool = False,
    extra_layers: int = 0,
) -> optax.OptState:
    """A `torch.optim.Adam`'s state as the state of `jaxgan.adam()`.

    Args:
      model: `"mlp"` or `"dcgan"`.
      net: `"G"` or `"D"`.
      module: the reference network the optimizer updates.
      optimizer: `torch.optim.Adam(module.parameters(), ...)`, stepped or not.
      conditional: whether the networks are the class-conditional ones (`num_classes`).
      extra_layers: the DCGAN's 3x3 blocks at 7x7 (`jaxgan.make_models`).

    Returns:
      `(ScaleByAdamState(count, mu, nu), EmptyState())` with numpy leaves; zeros and count 0 for
      an optimizer that has not stepped yet (PyTorch creates its state on the first step).
    """
    numbers = _parameter_numbers(module, optimizer)
    saved = optimizer.state_dict()["state"]
    params = dict(module.named_parameters())
    mu: dict[str, dict] = {}
    nu: dict[str, dict] = {}
    steps = set()
    for flax_module, flax_name, torch_name, leaf in _parameter_leaves(
        model, net, conditional, extra_layers
    ):
        entry = saved.get(numbers[torch_name])
        if entry is None:
            zeros = torch.zeros_like(params[torch_name])
            entry = {"step": torch.tensor(0.0), "exp_avg": zeros, "exp_avg_sq": zeros}
        steps.add(float(entry["step"]))
        for tree, key in ((mu, "exp_avg"), (nu, "exp_avg_sq")):
            value = _numpy(entry[key])
            tree.setdefault(flax_module, {})[flax_name] = leaf.from_torch(value, value.shape)
    if len(steps) != 1:
        raise ValueError(f"parameters of one optimizer at different steps: {sorted(steps)}")
    count = np.asarray(steps.pop(), np.int32)
    return optax.ScaleByAdamState(count=count, mu=mu, nu=nu), optax.EmptyState()


def load_into_torch(
    model: str,
    state: GANState,
    G: torch.nn.Module,
    D: torch.nn.Module,
    optimizer_G: torch.optim.Adam,
    optimizer_D: torch.optim.Adam,
    *,
    conditional: bool = False,
    extra_layers: int = 0,
) -> None:
    """Copies a jaxgan `GANState` into the reference networks and their optimizers, exactly.

    Args:
      model: `"mlp"` or `"dcgan"`.
      state: the jaxgan state.
      G: the reference generator; updated in place.
      D: the reference discriminator; updated in place.
      optimizer_G: `torch.optim.Adam` over `G.parameters()`; its state is replaced.
      optimizer_D: `torch.optim.Adam` over `D.parameters()`; its state is replaced.
      conditional: whether the networks are the class-conditional ones (`num_classes`).
      extra_layers: the DCGAN's 3x3 blocks at 7x7 (`jaxgan.make_models`).
    """
    layout = {"conditional": conditional, "extra_layers": extra_layers}
    for net, module, optimizer, params, stats, opt_state in (
        ("G", G, optimizer_G, state.g_params, state.g_batch_stats, state.g_opt_state),
        ("D", D, optimizer_D, state.d_params, state.d_batch_stats, state.d_opt_state),
    ):
        module.load_state_dict(to_state_dict(model, net, params, stats, module, **layout))
        optimizer.load_state_dict(
            to_adam_state_dict(model, net, opt_state, module, optimizer, **layout)
        )


def from_torch(
    model: str,
    G: torch.nn.Module,
    D: torch.nn.Module,
    optimizer_G: torch.optim.Adam,
    optimizer_D: torch.optim.Adam,
    step: int,
    *,
    conditional: bool = False,
    extra_layers: int = 0,
) -> GANState:
    """The jaxgan `GANState` that holds the reference networks' weights and optimizer states.

    Args:
      model: `"mlp"` or `"dcgan"`.
      G: the reference generator.
      D: the reference discriminator.
      optimizer_G: its `torch.optim.Adam`.
      optimizer_D: its `torch.optim.Adam`.
      step: the number of completed training steps, for `GANState.step`.
      conditional: whether the networks are the class-conditional ones (`num_classes`).
      extra_layers: the DCGAN's 3x3 blocks at 7x7 (`jaxgan.make_models`).

    Returns:
      A `GANState` of numpy arrays (`jax.device_put` it to compute with it), in the dtype
      PyTorch holds (float32, or float64 for a `.double()` reference); the step and Adam count
      are int32.
    """
    layout = {"conditional": conditional, "extra_layers": extra_layers}
    g_params, g_stats = from_state_dict(model, "G", G.state_dict(), **layout)
    d_params, d_stats = from_state_dict(model, "D", D.state_dict(), **layout)
    g_opt = from_adam_state_dict(model, "G", G, optimizer_G, **layout)
    d_opt = from_adam_state_dict(model, "D", D, optimizer_D, **layout)
    return GANState(
        step=np.asarray(step, np.int32),
        g_params=g_params,
        d_params=d_params,
        g_batch_stats=g_stats,
        d_batch_stats=d_stats,
        g_opt_state=g_opt,
        d_opt_state=d_opt,
    )
