"""Motion windows (AnimateDiff): one window is diffusers' AnimateDiffVideoToVideoPipeline (and its
ControlNet twin); longer shots stream through overlapping windows without a jump at their edges; a
stopped run resumes at a window's edge bit-identically; bad input is one line."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from diffusers import AnimateDiffVideoToVideoControlNetPipeline, AnimateDiffVideoToVideoPipeline
from PIL import Image

import vidiff
from helpers import pan, read_frames, tiny_controlnet
from vidiff.cli import cli
from vidiff.models.loading import load_parts
from vidiff.models.tiny import TRAINED_TINY, tiny_motion_adapter, tiny_parts
from vidiff.pipelines.control_images import control_image
from vidiff.pipelines.motion import MotionProcessor
from vidiff.pipelines.samplers import make_scheduler
from vidiff.settings.config import Config


@pytest.fixture(scope="module")
def adapters(tmp_path_factory):
    """Tiny motion adapters saved as diffusers folders: one that fits the tiny UNets, one that doesn't."""
    root = tmp_path_factory.mktemp("motion")
    tiny_motion_adapter().save_pretrained(root / "fits")
    tiny_motion_adapter(blocks=(16, 32)).save_pretrained(root / "narrow")
    tiny_controlnet(tiny_parts().unet).save_pretrained(root / "controlnet")
    return root


@pytest.fixture(scope="module")
def motion_parts(adapters):
    return load_parts("tiny", "cpu", "fp32", motion_adapter=str(adapters / "fits"))


def _config(adapters, **settings) -> Config:
    return Config(prompt="a wooden carving", steps=4, strength=0.6, seed=3, guidance=7.5, max_side=64,
                  motion_adapter=str(adapters / "fits"), context=8, context_overlap=2).replace(**settings)  # fmt: skip


def _windows(processor: MotionProcessor, frames: list[np.ndarray]) -> tuple[list, list[int]]:
    """Every frame through the processor window by window, as the run loop lays them out; and each window's first frame."""
    images, firsts, state, first = [], [], None, 0
    while first < len(frames):
        end = processor.window_end(first, 0, len(frames))
        results = processor.process(frames[first:end], first, state)
        assert len(results) == end - first
        images += [result.image for result in results]
        firsts.append(first)
        state, first = results[-1].state, end
    return images, firsts


def _uint8(video) -> list[np.ndarray]:
    return [(np.asarray(frame) * 255).round().astype(np.uint8) for frame in video]


@pytest.mark.parametrize("scheduler", ["ddim", "euler-a", "dpm++2m"])
def test_one_window_matches_diffusers_animatediff_video_to_video(motion_parts, adapters, scheduler):
    frames = pan(6, 2, size=(64, 48))
    config = _config(adapters, scheduler=scheduler)
    ours, _ = _windows(MotionProcessor(motion_parts, config, 24.0, [0]), frames)

    parts = motion_parts
    pipe = AnimateDiffVideoToVideoPipeline(
        vae=parts.vae, text_encoder=parts.text_encoder, tokenizer=parts.tokenizer, unet=parts.unet,
        motion_adapter=None, scheduler=make_scheduler(scheduler, parts.scheduler_config),
    )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(
        video=[Image.fromarray(frame) for frame in frames], prompt=config.prompt, negative_prompt=config.negative_prompt,
        strength=config.strength, num_inference_steps=config.steps, guidance_scale=config.guidance, height=48, width=64,
        generator=torch.Generator("cpu").manual_seed(config.seed), output_type="np",
    ).frames[0]  # fmt: skip
    assert len(ours) == len(theirs) == 6
    for a, b in zip(ours, _uint8(theirs)):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 2


def test_one_window_with_a_controlnet_matches_diffusers_controlnet_twin(adapters):
    parts = load_parts("tiny", "cpu", "fp32", motion_adapter=str(adapters / "fits"),
                       controlnet=[str(adapters / "controlnet") + ":0.8"])  # fmt: skip
    frames = pan(5, 2, size=(64, 48))
    config = _config(adapters, scheduler="euler", controlnet=(str(adapters / "controlnet") + ":0.8",))
    ours, _ = _windows(MotionProcessor(parts, config, 24.0, [0]), frames)

    pipe = AnimateDiffVideoToVideoControlNetPipeline(
        vae=parts.vae, text_encoder=parts.text_encoder, tokenizer=parts.tokenizer, unet=parts.unet,
        motion_adapter=None, controlnet=parts.controlnets[0], scheduler=make_scheduler("euler", parts.scheduler_config),
    )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    controls = [Image.fromarray(control_image("canny", frame, config.canny_low, config.canny_high)) for frame in frames]
    theirs = pipe(
        video=[Image.fromarray(frame) for frame in frames], conditioning_frames=controls, controlnet_conditioning_scale=0.8,
        prompt=config.prompt, negative_prompt=config.negative_prompt, strength=config.strength,
        num_inference_steps=config.steps, guidance_scale=config.guidance, height=48, width=64,
        generator=torch.Generator("cpu").manual_seed(config.seed), output_type="np",
    ).frames[0]  # fmt: skip
    for a, b in zip(ours, _uint8(theirs), strict=True):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 2


def test_the_motion_module_acts(motion_parts, adapters):
    """Without this, the equivalence above could pass with the motion modules left out of the UNet."""
    frames = pan(6, 2, size=(64, 48))
    config = _config(adapters)
    with_motion, _ = _windows(MotionProcessor(motion_parts, config, 24.0, [0]), frames)
    # the same adapter with its motion modules' output projections zeroed: they then add nothing
    silent = load_parts("tiny", "cpu", "fp32", motion_adapter=str(adapters / "fits"))
    with torch.no_grad():
        for name, parameter in silent.unet.named_parameters():
            if "motion_modules" in name and "proj_out" in name:
                parameter.zero_()
    without, _ = _windows(MotionProcessor(silent, config, 24.0, [0]), frames)
    assert all(not np.array_equal(a, b) for a, b in zip(with_motion, without))


@pytest.fixture(scope="module")
def trained_motion_parts(adapters):
    """The trained tiny model, which follows its source, so that a jump between frames shows."""
    return load_parts(str(TRAINED_TINY), "cpu", "fp32", motion_adapter=str(adapters / "fits"))


def test_three_windows_give_every_frame_with_no_jump_at_their_edges(trained_motion_parts, adapters):
    frames = pan(20, 1, size=(64, 48))
    config = _config(adapters, model=str(TRAINED_TINY), strength=0.5)
    images, firsts = _windows(MotionProcessor(trained_motion_parts, config, 24.0, [0]), frames)
    assert firsts == [0, 8, 14] and len(images) == 20
    assert all(image.shape == (48, 64, 3) and image.dtype == np.uint8 for image in images)
    assert _largest_jump_at_an_edge(images, firsts) <= 1, firsts
    # the metric can see a jump: without the overlap, windows made alike jump at an edge (on these weights)
    alone, firsts = _windows(MotionProcessor(trained_motion_parts, config.replace(context_overlap=0), 24.0, [0]), frames)
    assert firsts == [0, 8, 16] and _largest_jump_at_an_edge(alone, firsts) > 1.1


def _largest_jump_at_an_edge(images, firsts) -> float:
    """The largest frame-to-frame change across a window's edge, over the largest inside the windows."""
    change = [np.abs(b.astype(float) - a.astype(float)).mean() for a, b in zip(images, images[1:])]
    edges = {first - 1 for first in firsts[1:]}  # change[i] is from frame i to i + 1
    return max(change[i] for i in edges) / max(c for i, c in enumerate(change) if i not in edges)


def test_a_window_continues_the_one_before(motion_parts, adapters):
    """The overlap is what ties windows together: the same new frames after another window come out otherwise."""
    frames = pan(14, 2, size=(64, 48))
    processor = MotionProcessor(motion_parts, _config(adapters), 24.0, [0])
    before = processor.process(frames[:8], 0, None)[-1].state
    assert len(before.sources) == 2 and before.final.shape[2] == 2
    other = MotionProcessor(motion_parts, _config(adapters, prompt="a glass sculpture"), 24.0, [0])
    other_before = other.process(frames[:8], 0, None)[-1].state
    after = [r.image for r in processor.process(frames[8:14], 8, before)]
    after_other = [r.image for r in processor.process(frames[8:14], 8, other_before)]
    assert not np.array_equal(after[0], after_other[0])
    # and through the work folder's codec the state is the same state: the same frames
    again = [r.image for r in processor.process(frames[8:14], 8, processor.import_state(processor.export_state(before)))]
    assert all(np.array_equal(a, b) for a, b in zip(after, again, strict=True))


def test_windows_without_overlap_run_through_the_work_folder_codec(motion_parts, adapters):
    frames = pan(10, 2, size=(64, 48))
    processor = MotionProcessor(motion_parts, _config(adapters, context=5, context_overlap=0), 24.0, [0])
    state = processor.import_state(processor.export_state(processor.process(frames[:5], 0, None)[-1].state))
    assert state.sources == [] and len(processor.process(frames[5:], 5, state)) == 5


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory):
    """Longer than one 48-frame segment of the work folder, so that the overlap crosses a segment's edge."""
    from helpers import make_clip

    return make_clip(tmp_path_factory.mktemp("long") / "in.mp4", size="64x48", rate="24", seconds=56 / 24)


@pytest.fixture(scope="module")
def reference(motion_parts, adapters, long_clip, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "ref.mp4"
    settings = {**_RUN, "motion_adapter": str(adapters / "fits")}
    assert vidiff.stylize_video(long_clip, out, parts=motion_parts, **settings).frames == 56
    return read_frames(out)


# windows 0-8, then 6 new frames each: 8-14, ..., 38-44, 44-48 (the segment's end), 48-54, 54-56
_RUN = dict(prompt="a wooden carving", steps=3, strength=0.5, seed=3, max_side=64, context=8, context_overlap=2,
            model="tiny", device="cpu", dtype="fp32")  # fmt: skip


@pytest.mark.parametrize("stop_after, resumes_at", [(3, 8), (45, 48)])
def test_cancel_then_resume_at_a_window_edge_is_bit_identical(
    motion_parts, adapters, long_clip, reference, tmp_path, stop_after, resumes_at
):
    settings = {**_RUN, "motion_adapter": str(adapters / "fits")}
    out, cancel = tmp_path / "out.mp4", threading.Event()

    def on_progress(progress):
        if progress.done == stop_after:
            cancel.set()  # in this thread: the run stops after the window in progress

    with pytest.raises(vidiff.Interrupted):
        vidiff.stylize_video(long_clip, out, parts=motion_parts, on_progress=on_progress, cancel=cancel, **settings)
    seen = []
    vidiff.stylize_video(long_clip, out, parts=motion_parts, on_progress=seen.append, **settings)
    assert seen[0].index == resumes_at  # the window in progress was finished, and nothing was stylised twice
    assert all(np.array_equal(a, b) for a, b in zip(read_frames(out), reference, strict=True))


def test_dry_run_says_what_the_windows_are(adapters, clips):
    result = CliRunner().invoke(cli, ["stylize", str(clips["plain"]), "out.mp4", "--model", "tiny", "--prompt", "x",
                                      "--motion-adapter", str(adapters / "fits"), "--dry-run"])  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert f"motion     {adapters / 'fits'}: windows of 16 frames, each sharing 4 with the one before" in result.stdout


@pytest.mark.parametrize(
    "options, words",
    [
        (["--motion-adapter", "{narrow}"], "does not fit --model tiny: its motion modules are 16/32 channels wide"),
        (["--motion-adapter", "{fits}", "--model", "tiny-sdxl"], "--motion-adapter runs on SD 1.x models"),
        (["--motion-adapter", "./no/such/adapter"], "--motion-adapter ./no/such/adapter not found"),
        (["--motion-adapter", "{file}"], "could not be loaded as an AnimateDiff motion adapter"),
        (["--motion-adapter", "{fits}", "--blend", "0.3"], "per-frame technique"),
        (["--motion-adapter", "{fits}", "--context", "4", "--context-overlap", "4"], "must be below --context"),
        (["--motion-adapter", "{fits}", "--context", "40"], "longer than the motion adapter's 32 frames"),
    ],
)
def test_bad_motion_input_is_one_line_and_exit_2(adapters, clips, tmp_path, options, words):
    from safetensors.torch import save_file

    save_file({"weight": torch.zeros(2)}, str(tmp_path / "not-an-adapter.safetensors"))
    options = [option.format(fits=adapters / "fits", narrow=adapters / "narrow", file=tmp_path / "not-an-adapter.safetensors")
               for option in options]  # fmt: skip
    args = ["stylize", str(clips["plain"]), str(tmp_path / "out.mp4"), "--model", "tiny", "--prompt", "x",
            "--max-side", "64", "--steps", "2", "-q", *options]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, (result.stderr, result.exception)
    assert len(result.stderr.strip().splitlines()) == 1 and words in result.stderr, result.stderr
    assert not (tmp_path / "out.mp4").exists()


def test_image_and_motion_loras_fuse_into_the_motion_unet(motion_parts, adapters, tmp_path):
    from diffusers import StableDiffusionPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    from helpers import write_tiny_lora

    # a motion LoRA (as guoyww's camera-motion LoRAs are): layers on the motion modules' attention only
    unet = load_parts("tiny", "cpu", "fp32", motion_adapter=str(adapters / "fits")).unet
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=r".*motion_modules.*\.(to_q|to_k|to_v)",
                                    init_lora_weights=False))  # fmt: skip
    StableDiffusionPipeline.save_lora_weights(tmp_path / "motion-lora", unet_lora_layers=get_peft_model_state_dict(unet))
    loras = [str(write_tiny_lora(tmp_path / "lora")), str(tmp_path / "motion-lora" / "pytorch_lora_weights.safetensors")]
    parts = load_parts("tiny", "cpu", "fp32", motion_adapter=str(adapters / "fits"), lora=loras)
    plain, fused = motion_parts.unet.state_dict(), parts.unet.state_dict()
    motion = "down_blocks.0.motion_modules.0.transformer_blocks.0.attn1.to_q.weight"
    image = "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.weight"
    assert not torch.equal(plain[motion], fused[motion]) and not torch.equal(plain[image], fused[image])
    assert all(not key.endswith(("lora_A.weight", "lora_B.weight")) for key in fused)  # fused, not attached
