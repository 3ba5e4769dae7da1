"""Streaming video in (OpenCV) and out (the ffmpeg that imageio-ffmpeg ships), as context managers.

Frames travel as RGB uint8 arrays of shape (height, width, 3), one at a time: memory does not grow
with the clip's length. ffmpeg is always run with argument lists, never through a shell.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from .errors import VidiffError

# Containers that hold H.264 and the audio we copy or re-encode.
OUTPUT_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv")
# Audio codecs copied as they are into .mp4/.mov; others (PCM, Vorbis, ...) are encoded to AAC.
MP4_AUDIO = ("aac", "mp3", "alac", "ac3", "eac3", "opus", "flac")


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def exact_fps(fps: float) -> Fraction:
    """The rational frame rate behind OpenCV's float: 29.97002997 -> 30000/1001, 25.0 -> 25."""
    return Fraction(fps).limit_denominator(10000)


def fit_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """Scale (width, height) down to fit max_side, keeping the aspect ratio; both sides a multiple of 8."""
    scale = min(1.0, max_side / max(width, height))
    return tuple(max(8, int(round(side * scale / 8)) * 8) for side in (width, height))  # type: ignore[return-value]


@dataclass(frozen=True)
class VideoInfo:
    path: str
    width: int
    height: int
    fps: Fraction
    frame_count: int  # as the container reports it; the frames actually decoded are what count


def probe(path: str | os.PathLike) -> VideoInfo:
    """Open `path` with OpenCV and read its size, exact fps and frame count, or say why not."""
    path = str(path)
    if not os.path.exists(path):
        raise VidiffError(f"input not found: {path}")
    if os.path.isdir(path):
        raise VidiffError(f"input {path} is a folder; give a video file")
    if not os.access(path, os.R_OK):
        raise VidiffError(f"input {path} is not readable (permission denied)")
    if os.path.getsize(path) == 0:
        raise VidiffError(f"input {path} is empty (0 bytes); give a video file")
    capture = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
    try:
        if not capture.isOpened():
            if audio_streams(path):
                raise VidiffError(f"input {path} has no video stream (audio only); give a video file")
            raise VidiffError(f"input {path} could not be opened as a video (not a video, or truncated)")
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        fps = capture.get(cv2.CAP_PROP_FPS)
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        if width <= 0 or height <= 0 or not fps or fps <= 0 or not capture.grab():
            what = "has no video stream (audio only)" if audio_streams(path) else "has no video frames that can be decoded"
            raise VidiffError(f"input {path} {what}; give a video file")
    finally:
        capture.release()
    return VideoInfo(path, width, height, exact_fps(fps), max(count, 1))


class VideoReader:
    """Decode frames one at a time, trimmed by start/duration/max_frames and resized to `size`.

    >>> with VideoReader("in.mp4", size=(512, 288)) as reader:
    ...     for frame in reader: ...
    """

    def __init__(
        self,
        path: str | os.PathLike,
        size: tuple[int, int] | None = None,
        start: float = 0.0,
        duration: float | None = None,
        max_frames: int | None = None,
    ):
        self.info = probe(path)
        self.size = size or (self.info.width, self.info.height)
        # trims are whole frames, so the audio can be cut at exactly the same instants
        self.start_frame = int(round(start * self.info.fps))
        limit = self.info.frame_count - self.start_frame
        if duration is not None:
            limit = min(limit, max(1, int(round(duration * self.info.fps))))
        if max_frames is not None:
            limit = min(limit, max_frames)
        self.expected_frames = max(0, limit)
        self._duration_frames = None if duration is None else max(1, int(round(duration * self.info.fps)))
        self._max_frames = max_frames
        self._capture: cv2.VideoCapture | None = None

    @property
    def start_seconds(self) -> float:
        return float(self.start_frame / self.info.fps)

    def __enter__(self) -> "VideoReader":
        self._capture = cv2.VideoCapture(self.info.path, cv2.CAP_FFMPEG)
        return self

    def __exit__(self, *exc) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    def __iter__(self) -> Iterator[np.ndarray]:
        if self._capture is None:
            raise RuntimeError("use VideoReader as a context manager")
        capture = self._capture
        # decode up to the start rather than seek: container seeks land on keyframes, not frames
        for _ in range(self.start_frame):
            if not capture.grab():
                return
        limits = [n for n in (self._duration_frames, self._max_frames) if n is not None]
        limit = min(limits) if limits else None
        produced = 0
        while limit is None or produced < limit:
            ok, frame = capture.read()
            if not ok:
                return
            yield self._to_rgb(frame)
            produced += 1

    def _to_rgb(self, frame: np.ndarray) -> np.ndarray:
        if frame.ndim == 2:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        width, height = self.size
        if (frame.shape[1], frame.shape[0]) != (width, height):
            shrinking = width < frame.shape[1] or height < frame.shape[0]
            frame = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)
        return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


def audio_streams(path: str | os.PathLike) -> list[str]:
    """Descriptions of the audio streams in `path` ('aac (LC), 44100 Hz, stereo, ...'); [] if none."""
    result = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", os.fspath(path)],
        capture_output=True,
        text=True,
        errors="replace",
    )
    return re.findall(r"Stream #\d+:\d+.*?: Audio: (.*)", result.stderr)


def check_output_path(output: str | os.PathLike, input: str | os.PathLike, overwrite: bool) -> None:
    """Refuse an OUTPUT we can't or shouldn't write, before any work is done."""
    output = Path(output)
    if output.suffix.lower() not in OUTPUT_SUFFIXES:
        raise VidiffError(
            f"output {output}: can't write {output.suffix or 'a file without an extension'}; "
            f"use one of {', '.join(OUTPUT_SUFFIXES)}"
        )
    if os.path.exists(input) and os.path.abspath(output) == os.path.abspath(input) or (
        output.exists() and os.path.samefile(output, input)
    ):
        raise VidiffError(f"output {output} is the input; write the result to another file")
    folder = output.parent
    if not folder.is_dir():
        raise VidiffError(f"output folder {folder} does not exist; create it or choose another OUTPUT")
    if output.is_dir():
        raise VidiffError(f"output {output} is a folder; give a file name such as {output / 'out.mp4'}")
    if output.exists() and not overwrite:
        raise VidiffError(f"output {output} exists; pass --overwrite to replace it")
    if not os.access(folder, os.W_OK):
        raise VidiffError(f"output folder {folder} is not writable")


def _rate(fps: Fraction) -> str:
    return f"{fps.numerator}/{fps.denominator}"


def _container_flags(path: str | os.PathLike) -> list[str]:
    # the index up front, so players and browsers can start before the whole file arrives
    return ["-movflags", "+faststart"] if Path(path).suffix.lower() in (".mp4", ".m4v", ".mov") else []


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else "no message"


class SegmentEncoder:
    """Encode RGB frames to an H.264 (yuv420p) video-only file at an exact frame rate.

    The file at `path` is complete only once the context exits without error; on error it is removed.
    """

    def __init__(self, path: str | os.PathLike, size: tuple[int, int], fps: Fraction, crf: int = 18):
        width, height = size
        if width % 2 or height % 2:
            raise ValueError(f"yuv420p needs even sizes, got {width}x{height}")
        self.path, self.size, self.fps, self.crf = Path(path), size, Fraction(fps), crf
        self.frames_written = 0
        self._process: subprocess.Popen | None = None

    def __enter__(self) -> "SegmentEncoder":
        self._log = tempfile.TemporaryFile()
        width, height = self.size
        command = [
            ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-framerate", _rate(self.fps),
            "-i", "pipe:0",
            "-an", "-c:v", "libx264", "-preset", "medium", "-crf", str(self.crf), "-pix_fmt", "yuv420p",
            # absolute: a relative name starting with '-' would read as an option
            "-r", _rate(self.fps), *_container_flags(self.path), os.path.abspath(self.path),
        ]  # fmt: skip
        self._process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._log)
        return self

    def write(self, frame: np.ndarray) -> None:
        width, height = self.size
        if frame.shape != (height, width, 3) or frame.dtype != np.uint8:
            raise ValueError(f"expected a {height}x{width}x3 uint8 frame, got {frame.shape} {frame.dtype}")
        try:
            self._process.stdin.write(np.ascontiguousarray(frame).tobytes())
        except (BrokenPipeError, OSError):
            raise VidiffError(f"ffmpeg stopped while encoding: {self._ffmpeg_said()}") from None
        self.frames_written += 1

    def _ffmpeg_said(self) -> str:
        self._log.seek(0)
        return _last_line(self._log.read().decode("utf-8", "replace"))

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self._process.stdin.close()
                if self._process.wait() != 0:
                    raise VidiffError(f"ffmpeg failed to encode the video: {self._ffmpeg_said()}")
                _fsync(self.path)
        except BaseException:
            exc_type = True
            raise
        finally:
            if self._process.poll() is None:
                self._process.kill()
                self._process.wait()
            self._log.close()
            if exc_type is not None and self.path.exists():
                self.path.unlink()


def assemble(
    segments: list[str | os.PathLike],
    output: str | os.PathLike,
    fps: Fraction,
    frames: int,
    audio_source: str | os.PathLike | None = None,
    audio_start: float = 0.0,
) -> None:
    """Join encoded segments without re-encoding, add the source's audio cut to the same span, and
    rename the result onto `output` only when it is complete."""
    if frames == 0 or not segments:
        raise VidiffError("no frames were written; the input had none in the chosen range")
    output = Path(output)
    streams = audio_streams(audio_source) if audio_source is not None else []
    fd, temp = tempfile.mkstemp(prefix=f".{output.stem}.", suffix=f".partial{output.suffix}", dir=output.parent)
    os.close(fd)
    fd, listing = tempfile.mkstemp(prefix=".vidiff-concat.", suffix=".txt", dir=output.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            for segment in segments:
                # the concat demuxer's quoting: inside '...', a quote is written '\''
                quoted = os.path.abspath(segment).replace("'", "'\\''")
                file.write(f"file '{quoted}'\n")
        base = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
                "-f", "concat", "-safe", "0", "-i", listing]  # fmt: skip
        if streams:
            duration = frames / Fraction(fps)
            base += ["-ss", f"{audio_start:.6f}", "-t", f"{float(duration):.6f}", "-i", os.fspath(audio_source),
                     "-map", "0:v:0", "-map", "1:a?"]  # fmt: skip
        base += ["-c:v", "copy"]
        # copy the audio as it is where players expect that codec in this container; else AAC
        aac = ["-c:a", "aac", "-b:a", "192k"]
        codecs = [stream.split()[0].rstrip(",") for stream in streams]
        copyable = output.suffix.lower() == ".mkv" or all(codec in MP4_AUDIO for codec in codecs)
        attempts = ([["-c:a", "copy"], aac] if copyable else [aac]) if streams else [[]]
        for audio_codec in attempts:
            done = subprocess.run([*base, *audio_codec, *_container_flags(output), os.path.abspath(temp)],
                                  capture_output=True, text=True, errors="replace")  # fmt: skip
            if done.returncode == 0:
                break
        else:
            raise VidiffError(f"ffmpeg could not write {output}: {_last_line(done.stderr)}")
        _fsync(temp)
        os.replace(temp, output)
    finally:
        for name in (temp, listing):
            if os.path.exists(name):
                os.unlink(name)


class VideoWriter:
    """Encode RGB frames to H.264 at an exact frame rate, then add the source's audio.

    Everything is written to hidden temporary files beside `path` and renamed onto it only when
    the whole video is done, so a failed or interrupted run never leaves a half-written OUTPUT.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        size: tuple[int, int],
        fps: Fraction,
        crf: int = 18,
        audio_source: str | os.PathLike | None = None,
        audio_start: float = 0.0,
    ):
        self.path = Path(path)
        fd, self._segment = tempfile.mkstemp(prefix=f".{self.path.stem}.", suffix=".video.mp4", dir=self.path.parent)
        os.close(fd)
        self._encoder = SegmentEncoder(self._segment, size, fps, crf)
        self.fps, self.audio_source, self.audio_start = Fraction(fps), audio_source, audio_start

    @property
    def frames_written(self) -> int:
        return self._encoder.frames_written

    def __enter__(self) -> "VideoWriter":
        self._encoder.__enter__()
        return self

    def write(self, frame: np.ndarray) -> None:
        self._encoder.write(frame)

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self._encoder.__exit__(exc_type, exc, tb)
            if exc_type is None:
                assemble([self._segment], self.path, self.fps, self.frames_written, self.audio_source, self.audio_start)
        finally:
            if os.path.exists(self._segment):
                os.unlink(self._segment)


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
