"""Each frame's starting noise: fixed, per frame, or carried along the motion (warped)."""

from __future__ import annotations

import torch


def noise_seed(seed: int, frame_index: int, mode: str) -> int:
    """The seed of a frame's noise: seed + index for 'per-frame', the seed itself otherwise."""
    return seed + frame_index if mode == "per-frame" else seed


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
