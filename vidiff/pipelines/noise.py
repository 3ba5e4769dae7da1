"""A frame's starting noise, as the noise setting asks: the generator's own draw, or the previous
frame's noise carried along the source's flow."""

from __future__ import annotations

import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor

from ..temporal.flow import downscale_flow
from ..temporal.noise import warp_noise_bandlimited

# local motion slower than this (latent pixels a frame) leaves the noise where the shared motion
# puts it: on the trained tiny model's zoom (benchmarks/noise_warp.py) warp error 9.22 moving all of
# it, 6.21 at 0.5, 6.10 at 0.75 (fixed noise: 6.10); on the object clip (1 px a frame) 3.33, 3.28, 3.45
LEAST = 0.5
FIELD_FACTOR = 8  # warped noise's samples per latent pixel, each way, where it moves sample by sample


def prepare_noise(
    latents: torch.Tensor,
    generator: torch.Generator,
    frame_index: int,
    seed: int,
    mode: str,
    prev_noise: torch.Tensor | None,
    flow: np.ndarray | None,
    trusted: np.ndarray | None,
) -> torch.Tensor:
    """The frame's starting noise; drawn after the VAE's sample from the same generator, as diffusers does."""
    device, dtype = latents.device, latents.dtype
    if mode != "warped" or prev_noise is None or flow is None:
        return randn_tensor(latents.shape, generator=generator, device=device, dtype=dtype)
    height, width = latents.shape[-2:]
    small_flow, small_trusted = downscale_flow(flow, trusted, (width, height))
    # a stream of its own: in this mode the frame's generator is seeded `seed` every frame
    fresh_generator = torch.Generator("cpu").manual_seed(seed + frame_index)
    field = (2, *latents.shape[:2], FIELD_FACTOR * height, FIELD_FACTOR * width)
    white, fresh = torch.randn(field, generator=fresh_generator)
    noise = warp_noise_bandlimited(
        prev_noise.float().cpu(), torch.from_numpy(small_flow), torch.from_numpy(small_trusted), white, fresh,
        FIELD_FACTOR, LEAST,
    )  # fmt: skip
    return noise.to(device, dtype)
