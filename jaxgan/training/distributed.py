"""Data parallelism with `jax.sharding`: the batch split over a device mesh, the state replicated.

There is no hand-written all-reduce. The train step is the same jitted function as on one
device; its inputs carry shardings (the state and the dataset replicated, each batch split along
the mesh axis `data`), and XLA's SPMD partitioner inserts the reductions that the batch means
and the parameter gradients need. With `bn_stats="global"` BatchNorm's batch statistics are
therefore computed over the whole global batch, as `SyncBatchNorm` does, and a sharded run
computes what the same global batch computes on one device (up to the order of float sums).
With `bn_stats="per_device"` each device's share of the batch is normalized with its own
statistics, as under PyTorch DDP's default (`jaxgan.layers.BatchNorm` with `groups`).

Several hosts: every process calls `initialize(...)` first, then runs the same program. Each
process holds the (small) dataset, and each device gathers only its own rows of every batch;
the global batch size is `batch_size`, and each device's share is `batch_size / devices`.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

AXIS = "data"


def initialize(coordinator_address: str, num_processes: int, process_id: int) -> None:
    """Joins a multi-process run (`jax.distributed.initialize`); call before any JAX work.

    On CPU, cross-process collectives go through gloo, which JAX must be told to use before it
    starts its backend.
    """
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address, num_processes, process_id)


@dataclasses.dataclass(frozen=True)
class DataParallel:
    """A one-axis device mesh and the two placements a data-parallel run needs."""

    mesh: Mesh

    @classmethod
    def create(cls, num_devices: int | None = None) -> DataParallel:
        """A mesh over the first `num_devices` devices (`None`: all devices of all processes).

        Raises:
          ValueError: more devices than exist, or, in a multi-process run, fewer than all.
        """
        devices = jax.devices()
        n = len(devices) if num_devices is None else num_devices
        if not 0 < n <= len(devices):
            raise ValueError(
                f"devices must be in 1..{len(devices)} (the devices there are), got {n}"
            )
        if jax.process_count() > 1 and n != len(devices):
            raise ValueError(
                f"a {jax.process_count()}-process run uses all {len(devices)} devices, not {n}"
            )
        return cls(Mesh(np.asarray(devices[:n]), (AXIS,)))

    @property
    def size(self) -> int:
        """Devices the batch is split over."""
        return self.mesh.size

    @property
    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, P())

    @property
    def batch(self) -> NamedSharding:
        """Leading axis split over the devices."""
        return NamedSharding(self.mesh, P(AXIS))

    @property
    def is_main(self) -> bool:
        """Whether this process writes logs and images (checkpoints are written by all)."""
        return jax.process_index() == 0

    def replicate(self, tree):
        """Places a pytree of host or single-device arrays, identical in every process, on every
        device of the mesh. PRNG keys stay keys."""
        return jax.tree.map(self._replicate_leaf, tree)

    def _replicate_leaf(self, x):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.random.wrap_key_data(self._replicate_leaf(jax.random.key_data(x)))
        if jax.process_count() == 1:
            return jax.device_put(x, self.replicated)
        return jax.make_array_from_process_local_data(self.replicated, np.asarray(x))

    def shard_batch(self, tree):
        """Inside `jit`: split the leading (batch) axis of every leaf over the devices."""
        return jax.lax.with_sharding_constraint(tree, self.batch)


def to_host(tree):
    """Replicated arrays to numpy, in any process: every device holds the whole value."""
    return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), tree)
