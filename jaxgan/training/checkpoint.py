"""Checkpoints of a run: the GAN state, the random keys, and where in the data order it stands.

One orbax `CheckpointManager` per workdir, under `<workdir>/checkpoints/<step>`. A checkpoint
holds the full `GANState`, the run's PRNG keys (as raw key data) and a small JSON record
(`epoch` and `position`, the batch within the epoch, plus `devices`, the device count the batch
was split over), so that a resumed run reaches exactly the parameters of an uninterrupted one.

Each checkpoint folder also holds `jaxgan_manifest.json`, the size and SHA-256 of every file
orbax wrote, so that a checkpoint damaged since (a process killed while the disk was being
written, a file lost or cut short) is recognised before orbax reads it. It is skipped with a
warning, and the one before it is used; a resumed run moves it to
`<workdir>/damaged_checkpoints/<step>`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

from jaxgan.state import GANState
from jaxgan.training.distributed import to_host

Restored = tuple[GANState, dict[str, jax.Array], dict[str, Any]]
MANIFEST = "jaxgan_manifest.json"


def _files(step_dir: Path) -> dict[str, tuple[int, str]]:
    """`{relative path: (bytes, sha256)}` of every file orbax wrote for one checkpoint."""
    return {
        str(path.relative_to(step_dir)): (path.stat().st_size, _sha256(path))
        for path in sorted(step_dir.rglob("*"))
        if path.is_file() and path.name != MANIFEST
    }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def saved_steps(workdir: str | Path) -> list[int]:
    """The steps of the checkpoints in a workdir, oldest first, without opening any of them."""
    directory = Path(workdir) / "checkpoints"
    if not directory.is_dir():
        return []
    return sorted(int(p.name) for p in directory.iterdir() if p.is_dir() and p.name.isdigit())


class Checkpointer:
    """Saves and restores `(state, keys, record)` triples in `<workdir>/checkpoints`.

    Args:
      workdir: the run's folder; the checkpoint folder is created by the first save.
      max_to_keep: how many of the newest checkpoints stay on disk.
    """

    def __init__(self, workdir: str | Path, max_to_keep: int = 2):
        self.workdir = Path(workdir).resolve()
        self.directory = self.workdir / "checkpoints"
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=False),
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
        self.directory.mkdir(parents=True, exist_ok=True)
        tree = {"state": state, "keys": {k: jax.random.key_data(v) for k, v in keys.items()}}
        step = int(to_host(state.step))
        self._manager.save(
            step,
            args=ocp.args.Composite(
                tree=ocp.args.StandardSave(tree), record=ocp.args.JsonSave(record)
            ),
        )
        self._manager.wait_until_finished()
        if jax.process_index() == 0:  # every process's files are committed by now
            step_dir = self.directory / str(step)
            partial = step_dir / f"{MANIFEST}.partial"
            partial.write_text(json.dumps(_files(step_dir)))
            partial.rename(step_dir / MANIFEST)

    def damage(self, step: int) -> str | None:
        """Why the checkpoint at `step` differs from what was saved, or `None` when its files
        are as written (or when it has no manifest to check against)."""
        step_dir = self.directory / str(step)
        manifest = step_dir / MANIFEST
        if not manifest.is_file():
            return None
        saved = {name: tuple(entry) for name, entry in json.loads(manifest.read_text()).items()}
        now = _files(step_dir)
        for name, (size, digest) in saved.items():
            if name not in now:
                return f"{name} is missing"
            if now[name][0] != size:
                return f"{name} holds {now[name][0]} bytes, {size} when saved"
            if now[name][1] != digest:
                return f"{name} changed since it was saved"
        return None

    def restore(
        self, like_state: GANState, like_keys: dict[str, jax.Array], step: int | None = None
    ) -> Restored:
        """Restores one checkpoint into the structure of `like_state` and `like_keys`.

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

    def restore_newest_good(
        self, like_state: GANState, like_keys: dict[str, jax.Array], *, set_aside: bool = False
    ) -> Restored:
        """Restores the newest checkpoint that reads back whole, warning about newer ones that
        do not (each named, with the step used instead).

        Args:
          like_state: see `restore`.
          like_keys: see `restore`.
          set_aside: move unreadable checkpoints to `<workdir>/damaged_checkpoints/<step>`, so
            that a resumed run can save those steps again.

        Raises:
          FileNotFoundError: no checkpoint, or none that reads back (each one is named).
        """
        steps = self.all_steps()
        if not steps:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        damaged = []
        for step in reversed(steps):
            why = self.damage(step)
            if why is not None:
                damaged.append((step, why))
                continue
            try:  # a checkpoint without a manifest can still fail to read back
                restored = self.restore(like_state, like_keys, step)
            except Exception as e:  # orbax and tensorstore raise many kinds for a damaged one
                damaged.append((step, f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"))
                continue
            if damaged:
                names = "; ".join(f"step {s} ({why})" for s, why in damaged)
                moved = ""
                if set_aside:
                    moved = f"moved to {self._set_aside([s for s, _ in damaged])}; "
                warnings.warn(
                    f"cannot read back the checkpoint at {names} in {self.directory} (cut short "
                    f"while saving?); {moved}using step {step} instead",
                    stacklevel=2,
                )
            return restored
        names = "; ".join(f"step {s}: {why}" for s, why in damaged)
        raise FileNotFoundError(f"no checkpoint in {self.directory} reads back ({names})")

    def _set_aside(self, steps: list[int]) -> Path:
        aside = self.workdir / "damaged_checkpoints"
        aside.mkdir(exist_ok=True)
        for step in steps:
            target = aside / str(step)
            if target.exists():
                shutil.rmtree(target)
            shutil.move(self.directory / str(step), target)
        self._manager.reload()
        return aside

    def close(self) -> None:
        self._manager.close()
