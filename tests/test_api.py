"""The Python API a program drives: progress after each frame, cancel from another thread, resume,
and model parts built once from a Config and shared by runs that leave them as they were."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

import vidiff
from helpers import make_clip, read_frames

SETTINGS = dict(model="tiny", prompt="a wooden carving", steps=3, strength=0.5, max_side=64, batch_size=1,
                noise="warped", flow_blend=0.3, color_match=True)  # fmt: skip


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("api") / "clip.mp4", size="64x48", rate="24", seconds=0.5)


@pytest.fixture(scope="module")
def parts():
    return vidiff.load_parts(vidiff.Config(**SETTINGS))


def _saved(folder) -> list[np.ndarray]:
    import cv2

    return [cv2.imread(str(path), cv2.IMREAD_UNCHANGED) for path in sorted(folder.glob("*.png"))]


def test_progress_is_reported_after_each_frame_with_the_frame(clip, parts, tmp_path):
    seen = []
    result = vidiff.stylize_video(clip, tmp_path / "out.mp4", parts=parts, on_progress=seen.append,
                                  save_frames=str(tmp_path / "frames"), **SETTINGS)  # fmt: skip
    assert [p.done for p in seen] == list(range(1, result.frames + 1))
    assert [p.index for p in seen] == list(range(result.frames))
    assert all(p.total == result.frames for p in seen)
    saved = _saved(tmp_path / "frames")
    assert all(p.frame.dtype == np.uint8 and p.frame.shape == (48, 64, 3) for p in seen)
    # the frame handed over is the one written (RGB; the PNGs are read back as BGR)
    assert all(np.array_equal(p.frame, png[:, :, ::-1]) for p, png in zip(seen, saved))


def test_cancel_from_another_thread_stops_saves_and_the_same_call_resumes_bit_identically(clip, parts, tmp_path):
    reference = vidiff.stylize_video(clip, tmp_path / "ref.mp4", parts=parts, save_frames=str(tmp_path / "ref"),
                                     **SETTINGS)  # fmt: skip
    out, frames = tmp_path / "out.mp4", tmp_path / "frames"
    cancel, reached = threading.Event(), threading.Event()

    def on_progress(progress):
        if progress.done == 4:
            reached.set()

    def canceller():
        reached.wait(60)
        cancel.set()

    thread = threading.Thread(target=canceller)
    thread.start()
    with pytest.raises(vidiff.Interrupted, match="run the same command again to resume"):
        vidiff.stylize_video(clip, out, parts=parts, on_progress=on_progress, cancel=cancel, save_frames=str(frames),
                             **SETTINGS)  # fmt: skip
    thread.join()
    stopped_at = len(list(frames.glob("*.png")))
    assert 4 <= stopped_at < reference.frames
    assert not out.exists() and (tmp_path / "out.mp4.vidiff").is_dir()

    seen = []
    resumed = vidiff.stylize_video(clip, out, parts=parts, on_progress=seen.append, save_frames=str(frames), **SETTINGS)
    assert seen[0].index == stopped_at and seen[0].done == stopped_at + 1  # nothing was stylised twice
    assert resumed.frames == reference.frames
    assert all(np.array_equal(a, b) for a, b in zip(_saved(frames), _saved(tmp_path / "ref"), strict=True))
    assert all(np.array_equal(a, b) for a, b in zip(read_frames(out), read_frames(tmp_path / "ref.mp4"), strict=True))
    assert not (tmp_path / "out.mp4.vidiff").exists()


def test_interrupted_is_exported_and_cli_free():
    from vidiff.errors import Interrupted

    assert vidiff.Interrupted is Interrupted


def test_parts_built_from_a_config_are_shared_and_left_as_they_were(clip, tmp_path):
    config = vidiff.Config(**{**SETTINGS, "cross_frame_attn": True})
    parts = vidiff.load_parts(config)
    processors = {name: type(proc) for name, proc in parts.unet.attn_processors.items()}
    weights = {name: tensor.clone() for name, tensor in parts.unet.state_dict().items()}
    first = vidiff.stylize_video(clip, tmp_path / "a.mp4", config, parts=parts, save_frames=str(tmp_path / "a"))
    second = vidiff.stylize_video(clip, tmp_path / "b.mp4", config, parts=parts, save_frames=str(tmp_path / "b"))
    assert first.frames == second.frames
    assert all(np.array_equal(a, b) for a, b in zip(_saved(tmp_path / "a"), _saved(tmp_path / "b"), strict=True))
    # the cross-frame attention processors were taken off again, and no weight moved
    assert {name: type(proc) for name, proc in parts.unet.attn_processors.items()} == processors
    assert all(torch.equal(weights[name], tensor) for name, tensor in parts.unet.state_dict().items())
    # a run that loads its own parts gives the same frames
    vidiff.stylize_video(clip, tmp_path / "c.mp4", config, save_frames=str(tmp_path / "c"))
    assert all(np.array_equal(a, b) for a, b in zip(_saved(tmp_path / "a"), _saved(tmp_path / "c"), strict=True))


def test_parts_that_do_not_hold_what_the_config_names_are_refused(clip, parts, tmp_path):
    with pytest.raises(vidiff.VidiffError, match="lora"):
        vidiff.stylize_video(clip, tmp_path / "out.mp4", parts=parts, **{**SETTINGS, "lora": ("style.safetensors",)})


@pytest.mark.parametrize("stop_at", [3, 11])  # in the first shot; in the second, the first finished
def test_a_clip_with_a_cut_stops_and_resumes_in_either_shot_bit_identically(parts, tmp_path, stop_at, caplog):
    from helpers import cut_clip

    clip = cut_clip(tmp_path / "cut.mp4", 8, 6)
    settings = {**SETTINGS, "batch_size": 3, "flow_blend": 0.0}  # batches, so a window ends a shot early
    reference = vidiff.stylize_video(clip, tmp_path / "ref.mp4", parts=parts, save_frames=str(tmp_path / "ref"),
                                     **settings)  # fmt: skip
    cancel = threading.Event()

    def on_progress(progress):
        if progress.done == stop_at:
            cancel.set()  # from this thread: the run stops after the window in progress

    out, frames = tmp_path / "out.mp4", tmp_path / "frames"
    with pytest.raises(vidiff.Interrupted):
        vidiff.stylize_video(clip, out, parts=parts, on_progress=on_progress, cancel=cancel, save_frames=str(frames),
                             **settings)  # fmt: skip
    stopped_at = len(list(frames.glob("*.png")))
    assert stop_at <= stopped_at < reference.frames
    seen = []
    with caplog.at_level("INFO", logger="vidiff"):
        vidiff.stylize_video(clip, out, parts=parts, on_progress=seen.append, save_frames=str(frames), **settings)
    assert f"resuming at frame {stopped_at} of {reference.frames}" in caplog.text
    assert seen[0].index == stopped_at and seen[0].done == stopped_at + 1
    assert all(np.array_equal(a, b) for a, b in zip(_saved(frames), _saved(tmp_path / "ref"), strict=True))
    assert all(np.array_equal(a, b) for a, b in zip(read_frames(out), read_frames(tmp_path / "ref.mp4"), strict=True))
