"""Frames between two diffused frames, made from their outputs carried along the source's flow (cadence).

Conventions as in flow.py: images RGB uint8 (H, W, 3), masks bool (H, W). `a` is the diffused frame
before the in-between frame `t`, `b` the one after; `weight_a` = (b - t) / (b - a), the nearness of a.
"""

from __future__ import annotations

import numpy as np

from .flow import backward_flow, warp


def nearness(a: int, t: int, b: int) -> float:
    """The temporal weight of frame a for frame t between a and b: (b - t) / (b - a)."""
    return (b - t) / (b - a)


def blend_carried(
    warped_a: np.ndarray, trusted_a: np.ndarray, warped_b: np.ndarray, trusted_b: np.ndarray, weight_a: float
) -> np.ndarray:
    """Both warps blended by nearness times trust, normalised; where neither is trusted, the nearer warp."""
    weight_a_map = weight_a * trusted_a.astype(np.float32)
    weight_b_map = (1 - weight_a) * trusted_b.astype(np.float32)
    total = weight_a_map + weight_b_map
    blended = (warped_a.astype(np.float32) * weight_a_map[..., None] + warped_b.astype(np.float32) * weight_b_map[..., None])
    blended /= np.maximum(total, 1e-6)[..., None]
    # untrusted both ways (uncovered content, motion the flow missed): a whole picture beats a ghost
    nearer = warped_a if weight_a >= 0.5 else warped_b
    out = np.where((total > 0)[..., None], blended, nearer.astype(np.float32))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def in_between(
    source_t: np.ndarray, source_a: np.ndarray, image_a: np.ndarray, source_b: np.ndarray, image_b: np.ndarray,
    weight_a: float,
) -> np.ndarray:
    """The output of frame t: the outputs of a and b warped onto t along the sources' flow, then blended."""
    flow_a, trusted_a = backward_flow(source_a, source_t)
    flow_b, trusted_b = backward_flow(source_b, source_t)
    return blend_carried(warp(image_a, flow_a), trusted_a, warp(image_b, flow_b), trusted_b, weight_a)
