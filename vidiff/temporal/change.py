"""How different two frames are: hard cuts between shots, and frames too alike to stylise again."""

from __future__ import annotations

import cv2
import numpy as np


def color_histogram(image: np.ndarray) -> np.ndarray:
    """An RGB uint8 frame's normalised HSV histogram, what cut_score compares; computed once per frame
    when frames are compared in a row."""
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1, 2], None, [16, 8, 8], [0, 180, 0, 256, 0, 256])
    return cv2.normalize(hist, None).flatten()


def histogram_distance(prev: np.ndarray, cur: np.ndarray) -> float:
    """cut_score of the frames these color_histogram()s were taken from."""
    return float(cv2.compareHist(prev, cur, cv2.HISTCMP_BHATTACHARYYA))


def cut_score(prev: np.ndarray, cur: np.ndarray) -> float:
    """How different two frames' colour histograms are, from 0 (same) to 1 (disjoint): high at a hard cut."""
    return histogram_distance(color_histogram(prev), color_histogram(cur))


def is_cut(prev: np.ndarray, cur: np.ndarray, threshold: float | None) -> bool:
    """Whether `cur` starts a new shot; a threshold of None never finds a cut."""
    return threshold is not None and cut_score(prev, cur) > threshold


def frame_change(frame: np.ndarray, reference: np.ndarray) -> float:
    """Mean absolute difference of two RGB uint8 frames in 8-bit levels, on a quarter-size copy (cheap)."""
    height, width = frame.shape[:2]
    small = (max(1, width // 4), max(1, height // 4))
    a = cv2.resize(frame, small, interpolation=cv2.INTER_AREA).astype(np.int16)
    b = cv2.resize(reference, small, interpolation=cv2.INTER_AREA).astype(np.int16)
    return float(np.abs(a - b).mean())
