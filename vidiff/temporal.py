"""Temporal tools as small pure tensor functions: no I/O and no models inside."""

from __future__ import annotations

import torch


def blend_latents(prev: torch.Tensor, cur: torch.Tensor, weight: float) -> torch.Tensor:
    """Mix the previous frame's final latents into the current frame's: (1 - weight)·cur + weight·prev."""
    return torch.lerp(cur, prev.to(cur.dtype), weight)


def noise_seed(seed: int, frame_index: int, mode: str) -> int:
    """The seed of a frame's noise: the same for every frame when 'fixed', seed + index when 'per-frame'."""
    return seed if mode == "fixed" else seed + frame_index
