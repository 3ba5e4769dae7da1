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


def _blocks(x: torch.Tensor, factor: int, dims: tuple[int, int] = (-2, -1)) -> torch.Tensor:
    """Each pixel of `x` repeated into a factor × factor block, over the two dimensions `dims`."""
    return x.repeat_interleave(factor, dims[0]).repeat_interleave(factor, dims[1])


def upsample_noise(noise: torch.Tensor, factor: int, white: torch.Tensor) -> torch.Tensor:
    """Conditional upsampling (Chang et al., "How I Warped Your Noise", ICLR 2024): a field of factor²
    i.i.d. N(0, 1) samples per pixel whose block sums ÷ factor are `noise`; `white` is N(0, 1) at the field's size."""
    block_mean = torch.nn.functional.avg_pool2d(white, factor)
    return _blocks(noise / factor - block_mean, factor) + white


def downsample_noise(field: torch.Tensor, factor: int) -> torch.Tensor:
    """A pixel's noise as the sum of the field's samples over its footprint ÷ factor ("How I Warped Your Noise"):
    i.i.d. samples give i.i.d. N(0, 1) pixels."""
    return torch.nn.functional.avg_pool2d(field, factor) * factor


def fourier_shift(noise: torch.Tensor, dx: float, dy: float) -> torch.Tensor:
    """`noise` (B, C, H, W) sampled at x + (dx, dy) by a band-limited (sinc, periodic) translation: a
    unitary map, so white unit Gaussian noise stays white unit Gaussian for any sub-pixel shift."""
    height, width = noise.shape[-2:]
    spectrum = torch.fft.rfft2(noise.double())
    ky = torch.fft.fftfreq(height, dtype=torch.float64)[:, None]
    kx = torch.fft.rfftfreq(width, dtype=torch.float64)[None, :]
    phase = torch.exp(2j * torch.pi * (kx * dx + ky * dy))
    # a real signal's Nyquist bins can only change sign (a sub-pixel phase would take away their
    # variance): they move by whole pixels, rounded (one row and one column of the spectrum)
    sign_x, sign_y = (-1) ** round(dx), (-1) ** round(dy)
    if width % 2 == 0:
        phase[:, -1] = torch.exp(2j * torch.pi * ky[:, 0] * dy) * sign_x
    if height % 2 == 0:
        phase[height // 2, :] = torch.exp(2j * torch.pi * kx[0] * dx) * sign_y
        if width % 2 == 0:
            phase[height // 2, -1] = sign_x * sign_y
    return torch.fft.irfft2(spectrum * phase, s=(height, width)).to(noise.dtype)


def global_shift(flow: torch.Tensor, trusted: torch.Tensor) -> tuple[float, float]:
    """The motion most of the frame shares: the median of the trusted flow, (dx, dy); (0, 0) if nothing is trusted."""
    if not trusted.any():
        return 0.0, 0.0
    return flow[..., 0][trusted].median().item(), flow[..., 1][trusted].median().item()


def warp_noise_bandlimited(
    prev_noise: torch.Tensor,
    flow: torch.Tensor,
    trusted: torch.Tensor,
    white: torch.Tensor,
    fresh: torch.Tensor,
    factor: int,
    least: float = 0.0,
) -> torch.Tensor:
    """Warped noise that follows sub-pixel motion and stays i.i.d. unit Gaussian.

    The motion the frame shares (the median of the trusted flow) moves the previous noise by a
    band-limited Fourier shift: exact at any sub-pixel amount, and smooth, as the content's own
    latents move (the box-integral transport of "How I Warped Your Noise" (Chang et al., ICLR 2024)
    changes a pixel's noise by the share of its footprint that moved, 1/8 at 1/8 of a pixel, where
    this changes it by 1 − sinc(1/8), 2.5%). What differs from it (objects, zoom, rotation) then
    moves with that paper's method: the noise conditionally upsampled (`white`) to a field of factor²
    samples per pixel, the samples carried along the rest of the flow, each at most once, `fresh`
    where nothing trusted lands (occlusions, uncovered content), and summed back over each pixel.
    Noise is (B, C, H, W) CPU float32, `flow` (H, W, 2) in pixels and `trusted` (H, W), as
    `warp_noise` takes them; `white` and `fresh` N(0, 1) at the field's size (factor·H, factor·W).
    """
    dx, dy = global_shift(flow, trusted)
    moved = fourier_shift(prev_noise, dx, dy)
    # each pixel's samples move together by what is left of its motion, rounded to whole samples,
    # and only where that is `least` pixels or more: moving noise by a box integral changes it
    # more than slow motion needs (the flow's jitter, a slow zoom's centre), so there it stays put
    rest = flow - torch.tensor([dx, dy], dtype=flow.dtype)
    rest = torch.where(rest.norm(dim=-1, keepdim=True) >= least, rest, 0.0) * factor
    if not (rest.abs() >= 0.5).any():  # a pan, or a still shot: no sample moves on its own
        return torch.where(trusted, moved, downsample_noise(fresh, factor))
    field, _ = warp_noise(upsample_noise(moved, factor, white), _blocks(rest, factor, (0, 1)),
                          _blocks(trusted, factor, (0, 1)), fresh)  # fmt: skip
    return downsample_noise(field, factor)
