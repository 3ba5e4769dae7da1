"""Temporal tools as small pure functions on tensors and arrays: no I/O and no models inside."""

from __future__ import annotations

import cv2
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


def noise_seed(seed: int, frame_index: int, mode: str) -> int:
    """The seed of a frame's noise: seed + index for 'per-frame', the seed itself otherwise."""
    return seed + frame_index if mode == "per-frame" else seed


def flow_blend(frame: np.ndarray, warped_prev: np.ndarray, trusted: np.ndarray, weight: float) -> np.ndarray:
    """Blend the previous stylised frame, warped onto this one, into it where the flow is trusted (float RGB)."""
    mask = trusted.astype(np.float32)[..., None] * weight
    return frame.astype(np.float32) * (1 - mask) + warped_prev.astype(np.float32) * mask


def match_colors(image: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Give `image` the per-channel LAB mean and spread of `reference` (Reinhard et al. 2001), as Deforum does."""
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(np.float32)
    ref = cv2.cvtColor(reference, cv2.COLOR_RGB2LAB).astype(np.float32)
    mean, std = lab.mean(axis=(0, 1)), lab.std(axis=(0, 1))
    ref_mean, ref_std = ref.mean(axis=(0, 1)), ref.std(axis=(0, 1))
    matched = (lab - mean) * (ref_std / np.maximum(std, 1e-3)) + ref_mean
    # round, not truncate: truncation darkens every matched frame a little, itself a flicker
    return cv2.cvtColor(np.rint(matched).clip(0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)


def warp_noise(
    prev_noise: torch.Tensor,
    flow: torch.Tensor,
    trusted: torch.Tensor,
    fresh: torch.Tensor,
    prev_offset: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Carry the previous frame's noise along the flow; pixels it can't fill take `fresh` noise.

    Nearest-neighbour transport in which every previous sample is used at most once (the first
    pixel to claim it keeps it; the others, and untrusted pixels, get fresh samples), so the result
    stays i.i.d. unit Gaussian, unlike bilinear warping, which averages samples and shrinks the
    variance. Each sample also carries the sub-pixel offset (H, W, 2) between where it sits and
    where the motion has taken it, so slow motion adds up instead of being rounded away.
    `flow` is (H, W, 2) in latent pixels, `trusted` (H, W) bool; noise is (B, C, H, W).
    Returns the new noise and offsets. A simpler cousin of "How I Warped Your Noise" (Chang et al.,
    ICLR 2024): samples move whole pixels at a time rather than being split over sub-pixel areas.
    """
    height, width = flow.shape[:2]
    if prev_offset is None:
        prev_offset = torch.zeros(height, width, 2)
    prev_offset = prev_offset.to(flow.dtype)
    ys, xs = torch.meshgrid(torch.arange(height, dtype=flow.dtype), torch.arange(width, dtype=flow.dtype), indexing="ij")
    # where each pixel's content was in the previous frame; the sample taken is the one whose true
    # position (its pixel plus its carried offset) is nearest that, among the 3x3 pixels around it
    # (the pixel itself first, so that a tie keeps a sample where it is)
    want_x, want_y = xs + flow[..., 0], ys + flow[..., 1]
    near_x, near_y = torch.floor(want_x + 0.5).long(), torch.floor(want_y + 0.5).long()
    best = torch.full((height, width), float("inf"), dtype=flow.dtype)
    src_x, src_y = near_x.clone(), near_y.clone()
    for dy, dx in [(0, 0)] + [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]:
        cx, cy = near_x + dx, near_y + dy
        inside = (cx >= 0) & (cx < width) & (cy >= 0) & (cy < height)
        cx_in, cy_in = cx.clamp(0, width - 1), cy.clamp(0, height - 1)
        dist_x = cx_in + prev_offset[cy_in, cx_in, 0] - want_x
        dist_y = cy_in + prev_offset[cy_in, cx_in, 1] - want_y
        distance = torch.where(inside, dist_x**2 + dist_y**2, torch.full_like(want_x, float("inf")))
        better = distance < best
        best = torch.where(better, distance, best)
        src_x, src_y = torch.where(better, cx, src_x), torch.where(better, cy, src_y)
    # a sample a pixel or more from where the content was is not that content's (it entered the frame)
    valid = trusted & (best < 1.0)
    src_x, src_y = src_x.clamp(0, width - 1), src_y.clamp(0, height - 1)
    src = (src_y * width + src_x).flatten()
    dst = torch.arange(height * width)
    valid = valid.flatten()
    owner = torch.full((height * width,), height * width, dtype=torch.long)
    owner = owner.scatter_reduce(0, src[valid], dst[valid], reduce="amin")
    keep = valid & (owner[src] == dst)
    carried = prev_noise.flatten(2)[:, :, src.to(prev_noise.device)].to(fresh.device, fresh.dtype)
    noise = torch.where(keep.to(fresh.device), carried, fresh.flatten(2)).view_as(fresh)
    # the sample's true position minus the pixel it now sits on; fresh samples sit exactly
    offset = torch.stack(
        [src_x + prev_offset[src_y, src_x, 0] - want_x, src_y + prev_offset[src_y, src_x, 1] - want_y], dim=-1
    )
    offset = torch.where(keep.view(height, width, 1), offset, torch.zeros_like(offset))
    return noise, offset


def frame_change(frame: np.ndarray, reference: np.ndarray) -> float:
    """Mean absolute difference of two RGB uint8 frames in 8-bit levels, on a quarter-size copy (cheap)."""
    height, width = frame.shape[:2]
    small = (max(1, width // 4), max(1, height // 4))
    a = cv2.resize(frame, small, interpolation=cv2.INTER_AREA).astype(np.int16)
    b = cv2.resize(reference, small, interpolation=cv2.INTER_AREA).astype(np.int16)
    return float(np.abs(a - b).mean())
