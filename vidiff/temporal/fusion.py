"""Cross-frame latent fusion (Rerender-A-Video): a sampler step's estimate of the clean frame pulled
towards the previous output's latents, warped along the source's flow where it is trusted."""

from __future__ import annotations

import numpy as np
import torch

from .blending import warp_latents
from .flow import downscale_flow


def fusion_target(
    prev_latents: torch.Tensor, flow: np.ndarray, trusted: np.ndarray, weight: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The previous output latents (1, C, h, w) warped onto this frame, and the per-pixel fusion weight
    (`weight` where the flow is trusted, 0 elsewhere), both float32; `flow` and `trusted` at image size."""
    height, width = prev_latents.shape[-2:]
    small_flow, small_trusted = downscale_flow(flow, trusted, (width, height))
    target = warp_latents(prev_latents, torch.from_numpy(small_flow)).float()
    return target, torch.from_numpy(small_trusted).to(torch.float32)[None, None] * weight

