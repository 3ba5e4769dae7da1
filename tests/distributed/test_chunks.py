"""The distributed run's unit of work, as plain data: no Ray needed."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from vidiff.distributed.chunks import is_chained, layout_fingerprint, noise_carried_exactly, plan_chunks
from vidiff.errors import ConfigError
from vidiff.io.workfolder import SEGMENT_FRAMES
from vidiff.plan import Shot
from vidiff.settings.config import Config, fingerprint_settings

SHOTS = (Shot(0, 0, 200, 0), Shot(1, 200, 230, 200))


def chunks_of(**settings):
    return plan_chunks(SimpleNamespace(config=Config(ray="local", **settings), shots=SHOTS))


def test_without_chunk_each_shot_is_one_piece_of_work_and_the_last_reads_to_the_end():
    found = chunks_of()
    assert [(c.first, c.end, c.warmup_first) for c in found] == [(0, 200, 0), (200, None, 200)]


def test_chunks_are_whole_segments_laid_out_from_the_shot_start():
    found = chunks_of(chunk=50)  # rounded up to two segments
    assert [(c.first, c.end) for c in found] == [(0, 96), (96, 192), (192, 200), (200, None)]
    assert all((c.first - c.shot.first) % SEGMENT_FRAMES == 0 for c in found)


def test_warmup_only_where_frames_depend_on_earlier_ones_and_never_before_the_shot():
    independent = chunks_of(chunk=48, chunk_warmup=10, noise="per-frame")
    assert all(c.warmup_first == c.first for c in independent)
    chained = chunks_of(chunk=48, chunk_warmup=10, flow_blend=0.2)
    assert [c.warmup_first for c in chained] == [0, 38, 86, 134, 182, 200]


@pytest.mark.parametrize("settings", [dict(flow_blend="0:0, 10:0.3"), dict(fusion=0.5), dict(noise="warped"),
                                      dict(color_match=True), dict(cadence=2), dict(skip_similar=2.0),
                                      dict(motion_adapter="m", noise="fixed")])  # fmt: skip
def test_settings_that_carry_state_are_chained(settings):
    assert is_chained(Config(**settings))
    assert not is_chained(Config(noise="per-frame"))


def test_motion_windows_without_overlap_are_not_chained():
    # windows end at the 48-frame segments that chunks are cut at, and each draws its noise by its first frame
    assert not is_chained(Config(motion_adapter="m", noise="fixed", context_overlap=0))


def test_where_frames_are_made_is_not_in_their_fingerprint_but_the_chunk_layout_is_in_the_work_folders():
    plain = Config()
    on_ray = Config(ray="ray://head:10001", workers=4, gpus_per_worker=0.5, chunk=96, chunk_warmup=4)
    assert fingerprint_settings(on_ray) == fingerprint_settings(plain)
    base = "frames"
    assert layout_fingerprint(base, on_ray) != layout_fingerprint(base, on_ray.replace(chunk=200))
    # the warm-up changes the frames of chained settings only
    assert layout_fingerprint(base, on_ray) == layout_fingerprint(base, on_ray.replace(chunk_warmup=9))
    chained = on_ray.replace(flow_blend=0.2)
    assert layout_fingerprint(base, chained) != layout_fingerprint(base, chained.replace(chunk_warmup=9))


@pytest.mark.parametrize("name, value", [("workers", 2), ("gpus_per_worker", 1.0), ("chunk", 96)])
def test_ray_options_without_ray_are_an_error(name, value):
    with pytest.raises(ConfigError, match=name):
        Config(**{name: value}).validate()


def test_warped_noise_is_carried_into_a_chunk_only_where_every_frame_is_diffused():
    assert noise_carried_exactly(Config(noise="warped"))
    assert not noise_carried_exactly(Config(noise="fixed"))
    assert not noise_carried_exactly(Config(noise="warped", cadence=2))
    assert not noise_carried_exactly(Config(noise="warped", skip_similar=2.0))
