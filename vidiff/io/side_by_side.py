"""A side-by-side video, source | result, for people who would rather look than read: a run's
--preview, the demo's, and any UI's."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np

from .formats import CONTAINERS
from .reader import VideoReader, probe
from .writer import VideoWriter


def preview_path(output: str | os.PathLike) -> Path:
    """Where OUTPUT's side-by-side goes: beside it, out.mp4 -> out.preview.mp4; a video in .mp4 for OUTPUT
    that is no video (a GIF, a picture, frames/out_%05d.png -> frames/out.preview.mp4)."""
    output = Path(output)
    suffix = output.suffix if output.suffix.lower() in CONTAINERS else ".mp4"
    stem = re.sub(r"[_.-]?%0?\d*d", "", output.stem) or "frames"
    return output.with_name(f"{stem}.preview{suffix}")


def write_side_by_side(
    source_frames: Iterable[np.ndarray], result: str | os.PathLike, path: str | os.PathLike, crf: int = 18
) -> int:
    """Write the video `path`: each source frame (RGB, resized to the result's size if it differs) on the
    left of the same frame of the video `result`, at the result's frame rate and with its audio, for
    as many frames as both have. Returns that number.

    Written as OUTPUT is (hidden files beside `path`, renamed onto it when done), so a failure never
    leaves half a preview. The source frames are the ones the result was made from, as the run read
    them (trimmed, upright): a run passes its reader's frames.
    """
    info = probe(result)
    width, height = info.width, info.height
    with VideoReader(info) as reader, VideoWriter(path, (2 * width, height), info.fps, crf, audio_source=result) as out:
        for source, styled in zip(source_frames, reader):
            if source.shape[:2] != (height, width):
                shrinking = source.shape[1] > width or source.shape[0] > height
                source = cv2.resize(source, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)
            out.write(np.hstack([source, styled]))
    return out.frames_written
