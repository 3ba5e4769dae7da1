"""The ffmpeg binary that imageio-ffmpeg ships, and what it says about a file's streams.

ffmpeg is always run with argument lists, never through a shell.
"""

from __future__ import annotations

import os
import re
import subprocess


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
