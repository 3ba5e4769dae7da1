"""Colour coherence across a shot."""

from __future__ import annotations

import cv2
import numpy as np


def match_colors(image: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Give `image` the per-channel LAB mean and spread of `reference` (Reinhard et al. 2001), as Deforum does."""
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(np.float32)
    ref = cv2.cvtColor(reference, cv2.COLOR_RGB2LAB).astype(np.float32)
    mean, std = lab.mean(axis=(0, 1)), lab.std(axis=(0, 1))
    ref_mean, ref_std = ref.mean(axis=(0, 1)), ref.std(axis=(0, 1))
    matched = (lab - mean) * (ref_std / np.maximum(std, 1e-3)) + ref_mean
    # round, not truncate: truncation darkens every matched frame a little, itself a flicker
    return cv2.cvtColor(np.rint(matched).clip(0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)
