"""Getting a trained generator and its samples out of a run: `jaxgan-export` and
`jaxgan.load_generator`, `jaxgan-sample --npz` and `--png-dir`."""

import jax
import numpy as np
import pytest
from PIL import Image

import jaxgan
from jaxgan.__main__ import export, sample
from jaxgan.training import load_run


@pytest.fixture(params=["plain", "conditional"])
def trained(request, plain_run, conditional_run):
    return plain_run[0] if request.param == "plain" else conditional_run


def test_an_exported_generator_samples_what_the_run_does(trained, tmp_path):
    out = tmp_path / "generator.msgpack"
    assert export([str(trained), str(out)]) == 0
    config, run, state = load_run(trained)
    generator = jaxgan.load_generator(out)
    assert generator.module == run.generator
    assert (generator.pixel_range, generator.dataset) == (config.pixel_range, config.dataset)
    labels = None if config.num_classes is None else [3, 1, 4, 1, 5]
    key = jax.random.key(7)
    ours = jaxgan.sample(run.generator, state, key, labels=labels, num=5)
    theirs = generator.sample(key, num=5, labels=labels)
    np.testing.assert_array_equal(theirs, ours)  # the same weights, statistics and settings
    unit = generator.sample(key, num=5, labels=labels, unit_range=True)
    np.testing.assert_array_equal(unit, jaxgan.to_unit_range(ours, config.pixel_range))


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--step", "3"], "--step: "), ([], "holds no training run (no config.json)")],
)
def test_export_of_no_run_or_no_checkpoint_fails_with_status_2(
    conditional_run, tmp_path, capsys, args, message
):
    run_dir = conditional_run if args else tmp_path / "missing"
    out = tmp_path / "generator.msgpack"
    assert export([str(run_dir), str(out), *args]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_a_file_that_is_not_a_generator_is_refused_by_name(tmp_path):
    path = tmp_path / "grid.png"
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(path)
    with pytest.raises(ValueError, match=f"{path} is not a jaxgan generator file"):
        jaxgan.load_generator(path)


def test_npz_holds_the_samples_as_uint8_in_the_dataset_layout(trained, tmp_path):
    out = tmp_path / "samples.npz"
    assert sample([str(trained), "--npz", str(out), "--count", "25", "--seed", "3"]) == 0
    arrays = np.load(out)
    config, run, state = load_run(trained)
    labels = None if config.num_classes is None else np.arange(25) % 10
    expected = jaxgan.sample(run.generator, state, jax.random.key(3), labels=labels, num=25)
    expected = np.clip(np.asarray(jaxgan.to_unit_range(expected, config.pixel_range)), 0, 1)
    assert arrays["images"].dtype == np.uint8 and arrays["images"].shape == (25, 28, 28)
    # Each pixel rounded to the nearest of 256 levels (batching may move a value by an ulp).
    assert np.abs(arrays["images"] / 255 - expected[..., 0]).max() <= 0.5 / 255 + 1e-6
    if labels is None:
        assert "labels" not in arrays
    else:
        np.testing.assert_array_equal(arrays["labels"], labels)


def test_png_dir_writes_one_image_per_sample(trained, tmp_path):
    folder = tmp_path / "pngs"
    assert sample([str(trained), "--png-dir", str(folder), "--count", "12"]) == 0
    config, _, _ = load_run(trained)
    names = sorted(p.name for p in folder.iterdir())
    if config.num_classes is None:
        assert names == [f"{i:05d}.png" for i in range(12)]
    else:
        assert names == sorted(f"{i:05d}_{i % 10}.png" for i in range(12))
    image = np.asarray(Image.open(folder / names[0]))
    assert image.shape == (28, 28) and image.dtype == np.uint8
