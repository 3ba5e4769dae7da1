"""The offline demo: a synthetic animation with a sound track, stylised by the tiny model."""

from __future__ import annotations

import os
import tempfile
import wave
from fractions import Fraction
from pathlib import Path

import numpy as np

from .io.writer import VideoWriter
from .run import RunResult, stylize_video
from .settings.config import Config
from .settings.presets import load_preset

DEMO_PRESET = "wooden-carving"


def _background(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A wood-like texture: wavy vertical grain over a warm gradient, with fine noise."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    grain = np.sin(x / 5.0 + 3.0 * np.sin(y / 23.0)) * 0.5 + 0.5
    base = np.stack([150 + 60 * grain, 100 + 40 * grain, 60 + 20 * grain], axis=-1)
    base += rng.normal(0, 6, size=base.shape)
    return base.clip(0, 255).astype(np.uint8)


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
    """Write a short animation with sound: a ball hopping across a textured background."""
    width, height = size
    frames, hops = int(seconds * fps), 3
    background = _background(width, height, np.random.default_rng(0))
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
                shade = 1.0 - 0.5 * np.clip(((x - cx + radius / 3) ** 2 + (y - cy + radius / 3) ** 2) / radius**2, 0, 1)
                frame[inside] = (np.stack([40 + 200 * shade, 60 * shade, 50 * shade], -1)[inside]).astype(np.uint8)
                writer.write(frame)


def run_demo(output: str | os.PathLike = "vidiff-demo.mp4", overwrite: bool = False, progress: bool = False) -> RunResult:
    """Make the synthetic clip, stylise it with the tiny model and the wooden-carving preset."""
    preset = load_preset(DEMO_PRESET)
    config = Config(**preset.settings).replace(model="tiny", max_side=256, overwrite=overwrite)
    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / "demo-source.mp4"
        make_demo_clip(source)
        return stylize_video(source, output, config, progress=progress)
