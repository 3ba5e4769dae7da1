"""run.stylize_chunk, the loop a worker runs on a chunk, without Ray: a chunk in the middle of a shot,
warmed up from an empty state, whatever the technique."""

from __future__ import annotations

import pytest

from helpers import make_clip
from vidiff.io.workfolder import SEGMENT_FRAMES, Checkpoint, ShotFolder
from vidiff.plan import plan_run
from vidiff.run import stylize_chunk
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
