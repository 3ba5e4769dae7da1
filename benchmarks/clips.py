"""Synthetic clips with known motion for the temporal benchmark, built with numpy, deterministic.

Every clip is textured at several scales, so that DIS optical flow has something to follow at the
sizes the benchmark runs at (DIS is poor on tiny or flat frames). The motion of each is known from
how it was drawn:

- pan:    a window sliding over a large textured picture, (6, 2) pixels per frame (even shifts, so
          yuv420p's half-size chroma moves by whole pixels too);
- zoom:   a centred zoom into a textured picture, ×1.0 to ×1.3 over the clip;
- object: a textured disc crossing a still textured background, 8 pixels per frame (occlusions);
- cut:    a pan over one picture, then a hard cut at the middle frame to a pan over another picture
          in other colours.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from vidiff.io.writer import VideoWriter

CLIPS = ("pan", "zoom", "object", "cut")
FPS = Fraction(24)
PAN_STEP = (6, 2)  # pixels per frame, (dx, dy)
ZOOM_END = 1.3  # the last frame's magnification
OBJECT_STEP = 8  # pixels per frame


def textured(width: int, height: int, seed: int, hue: float = 0.0) -> np.ndarray:
    """Octaves of smooth noise (from fine detail to broad blotches) in colours around `hue` (0-180, OpenCV's)."""
    rng = np.random.default_rng(seed)
    light = np.zeros((height, width), np.float32)
    for sigma, weight in ((1.2, 0.9), (3.0, 1.0), (8.0, 1.0), (20.0, 0.8)):
        octave = cv2.GaussianBlur(rng.normal(0, 1, (height, width)).astype(np.float32), (0, 0), sigma)
        light += weight * octave / octave.std()
    tint = cv2.GaussianBlur(rng.normal(0, 1, (height, width)).astype(np.float32), (0, 0), 12.0)
    tint /= tint.std()
    hsv = np.stack(
        [
            (hue + 18 * tint) % 180,
            np.clip(150 + 50 * tint, 0, 255),
            np.clip(128 + 38 * light, 0, 255),
        ],
        axis=-1,
    ).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def pan_frames(
    size: tuple[int, int], frames: int, seed: int = 1, hue: float = 15.0, step: tuple[int, int] = PAN_STEP
) -> list[np.ndarray]:
    width, height = size
    dx, dy = step
    big = textured(width + dx * frames, height + dy * frames, seed, hue)
    return [np.ascontiguousarray(big[t * dy : t * dy + height, t * dx : t * dx + width]) for t in range(frames)]


def zoom_frames(size: tuple[int, int], frames: int, seed: int = 2) -> list[np.ndarray]:
    width, height = size
    picture = textured(width, height, seed, hue=100.0)
    centre = (width / 2, height / 2)
    out = []
    for t in range(frames):
        scale = ZOOM_END ** (t / max(frames - 1, 1))  # a steady rate: the same ratio every frame
        matrix = cv2.getRotationMatrix2D(centre, 0.0, scale)
        out.append(cv2.warpAffine(picture, matrix, (width, height), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT))
    return out


def object_frames(size: tuple[int, int], frames: int, seed: int = 3) -> list[np.ndarray]:
    width, height = size
    background = textured(width, height, seed, hue=60.0)
    radius = height // 4
    skin = textured(2 * radius + 1, 2 * radius + 1, seed + 100, hue=160.0)
    y, x = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    inside = x**2 + y**2 <= radius**2
    top = height // 2 - radius
    travel = OBJECT_STEP * (frames - 1)
    start = max(0, (width - 2 * radius - 1 - travel) // 2)
    out = []
    for t in range(frames):
        frame = background.copy()
        left = start + OBJECT_STEP * t
        window = frame[top : top + 2 * radius + 1, left : left + 2 * radius + 1]
        shown = inside[:, : window.shape[1]]
        window[shown] = skin[:, : window.shape[1]][shown]
        out.append(frame)
    return out


def cut_frames(size: tuple[int, int], frames: int) -> list[np.ndarray]:
    first = frames // 2
    return pan_frames(size, first, seed=4, hue=15.0) + pan_frames(size, frames - first, seed=5, hue=110.0)


def clip_frames(name: str, size: tuple[int, int], frames: int) -> list[np.ndarray]:
    makers = {"pan": pan_frames, "zoom": zoom_frames, "object": object_frames, "cut": cut_frames}
    return makers[name](size, frames)


def write_frames(path: str | Path, frames: list[np.ndarray], crf: int = 4) -> Path:
    """Write RGB frames as H.264 at a low crf (nearly lossless) and FPS."""
    height, width = frames[0].shape[:2]
    with VideoWriter(path, (width, height), FPS, crf=crf) as writer:
        for frame in frames:
            writer.write(frame)
    return Path(path)


def write_clip(path: str | Path, name: str, size: tuple[int, int], frames: int, crf: int = 4) -> Path:
    """Draw clip `name` and write it as H.264 at a low crf."""
    return write_frames(path, clip_frames(name, size, frames), crf)
