"""The temporal state's codec: what the work folder saves comes back whole."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from helpers import pan, run_frames, textured
from vidiff.pipelines.img2img import Img2ImgProcessor
from vidiff.pipelines.state import TemporalState, export_state, import_state
from vidiff.settings.config import Config
from vidiff.temporal.attention import CrossFrameMemory


def test_every_field_of_the_state_survives_export_and_import():
    rng = np.random.default_rng(0)
    values = {}
    for field in dataclasses.fields(TemporalState):
        if field.name in ("latents", "noise", "noise_offset"):
            values[field.name] = torch.randn(1, 4, 6, 8) if field.name != "noise_offset" else torch.randn(6, 8, 2)
        else:
            values[field.name] = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    state = TemporalState(**values)
    back = import_state(export_state(state), torch.device("cpu"))
    for name, value in values.items():
        got = getattr(back, name)
        assert got is not None, name
        assert (torch.equal(got, value) if isinstance(value, torch.Tensor) else np.array_equal(got, value)), name


def test_the_attention_memory_survives_export_and_import():
    memory = CrossFrameMemory()
    memory.anchor = {("up_blocks.0.attn1", 0): torch.randn(2, 16, 8)}
    memory.previous = {("up_blocks.0.attn1", 0): torch.randn(2, 16, 8)}
    data = export_state(TemporalState(), memory)
    restored = CrossFrameMemory()
    import_state(data, torch.device("cpu"), restored)
    for part in ("anchor", "previous"):
        assert torch.equal(getattr(restored, part)[("up_blocks.0.attn1", 0)], getattr(memory, part)[("up_blocks.0.attn1", 0)])
    # right after a shot's first frame the previous frame is the anchor, saved once and restored as one
    memory.previous = memory.anchor
    restored = CrossFrameMemory()
    import_state(export_state(TemporalState(), memory), torch.device("cpu"), restored)
    assert restored.previous is restored.anchor


def zoom(frames: int, rate: float, size=(128, 96)) -> list[np.ndarray]:
    """A textured picture magnified by `rate` more each frame about its centre."""
    import cv2

    width, height = size
    picture = textured(height, width, seed=5)
    return [cv2.warpAffine(picture, cv2.getRotationMatrix2D((width / 2, height / 2), 0.0, (1 + rate) ** t), size,
                           flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT) for t in range(frames)]  # fmt: skip


@pytest.mark.parametrize("motion", ["pan", "zoom"])
def test_warped_noise_resumed_from_the_exported_state_gives_the_same_frames_bit_for_bit(tiny, motion):
    """A sub-pixel pan (the noise moved by a Fourier shift) and a zoom (its edges moved sample by
    sample): a run stopped after three frames and resumed from its exported state is the run itself."""
    frames = pan(6, dx=3, dy=1, size=(128, 96)) if motion == "pan" else zoom(6, 0.1)
    config = Config(prompt="a wooden carving", steps=4, strength=0.5, seed=3, noise="warped", fusion=0.5)
    whole = run_frames(tiny, frames, **vars(config))
    with Img2ImgProcessor(tiny, config) as stylizer:
        state = None
        for index in range(3):
            state = stylizer(frames[index], index, state).state
        saved = stylizer.export_state(state)
    resumed = []
    with Img2ImgProcessor(tiny, config) as stylizer:
        state = stylizer.import_state(saved)
        for index in range(3, 6):
            result = stylizer(frames[index], index, state)
            state = result.state
            resumed.append(result)
    for before, after in zip(whole[3:], resumed):
        assert np.array_equal(before.image, after.image)
        assert torch.equal(before.state.noise, after.state.noise)
    # the noise did move: not the first frame's
    assert not torch.allclose(whole[-1].state.noise, whole[0].state.noise)
