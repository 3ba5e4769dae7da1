"""Cross-frame latent fusion (Rerender-A-Video): a sampler step's estimate of the clean frame pulled
towards the previous output's latents, warped along the source's flow where it is trusted."""

from __future__ import annotations

import numpy as np
import torch

from .blending import warp_latents
from .flow import downscale_flow
from .noise import fourier_shift, global_shift

LOCAL_LEAST = 0.1  # latent pixels a frame: below this, local motion is the flow's jitter, left to the shared shift


def shift_latents(latents: torch.Tensor, dx: float, dy: float, pad: int = 8) -> torch.Tensor:
    """Latents (B, C, H, W) sampled at x + (dx, dy) by a Fourier (sinc) shift of their mirrored
    extension: lossless for any sub-pixel amount, so shifts frame after frame don't blur, as
    bicubic resampling does a little each time."""
    height, width = latents.shape[-2:]
    pad_y, pad_x = min(pad, height - 1), min(pad, width - 1)
    padded = torch.nn.functional.pad(latents.float(), (pad_x, pad_x, pad_y, pad_y), mode="reflect")
    shifted = fourier_shift(padded, dx, dy)
    return shifted[..., pad_y : pad_y + height, pad_x : pad_x + width].to(latents.dtype)


def fusion_target(
    prev_latents: torch.Tensor, flow: np.ndarray, trusted: np.ndarray, weight: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The previous output latents (1, C, h, w) warped onto this frame, and the per-pixel fusion weight
    (`weight` where the flow is trusted, 0 elsewhere), both float32; `flow` and `trusted` at image size.

    The motion the frame shares (the median of the trusted flow) moves the latents by a lossless
    Fourier shift; only local motion of `LOCAL_LEAST` latent pixels or more is resampled (bicubic).
    Resampling every frame softened fine texture over long slow shots: each frame's target was the
    previous output resampled at a sub-pixel offset, and the loss compounded.
    """
    height, width = prev_latents.shape[-2:]
    small_flow, small_trusted = downscale_flow(flow, trusted, (width, height))
    small_flow, small_trusted = torch.from_numpy(small_flow), torch.from_numpy(small_trusted)
    dx, dy = global_shift(small_flow, small_trusted)
    target = shift_latents(prev_latents.float().cpu(), dx, dy)  # in float64 inside: on the CPU, any device
    rest = small_flow - torch.tensor([dx, dy])
    local = rest.norm(dim=-1) >= LOCAL_LEAST
    if local.any():
        target = torch.where(local, warp_latents(target, rest), target)
    return target.to(prev_latents.device), small_trusted.to(torch.float32)[None, None] * weight
