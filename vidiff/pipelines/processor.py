"""The contract between the run loop and a technique: windows in, frames and temporal state out.

The loop (run.py) walks each shot's frames in windows: a processor says where the window that
begins at a frame ends (a batch of independent frames for img2img; under cadence the frames after a
diffused frame up to the next one; later a motion module's 16 frames), processes the window's frames with the state
the frames before it left, and hands back each frame's output and the state after it. The state
goes to the work folder through export_state and comes back through import_state, so a window can
be processed after a restart, or on another machine, exactly as it would have been.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from ..io.workfolder import segment_bounds
from .state import FrameResult, TemporalState


class Processor(Protocol):
    def window_end(self, first: int, start: int, limit: int) -> int:
        """Where the window that begins at frame `first` ends (exclusive), within frames [start, limit)
        that no window may cross (a segment of a shot); windows are laid out from `start`."""

    def process(self, frames: list[np.ndarray], first: int, state: TemporalState | None) -> list[FrameResult]:
        """The window's frames (indices first, first + 1, ...), given the state before them; one result each."""

    def export_state(self, state: TemporalState, with_memory: bool = True) -> dict:
        """`state` as plain CPU tensors for the work folder (with the processor's own memory, if it has one)."""

    def import_state(self, data: dict) -> TemporalState:
        """The inverse of export_state."""

    def close(self) -> None:
        """Undo what the processor did to the model parts it was given."""


def batch_window_end(first: int, size: int, start: int, limit: int) -> int:
    """The end of a batch of `size` frames laid out from `start`: batches begin at fixed frames, so a
    resumed run batches its frames as the first run did (bit-identical output)."""
    return min(start + ((first - start) // size + 1) * size, limit)


def cadence_window_end(first: int, shot_first: int, cadence: int, limit: int) -> int:
    """The end of a cadence window beginning at `first`: the shot's first frame alone, else the frames
    after a diffused frame up to the next one, `cadence` frames on or the last before `limit`."""
    if first == shot_first:
        return first + 1
    return min(first + cadence, limit)


def diffused_frames(shot_first: int, shot_end: int, cadence: int) -> list[int]:
    """The frames of the shot [shot_first, shot_end) that cadence diffuses: the last of each window."""
    found, first = [], shot_first
    while first < shot_end:
        _start, limit = segment_bounds(first, shot_first, shot_end)
        first = cadence_window_end(first, shot_first, cadence, limit)
        found.append(first - 1)
    return found
