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
        self.batchable = diffuser.batchable  # what the run warns about; one diffused frame per window either way
        self.batch_size = 1

    def window_end(self, first: int, start: int, limit: int) -> int:
        shot_first = self.shot_firsts[max(bisect_right(self.shot_firsts, first) - 1, 0)]
        if self.diffused is not None and first != shot_first:
            following = bisect_left(self.diffused, first)
            if following < len(self.diffused):  # the window ends on the next chosen frame
                return min(self.diffused[following] + 1, limit)
        return cadence_window_end(first, shot_first, self.cadence, limit)

    def process(self, frames: list[np.ndarray], first: int, state: TemporalState | None = None) -> list[FrameResult]:
        """The window's frames: the last is diffused (so is the first when `state` is None: a shot begins),
        the others are made from their diffused neighbours. In-between results carry no state (None): no
        window ends on them, so nothing starts from them."""
        results = []
        # 1. A shot's first frame: diffused with nothing before it
        if state is None:
            results = self.diffuser.process(frames[:1], first, None)
            state, frames, first = results[0].state, frames[1:], first + 1
            if not frames:
                return results
        # 2. The window's last frame: diffused, given the previous diffused frame's state
        last = first + len(frames) - 1
        diffused = self.diffuser.process(frames[-1:], last, state)[0]
        # 3. The frames between: both neighbours' outputs carried along the flow and blended
        before = first - 1
        for offset, frame in enumerate(frames[:-1]):
            weight = nearness(before, first + offset, last)
            image = in_between(frame, state.source, state.image, frames[-1], diffused.image, weight)
            results.append(FrameResult(image=image, state=None, new_shot=False))
        results.append(diffused)
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
