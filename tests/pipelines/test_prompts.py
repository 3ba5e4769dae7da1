"""Prompt mixing on the text encoder's output embeddings: the identities the issue asks for, frame by frame."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import random_frames
from vidiff.settings.config import Config
from vidiff.pipelines.prompts import PromptEncoder
from vidiff.pipelines.img2img import Img2ImgProcessor

BASE = dict(steps=6, strength=0.5, guidance=7.5, scheduler="euler", seed=4)


def stylise(parts, frame, index=0, fps=None, **settings) -> np.ndarray:
    config = Config(**{"prompt": "a rabbit", **BASE, **settings}).validate()
    with Img2ImgProcessor(parts, config, fps) as stylizer:
        return stylizer(frame, index).image.astype(int)


def encode(parts, text: str) -> torch.Tensor:
    """The text encoder's last hidden states for `text`, computed here, independently of vidiff."""
    tokens = parts.tokenizer(text, padding="max_length", max_length=parts.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt")  # fmt: skip
    with torch.no_grad():
        return parts.text_encoder(tokens.input_ids)[0]


def conditioning_seen_by_unet(parts, config: Config, frame) -> torch.Tensor:
    seen = []

    def record(module, args, kwargs):
        seen.append(kwargs["encoder_hidden_states"].clone())

    hook = parts.unet.register_forward_pre_hook(record, with_kwargs=True)
    try:
        with Img2ImgProcessor(parts, config) as stylizer:
            stylizer(frame, 0)
    finally:
        hook.remove()
    return seen[0]


def test_weight_0_is_the_prompt_alone_and_weight_1_the_other_text_alone(tiny):
    frame = random_frames(1)[0]
    rabbit, frog = stylise(tiny, frame), stylise(tiny, frame, prompt="a frog")
    assert np.abs(rabbit - frog).max() > 1  # the two prompts do give different frames
    assert np.abs(stylise(tiny, frame, mix=("a frog:0",)) - rabbit).max() <= 1
    assert np.abs(stylise(tiny, frame, mix=("a frog:1",)) - frog).max() <= 1
    half = stylise(tiny, frame, mix=("a frog:0.5",))
    assert np.abs(half - rabbit).max() > 0 and np.abs(half - frog).max() > 0


def test_the_unet_sees_the_weighted_sum_of_embeddings(tiny):
    frame = random_frames(1)[0]
    config = Config(prompt="a rabbit", negative_prompt="blurry", mix=("a frog:0.3", "a cat:0.2"),
                    negative_mix=("dark:0.4",), **BASE).validate()  # fmt: skip
    seen = conditioning_seen_by_unet(tiny, config, frame)
    expected_text = 0.5 * encode(tiny, "a rabbit") + 0.3 * encode(tiny, "a frog") + 0.2 * encode(tiny, "a cat")
    expected_uncond = 0.6 * encode(tiny, "blurry") + 0.4 * encode(tiny, "dark")
    assert seen.shape[0] == 2  # CFG: unconditional first, as diffusers orders it
    torch.testing.assert_close(seen[1:], expected_text, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(seen[:1], expected_uncond, rtol=1e-5, atol=1e-5)


def test_prompt_travel_is_the_prompt_at_keyframes_and_a_mix_between(tiny):
    frame = random_frames(1)[0]
    travel = "0:a rabbit | 4:a frog"
    assert np.abs(stylise(tiny, frame, 0, prompt=travel) - stylise(tiny, frame, 0)).max() <= 1
    assert np.abs(stylise(tiny, frame, 4, prompt=travel) - stylise(tiny, frame, 4, prompt="a frog")).max() <= 1
    # halfway between the keyframes, the embeddings are 50/50: the same as mixing the two at 0.5
    midway = stylise(tiny, frame, 2, prompt=travel)
    assert np.abs(midway - stylise(tiny, frame, 2, mix=("a frog:0.5",))).max() <= 1
    # with step interpolation the prompt switches at the keyframe instead
    held = stylise(tiny, frame, 3, prompt=travel, interpolation="step")
    assert np.abs(held - stylise(tiny, frame, 3)).max() <= 1


@pytest.mark.parametrize("guidance", [7.5, 1.0])
def test_a_scheduled_mix_weight_hits_its_keyframes(tiny, guidance):
    frame = random_frames(1)[0]
    mixed = ("a frog:0:0, 10:1",)
    start = stylise(tiny, frame, 0, mix=mixed, guidance=guidance)
    end = stylise(tiny, frame, 10, mix=mixed, guidance=guidance)
    assert np.abs(start - stylise(tiny, frame, 0, guidance=guidance)).max() <= 1
    assert np.abs(end - stylise(tiny, frame, 10, prompt="a frog", guidance=guidance)).max() <= 1


def test_sdxl_mixing_carries_the_pooled_embeddings(tiny_xl):
    frame = random_frames(1)[0]
    rabbit, frog = stylise(tiny_xl, frame), stylise(tiny_xl, frame, prompt="a frog")
    assert np.abs(rabbit - frog).max() > 1
    assert np.abs(stylise(tiny_xl, frame, mix=("a frog:0",)) - rabbit).max() <= 1
    assert np.abs(stylise(tiny_xl, frame, mix=("a frog:1",)) - frog).max() <= 1
    seen = []
    hook = tiny_xl.unet.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs["added_cond_kwargs"]["text_embeds"].clone()), with_kwargs=True
    )
    try:
        config = Config(prompt="a rabbit", negative_prompt="blurry", mix=("a frog:0.25",), **BASE).validate()
        with Img2ImgProcessor(tiny_xl, config) as stylizer:
            stylizer(frame, 0)
    finally:
        hook.remove()
    encoder = PromptEncoder(tiny_xl)
    expected = 0.75 * encoder("a rabbit").pooled + 0.25 * encoder("a frog").pooled
    torch.testing.assert_close(seen[0][1:], expected, rtol=1e-5, atol=1e-5)
