"""What a run leaves behind for people: metrics as JSON lines and TensorBoard events, sample
grids and loss curves as PNG."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from PIL import Image


class MetricsLog:
    """Appends scalar records to `<workdir>/metrics.jsonl` and to TensorBoard event files.

    On resume from step `start_step`, records after it (written before a crash, beyond the
    checkpoint the run resumes from) are dropped from both, so the logs describe one history.
    """

    def __init__(self, workdir: str | Path, start_step: int = 0):
        SummaryWriter = _summary_writer()
        workdir = Path(workdir)
        self.path = workdir / "metrics.jsonl"
        if start_step and self.path.exists():
            kept = [r for r in read_metrics(self.path, None) if r["step"] <= start_step]
            self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        elif not start_step:
            self.path.write_text("")
        # Events after start_step (from a crashed run, or one that never saved) are purged.
        self._tb = SummaryWriter(str(workdir / "tensorboard"), purge_step=start_step + 1)

    def write(self, step: int, scalars: dict[str, float], **fields) -> None:
        """Logs `scalars` at `step`; `fields` (epoch, ...) go to the JSON record only."""
        with self.path.open("a") as f:
            f.write(json.dumps({"step": step, **fields, **scalars}) + "\n")
        for name, value in scalars.items():
            self._tb.add_scalar(name, value, step)

    def image(self, name: str, grid: np.ndarray, step: int) -> None:
        """Logs a `uint8` grayscale image (a sample grid) to TensorBoard at `step`."""
        self._tb.add_image(name, grid, step, dataformats="HW")

    def close(self) -> None:
        self._tb.close()


def _summary_writer() -> type:
    """tensorboardX's `SummaryWriter`, imported without PyTorch.

    tensorboardX imports PyTorch when it is installed (the parity suite installs it), only to
    accept torch tensors, which jaxgan never logs: 2-3 s at the start of every training run.
    PyTorch is hidden while tensorboardX loads, unless this process has already imported it.
    """
    import sys

    if "tensorboardX" in sys.modules or "torch" in sys.modules:
        from tensorboardX import SummaryWriter

        return SummaryWriter
    sys.modules["torch"] = None  # makes `import torch` raise ImportError
    try:
        from tensorboardX import SummaryWriter
    finally:
        del sys.modules["torch"]
    return SummaryWriter


def read_metrics(path: str | Path, key: str | None = "g_loss") -> list[dict]:
    """The records of a `metrics.jsonl` that hold `key`, in order: by default the training
    records (losses, D outputs, speed), without the epochs' sample scores; `None`: all."""
    with Path(path).open() as f:
        records = [json.loads(line) for line in f if line.strip()]
    return [r for r in records if key is None or key in r]


def image_grid(images: np.ndarray, rows: int | None = None, padding: int = 2) -> np.ndarray:
    """Tiles `[N, H, W, 1]` images in `[0, 1]` row by row into one `uint8` array.

    Args:
      images: the images, in `[0, 1]` (`jaxgan.to_unit_range` maps a tanh generator's).
      rows: rows of the grid; `None` for a square grid (N must then be a square).
      padding: pixels of mid-grey between neighbouring tiles, so that they do not run together.
    """
    images = np.clip(np.asarray(images, np.float32), 0, 1)
    n, h, w, _ = images.shape
    rows = math.isqrt(n) if rows is None else rows
    cols = n // rows
    if rows * cols != n:
        raise ValueError(f"{n} images do not fill a grid of {rows} rows")
    pixels = np.round(images[..., 0] * 255).astype(np.uint8)
    grid = np.full((rows * (h + padding) - padding, cols * (w + padding) - padding), 128, np.uint8)
    for i, tile in enumerate(pixels):
        top, left = (i // cols) * (h + padding), (i % cols) * (w + padding)
        grid[top : top + h, left : left + w] = tile
    return grid


def save_grid(
    images: np.ndarray, path: str | Path, rows: int | None = None, padding: int = 2
) -> np.ndarray:
    """Saves `image_grid(images, rows, padding)` as a PNG, creating the folder; returns it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid = image_grid(images, rows, padding)
    Image.fromarray(grid, mode="L").save(path)
    return grid


def save_images(images: np.ndarray, folder: str | Path, labels: np.ndarray | None = None) -> None:
    """Writes each `[0, 1]` image as an 8-bit PNG, `00000.png`, ... (`00000_7.png` with labels)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pixels = np.round(np.clip(np.asarray(images)[..., 0], 0, 1) * 255).astype(np.uint8)
    width = max(5, len(str(len(pixels) - 1)))
    for i, tile in enumerate(pixels):
        suffix = "" if labels is None else f"_{int(labels[i])}"
        Image.fromarray(tile, mode="L").save(folder / f"{i:0{width}d}{suffix}.png")


def plot_losses(metrics_path: str | Path, out: str | Path, title: str = "") -> None:
    """Plots the losses and D's mean outputs of a `metrics.jsonl` against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(metrics_path)
    steps = [r["step"] for r in records]
    fig, (ax_loss, ax_d) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    marker = "o" if len(steps) < 30 else None  # a few points (a short run) stay visible
    for name in ("g_loss", "d_loss"):
        ax_loss.plot(steps, [r[name] for r in records], marker=marker, label=name)
    ax_loss.set_ylabel("loss")
    ax_loss.legend()
    for name, label in (("d_real", "D(x)"), ("d_fake", "D(G(z))")):
        ax_d.plot(steps, [r[name] for r in records], marker=marker, label=label)
    ax_d.set_ylabel("mean D output")
    ax_d.set_xlabel("step")
    ax_d.set_ylim(0, 1)
    ax_d.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
