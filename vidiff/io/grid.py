"""A labelled grid of pictures, as A1111's X/Y plot draws it, written as an image or an animation.

Column labels go on a header row, row labels in a column on the left; the pictures keep their pixels
unless the grid would pass MAX_SIDE, when all of them are scaled down by the same factor.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np

from ..errors import VidiffError
from .atomic import write_atomic
from .pictures import write_gif
from .writer import SegmentEncoder, VideoWriter

# The longest side a grid may have, in pixels; the pictures are scaled down to fit.
MAX_SIDE = 4096
STILL_SUFFIXES = (".png", ".jpg", ".jpeg")
ANIMATED_SUFFIXES = (".mp4", ".gif")

FONT, SCALE, THICKNESS = cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1
LINE = 14  # pixels from one line of label text to the next at SCALE
PAD = 4
MAX_LINES = 3  # a longer label is cut short with "..."
LABEL_COLUMN = (48, 160)  # the row labels' column: at least, at most this wide
BACKGROUND, INK, GAP = (255, 255, 255), (0, 0, 0), (40, 40, 40)


def check_grid_path(path: str | os.PathLike, input: str | os.PathLike, animated: bool, overwrite: bool) -> None:
    """Refuse a GRID we can't or shouldn't write, before any work is done."""
    path = Path(path)
    if os.path.exists(input) and path.exists() and os.path.samefile(path, input):
        raise VidiffError(f"{path} is the input; write the grid to another file")
    suffix = path.suffix.lower()
    allowed = ANIMATED_SUFFIXES if animated else STILL_SUFFIXES + ANIMATED_SUFFIXES
    if suffix not in allowed:
        if animated and suffix in STILL_SUFFIXES:
            raise VidiffError(f"{path}: several frames a cell make an animation; write a .mp4 or .gif grid")
        raise VidiffError(f"{path}: can't write {suffix or 'a file without an extension'}; "
                          f"use one of {', '.join(allowed)}")  # fmt: skip
    if not path.parent.is_dir():
        raise VidiffError(f"grid folder {path.parent} does not exist; create it or choose another GRID")
    if path.is_dir():
        raise VidiffError(f"{path} is a folder; give a file name such as {path / 'grid.png'}")
    if path.exists() and not overwrite:
        raise VidiffError(f"{path} exists; pass --overwrite to replace it")


@dataclass(frozen=True)
class GridLayout:
    """Where everything goes: the labels drawn once, the pictures pasted into their boxes each frame."""

    background: np.ndarray  # the empty grid with its labels, RGB uint8
    boxes: tuple[tuple[int, int, int, int], ...]  # (x, y, width, height) of each picture, row by row
    scale: float  # the pictures' size in the grid over their own (1: their own pixels)

    @property
    def size(self) -> tuple[int, int]:
        return self.background.shape[1], self.background.shape[0]

    def draw(self, pictures: list[np.ndarray | None]) -> np.ndarray:
        """The grid with these pictures (RGB uint8, row by row; None leaves a box empty)."""
        grid = self.background.copy()
        for (x, y, width, height), picture in zip(self.boxes, pictures):
            if picture is None:
                continue
            if picture.shape[:2] != (height, width):
                picture = cv2.resize(picture, (width, height), interpolation=cv2.INTER_AREA)
            grid[y : y + height, x : x + width] = picture
        return grid


def layout(column_labels: list[str], row_labels: list[str] | None, sizes: list[tuple[int, int]]) -> GridLayout:
    """The layout of len(row_labels or [""]) × len(column_labels) pictures of the given (width, height)
    sizes, row by row; without row labels there is one row and no label column."""
    columns, rows = len(column_labels), len(row_labels) if row_labels else 1
    slot_w, slot_h = max(w for w, _ in sizes), max(h for _, h in sizes)
    label_w = 0
    if row_labels:
        widest = max(_text_width(label) for label in row_labels) + 2 * PAD
        label_w = min(max(widest, LABEL_COLUMN[0]), LABEL_COLUMN[1])
    header_most = MAX_LINES * LINE + 2 * PAD
    scale = min(1.0, (MAX_SIDE - label_w - columns) / (columns * slot_w), (MAX_SIDE - header_most - rows) / (rows * slot_h))
    if scale * min(slot_w, slot_h) < 8:
        raise VidiffError(f"a grid of {rows}x{columns} cells of {slot_w}x{slot_h} can't fit in {MAX_SIDE} pixels a side; "
                          "vary fewer values")  # fmt: skip
    slot_w, slot_h = max(1, int(slot_w * scale)), max(1, int(slot_h * scale))
    column_lines = [_wrap(label, slot_w - 2 * PAD) for label in column_labels]
    header_h = max(len(lines) for lines in column_lines) * LINE + 2 * PAD
    # a pixel of gap between cells; even sides, which H.264's yuv420p needs
    width = _even(label_w + columns * (slot_w + 1))
    height = _even(header_h + rows * (slot_h + 1))
    grid = np.full((height, width, 3), BACKGROUND, np.uint8)
    boxes = []
    for r in range(rows):
        for c in range(columns):
            w, h = (max(1, int(side * scale)) for side in sizes[r * columns + c])
            x0, y0 = label_w + c * (slot_w + 1), header_h + r * (slot_h + 1)
            grid[y0 : y0 + slot_h, x0 : x0 + slot_w] = GAP  # a smaller picture sits centred on grey
            boxes.append((x0 + (slot_w - w) // 2, y0 + (slot_h - h) // 2, w, h))
    for c, lines in enumerate(column_lines):
        _draw_lines(grid, lines, label_w + c * (slot_w + 1), 0, slot_w, header_h)
    for r, label in enumerate(row_labels or []):
        _draw_lines(grid, _wrap(label, label_w - 2 * PAD), 0, header_h + r * (slot_h + 1), label_w, slot_h)
    return GridLayout(grid, tuple(boxes), scale)


def _even(n: int) -> int:
    return n + n % 2


def _text_width(text: str) -> int:
    return cv2.getTextSize(text, FONT, SCALE, THICKNESS)[0][0]


def _wrap(text: str, width: int) -> list[str]:
    """`text` in lines at most `width` pixels wide, at most MAX_LINES of them; long words are broken."""
    # OpenCV's Hershey fonts draw ASCII only
    text = "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in " ".join(text.split()))
    lines, line = [], ""
    for word in text.split(" "):
        joined = f"{line} {word}" if line else word
        if _text_width(joined) <= width:
            line = joined
            continue
        if line:
            lines.append(line)
        while len(word) > 1 and _text_width(word) > width:  # a word wider than the box is broken
            cut = max(1, next((n for n in range(len(word), 0, -1) if _text_width(word[:n]) <= width), 1))
            lines.append(word[:cut])
            word = word[cut:]
        line = word
    lines.append(line)
    if len(lines) > MAX_LINES:
        last = lines[MAX_LINES - 1]
        while last and _text_width(last + "...") > width:
            last = last[:-1]
        lines = lines[: MAX_LINES - 1] + [last + "..."]
    return lines


def _draw_lines(grid: np.ndarray, lines: list[str], x: int, y: int, width: int, height: int) -> None:
    """Lines of text centred in the box (x, y, width, height)."""
    top = y + (height - len(lines) * LINE) // 2
    for n, line in enumerate(lines):
        left = x + max(PAD, (width - _text_width(line)) // 2)
        baseline = top + (n + 1) * LINE - 4
        cv2.putText(grid, line, (left, baseline), FONT, SCALE, INK, THICKNESS, cv2.LINE_AA)


def write_grid(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: Fraction) -> int:
    """Write RGB grid frames to `path` (a picture: the first frame; .mp4 or .gif: all of them), atomically.
    Returns the frames written."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in STILL_SUFFIXES:
        frame = next(iter(frames))
        ok, data = cv2.imencode(suffix, cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        if not ok:
            raise VidiffError(f"OpenCV could not encode the grid as {suffix}")
        write_atomic(path, lambda file: file.write(data.tobytes()))
        return 1
    if suffix == ".gif":
        return _write_gif(path, frames, fps)

    frames = iter(frames)
    first = next(frames)
    with VideoWriter(path, (first.shape[1], first.shape[0]), fps) as writer:
        writer.write(first)
        for frame in frames:
            writer.write(frame)
    return writer.frames_written


def _write_gif(path: Path, frames: Iterable[np.ndarray], fps: Fraction) -> int:
    """A GIF made as a run's .gif OUTPUT is (pictures.write_gif: a palette for the whole clip, looped), from
    the frames put in a lossless segment first."""
    frames = iter(frames)
    first = next(frames)
    height, width = first.shape[:2]
    with tempfile.TemporaryDirectory(prefix=".vidiff-grid.", dir=path.parent) as scratch:
        segment = Path(scratch) / "frames.mkv"
        with SegmentEncoder(segment, (width, height), fps, codec="ffv1") as encoder:
            for frame in _chain(first, frames):
                encoder.write(frame)
        write_gif([segment], path)
        return encoder.frames_written


def _chain(first: np.ndarray, rest: Iterable[np.ndarray]):
    yield first
    yield from rest
