"""The outputs made once the clip's lossless (FFV1) segments are done: an animated GIF with a palette made
for the whole clip (ffmpeg), one picture or a numbered PNG sequence (OpenCV's encoders). Each is put in
place atomically.

ffmpeg is always run with argument lists, never through a shell.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from ..errors import VidiffError
from .atomic import write_atomic
from .ffmpeg import _fsync, _last_line, concat_input, concat_listing
from .formats import GIF, PICTURE, SEQUENCE, OutputForm
from .reader import _pattern_images, image_sequence  # a sequence OUTPUT matches as an INPUT pattern does

# JPEG and WebP quality, 0-100: near the best either keeps, for a picture that is looked at closely.
PICTURE_QUALITY = 95


def check_sequence_path(pattern: str | os.PathLike, input: str | os.PathLike, overwrite: bool) -> None:
    """Refuse a sequence OUTPUT (out_%05d.png) we can't or shouldn't write, before any work is done."""
    pattern = os.fspath(pattern)
    folder = Path(os.path.dirname(pattern) or ".")
    if folder.exists() and not folder.is_dir():
        raise VidiffError(f"output folder {folder} is a file; choose another folder for the sequence")
    # the folder is made when the run starts: what exists above it must take it
    existing = next(parent for parent in [folder, *folder.absolute().parents] if parent.exists())
    if not os.access(existing, os.W_OK):
        raise VidiffError(f"output folder {existing} is not writable")
    found = sequence_files(pattern)
    if found:
        try:
            inputs = image_sequence(os.fspath(input)) or [os.fspath(input)]
        except VidiffError:
            inputs = []
        if {os.path.realpath(name) for name in found} & {os.path.realpath(name) for name in inputs}:
            raise VidiffError(f"output {pattern} names the input's pictures; write the result to another folder or name")
        if not overwrite:
            raise VidiffError(f"output {pattern}: {len(found)} picture(s) exist, such as {found[0]}; "
                              "pass --overwrite to replace them")  # fmt: skip


def sequence_files(pattern: str | os.PathLike) -> list[str]:
    """The files that `pattern` (out_%05d.png) matches, by number."""
    try:
        return _pattern_images(os.fspath(pattern))
    except VidiffError:  # none
        return []


def write_pictures(segments: list[str | os.PathLike], output: str | os.PathLike, form: OutputForm, frames: int) -> None:
    """Make OUTPUT of `form` (GIF, PICTURE or SEQUENCE) from the lossless segments."""
    if form.kind == GIF:
        write_gif(segments, Path(output))
    elif form.kind == PICTURE:
        first = next(_frames(segments), None)
        if first is None:
            raise VidiffError(f"the work folder's segments hold no frame for {output}; run again with --restart")
        image = _encoded(first, form)
        write_atomic(output, lambda file: file.write(image))
    elif form.kind == SEQUENCE:
        _write_sequence(segments, os.fspath(output), form, frames)
    else:
        raise ValueError(f"not a picture form: {form.kind}")


def _frames(segments) -> Iterator[np.ndarray]:
    """The segments' frames in order, BGR uint8, exactly as encoded (FFV1 is lossless RGB)."""
    for segment in segments:
        capture = cv2.VideoCapture(os.fspath(segment), cv2.CAP_FFMPEG)
        try:
            while True:
                ok, frame = capture.read()
                if not ok:
                    break
                yield frame
        finally:
            capture.release()


def _encoded(frame: np.ndarray, form: OutputForm) -> bytes:
    """A BGR uint8 frame as the bytes of a picture of `form` (OpenCV's encoders: exact, and 16 bits wide
    as 8-bit values times 257, which ffmpeg's conversion doesn't keep)."""
    if form.codec == "png":
        image, params = (frame.astype(np.uint16) * 257 if form.bit_depth == 16 else frame), []
    elif form.codec == "jpeg":
        image, params = frame, [cv2.IMWRITE_JPEG_QUALITY, PICTURE_QUALITY]
        # full colour: 4:2:0 would blur the colour edges of a stylised picture
        params += [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]
    elif form.codec == "webp":
        image, params = frame, [cv2.IMWRITE_WEBP_QUALITY, PICTURE_QUALITY]
    else:
        raise ValueError(f"not a picture codec: {form.codec}")
    ok, data = cv2.imencode(f".{form.codec}", image, params)
    if not ok:
        raise VidiffError(f"OpenCV could not encode a frame as {form.codec.upper()}")
    return data.tobytes()


def write_gif(segments, output: Path) -> None:
    """A looping GIF whose 256 colours are chosen from the whole clip (palettegen), dithered onto it (paletteuse)."""
    # named, not created: ffmpeg creates them, so OUTPUT gets the usual permissions (mkstemp's are 0600)
    token = secrets.token_hex(6)
    palette, temp = (output.parent / f".{output.stem}.{token}.partial{suffix}" for suffix in (".png", ".gif"))
    try:
        with concat_listing(segments, output.parent) as listing:
            # two passes over the segments, not one with a split: a split would hold every frame in memory
            _ffmpeg([*concat_input(listing), "-vf", "palettegen=stats_mode=full", "-frames:v", "1", "-update", "1",
                     os.path.abspath(palette)], output)  # fmt: skip
            # passthrough: every frame as it is, none repeated or dropped to fit a frame rate
            _ffmpeg([*concat_input(listing), "-i", os.path.abspath(palette), "-lavfi", "[0:v][1:v]paletteuse",
                     "-fps_mode", "passthrough", "-loop", "0", "-f", "gif", os.path.abspath(temp)], output)  # fmt: skip
        _fsync(str(temp))
        os.replace(temp, output)
    finally:
        palette.unlink(missing_ok=True)
        temp.unlink(missing_ok=True)


def _ffmpeg(command: list[str], output) -> None:
    done = subprocess.run(command, capture_output=True, text=True, errors="replace")
    if done.returncode != 0:
        raise VidiffError(f"ffmpeg could not write {output}: {_last_line(done.stderr)}")


def _write_sequence(segments, pattern: str, form: OutputForm, frames: int) -> None:
    """Every frame as a PNG numbered from 0, written in a hidden folder beside them and renamed into place
    once all are done; pictures an earlier, longer sequence left under the same pattern are removed, so a
    finished run leaves exactly its frames."""
    folder, name = os.path.split(os.path.abspath(pattern))
    os.makedirs(folder, exist_ok=True)
    earlier = sequence_files(pattern)
    temp = tempfile.mkdtemp(prefix=".vidiff-sequence.", suffix=".partial", dir=folder)
    try:
        written = []
        for index, frame in enumerate(_frames(segments)):
            if index == frames:
                break
            written.append(name % index)  # the printf pattern, as ffmpeg's image2 reads it (%% is %)
            with open(os.path.join(temp, written[-1]), "xb") as file:
                file.write(_encoded(frame, form))
                file.flush()
                os.fsync(file.fileno())
        if len(written) != frames:
            raise VidiffError(f"the work folder's segments hold {len(written)} of the {frames} frames of {pattern}; "
                              "run again with --restart")  # fmt: skip
        for file in written:
            os.replace(os.path.join(temp, file), os.path.join(folder, file))
        for stale in set(map(os.path.basename, earlier)) - set(written):
            os.unlink(os.path.join(folder, stale))
        _fsync(folder)  # the renames reach the disk before the work folder goes
    finally:
        shutil.rmtree(temp, ignore_errors=True)
