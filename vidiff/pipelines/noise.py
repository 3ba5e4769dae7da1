"""A frame's starting noise, as the noise setting asks: the generator's own draw, or the previous
frame's noise carried along the source's flow."""

from __future__ import annotations

import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor

from ..temporal.flow import downscale_flow
from ..temporal.noise import warp_noise


def prepare_noise(
    latents: torch.Tensor,
    generator: torch.Generator,
    frame_index: int,
    seed: int,
    mode: str,
    prev_noise: torch.Tensor | None,
    prev_offset: torch.Tensor | None,
    flow: np.ndarray | None,
    trusted: np.ndarray | None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The frame's starting noise and (warped) each sample's sub-pixel offset; drawn after the VAE's
    sample from the same generator, as diffusers does."""
    device, dtype = latents.device, latents.dtype
    if mode == "warped" and prev_noise is not None and flow is not None:
        height, width = latents.shape[-2:]
        small_flow, small_trusted = downscale_flow(flow, trusted, (width, height))
        fresh_generator = torch.Generator("cpu").manual_seed(seed + frame_index)
        fresh = randn_tensor(latents.shape, generator=fresh_generator, device=device, dtype=dtype)
        return warp_noise(prev_noise, torch.from_numpy(small_flow), torch.from_numpy(small_trusted), fresh, prev_offset)
    return randn_tensor(latents.shape, generator=generator, device=device, dtype=dtype), None
