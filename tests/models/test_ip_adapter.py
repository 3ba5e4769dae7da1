"""Style images (IP-Adapter): frames equal diffusers' img2img pipelines given the same ip_adapter_image
(SD 1.x and SDXL), and AnimateDiff's with a motion adapter; the scale takes keyframes; bad input is one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from diffusers import AnimateDiffVideoToVideoPipeline, StableDiffusionXLImg2ImgPipeline
from diffusers.models.attention_processor import IPAdapterAttnProcessor
from diffusers.models.embeddings import ImageProjection
from PIL import Image
from safetensors.torch import save_file
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from helpers import pan, random_frames, reference_pipeline
from vidiff.cli import cli
from vidiff.models.loading import load_parts
from vidiff.models.tiny import tiny_motion_adapter, tiny_parts
from vidiff.pipelines.img2img import Img2ImgProcessor
from vidiff.pipelines.motion import MotionProcessor
from vidiff.pipelines.samplers import make_scheduler
from vidiff.settings.config import Config


def write_tiny_ip_adapter(root: Path, kind: str = "sd1", seed: int = 0) -> Path:
    """A random IP-Adapter for the tiny model of `kind`, laid out as h94/IP-Adapter (adapter file and
    image_encoder folder), built as diffusers' tests build theirs but with random projection weights."""
    unet = tiny_parts(kind=kind).unet
    width = unet.config.cross_attention_dim
    subfolder, weight = {"sd1": ("models", "ip-adapter_sd15.safetensors"),
                         "sdxl": ("sdxl_models", "ip-adapter_sdxl.safetensors")}[kind]  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
            hidden_size=32, projection_dim=32, num_hidden_layers=2, num_attention_heads=4, image_size=32,
            intermediate_size=37, patch_size=4,
        ))  # fmt: skip
        tensors, key = {}, 1
        for name in unet.attn_processors:
            if name.endswith("attn1.processor"):
                continue  # self-attention: IP-Adapter's layers are on the cross-attention only
            block = name.split(".")[0]
            index = 0 if block == "mid_block" else int(name.split(".")[1])
            channels = list(unet.config.block_out_channels)
            hidden = channels[-1] if block == "mid_block" else (channels[::-1] if block == "up_blocks" else channels)[index]
            layer = IPAdapterAttnProcessor(hidden_size=hidden, cross_attention_dim=width).state_dict()
            tensors[f"ip_adapter.{key}.to_k_ip.weight"] = torch.randn_like(layer["to_k_ip.0.weight"]) * 0.2
            tensors[f"ip_adapter.{key}.to_v_ip.weight"] = torch.randn_like(layer["to_v_ip.0.weight"]) * 0.2
            key += 2  # the adapter numbers every attention layer: the cross-attention ones are the odd
        projection = ImageProjection(cross_attention_dim=width, image_embed_dim=32, num_image_text_embeds=4).state_dict()
        tensors.update({"image_proj.proj.weight": projection["image_embeds.weight"],
                        "image_proj.proj.bias": projection["image_embeds.bias"],
                        "image_proj.norm.weight": projection["norm.weight"], "image_proj.norm.bias": projection["norm.bias"]})  # fmt: skip
    (root / subfolder).mkdir(parents=True, exist_ok=True)
    save_file({name: value.contiguous() for name, value in tensors.items()}, str(root / subfolder / weight))
    encoder.save_pretrained(root / subfolder / "image_encoder")
    return root


@pytest.fixture(scope="module")
def adapters(tmp_path_factory):
    root = tmp_path_factory.mktemp("ip")
    write_tiny_ip_adapter(root / "ipa")
    write_tiny_ip_adapter(root / "ipa", kind="sdxl")
    tiny_motion_adapter().save_pretrained(root / "motion")
    Image.fromarray(random_frames(1, size=(40, 40))[0]).save(root / "look.png")
    Image.fromarray(255 - random_frames(1, size=(40, 40))[0]).save(root / "other.png")
    return root


def _config(adapters, **settings) -> Config:
    return Config(prompt="a wooden carving", steps=4, strength=0.6, seed=3, guidance=7.5, max_side=64,
                  style_image=str(adapters / "look.png") + ":0.7", ip_adapter=str(adapters / "ipa")).replace(**settings)  # fmt: skip


def _close(ours, theirs) -> None:
    for a, b in zip(ours, theirs, strict=True):
        assert np.abs(a.astype(int) - np.asarray(b).astype(int)).max() <= 2


def _style(adapters) -> Image.Image:
    return Image.open(adapters / "look.png").convert("RGB")


@pytest.mark.parametrize("scheduler", ["ddim", "euler-a"])
def test_style_image_matches_diffusers_img2img_with_ip_adapter_image(adapters, scheduler):
    config = _config(adapters, scheduler=scheduler)
    parts = load_parts(config.replace(model="tiny", device="cpu", dtype="fp32"))
    frames = random_frames(2)
    with Img2ImgProcessor(parts, config) as stylizer:
        ours = [stylizer(frame, index).image for index, frame in enumerate(frames)]

    pipe = reference_pipeline(parts, scheduler)
    pipe.register_modules(image_encoder=parts.image_encoder, feature_extractor=parts.feature_extractor)
    pipe.set_ip_adapter_scale(0.7)
    theirs = [pipe(prompt=config.prompt, negative_prompt=config.negative_prompt, image=Image.fromarray(frame),
                   ip_adapter_image=_style(adapters), strength=config.strength, num_inference_steps=config.steps,
                   guidance_scale=config.guidance, generator=torch.Generator("cpu").manual_seed(config.seed)).images[0]
              for frame in frames]  # fmt: skip
    _close(ours, theirs)
    # the style image acts: another picture gives other frames
    other = config.replace(style_image=str(adapters / "other.png") + ":0.7")
    with Img2ImgProcessor(parts, other) as stylizer:
        assert not np.array_equal(stylizer(frames[0], 0).image, ours[0])


def test_style_image_matches_diffusers_sdxl_img2img(adapters):
    config = _config(adapters, scheduler="euler")
    parts = load_parts(config.replace(model="tiny-sdxl", device="cpu", dtype="fp32"))
    frame = random_frames(1)[0]
    with Img2ImgProcessor(parts, config) as stylizer:
        ours = stylizer(frame, 0).image
    pipe = StableDiffusionXLImg2ImgPipeline(
        vae=parts.vae, text_encoder=parts.text_encoder, text_encoder_2=parts.text_encoder_2, tokenizer=parts.tokenizer,
        tokenizer_2=parts.tokenizer_2, unet=parts.unet, scheduler=make_scheduler("euler", parts.scheduler_config),
        image_encoder=parts.image_encoder, feature_extractor=parts.feature_extractor,
    )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    pipe.set_ip_adapter_scale(0.7)
    # diffusers zeroes the unconditional text only when no negative prompt is given at all
    theirs = pipe(prompt=config.prompt, negative_prompt=config.negative_prompt or None, image=Image.fromarray(frame),
                  ip_adapter_image=_style(adapters), strength=config.strength, num_inference_steps=config.steps,
                  guidance_scale=config.guidance, generator=torch.Generator("cpu").manual_seed(config.seed)).images[0]  # fmt: skip
    _close([ours], [theirs])


def test_style_image_with_a_motion_adapter_matches_animatediff(adapters):
    config = _config(adapters, scheduler="ddim", motion_adapter=str(adapters / "motion"), context=8)
    parts = load_parts(config.replace(model="tiny", device="cpu", dtype="fp32"))
    frames = pan(5, 2, size=(64, 48))
    ours = [result.image for result in MotionProcessor(parts, config, 24.0, [0]).process(frames, 0, None)]
    pipe = AnimateDiffVideoToVideoPipeline(
        vae=parts.vae, text_encoder=parts.text_encoder, tokenizer=parts.tokenizer, unet=parts.unet, motion_adapter=None,
        scheduler=make_scheduler("ddim", parts.scheduler_config), image_encoder=parts.image_encoder,
        feature_extractor=parts.feature_extractor,
    )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    pipe.set_ip_adapter_scale(0.7)
    theirs = pipe(
        video=[Image.fromarray(frame) for frame in frames], ip_adapter_image=_style(adapters), prompt=config.prompt,
        negative_prompt=config.negative_prompt, strength=config.strength, num_inference_steps=config.steps,
        guidance_scale=config.guidance, height=48, width=64, generator=torch.Generator("cpu").manual_seed(config.seed),
        output_type="np",
    ).frames[0]  # fmt: skip
    _close(ours, [(np.asarray(frame) * 255).round().astype(np.uint8) for frame in theirs])


def test_the_scale_takes_keyframes(adapters):
    """Frame 2 with the scale keyframed to 0.7 there is frame 2 with a constant 0.7; frame 0, at 0, is not."""
    frames = random_frames(3)
    keyed = _config(adapters, style_image=str(adapters / "look.png") + ":0:0, 2:0.7", batch_size=3)
    parts = load_parts(keyed.replace(model="tiny", device="cpu", dtype="fp32"))
    with Img2ImgProcessor(parts, keyed, batch_size=3) as stylizer:
        ours = [result.image for result in stylizer.process(frames, 0)]
    with Img2ImgProcessor(parts, _config(adapters)) as stylizer:
        constant = stylizer(frames[2], 2).image
    with Img2ImgProcessor(parts, _config(adapters, style_image=str(adapters / "look.png") + ":0")) as stylizer:
        off = stylizer(frames[0], 0).image
    assert np.array_equal(ours[2], constant) and np.array_equal(ours[0], off)
    assert not np.array_equal(constant, Img2ImgProcessor(parts, _config(adapters, style_image=str(adapters / "look.png") + ":0"))(frames[2], 2).image)


@pytest.mark.parametrize(
    "options, words",
    [
        (["--style-image", "no/such/look.png"], "--style-image no/such/look.png not found"),
        (["--style-image", "{look}", "--ip-adapter", "./no/such/adapter"], "--ip-adapter ./no/such/adapter not found"),
        (["--style-image", "{look}", "--ip-adapter", "{root}"], "--ip-adapter {root} could not be loaded"),
        (["--style-image", "{look}", "--cross-frame-attn"], "replaces the attention layers"),
    ],
)
def test_bad_style_input_is_one_line_and_exit_2(adapters, clips, tmp_path, options, words):
    values = {"look": adapters / "look.png", "root": tmp_path}
    options = [option.format(**values) for option in options]
    args = ["stylize", str(clips["plain"]), str(tmp_path / "out.mp4"), "--model", "tiny", "--prompt", "x",
            "--max-side", "64", "--steps", "2", "-q", "--ip-adapter", str(adapters / "ipa"), *options]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, (result.stderr, result.exception)
    assert len(result.stderr.strip().splitlines()) == 1 and words.format(**values) in result.stderr, result.stderr
    assert not (tmp_path / "out.mp4").exists()


def test_the_command_line_runs_motion_windows_with_a_style_image(adapters, clips, tmp_path):
    from helpers import read_frames

    out = tmp_path / "out.mp4"
    args = ["stylize", str(clips["plain"]), str(out), "--model", "tiny", "--prompt", "x", "--max-side", "64",
            "--steps", "2", "-q", "--motion-adapter", str(adapters / "motion"), "--context", "4", "--context-overlap",
            "1", "--style-image", f"{adapters / 'look.png'}:0:0.2, 4:0.8", "--ip-adapter", str(adapters / "ipa")]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, (result.stderr, result.exception)
    assert len(read_frames(out)) == len(read_frames(clips["plain"])) == 6
