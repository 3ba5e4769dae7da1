"""Streaming video out (ffmpeg): segments encoded in OUTPUT's codec (or losslessly, for the forms made at the
end), joined with the source's audio, put in place atomically.

ffmpeg is always run with argument lists, never through a shell.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..errors import VidiffError
from .ffmpeg import _fsync, _last_line, audio_streams, concat_input, concat_listing, ffmpeg_exe
from .formats import (
    SEQUENCE, VIDEO, OutputForm, audio_attempts, container_args, output_form, stream_codecs, video_args,
)
from .pictures import check_sequence_path, write_pictures


def check_output_path(
    output: str | os.PathLike, input: str | os.PathLike, overwrite: bool, form: OutputForm | None = None
) -> None:
    """Refuse an OUTPUT we can't or shouldn't write, before any work is done."""
    form = form or output_form(output)  # raises for a form that can't be written
    if form.kind == SEQUENCE:
        check_sequence_path(output, input, overwrite)
        return
    output = Path(output)
    if os.path.exists(input) and (
        os.path.abspath(output) == os.path.abspath(input) or output.exists() and os.path.samefile(output, input)
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


class SegmentEncoder:
    """Encode RGB frames with `codec` (H.264 unless told: see formats.video_args) to a video-only file at
    an exact frame rate.

    The file at `path` is complete only once the context exits without error; on error it is removed.
    """

    def __init__(self, path: str | os.PathLike, size: tuple[int, int], fps: Fraction, crf: int = 18, codec: str = "h264"):
        width, height = size
        if width % 2 or height % 2:
            raise ValueError(f"yuv420p needs even sizes, got {width}x{height}")
        self.path, self.size, self.fps, self.crf, self.codec = Path(path), size, Fraction(fps), crf, codec
        self.frames_written = 0
        self._process: subprocess.Popen | None = None

    def __enter__(self) -> "SegmentEncoder":
        self._log = tempfile.TemporaryFile()
        width, height = self.size
        command = [
            ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-framerate", _rate(self.fps),
            "-i", "pipe:0",
            "-an", *video_args(self.codec, self.crf),
            # absolute: a relative name starting with '-' would read as an option
            "-r", _rate(self.fps), *container_args(self.path.suffix.lower()), os.path.abspath(self.path),
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
    form: OutputForm | None = None,
) -> None:
    """Make OUTPUT from the encoded segments, and put it in place only when it is complete.

    A video joins them without re-encoding and takes the source's audio cut to the same span; a GIF,
    a picture or a sequence is made from them (lossless FFV1) by pictures.py.
    """
    if frames == 0 or not segments:
        raise VidiffError("no frames were written; the input had none in the chosen range")
    form = form or output_form(output)
    if form.kind != VIDEO:
        write_pictures(segments, output, form, frames)
        return
    with concat_listing(segments, Path(output).parent) as listing:
        _join_video(listing, Path(output), form, fps, frames, audio_source, audio_start)


def _join_video(listing: str, output: Path, form: OutputForm, fps, frames, audio_source, audio_start) -> None:
    streams = audio_streams(audio_source) if audio_source is not None else []
    # named, not created: ffmpeg creates it, so OUTPUT gets the usual permissions (mkstemp's are 0600)
    temp = str(output.parent / f".{output.stem}.{secrets.token_hex(6)}.partial{output.suffix}")
    base = concat_input(listing)
    if streams:
        duration = frames / Fraction(fps)
        base += ["-ss", f"{audio_start:.6f}", "-t", f"{float(duration):.6f}", "-i", os.fspath(audio_source),
                 "-map", "0:v:0", "-map", "1:a?"]  # fmt: skip
    base += ["-c:v", "copy"]
    try:
        for audio_codec in audio_attempts(form.suffix, stream_codecs(streams)):
            done = subprocess.run([*base, *audio_codec, *container_args(form.suffix), os.path.abspath(temp)],
                                  capture_output=True, text=True, errors="replace")  # fmt: skip
            if done.returncode == 0:
                break
        else:
            raise VidiffError(f"ffmpeg could not write {output}: {_last_line(done.stderr)}")
        _fsync(temp)
        os.replace(temp, output)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)


class VideoWriter:
    """Encode RGB frames at an exact frame rate into the form `path` asks for (H.264 for .mp4), then add
    the source's audio where the form takes it.

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
        codec: str | None = None,
        bit_depth: int = 8,
    ):
        self.path = Path(path)
        self.form = output_form(path, codec, bit_depth)
        fd, self._segment = tempfile.mkstemp(prefix=f".{self.path.stem}.", suffix=f".video{self.form.segment_suffix}",
                                             dir=self.path.parent)  # fmt: skip
        os.close(fd)
        self._encoder = SegmentEncoder(self._segment, size, fps, crf, self.form.segment_codec)
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
                assemble([self._segment], self.path, self.fps, self.frames_written, self.audio_source, self.audio_start,
                         self.form)
        finally:
            if os.path.exists(self._segment):
                os.unlink(self._segment)
