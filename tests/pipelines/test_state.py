"""The temporal state's codec: what the work folder saves comes back whole."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from vidiff.pipelines.state import TemporalState, export_state, import_state
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
