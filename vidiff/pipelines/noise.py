"""A frame's starting noise, as the noise setting asks: the generator's own draw, or the previous
frame's noise carried along the source's flow."""

from __future__ import annotations

import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor

from ..temporal.flow import downscale_flow
from ..temporal.noise import warp_noise_bandlimited

FIELD_FACTOR = 8  # warped noise's samples per latent pixel, each way, where it moves sample by sample: one per image pixel


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
    size = (FIELD_FACTOR * width, FIELD_FACTOR * height)
    field_flow, field_trusted = downscale_flow(flow, trusted, size)  # usually the image's own size already
    # a stream of its own: in this mode the frame's generator is seeded `seed` every frame
    fresh_generator = torch.Generator("cpu").manual_seed(seed + frame_index)
    white, fresh = torch.randn((2, *latents.shape[:2], size[1], size[0]), generator=fresh_generator)
    noise = warp_noise_bandlimited(
        prev_noise.float().cpu(), torch.from_numpy(field_flow), torch.from_numpy(field_trusted), white, fresh,
        FIELD_FACTOR,
    )  # fmt: skip
    return noise.to(device, dtype)
