"""SDXL: two text encoders, pooled embeddings and size conditioning, checked against diffusers'
own StableDiffusionXLImg2ImgPipeline on a tiny SDXL built offline."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionXLImg2ImgPipeline

from helpers import reference_frame, random_frames
from vidiff.settings.config import Config
from vidiff.pipelines.prompts import PromptEncoder
from vidiff.pipelines.samplers import make_scheduler
from vidiff.pipelines.img2img import Img2ImgProcessor


def reference_xl(parts, scheduler: str) -> StableDiffusionXLImg2ImgPipeline:
    pipe = StableDiffusionXLImg2ImgPipeline(
        vae=parts.vae,
        text_encoder=parts.text_encoder,
        text_encoder_2=parts.text_encoder_2,
        tokenizer=parts.tokenizer,
        tokenizer_2=parts.tokenizer_2,
        unet=parts.unet,
        scheduler=make_scheduler(scheduler, parts.scheduler_config),
        force_zeros_for_empty_prompt=parts.force_zeros_for_empty_prompt,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def reference_xl_frame(pipe, frame: np.ndarray, config: Config) -> np.ndarray:
    # diffusers zeroes the unconditional side only when no negative prompt is given at all
    return reference_frame(pipe, frame, config, negative_prompt=config.negative_prompt or None)


@pytest.mark.parametrize(
    "scheduler, negative, guidance",
    [("dpm++2m", "blurry", 7.5), ("euler-a", "", 5.0), ("ddim", "", 1.0)],
)
def test_sdxl_matches_diffusers_img2img(tiny_xl, scheduler, negative, guidance):
    config = Config(
        prompt="a wooden carving of a fox", negative_prompt=negative, strength=0.6, steps=6,
        guidance=guidance, scheduler=scheduler, seed=3,
    )  # fmt: skip
    stylizer = Img2ImgProcessor(tiny_xl, config)
    pipe = reference_xl(tiny_xl, scheduler)
    for index, frame in enumerate(random_frames(2, size=(64, 40))):
        ours = stylizer(frame, index).image
        theirs = reference_xl_frame(pipe, frame, config)
        assert ours.shape == theirs.shape == frame.shape
        assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1
        assert ours.std() > 1 and np.abs(ours.astype(int) - frame.astype(int)).mean() > 1


def test_sdxl_prompt_embedding_has_both_encoders_and_a_pooled_part(tiny_xl):
    embedding = PromptEncoder(tiny_xl)("a marble statue")
    width_1 = tiny_xl.text_encoder.config.hidden_size
    width_2 = tiny_xl.text_encoder_2.config.hidden_size
    assert embedding.hidden.shape == (1, 77, width_1 + width_2)
    assert embedding.pooled.shape == (1, tiny_xl.text_encoder_2.config.projection_dim)


def test_sdxl_empty_negative_prompt_is_zeros_only_when_the_config_says_so(tiny_xl):
    encoder = PromptEncoder(tiny_xl)
    zeroed = encoder.negative("")
    assert not zeroed.hidden.any() and not zeroed.pooled.any()
    assert encoder.negative("blurry").hidden.abs().sum() > 0
    tiny_xl.force_zeros_for_empty_prompt = False
    try:
        assert torch.equal(PromptEncoder(tiny_xl).negative("").hidden, encoder("").hidden)
    finally:
        tiny_xl.force_zeros_for_empty_prompt = True


def test_sdxl_size_conditioning_is_the_frame_uncropped(tiny_xl):
    config = Config(prompt="oil painting", strength=0.5, steps=4, seed=1)
    stylizer = Img2ImgProcessor(tiny_xl, config)
    values = stylizer.timeline.at(0)

    def time_ids(height, width):
        frame = np.zeros((height, width, 3), np.uint8)
        return stylizer.conditioner.prepare([frame], [values], True).added["time_ids"]

    small, large = time_ids(40, 64), time_ids(48, 80)
    assert small.tolist()[0] == [40, 64, 0, 0, 40, 64] and large.tolist()[0] == [48, 80, 0, 0, 48, 80]
