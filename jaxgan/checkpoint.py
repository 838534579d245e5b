"""Checkpoints of a run: the GAN state, the random keys, and where in the data order it stands.

One orbax `CheckpointManager` per workdir, under `<workdir>/checkpoints/<step>`. A checkpoint
holds the full `GANState`, the run's PRNG keys (as raw key data) and a small JSON record
(`epoch`, `step`), so that a resumed run reaches exactly the parameters of an uninterrupted one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

from jaxgan.distributed import to_host
from jaxgan.state import GANState


class Checkpointer:
    """Saves and restores `(state, keys, record)` triples in `<workdir>/checkpoints`.

    Args:
      workdir: the run's folder.
      max_to_keep: how many of the newest checkpoints stay on disk.
    """

    def __init__(self, workdir: str | Path, max_to_keep: int = 2):
        self.directory = Path(workdir).resolve() / "checkpoints"
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
        )

    def latest_step(self) -> int | None:
        """The newest checkpoint's training step, or `None` when there is none."""
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        """The steps of the checkpoints on disk, oldest first."""
        return sorted(self._manager.all_steps())

    def save(self, state: GANState, keys: dict[str, jax.Array], record: dict[str, Any]) -> None:
        """Writes a checkpoint at `state.step` and waits until it is on disk.

        Waiting matters: the caller donates `state` to the next training dispatch.
        """
        tree = {"state": state, "keys": {k: jax.random.key_data(v) for k, v in keys.items()}}
        self._manager.save(
            int(to_host(state.step)),
            args=ocp.args.Composite(
                tree=ocp.args.StandardSave(tree), record=ocp.args.JsonSave(record)
            ),
        )
        self._manager.wait_until_finished()

    def restore(
        self, like_state: GANState, like_keys: dict[str, jax.Array], step: int | None = None
    ) -> tuple[GANState, dict[str, jax.Array], dict[str, Any]]:
        """Restores a checkpoint into the structure of `like_state` and `like_keys`.

        Args:
          like_state: a state of the same model and optimizers (only shapes and dtypes are read).
          like_keys: PRNG keys of the same names.
          step: which checkpoint; `None` for the newest.

        Raises:
          FileNotFoundError: there is no checkpoint in the workdir.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        like = {
            "state": like_state,
            "keys": {k: jax.random.key_data(v) for k, v in like_keys.items()},
        }
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        restored = self._manager.restore(
            step,
            args=ocp.args.Composite(
                tree=ocp.args.StandardRestore(abstract), record=ocp.args.JsonRestore()
            ),
        )
        tree = restored["tree"]
        keys = {k: jax.random.wrap_key_data(v) for k, v in tree["keys"].items()}
        return tree["state"], keys, restored["record"]

    def close(self) -> None:
        self._manager.close()
