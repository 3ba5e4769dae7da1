"""run.stylize_chunk, the loop a worker runs on a chunk, without Ray: a chunk in the middle of a shot,
warmed up from an empty state, whatever the technique."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from helpers import make_clip
from vidiff.io.workfolder import SEGMENT_FRAMES, Checkpoint, ShotFolder
from vidiff.plan import plan_run
from vidiff.run import stylize_chunk, stylize_video
from vidiff.settings.config import Config

FRAMES = SEGMENT_FRAMES + 10


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("chunk") / "clip.mp4", seconds=FRAMES / 24)


@pytest.mark.parametrize("settings", [
    dict(cadence=3, flow_blend=0.2),  # a window of several frames, each depending on the one before
    dict(cadence="auto", color_match=True),
    dict(cross_frame_attn=True, fusion=0.5, noise="warped", batch_size=4),
], ids=["cadence-flow-blend", "cadence-auto-colour", "attention-fusion-warped"])  # fmt: skip
def test_a_chunk_after_a_warmup_keeps_exactly_its_frames(tiny, clip, tmp_path, settings):
    config = Config(model="tiny", prompt="a wooden carving", steps=2, max_side=64, cuts=False, **settings)
    plan = plan_run(clip, tmp_path / "out.mp4", config)
    shot, first = plan.shots[0], SEGMENT_FRAMES
    folder = ShotFolder(tmp_path / "chunk", first)
    done = []
    stylize_chunk(tiny, plan, shot, Checkpoint(first), None, folder, warmup_first=first - 7,
                  on_progress=lambda progress: done.append(progress.index))  # fmt: skip
    assert done == list(range(first, FRAMES))  # the warm-up's frames are made, not kept
    assert folder.frames_done == FRAMES - first and folder.finished_at == FRAMES


@pytest.mark.parametrize("warmup", [4, 0])
def test_a_chunk_with_warped_noise_starts_from_the_noise_a_whole_shot_run_reaches(tiny, clip, tmp_path, warmup):
    # warped noise alone carries nothing else between frames: with the shot's noise chain handed over,
    # the chunk's frames are the single-process run's exactly (a warm-up alone gave a seam 3-5x the shot's)
    settings = dict(model="tiny", prompt="a wooden carving", steps=2, max_side=64, cuts=False, noise="warped",
                    batch_size=1)  # fmt: skip
    stylize_video(clip, tmp_path / "whole.mp4", parts=tiny, save_frames=str(tmp_path / "whole"), **settings)
    config = Config(**settings, save_frames=str(tmp_path / "chunk"))
    plan = plan_run(clip, tmp_path / "out.mp4", config)
    first = SEGMENT_FRAMES
    stylize_chunk(tiny, plan, plan.shots[0], Checkpoint(first), None, ShotFolder(tmp_path / "folder", first),
                  warmup_first=first - warmup)  # fmt: skip
    kept = sorted((tmp_path / "chunk").glob("*.png"))
    assert [int(path.stem.split("_")[-1]) for path in kept] == list(range(first, FRAMES))
    for path in kept:
        assert np.array_equal(cv2.imread(str(path)), cv2.imread(str(tmp_path / "whole" / path.name))), path.name
