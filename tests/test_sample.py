"""`jaxgan-sample` grids of trained runs: the grid it writes is `jaxgan.sample`'s images, and bad
requests fail with exit status 2 and a message naming the flag."""

from pathlib import Path

import jax
import numpy as np
import pytest
from PIL import Image

import jaxgan
from jaxgan.__main__ import sample
from jaxgan.training import image_grid, load_run
from jaxgan.training.sample_cli import grid_rows


def _written(args: list[str], out: Path) -> np.ndarray:
    assert sample([*args, "--out", str(out)]) == 0
    return np.asarray(Image.open(out))


def _expected(workdir, seed, rows, step=None, **request) -> np.ndarray:
    config, run, state = load_run(workdir, step)
    images = jaxgan.sample(run.generator, state, jax.random.key(seed), batch_size=1000, **request)
    return image_grid(jaxgan.to_unit_range(images, config.pixel_range), rows)


def test_one_digit_of_a_conditional_run(conditional_run, tmp_path):
    args = [str(conditional_run), "--digit", "7", "--count", "6", "--seed", "2"]
    sevens = _written(args, tmp_path / "sevens.png")
    assert sevens.shape == (2 * 30 - 2, 3 * 30 - 2) and sevens.dtype == np.uint8
    np.testing.assert_array_equal(sevens, _expected(conditional_run, 2, rows=2, labels=[7] * 6))
    threes = _written([*args[:2], "3", *args[3:]], tmp_path / "threes.png")
    assert np.abs(sevens.astype(int) - threes).max() > 0  # the digit reaches the generator


def test_every_digit_of_a_conditional_run_one_row_each(conditional_run, tmp_path):
    grid = _written([str(conditional_run), "--count", "20"], tmp_path / "digits.png")
    assert grid.shape == (10 * 30 - 2, 2 * 30 - 2)
    labels = np.repeat(np.arange(10), 2)
    np.testing.assert_array_equal(grid, _expected(conditional_run, 0, rows=10, labels=labels))


def test_a_plain_run_at_an_earlier_step(plain_run, tmp_path):
    workdir = plain_run[0]
    grid = _written([str(workdir), "--step", "10"], tmp_path / "grid.png")
    assert grid.shape == (8 * 30 - 2, 8 * 30 - 2)  # 64 images by default
    np.testing.assert_array_equal(grid, _expected(workdir, 0, rows=8, step=10, num=64))


def test_grid_rows_make_the_squarest_full_grid():
    assert [grid_rows(n) for n in (1, 6, 7, 10, 12, 64, 100)] == [1, 2, 1, 2, 3, 8, 10]


@pytest.mark.parametrize(
    ("run", "args", "message"),
    [
        ("plain_run", ["--digit", "3"], "--digit needs a conditional run"),
        ("conditional_run", ["--digit", "10"], "--digit must be in 0..9, got 10"),
        ("conditional_run", ["--digit", "-1"], "--digit must be in 0..9, got -1"),
        ("conditional_run", ["--count", "0"], "--count must be at least 1, got 0"),
        ("conditional_run", ["--count", "15"], "--count must be a multiple of 10"),
        ("conditional_run", ["--step", "3"], "--step: "),
        (None, [], "holds no training run (no config.json)"),
    ],
)
def test_bad_requests_fail_with_status_2(request, tmp_path, capsys, run, args, message):
    if run is None:
        workdir = tmp_path / "missing"
    else:
        workdir = request.getfixturevalue(run)
        workdir = workdir[0] if run == "plain_run" else workdir
    out = tmp_path / "out.png"
    assert sample([str(workdir), *args, "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()
