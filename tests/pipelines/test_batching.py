"""Frames through the model in batches: the same frames as one at a time, and the run's batching,
threads, resume, --skip-similar, --vae and --compile around it."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from helpers import read_frames, write_static_clip
from helpers import reference_frame, reference_pipeline
from vidiff.cli import cli
from vidiff.settings.config import Config
from vidiff.io.workfolder import SEGMENT_FRAMES
from vidiff.io.workfolder import segment_bounds
from vidiff.pipelines.processor import batch_window_end
from vidiff.pipelines.img2img import Img2ImgProcessor


def moving_frames(count: int, size=(64, 48), cut_at: int | None = None) -> list[np.ndarray]:
    """A textured picture panning 2 pixels a frame; after `cut_at`, another picture in other colours."""
    rng = np.random.default_rng(3)
    width, height = size
    pictures = [rng.integers(0, 256, (height, width + 2 * count, 3), dtype=np.uint8) for _ in range(2)]
    pictures[1] = (pictures[1] // 4 + np.array([180, 20, 20], np.uint8)).astype(np.uint8)
    return [pictures[int(cut_at is not None and i >= cut_at)][:, 2 * i : 2 * i + width].copy() for i in range(count)]


def one_at_a_time(parts, config, frames, fps=None):
    with Img2ImgProcessor(parts, config, fps) as stylizer:
        state, images = None, []
        for index, frame in enumerate(frames):
            result = stylizer(frame, index, state)
            state, images = result.state, images + [result.image]
    return images


def batched(parts, config, frames, size, fps=None):
    with Img2ImgProcessor(parts, config, fps) as stylizer:
        state, images = None, []
        for first in range(0, len(frames), size):
            results = stylizer.process(frames[first : first + size], first, state)
            state, images = results[-1].state, images + [r.image for r in results]
    return images


def max_difference(a: list, b: list) -> int:
    assert len(a) == len(b)
    return max(int(np.abs(x.astype(int) - y.astype(int)).max()) for x, y in zip(a, b))


CASES = {
    "ddim-cfg": dict(scheduler="ddim"),
    "euler-a: sampler noise from per-frame generators": dict(scheduler="euler-a"),
    "dpm++2m-no-cfg": dict(scheduler="dpm++2m", guidance=1.0),
    "per-frame-noise": dict(noise="per-frame"),
    "warped-noise-and-a-cut": dict(noise="warped", scheduler="euler"),
    "colour-match": dict(color_match=True),
    "cross-frame attention, across batches and a cut": dict(cross_frame_attn=True),
    "cross-frame attention without CFG": dict(cross_frame_attn=True, guidance=1.0, scheduler="euler-a"),
    "keyframes: strength, guidance, seed, mix and prompt": dict(
        strength="0:0.5, 3:0.75", guidance="0:3, 5:9", seed="0:1, 4:2", mix=("gold:0:0, 5:0.5",),
        prompt="0:a bronze statue | 5:a clay figure",
    ),
}


@pytest.mark.parametrize("settings", CASES.values(), ids=CASES.keys())
def test_a_batch_gives_the_frames_one_at_a_time_gives(tiny, settings):
    frames = moving_frames(6, cut_at=4)
    config = Config(**{"prompt": "a bronze statue", "steps": 8, "strength": 0.5, "seed": 5, **settings}).validate()
    alone = one_at_a_time(tiny, config, frames)
    # colour matching stretches each LAB channel by a spread ratio that can exceed 1, so the model's
    # one-level rounding difference can come out as two
    tolerance = 2 if config.color_match else 1
    for size in (4, 6, 3):
        assert max_difference(batched(tiny, config, frames, size), alone) <= tolerance
    assert len({frame.tobytes() for frame in alone}) == len(alone)  # not trivially equal frames


def test_a_batch_matches_diffusers_img2img_frame_by_frame(tiny):
    frames = moving_frames(4)
    config = Config(prompt="a bronze statue", steps=8, strength=0.5, seed=5, scheduler="euler-a").validate()
    pipe = reference_pipeline(tiny, "euler-a")
    theirs = [reference_frame(pipe, frame, config) for frame in frames]
    assert max_difference(batched(tiny, config, frames, 4), theirs) <= 1


def test_a_batch_runs_the_unet_once_per_step_for_all_its_frames(tiny):
    calls = []
    hook = tiny.unet.register_forward_pre_hook(lambda module, args: calls.append(args[0].shape[0]))
    try:
        config = Config(prompt="x", steps=4, strength=0.5, guidance=7.5).validate()
        batched(tiny, config, moving_frames(4), 4)
    finally:
        hook.remove()
    assert calls == [8, 8]  # 2 steps, each with 4 frames × (negative, prompt)


def test_frames_that_need_the_previous_output_refuse_to_batch(tiny):
    for settings in (dict(blend=0.2), dict(flow_blend="0:0, 10:0.3"), dict(fusion=0.5)):
        with Img2ImgProcessor(tiny, Config(prompt="x", steps=2, **settings)) as stylizer:
            assert not stylizer.batchable
            with pytest.raises(ValueError, match="one at a time"):
                stylizer.process(moving_frames(2), 0)
    with Img2ImgProcessor(tiny, Config(prompt="x", noise="warped", color_match=True, cross_frame_attn=True)) as stylizer:
        assert stylizer.batchable


def batch_end(first: int, size: int) -> int:
    """Where the batch beginning at `first` ends in a shot that starts at frame 0."""
    return batch_window_end(first, size, *segment_bounds(first, 0, None))


def test_batches_start_at_fixed_frames_and_never_cross_a_segment():
    assert [batch_end(first, 4) for first in (0, 4, 44)] == [4, 8, 48]
    assert batch_end(45, 4) == 48  # a resumed run ending a segment
    assert batch_end(40, 5) == 45 and batch_end(45, 5) == 48  # 48 isn't a multiple of 5: a short last batch
    assert batch_end(SEGMENT_FRAMES, 5) == SEGMENT_FRAMES + 5


# --- the command line ---

SMALL = ["--model", "tiny", "--prompt", "a wooden carving", "--steps", "4", "--strength", "0.5", "--max-side", "64"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from helpers import make_clip

    return make_clip(tmp_path_factory.mktemp("batching") / "clip.mp4", size="64x48", rate="24", seconds=0.5)


def _frames_of(args, folder) -> list[np.ndarray]:
    import cv2

    result = CliRunner().invoke(cli, [*args, "--save-frames", str(folder), "-q"])
    assert result.exit_code == 0, (result.stderr, result.exception)
    return [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in sorted(folder.glob("*.png"))]


def test_batch_size_changes_no_frame(clip, tmp_path):
    ones = _frames_of(["stylize", str(clip), str(tmp_path / "a.mp4"), *SMALL, "--batch-size", "1"], tmp_path / "a")
    fives = _frames_of(["stylize", str(clip), str(tmp_path / "b.mp4"), *SMALL, "--batch-size", "5"], tmp_path / "b")
    assert len(ones) == len(fives) == 12 and max_difference(ones, fives) <= 1


@pytest.mark.parametrize("variant", [["--noise", "warped"], ["--cross-frame-attn", "--color-match"]])
def test_ctrl_c_mid_batch_resumes_at_the_batch_and_gives_the_uninterrupted_frames(clip, tmp_path, monkeypatch, variant):
    args = ["stylize", str(clip), str(tmp_path / "out.mp4"), *SMALL, "--batch-size", "4", *variant]
    reference = _frames_of([*args[:2], str(tmp_path / "ref.mp4"), *args[3:]], tmp_path / "ref")
    original = Img2ImgProcessor.process

    def ctrl_c_during(self, frames, first, state=None):
        if first == 4:
            os.kill(os.getpid(), signal.SIGINT)  # arrives while frames 4-7 are being stylised
        return original(self, frames, first, state)

    monkeypatch.setattr(Img2ImgProcessor, "process", ctrl_c_during)
    stopped = CliRunner().invoke(cli, [*args, "--save-frames", str(tmp_path / "out")])
    assert stopped.exit_code == 130
    assert len(list((tmp_path / "out").glob("*.png"))) == 8  # the batch in progress was finished
    monkeypatch.setattr(Img2ImgProcessor, "process", original)
    resumed = CliRunner().invoke(cli, [*args, "--save-frames", str(tmp_path / "out")])
    assert resumed.exit_code == 0 and "resuming at frame 8 of" in resumed.stderr
    import cv2

    frames = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in sorted((tmp_path / "out").glob("*.png"))]
    assert len(frames) == len(reference) == 12 and all(np.array_equal(a, b) for a, b in zip(frames, reference))
    ours = read_frames(tmp_path / "out.mp4")
    assert len(ours) == 12 and all(np.array_equal(a, b) for a, b in zip(ours, read_frames(tmp_path / "ref.mp4")))


def test_batch_size_is_ignored_with_a_note_when_frames_depend_on_each_other(clip, tmp_path, monkeypatch):
    sizes, original = [], Img2ImgProcessor.process
    monkeypatch.setattr(Img2ImgProcessor, "process", lambda self, frames, *a, **k: sizes.append(len(frames)) or original(self, frames, *a, **k))
    result = CliRunner().invoke(cli, ["stylize", str(clip), str(tmp_path / "o.mp4"), *SMALL, "--batch-size", "4",
                                      "--flow-blend", "0.3"])  # fmt: skip
    assert result.exit_code == 0 and "one at a time" in result.stderr
    assert set(sizes) == {1} and len(sizes) == 12


def test_skip_similar_reuses_the_output_of_a_still_shot(tmp_path, monkeypatch):
    still = write_static_clip(tmp_path / "still.mp4", frames=6, jitter=1.0)
    calls, original = [], Img2ImgProcessor.denoise
    monkeypatch.setattr(Img2ImgProcessor, "denoise", lambda self, plans: calls.append(len(plans)) or original(self, plans))
    skipped = _frames_of(["stylize", str(still), str(tmp_path / "s.mp4"), *SMALL, "--skip-similar", "3"], tmp_path / "s")
    assert sum(calls) == 1  # only the first frame went through the model
    assert len(skipped) == 6 and all(np.array_equal(frame, skipped[0]) for frame in skipped)
    calls.clear()
    every = _frames_of(["stylize", str(still), str(tmp_path / "e.mp4"), *SMALL], tmp_path / "e")
    assert sum(calls) == 6 and max_difference(every[:1], skipped[:1]) <= 1  # batched with 3 others there


def test_skip_similar_does_not_skip_a_moving_shot(tiny):
    frames = moving_frames(4)
    config = Config(prompt="x", steps=4, strength=0.5, skip_similar=3.0).validate()
    with Img2ImgProcessor(tiny, config) as stylizer:
        results = stylizer.process(frames, 0)
    assert len({r.image.tobytes() for r in results}) == 4


def test_compile_is_done_once_per_run_not_per_frame(clip, tmp_path, monkeypatch):
    compiled = []

    def fake_compile(fn, *args, **kwargs):
        compiled.append(fn)
        return fn  # the wiring, not inductor: a real compile takes minutes on a CPU

    monkeypatch.setattr(torch, "compile", fake_compile)
    result = CliRunner().invoke(cli, ["stylize", str(clip), str(tmp_path / "c.mp4"), *SMALL, "--compile", "-q"])
    assert result.exit_code == 0, result.stderr
    assert len(compiled) == 3  # the UNet, the VAE's encode and its decode, for all 12 frames


# --- --vae ---


@pytest.fixture(scope="module")
def tiny_taesd(tmp_path_factory):
    """A tiny AutoencoderTiny (TAESD's architecture, narrower), saved as a diffusers folder."""
    from diffusers import AutoencoderTiny

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        vae = AutoencoderTiny(encoder_block_out_channels=(8, 8, 8, 8), decoder_block_out_channels=(8, 8, 8, 8),
                              num_encoder_blocks=(1, 1, 1, 1), num_decoder_blocks=(1, 1, 1, 1))  # fmt: skip
    folder = tmp_path_factory.mktemp("taesd") / "tiny-taesd"
    vae.save_pretrained(folder)
    return folder


def test_another_vae_from_a_folder_matches_diffusers_with_it(tiny_taesd):
    from diffusers import AutoencoderTiny

    from vidiff.models.loading import load_parts

    parts = load_parts("tiny", "cpu", "fp32", vae=str(tiny_taesd))
    assert isinstance(parts.vae, AutoencoderTiny) and parts.vae_source == str(tiny_taesd)
    config = Config(prompt="a bronze statue", steps=8, strength=0.5, seed=2, scheduler="euler-a", vae=str(tiny_taesd))
    frames = moving_frames(3)
    pipe = reference_pipeline(parts, "euler-a")
    theirs = [reference_frame(pipe, frame, config) for frame in frames]
    assert max_difference(batched(parts, config, frames, 3), theirs) <= 1


def test_a_vae_for_another_kind_of_model_is_refused(clip, tmp_path):
    from diffusers import AutoencoderKL

    AutoencoderKL(latent_channels=16, block_out_channels=(8,), norm_num_groups=8).save_pretrained(tmp_path / "vae16")
    result = CliRunner().invoke(cli, ["stylize", str(clip), str(tmp_path / "o.mp4"), *SMALL,
                                      "--vae", str(tmp_path / "vae16")])  # fmt: skip
    assert result.exit_code == 2 and "16 latent channels" in result.stderr and "another kind" in result.stderr
    assert not (tmp_path / "o.mp4").exists()


def test_the_state_keeps_what_skip_similar_compares_with_across_a_resume(tiny):
    still = [moving_frames(1)[0]] * 3
    config = Config(prompt="x", steps=4, strength=0.5, skip_similar=3.0).validate()
    with Img2ImgProcessor(tiny, config) as stylizer:
        first = stylizer(still[0], 0)
        saved = stylizer.export_state(first.state)
    with Img2ImgProcessor(tiny, config) as resumed:  # a new run, from the saved state
        state = resumed.import_state(saved)
        for name in ("source", "image", "anchor", "stylized_source"):
            assert np.array_equal(getattr(state, name), getattr(first.state, name)), name
        calls = []
        original = resumed.denoise
        resumed.denoise = lambda plans: calls.append(len(plans)) or original(plans)
        again = resumed(still[1], 1, state)
    assert calls == [] and np.array_equal(again.image, first.image)  # skipped, as without the stop
