"""The ffmpeg binary that imageio-ffmpeg ships, what it says about a file's streams, and its concat listings.

ffmpeg is always run with argument lists, never through a shell.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def audio_streams(path: str | os.PathLike) -> list[str]:
    """Descriptions of the audio streams in `path` ('aac (LC), 44100 Hz, stereo, ...'); [] if none."""
    result = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", os.fspath(path)],
        capture_output=True,
        text=True,
        errors="replace",
    )
    return re.findall(r"Stream #\d+:\d+.*?: Audio: (.*)", result.stderr)


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else "no message"


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def concat_listing(segments: list[str | os.PathLike], folder: Path) -> Iterator[str]:
    """A listing of `segments` for ffmpeg's concat demuxer, removed afterwards."""
    fd, listing = tempfile.mkstemp(prefix=".vidiff-concat.", suffix=".txt", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            for segment in segments:
                # the concat demuxer's quoting: inside '...', a quote is written '\''
                quoted = os.path.abspath(segment).replace("'", "'\\''")
                file.write(f"file '{quoted}'\n")
        yield listing
    finally:
        os.unlink(listing)


def concat_input(listing: str) -> list[str]:
    """ffmpeg's arguments up to and including the joined segments as input 0."""
    return [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
            "-f", "concat", "-safe", "0", "-i", listing]  # fmt: skip
