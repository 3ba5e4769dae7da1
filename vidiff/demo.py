"""The offline demo: a synthetic animation with a sound track, stylised by the trained tiny model, and
the two side by side."""

from __future__ import annotations

import os
import tempfile
import wave
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from .io.writer import VideoWriter
from .models.tiny import TRAINED_TINY
from .run import RunResult, stylize_video
from .settings.config import Config
from .settings.presets import load_preset

DEMO_PRESET = "wooden-carving"


def _smooth_noise(rng: np.random.Generator, height: int, width: int, sigma: float) -> np.ndarray:
    octave = cv2.GaussianBlur(rng.normal(0, 1, (height, width)).astype(np.float32), (0, 0), sigma)
    return octave / max(float(octave.std()), 1e-6)


def _background(width: int, height: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A landscape: a blue sky over rolling green hills and a yellow sun, textured with octaves of smooth
    noise (the kind of picture the demo model was trained on). Returns the picture and its texture."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    light = sum(a * _smooth_noise(rng, height, width, s) for a, s in ((0.5, 1.0), (0.6, 2.5), (0.8, 6.0), (0.6, 16.0)))
    light /= max(float(light.std()), 1e-6)
    horizon = height * (0.62 + 0.08 * np.sin(x / width * 3 * np.pi) + 0.04 * np.sin(x / width * 8 * np.pi))
    ground = y > horizon
    sun = (x - width * 0.8) ** 2 + (y - height * 0.22) ** 2 <= (height * 0.11) ** 2
    # OpenCV's HSV: hue 0-180
    hue = np.where(ground, 50, np.where(sun, 25, 108)).astype(np.float32)
    saturation = np.where(ground, 150, np.where(sun, 170, 120)).astype(np.float32)
    value = np.where(ground, 120, np.where(sun, 220, 185 - 40 * y / height)) + 18 * light
    hsv = np.stack([hue, saturation, np.clip(value, 0, 255)], axis=-1).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB), light


def _tone(path: str, seconds: float, hops: int, rate: int = 44100) -> None:
    """A stereo 16-bit WAV: a soft 220 Hz hum with a 660 Hz blip at each landing."""
    t = np.arange(int(seconds * rate)) / rate
    signal = 0.15 * np.sin(2 * np.pi * 220 * t)
    period = seconds / hops
    landing = (t % period) / period
    signal += 0.3 * np.sin(2 * np.pi * 660 * t) * np.exp(-((landing - 0.99) ** 2) / 0.0005)
    pcm = (np.clip(signal, -1, 1) * 32767).astype("<i2")
    with wave.open(path, "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(np.repeat(pcm[:, None], 2, axis=1).tobytes())


def make_demo_clip(path: str | os.PathLike, size=(320, 180), fps: Fraction = Fraction(24), seconds: float = 2.0) -> None:
    """Write a short animation with sound: a textured red ball hopping across a landscape."""
    width, height = size
    frames, hops = int(seconds * fps), 3
    background, light = _background(width, height, np.random.default_rng(0))
    ball = cv2.cvtColor(np.stack([np.full_like(light, 5), np.full_like(light, 170), np.clip(150 + 18 * light, 0, 255)],
                                 axis=-1).astype(np.uint8), cv2.COLOR_HSV2RGB)  # fmt: skip
    radius = height // 8
    y, x = np.mgrid[0:height, 0:width]
    with tempfile.TemporaryDirectory() as scratch:
        audio = os.path.join(scratch, "tone.wav")
        _tone(audio, seconds, hops)
        with VideoWriter(path, size, fps, crf=18, audio_source=audio) as writer:
            for index in range(frames):
                progress = index / max(frames - 1, 1)
                cx = radius + progress * (width - 2 * radius)
                hop = abs(np.sin(np.pi * hops * progress))
                cy = height - radius - 4 - hop * (height * 0.55)
                frame = background.copy()
                inside = (x - cx) ** 2 + (y - cy) ** 2 <= radius**2
                frame[inside] = ball[inside]
                writer.write(frame)


# The demo model knows one style, the one it was trained on, in the words it was trained with
# (benchmarks/train_tiny.py). The other settings are the wooden-carving preset's, but for a lower
# strength and guidance and no latent fusion: with them the tiny model keeps the ball, the sun and the
# hills recognisable (at the preset's it paints over the ball); and fewer steps, for speed.
DEMO_PROMPT = "a wooden carving, hand-carved from walnut, visible wood grain"
DEMO_NEGATIVE = "photo, blurry, low quality"
DEMO_SETTINGS = dict(prompt=DEMO_PROMPT, negative_prompt=DEMO_NEGATIVE, steps=10, strength=0.45, guidance=3.0,
                     fusion=0.0, max_side=256)  # fmt: skip


def run_demo(output: str | os.PathLike = "vidiff-demo.mp4", overwrite: bool = False, progress: bool = False) -> RunResult:
    """Make the synthetic clip, stylise it with the trained tiny model and the wooden-carving preset's
    settings, and write the source and the result side by side beside `output` (OUTPUT.preview.mp4)."""
    preset = load_preset(DEMO_PRESET)
    config = Config(**preset.settings).replace(model=str(TRAINED_TINY), **DEMO_SETTINGS, overwrite=overwrite, preview=True)
    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / "demo-source.mp4"
        make_demo_clip(source)
        return stylize_video(source, output, config, progress=progress)
