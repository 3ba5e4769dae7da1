"""The training pictures: captions, buckets, crops and flips, and the order they come in."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import write_images
from vidiff.errors import VidiffError
from vidiff.train.data import DataSet, bucket_sizes, bucketed, cover, nearest_bucket, random_crop, scan_folder


def test_buckets_hold_about_the_resolution_squared_and_stay_on_the_grid():
    buckets = bucket_sizes(512, 64)
    assert (512, 512) in buckets
    for width, height in buckets:
        assert width % 64 == 0 and height % 64 == 0
        assert 0.75 * 512 * 512 <= width * height <= 512 * 512
        assert 0.4 <= width / height <= 2.5


def test_a_picture_goes_to_the_bucket_of_its_shape():
    buckets = bucket_sizes(512, 64)
    assert nearest_bucket((1000, 1000), buckets) == (512, 512)
    wide_width, wide_height = nearest_bucket((1600, 900), buckets)
    assert 1.6 < wide_width / wide_height < 1.9
    tall_width, tall_height = nearest_bucket((600, 1200), buckets)
    assert 1.6 < tall_height / tall_width < 2.5


def test_captions_come_from_text_files_else_the_token(tmp_path):
    write_images(tmp_path, ["a.png", "b.jpg"], size=(64, 64))
    (tmp_path / "a.txt").write_text("  a red  barn\nat dusk ")
    pictures = {p.path.name: p for p in scan_folder(tmp_path, "<barn-style>")}
    assert pictures["a.png"].caption == "a red barn at dusk" and pictures["a.png"].captioned
    assert pictures["b.jpg"].caption == "<barn-style>" and not pictures["b.jpg"].captioned


def test_a_picture_without_caption_or_token_is_an_error(tmp_path):
    write_images(tmp_path, ["a.png"], size=(64, 64))
    with pytest.raises(VidiffError, match="--token"):
        scan_folder(tmp_path, None)


def test_crops_fill_the_bucket_and_keep_the_picture(tmp_path):
    rng = np.random.default_rng(0)
    picture = rng.integers(0, 256, (90, 160, 3), dtype=np.uint8)
    covering = cover(picture, (96, 64))
    assert covering.shape == (64, 114, 3)
    crop, (top, left) = random_crop(covering, (96, 64), rng)
    assert crop.shape == (64, 96, 3)
    assert np.array_equal(crop, covering[top : top + 64, left : left + 96])
    # scaled to cover 96x64 keeping its aspect ratio: 114x64, so the crop is horizontal only
    assert top == 0 and 0 <= left <= 114 - 96


def test_batches_depend_on_seed_and_step_only(tmp_path):
    write_images(tmp_path, [f"{i}.png" for i in range(5)], size=(80, 64))
    pictures = bucketed(scan_folder(tmp_path, "<s>"), 64, 16)
    first = DataSet(pictures, batch_size=2, repeats=2, seed=3, flip=True)
    again = DataSet(pictures, batch_size=2, repeats=2, seed=3, flip=True)
    assert first.steps_per_epoch == 5  # 10 pictures shown, in batches of 2 within the one bucket
    for step in (7, 0, 12):  # any order: a resumed run starts anywhere
        assert np.array_equal(first.batch(step).pixels, again.batch(step).pixels)
    other = DataSet(pictures, batch_size=2, repeats=2, seed=4, flip=True)
    assert any(not np.array_equal(first.batch(s).pixels, other.batch(s).pixels) for s in range(5))
    # each epoch shows every picture `repeats` times
    shown = sorted(i for batch in first.epoch_batches(1) for i in batch)
    assert shown == sorted(list(range(5)) * 2)


def test_batches_keep_one_bucket_and_pixels_in_range(tmp_path):
    write_images(tmp_path, ["wide.png", "tall.png", "square.png"], size=(64, 64))
    write_images(tmp_path, ["wide.png"], size=(128, 64))
    write_images(tmp_path, ["tall.png"], size=(64, 128))
    data = DataSet(bucketed(scan_folder(tmp_path, "<s>"), 64, 16), batch_size=1, repeats=1, seed=0, flip=False)
    assert len({p.bucket for p in data.pictures}) == 3
    for step in range(data.steps_per_epoch):
        batch = data.batch(step)
        assert batch.pixels.min() >= -1 and batch.pixels.max() <= 1
        assert batch.pixels.shape[1] % 16 == 0 and batch.pixels.shape[2] % 16 == 0
    assert "buckets    3" in data.summary(64)
