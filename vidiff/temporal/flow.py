"""What moved between two source frames: optical flow (OpenCV's DIS), occlusions, warping.

Conventions: images are RGB uint8 (H, W, 3) numpy arrays. A flow is float32 (H, W, 2) in pixels,
(dx, dy). `backward_flow(prev, cur)` gives, for each pixel x of `cur`, the offset to where it was
in `prev`, so `warp(prev, flow)` lines `prev` up with `cur`.
"""

from __future__ import annotations

import cv2
import numpy as np


def to_gray(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def _dis(src_gray: np.ndarray, dst_gray: np.ndarray) -> np.ndarray:
    """Flow f with src(x) ≈ dst(x + f(x)), by DIS (no model, no download)."""
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return dis.calc(src_gray, dst_gray, None)


def warp(image: np.ndarray, flow: np.ndarray, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """Sample `image` at x + flow(x) for every pixel x; outside the frame repeats the border."""
    height, width = flow.shape[:2]
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    return cv2.remap(image, grid_x + flow[..., 0], grid_y + flow[..., 1], interpolation, borderMode=cv2.BORDER_REPLICATE)


def backward_flow(prev: np.ndarray, cur: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The flow from `cur` back to `prev`, and a mask of the pixels it is trusted on.

    A pixel is trusted when the forward and backward flows agree (Sundaram et al., ECCV 2010):
    |b + f(x + b)|² ≤ 0.01 (|b|² + |f(x + b)|²) + 0.5; it fails where content was occluded or
    uncovered, and where the flow leaves the frame.
    """
    prev_gray, cur_gray = to_gray(prev), to_gray(cur)
    back = _dis(cur_gray, prev_gray)
    fwd = _dis(prev_gray, cur_gray)
    fwd_at_back = warp(fwd, back)
    mismatch = np.sum((back + fwd_at_back) ** 2, axis=-1)
    scale = np.sum(back**2, axis=-1) + np.sum(fwd_at_back**2, axis=-1)
    height, width = back.shape[:2]
    grid_x, grid_y = np.meshgrid(np.arange(width), np.arange(height))
    src_x, src_y = grid_x + back[..., 0], grid_y + back[..., 1]
    inside = (src_x >= 0) & (src_x <= width - 1) & (src_y >= 0) & (src_y <= height - 1)
    return back, (mismatch <= 0.01 * scale + 0.5) & inside


def downscale_flow(flow: np.ndarray, trusted: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Flow and trust at a lower resolution (e.g. the latents'): vectors rescaled, a cell trusted if most of it was.

    Most, not all: an 8x8 latent cell with one occluded pixel still moves with the rest, and
    distrusting it gives it fresh noise every frame (flicker on a still background).
    """
    width, height = size
    scale_x, scale_y = width / flow.shape[1], height / flow.shape[0]
    small = cv2.resize(flow, (width, height), interpolation=cv2.INTER_AREA) * np.array([scale_x, scale_y], np.float32)
    small_trusted = cv2.resize(trusted.astype(np.float32), (width, height), interpolation=cv2.INTER_AREA) >= 0.5
    return small, small_trusted
