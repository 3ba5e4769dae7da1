"""ControlNet preprocessors: a source frame in, its control image out (both RGB uint8, same size).

Small pure OpenCV/NumPy functions, no annotator models to download. Each maps a frame to the
control image the same way every frame, with fixed scales rather than per-frame normalisation, so
that the control images themselves don't flicker.
"""

from __future__ import annotations

import cv2
import numpy as np

def _gray(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def _rgb(gray: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))


def canny(image: np.ndarray, low: int, high: int) -> np.ndarray:
    """White one-pixel edges on black (Canny 1986), what canny ControlNets were trained on."""
    return _rgb(cv2.Canny(_gray(image), low, high))


def softedge(image: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    """Soft white edges on black: the Sobel gradient magnitude of the blurred frame, on a fixed scale.

    A stand-in for HED/PiDiNet soft edges: it has their look (thick, graded lines), not their
    semantics (it also marks texture edges a learned detector would skip).
    """
    gray = cv2.GaussianBlur(_gray(image).astype(np.float32), (0, 0), sigma)
    magnitude = cv2.magnitude(cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3))
    # white from a quarter of the largest Sobel response (4 × 255) up: strong edges saturate, as HED's do
    return _rgb(np.clip(magnitude, 0, 255).astype(np.uint8))


def depth_from_luma(image: np.ndarray, sigma: float = 3.0) -> np.ndarray:
    """The blurred brightness as a depth map (near = bright): no depth model is run, so it is right
    only where light falls off with distance; it holds large shapes and their shading."""
    return _rgb(cv2.GaussianBlur(_gray(image), (0, 0), sigma))


def tile(image: np.ndarray) -> np.ndarray:
    """The frame itself, for tile ControlNets (which keep colours and layout)."""
    return np.ascontiguousarray(image)


def control_image(kind: str, image: np.ndarray, canny_low: int, canny_high: int) -> np.ndarray:
    """The control image of `kind` (one of PREPROCESSORS) for an RGB uint8 frame."""
    if kind == "canny":
        return canny(image, canny_low, canny_high)
    return PREPROCESSORS[kind](image)


PREPROCESSORS = {"canny": canny, "softedge": softedge, "depth-from-luma": depth_from_luma, "tile": tile}
