"""The cadence processor: diffuse some frames of each shot with img2img, carry the rest along the motion.

A shot's first frame is diffused alone; each later window holds the frames after a diffused frame up
to the next diffused frame, which ends it (see processor.cadence_window_end): `cadence` frames on, or
the last frame before a segment's end, so every window ends on a diffused frame and a run resumes at
a window start with a diffused frame's state. The Img2ImgProcessor sees only the diffused frames, in
order, so flow-blend, fusion, warped noise and colour matching act between them. An in-between frame
is its two diffused neighbours' outputs, warped onto it along the source's flow and blended
(temporal/interpolate.py).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from typing import Sequence

import numpy as np

from ..temporal.interpolate import in_between, nearness
from .img2img import Img2ImgProcessor
from .processor import cadence_window_end
from .state import FrameResult, TemporalState


class CadenceProcessor:
    """Wraps an Img2ImgProcessor built with find_cuts=False (the run's shots split at cuts already:
    between frames `cadence` apart a fast pan can look like a cut)."""

    def __init__(
        self, diffuser: Img2ImgProcessor, cadence: int, shot_firsts: Sequence[int], diffused: Sequence[int] | None = None
    ):
        """`shot_firsts`: the first frame of every shot of the run, where the diffused frames are counted from.
        `diffused`: the frames to diffuse, chosen beforehand (--cadence auto); `cadence` is then the most
        frames a window holds past the list's end."""
        if cadence < 1:
            raise ValueError(f"cadence must be a whole number ≥ 1, not {cadence}")
        self.diffuser, self.cadence = diffuser, cadence
        self.shot_firsts = sorted(shot_firsts)
        self.diffused = None if diffused is None else sorted(diffused)
        self.parts = diffuser.parts
        self.batchable = diffuser.batchable  # what the run warns about
        # diffused frames that don't depend on each other go through the model together, as img2img batches
        self.batch_size = diffuser.batch_size

    def _next_end(self, first: int, shot_first: int, limit: int) -> int:
        """The end of the cadence window beginning at `first`: after the next diffused frame."""
        if self.diffused is not None and first != shot_first:
            following = bisect_left(self.diffused, first)
            if following < len(self.diffused):  # the window ends on the next chosen frame
                return min(self.diffused[following] + 1, limit)
        return cadence_window_end(first, shot_first, self.cadence, limit)

    def _shot_first(self, frame: int) -> int:
        return self.shot_firsts[max(bisect_right(self.shot_firsts, frame) - 1, 0)]

    def window_end(self, first: int, start: int, limit: int) -> int:
        """Up to batch_size cadence windows at once, so that their diffused frames batch when they can."""
        shot_first, end = self._shot_first(first), first
        for _ in range(self.batch_size):
            if end >= limit:
                break
            end = self._next_end(end, shot_first, limit)
        return end

    def process(self, frames: list[np.ndarray], first: int, state: TemporalState | None = None) -> list[FrameResult]:
        """The window's frames: the last of each cadence window in it is diffused (so is the first when
        `state` is None: a shot begins), all of them in one batch; the others are made from their diffused
        neighbours. In-between results carry no state (None): no window ends on them, so nothing starts from them."""
        end, shot_first = first + len(frames), self._shot_first(first)
        # 1. Which frames are diffused: the ends of the cadence windows (the last frame read ends the last)
        diffused, position = [], first
        if state is None:
            diffused, position = [first], first + 1
        while position < end:
            position = min(self._next_end(position, shot_first, end), end)
            diffused.append(position - 1)
        # 2. Diffuse them together, each given the one before it as its previous frame
        outputs = self.diffuser.process([frames[index - first] for index in diffused], diffused[0], state, diffused)
        by_index = dict(zip(diffused, outputs))
        # 3. The frames between: both neighbours' outputs carried along the flow and blended
        results, before = [], state
        for index in range(first, end):
            if index in by_index:
                results.append(by_index[index])
                before = by_index[index].state
                continue
            # its neighbours: the diffused frame before (in this window, or the one that ended the last) and after
            after = next(d for d in diffused if d > index)
            weight = nearness(max((d for d in diffused if d < index), default=first - 1), index, after)
            image = in_between(frames[index - first], before.source, before.image, frames[after - first],
                               by_index[after].image, weight)  # fmt: skip
            results.append(FrameResult(image=image, state=None, new_shot=False))
        return results

    def export_state(self, state: TemporalState, with_memory: bool = True) -> dict:
        return self.diffuser.export_state(state, with_memory)

    def import_state(self, data: dict) -> TemporalState:
        return self.diffuser.import_state(data)

    def close(self) -> None:
        self.diffuser.close()

    def __enter__(self) -> "CadenceProcessor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
