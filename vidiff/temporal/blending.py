"""Carrying the previous output into the next frame: latent and image blends, latent warping."""

from __future__ import annotations

import numpy as np
import torch


def blend_latents(prev: torch.Tensor, cur: torch.Tensor, weight: float | torch.Tensor) -> torch.Tensor:
    """(1 - weight)·cur + weight·prev; the weight a number, or a tensor (per pixel) of cur's dtype."""
    return torch.lerp(cur, prev.to(cur.dtype), weight)


def warp_latents(latents: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample latents (B, C, H, W) at x + flow(x), bicubic (bilinear blurs more, and repeated warps add it up)."""
    height, width = latents.shape[-2:]
    flow = flow.to(latents.device, torch.float32)
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=torch.float32, device=latents.device),
        torch.arange(width, dtype=torch.float32, device=latents.device),
        indexing="ij",
    )
    # grid_sample's coordinates run from -1 to 1 across the pixel centres (align_corners)
    grid_x = (xs + flow[..., 0]) * 2 / max(width - 1, 1) - 1
    grid_y = (ys + flow[..., 1]) * 2 / max(height - 1, 1) - 1
    grid = torch.stack([grid_x, grid_y], dim=-1).expand(latents.shape[0], -1, -1, -1)
    warped = torch.nn.functional.grid_sample(
        latents.float(), grid, mode="bicubic", padding_mode="border", align_corners=True
    )
    return warped.to(latents.dtype)


def flow_blend(frame: np.ndarray, warped_prev: np.ndarray, trusted: np.ndarray, weight: float) -> np.ndarray:
    """Blend the previous stylised frame, warped onto this one, into it where the flow is trusted (float RGB)."""
    mask = trusted.astype(np.float32)[..., None] * weight
    return frame.astype(np.float32) * (1 - mask) + warped_prev.astype(np.float32) * mask
