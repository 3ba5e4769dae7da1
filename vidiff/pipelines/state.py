"""The temporal state one window hands the next, and its codec for the work folder.

State is explicit, passed in and handed back, never hidden in the processor: that is what lets a
run stop, resume bit-identically, or (later) continue a shot on another machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..temporal.attention import CrossFrameMemory


@dataclass
class TemporalState:
    """What the next frame needs from the frames before it; empty at the start of each shot."""

    source: np.ndarray | None = None  # the previous source frame: flow and cuts are measured on sources
    image: np.ndarray | None = None  # the previous stylised frame
    latents: torch.Tensor | None = None  # the previous frame's final denoised latents
    noise: torch.Tensor | None = None  # the previous frame's starting noise
    anchor: np.ndarray | None = None  # the shot's first stylised frame: the colour reference
    stylized_source: np.ndarray | None = None  # the source of the last frame stylised (not skipped)


@dataclass
class FrameResult:
    image: np.ndarray  # RGB uint8, (height, width, 3)
    state: TemporalState  # what the next frame needs
    new_shot: bool  # whether this frame began a shot (the first frame, or after a cut)


_ARRAYS = ("source", "image", "anchor", "stylized_source")
_TENSORS = ("latents", "noise")


def export_state(state: TemporalState, memory: CrossFrameMemory | None = None) -> dict:
    """`state` (and the cross-frame attention memory, when given) as plain CPU tensors."""
    data = {}
    for name, value in vars(state).items():
        if value is not None:
            data[name] = torch.from_numpy(value) if isinstance(value, np.ndarray) else value.cpu()
    if memory is not None:
        data["memory"] = memory.to_dict()
    return data


def import_state(data: dict, device: torch.device, memory: CrossFrameMemory | None = None) -> TemporalState:
    """The inverse of export_state: the state on `device`; `memory`, when given, is restored in place."""
    state = TemporalState(
        **{name: data[name].numpy() for name in _ARRAYS if name in data},
        **{name: data[name].to(device) for name in _TENSORS if name in data},
    )
    if memory is not None:
        memory.load(data.get("memory", {}), device)
    return state
