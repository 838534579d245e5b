"""What the tests that compare two computations in float64 share (STYLE.md, lesson 14)."""

import jax
import jax.numpy as jnp
import numpy as np


def as_float64(tree):
    """Every floating-point leaf cast, exactly, to a float64 NumPy array; integers and PRNG
    keys kept. Cast on the host: an eager JAX cast would compile one program per leaf shape.
    JAX computes in float64 with the result only under `jax.enable_x64`."""
    return jax.tree.map(
        lambda x: np.asarray(x, np.float64) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree
    )


def assert_float64(tree):
    """Guards against a silent downcast making a float64 comparison pass vacuously: every
    floating-point leaf is float64 (the failure names the leaf)."""
    for path, x in jax.tree_util.tree_leaves_with_path(tree):
        if jnp.issubdtype(x.dtype, jnp.floating):
            assert x.dtype == jnp.float64, jax.tree_util.keystr(path)
