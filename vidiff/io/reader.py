"""Streaming video in (OpenCV): probe, image sequences, and a reader that decodes one frame at a time.

Frames travel as RGB uint8 arrays of shape (height, width, 3), one at a time: memory does not grow
with the clip's length. INPUT may also be an image sequence: a folder of numbered images, or a
printf pattern such as frames/img_%04d.png; its images are read one at a time, like a video's frames.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterator

import cv2
import numpy as np

from ..errors import VidiffError
from ..settings.config import BAD_FRAME_ACTIONS
from .ffmpeg import audio_streams
from .rates import exact_fps, parse_fps

log = logging.getLogger("vidiff")


# Files an image-sequence INPUT is made of.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


# The frame rate of an image sequence given without one: film's.
DEFAULT_IMAGE_FPS = Fraction(24)




# Reads tried past a failed one before it counts as the end of the video rather than a damaged
# frame: at least this many, more while the container says frames remain, at most the cap.
LOOKAHEAD_READS = 8


MAX_LOOKAHEAD_READS = 1000


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
    images: tuple[str, ...] = ()  # an image sequence's files in frame order; () for a video


def probe(path: str | os.PathLike, fps: str | float | Fraction | None = None) -> VideoInfo:
    """Open `path` and read its size, exact fps and frame count, or say why not.

    `path` is a video file, a folder of numbered images or a printf pattern (frames/img_%04d.png);
    `fps` is the frame rate of an image sequence (default 24) and is refused for a video, which has its own.
    """
    path = os.fspath(path)
    images = image_sequence(path)
    if images is not None:
        return _probe_images(path, images, fps)
    if not os.path.exists(path):
        raise VidiffError(f"input not found: {path}")
    if not os.access(path, os.R_OK):
        raise VidiffError(f"input {path} is not readable (permission denied)")
    if os.path.getsize(path) == 0:
        raise VidiffError(f"input {path} is empty (0 bytes); give a video file")
    if fps is not None:
        raise VidiffError(f"--fps {fps}: input {path} is a video and keeps its own frame rate; "
                          "--fps is for image sequences (a folder of numbered images or a pattern) only")  # fmt: skip
    capture = _open_capture(path)
    try:
        if not capture.isOpened():
            if audio_streams(path):
                raise VidiffError(f"input {path} has no video stream (audio only); give a video file")
            raise VidiffError(f"input {path} could not be opened as a video (not a video, or truncated)")
        rate = capture.get(cv2.CAP_PROP_FPS)
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        frame = None
        if rate and rate > 0:
            # the size of the frames as decoded: upright, with rotation metadata applied (phone videos)
            frames = (frame for _, frame in _decoded_frames(capture, 0, count) if frame is not None)
            frame = next(frames, None)
        if frame is None:
            what = "has no video stream (audio only)" if audio_streams(path) else "has no video frames that can be decoded"
            raise VidiffError(f"input {path} {what}; give a video file")
    finally:
        capture.release()
    return VideoInfo(path, frame.shape[1], frame.shape[0], exact_fps(rate), max(count, 1))


def _open_capture(path: str) -> cv2.VideoCapture:
    capture = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
    # frames upright as the rotation metadata says (phone videos); OpenCV's default, made sure of
    capture.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)
    return capture


def image_sequence(path: str) -> list[str] | None:
    """The files of an image-sequence INPUT in frame order, or None if `path` names a file.

    A folder gives its images with a number in the name, sorted by that number (img_2 before
    img_10); others (cover.jpg) and hidden files are left out. A printf pattern (img_%04d.png)
    gives the files it matches, by number.
    """
    if os.path.isdir(path):
        return _numbered_images(path)
    if not os.path.exists(path) and _printf_number(os.path.basename(path)):
        return _pattern_images(path)
    return None


def input_identity(path: str | os.PathLike) -> dict[str, int | str]:
    """What tells that INPUT is unchanged since an earlier run: the size and modification time of
    its file, or of every image of an image sequence (a folder's own times miss an image edited in place)."""
    path = os.fspath(path)
    images = image_sequence(path)
    if images is None:
        stat = os.stat(path)
        return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    listing = [(os.path.basename(name), stat.st_size, stat.st_mtime_ns) for name in images for stat in [os.stat(name)]]
    return {"images": len(images), "sha256": hashlib.sha256(repr(listing).encode()).hexdigest()}


def _natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _numbered_images(folder: str) -> list[str]:
    try:
        names = [n for n in os.listdir(folder) if not n.startswith(".")]  # ._img_0001.png is macOS metadata
    except OSError as err:
        raise VidiffError(f"input folder {folder} can't be read: {err.strerror}") from None
    images = [n for n in names if os.path.splitext(n)[1].lower() in IMAGE_SUFFIXES]
    numbered = [n for n in images if re.search(r"\d", os.path.splitext(n)[0])]
    numbered.sort(key=lambda n: (_natural_key(n), n))
    if not numbered:
        raise VidiffError(
            f"input {folder} is a folder without numbered images; give a video file, or a folder of "
            f"numbered images ({', '.join(IMAGE_SUFFIXES)}) such as frame_0001.png, frame_0002.png, ..."
        )
    suffixes = sorted({os.path.splitext(n)[1].lower() for n in numbered})
    if len(suffixes) > 1:
        raise VidiffError(
            f"input folder {folder} mixes {' and '.join(suffixes)} images; keep one kind there, or give a "
            f"pattern such as {os.path.join(folder, 'frame_%04d' + suffixes[0])}"
        )
    return [os.path.join(folder, n) for n in numbered]


def _printf_number(name: str) -> re.Match | None:
    """The one %d or %0Nd in a file name (after %% escapes), as ffmpeg's image2 patterns have it."""
    found = [m for m in re.finditer(r"%(?:%|(0?)(\d*)d)", name) if m.group() != "%%"]
    return found[0] if len(found) == 1 else None


def _pattern_images(pattern: str) -> list[str]:
    folder, name = os.path.split(pattern)
    number = _printf_number(name)
    digits = rf"\d{{{int(number.group(2))},}}" if number.group(1) and number.group(2) else r"\d+"
    head, tail = (re.escape(part.replace("%%", "%")) for part in (name[: number.start()], name[number.end():]))
    regex = re.compile(f"{head}({digits}){tail}")
    try:
        names = os.listdir(folder or ".")
    except OSError:
        names = []
    matches = sorted((int(m.group(1)), n) for n in names if (m := regex.fullmatch(n)))
    if not matches:
        raise VidiffError(f"input pattern {pattern} matches no files; check the folder and the %d part "
                          "(img_%04d.png matches img_0001.png, img_0002.png, ...)")  # fmt: skip
    return [os.path.join(folder, n) for _, n in matches]


def _probe_images(path: str, images: list[str], fps) -> VideoInfo:
    if fps is None:
        rate = DEFAULT_IMAGE_FPS
    else:
        try:
            rate = parse_fps(fps)
        except ValueError:
            raise VidiffError(f"--fps {fps!r}: must be a frame rate above 0, such as 24, 12.5 or 30000/1001") from None
    # the first image that reads sets the size; an unreadable one is the reader's to report
    for name in images:
        frame = cv2.imread(name, cv2.IMREAD_COLOR)
        if frame is not None:
            return VideoInfo(path, frame.shape[1], frame.shape[0], rate, len(images), tuple(images))
    raise VidiffError(f"input {path}: none of its {len(images)} image(s) can be read, such as {images[0]}")


def _decoded_frames(capture: cv2.VideoCapture, first: int, count: int) -> Iterator[tuple[int, np.ndarray | None]]:
    """A video's frames from index `first` on as (index, BGR frame), the frame None where it can't be
    decoded; frames before `first` are skipped without being converted.

    A failed read is the end only if the reads after it fail too: a container's frame count is an
    estimate, so the end is found by reading, and a damaged frame is one with decodable frames after it.
    """
    index = 0
    while True:
        if not capture.grab():
            tries = min(MAX_LOOKAHEAD_READS, max(LOOKAHEAD_READS, count - index))
            damaged = next((n for n in range(1, tries + 1) if capture.grab()), None)
            if damaged is None:
                return
            for bad in range(max(index, first), index + damaged):
                yield bad, None
            index += damaged
        if index >= first:
            ok, frame = capture.retrieve()
            yield index, frame if ok else None
        index += 1


def _image_frames(info: VideoInfo, first: int) -> Iterator[tuple[int, np.ndarray | None]]:
    """An image sequence's frames from index `first` on as (index, BGR frame), None for an unreadable image."""
    for index in range(first, len(info.images)):
        frame = cv2.imread(info.images[index], cv2.IMREAD_COLOR)
        if frame is not None and (frame.shape[1], frame.shape[0]) != (info.width, info.height):
            raise VidiffError(
                f"image {info.images[index]} is {frame.shape[1]}x{frame.shape[0]}, but the sequence's frames are "
                f"{info.width}x{info.height}; all images of an image sequence must be the same size"
            )
        yield index, frame


class VideoReader:
    """Decode frames one at a time, trimmed by start/duration/max_frames and resized to `size`.

    A frame that can't be decoded before the end is reported with its index, then skipped
    (on_bad_frame="skip") or ends the run with a VidiffError ("stop").

    >>> with VideoReader("in.mp4", size=(512, 288)) as reader:
    ...     for frame in reader: ...
    """

    def __init__(
        self,
        path: str | os.PathLike | VideoInfo,
        size: tuple[int, int] | None = None,
        start: float = 0.0,
        duration: float | None = None,
        max_frames: int | None = None,
        *,
        fps: str | float | Fraction | None = None,
        on_bad_frame: str = "stop",
    ):
        if on_bad_frame not in BAD_FRAME_ACTIONS:
            raise ValueError(f"on_bad_frame must be one of {BAD_FRAME_ACTIONS}, got {on_bad_frame!r}")
        # a VideoInfo from probe() saves probing the input a second time
        self.info = path if isinstance(path, VideoInfo) else probe(path, fps)
        self.size = size or (self.info.width, self.info.height)
        self.on_bad_frame = on_bad_frame
        # trims are whole frames, so the audio can be cut at exactly the same instants
        self.start_frame = int(round(start * self.info.fps))
        limits = [n for n in (None if duration is None else max(1, int(round(duration * self.info.fps))), max_frames)
                  if n is not None]  # fmt: skip
        self._limit = min(limits) if limits else None  # the most frames the trims allow; None: to the end
        left = self.info.frame_count - self.start_frame
        self.expected_frames = max(0, left if self._limit is None else min(left, self._limit))
        self._capture: cv2.VideoCapture | None = None
        self._open = False

    @property
    def start_seconds(self) -> float:
        return float(self.start_frame / self.info.fps)

    def __enter__(self) -> "VideoReader":
        if not self.info.images:
            self._capture = _open_capture(self.info.path)
        self._open = True
        return self

    def __exit__(self, *exc) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None
        self._open = False

    def __iter__(self) -> Iterator[np.ndarray]:
        return self.frames()

    def frames(
        self, first: int = 0, source_first: int | None = None, shot_first: int | None = None
    ) -> Iterator[np.ndarray]:
        """The RGB frames from output frame `first` on (output frames count from 0 at the start trim,
        frames left out by on_bad_frame="skip" not counted).

        Without `source_first` the input is read from the start trim on. With it, reading starts at
        input frame `source_first`, known to be output frame `shot_first` (default: `first`), as a
        shot's first frame is: the video frames before it are decoded but not converted (an image
        sequence's are not read), and those from there up to `first` (a resume inside the shot) are
        counted, not converted. Damaged frames are reported, left out or raised as in order.
        """
        return (frame for _, frame in self.indexed_frames(first, source_first, shot_first))

    def indexed_frames(
        self, first: int = 0, source_first: int | None = None, shot_first: int | None = None
    ) -> Iterator[tuple[int, np.ndarray]]:
        """frames(), each as (its input frame index, the RGB frame)."""
        if not self._open:
            raise RuntimeError("use VideoReader as a context manager")
        if source_first is None:
            source_first, shot_first = self.start_frame, 0
        elif shot_first is None:
            shot_first = first
        if source_first < self.start_frame or not 0 <= shot_first <= first:
            raise ValueError(f"frames({first}, source_first={source_first}, shot_first={shot_first}): source_first "
                             f"must be at or after the start trim (input frame {self.start_frame}), and "
                             "0 <= shot_first <= first")  # fmt: skip
        if self.info.images:
            # an image sequence needs no decoding up to the start: its frames are files
            frames = _image_frames(self.info, source_first)
        else:
            # decode up to the start rather than seek: container seeks land on keyframes, not frames
            frames = _decoded_frames(self._capture, source_first, self.info.frame_count)
        limit = self._limit
        produced, damaged, end = shot_first, [], source_first  # end: the index after the last frame met
        while limit is None or produced < limit:
            index, frame = next(frames, (None, None))
            if index is None:
                break
            end = index + 1
            if frame is None:
                damaged.append(index)
                if self.on_bad_frame == "stop":
                    self._report(damaged)
                continue
            if damaged:
                self._report(damaged)
                damaged = []
            if produced >= first:
                yield index, self._to_rgb(frame)
            produced += 1
        else:
            return  # the trim ended it, not the input
        if damaged:  # unreadable images at the end of a sequence
            self._report(damaged)
        # a damaged end reads like the end itself: only the container's frame count can tell
        if not self.info.images and produced and self.info.frame_count - end > max(2, self.info.frame_count // 50):
            log.warning(f"input {self.info.path} ended after {end} of the {self.info.frame_count} frames its "
                        "container lists; the rest can't be decoded (a damaged or truncated file?)")  # fmt: skip

    def _report(self, damaged: list[int]) -> None:
        """Name the frames that can't be decoded, then stop with an error or go on without them."""
        first, last = damaged[0], damaged[-1]
        which = f"frame {first}" if first == last else f"frames {first}-{last}"
        if self.info.images:
            files = [os.path.basename(self.info.images[i]) for i in (first, last)]
            which += f" ({files[0]})" if first == last else f" ({files[0]} to {files[1]})"
        if self.on_bad_frame == "stop":
            raise VidiffError(f"{which} of input {self.info.path} can't be decoded (damaged?); "
                              "pass --on-bad-frame skip to leave such frames out")  # fmt: skip
        log.warning(f"{which} of input {self.info.path} can't be decoded (damaged?); left out (--on-bad-frame skip)")

    def _to_rgb(self, frame: np.ndarray) -> np.ndarray:
        if frame.ndim == 2:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        width, height = self.size
        if (frame.shape[1], frame.shape[0]) != (width, height):
            shrinking = width < frame.shape[1] or height < frame.shape[0]
            frame = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)
        return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
