"""The loop: read → stylise → write, with progress. The only orchestrator."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
from tqdm import tqdm

from .config import Config
from .errors import VidiffError
from .models import TINY, ModelParts, load_parts
from .stylizer import Stylizer
from .video import VideoReader, VideoWriter, check_output_path, fit_size, probe

log = logging.getLogger("vidiff")


@dataclass(frozen=True)
class RunResult:
    output: str
    frames: int
    seconds: float
    size: tuple[int, int]

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        width, height = self.size
        return (
            f"{self.frames} frames at {width}x{height} in {self.seconds:.1f} s "
            f"({self.fps:.2f} frames/s) -> {self.output}"
        )


def stylize_video(
    input: str | os.PathLike,
    output: str | os.PathLike,
    config: Config | None = None,
    *,
    parts: ModelParts | None = None,
    progress: bool = False,
    **settings,
) -> RunResult:
    """Stylise the video at `input` into `output` and return what was done.

    `config` holds the settings (see vidiff.Config); keyword `settings` override its fields, so
    `stylize_video("in.mp4", "out.mp4", prompt="a wooden carving", strength=0.6)` works alone.
    Pass `parts` (from vidiff.load_parts) to reuse loaded models across videos.
    Raises VidiffError, with a message meant for the user, for anything the user can fix.
    """
    began = time.perf_counter()
    config = (config or Config()).replace(**settings).validate()
    if not config.prompt.strip():
        raise VidiffError("no prompt: give --prompt TEXT or --preset NAME (`vidiff presets` lists them)")

    # 1. Check the input and the output before any expensive work
    info = probe(input)
    check_output_path(output, input, config.overwrite)
    size = fit_size(info.width, info.height, config.max_side)

    # 2. Build the model parts once, then prepare the per-video state (prompt embeddings, sampler)
    if parts is None:
        parts = load_parts(config.model, config.device, config.dtype, config.allow_pickle)
    if parts.name == TINY:
        log.warning("note: --model tiny is a small random model for smoke tests; its output carries no real style")
    frames_dir = _frames_dir(config.save_frames)

    # 3. Stream: read a frame, stylise it, write it
    reader = VideoReader(input, size, config.start, config.duration, config.max_frames)
    writer = VideoWriter(output, size, info.fps, config.crf, audio_source=input, audio_start=reader.start_seconds)
    state = None
    with Stylizer(parts, config) as stylizer, reader, writer, tqdm(
        total=reader.expected_frames, unit="frame", disable=not progress, dynamic_ncols=True, leave=False
    ) as bar:
        for index, frame in enumerate(reader):
            result = stylizer(frame, index, state)
            state = result.state
            if result.new_shot and index > 0:
                log.info(f"cut at frame {index}: a new shot starts afresh")
            writer.write(result.image)
            if frames_dir is not None:
                _save_png(frames_dir / f"frame_{index:06d}.png", result.image)
            bar.update(1)
        if writer.frames_written == 0:
            raise VidiffError(f"input {input} has no frames from {config.start} s on; lower --start")
    return RunResult(str(output), writer.frames_written, time.perf_counter() - began, size)


def _frames_dir(save_frames: str | None) -> Path | None:
    if save_frames is None:
        return None
    folder = Path(save_frames)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise VidiffError(f"--save-frames {save_frames}: can't create the folder: {err.strerror}") from None
    return folder


def _save_png(path: Path, rgb) -> None:
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise VidiffError(f"could not write {path}")
