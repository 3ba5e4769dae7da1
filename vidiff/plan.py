"""What a run will do, worked out before any model is loaded: the frames, their size, each frame's settings.

`vidiff stylize --dry-run` prints it; stylize_video starts from it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .errors import VidiffError
from .io.reader import VideoInfo, VideoReader, fit_size, probe
from .io.writer import check_output_path
from .settings.config import Config
from .settings.keyframes import Schedule, Timeline


@dataclass
class RunPlan:
    input: str
    output: str
    config: Config
    info: VideoInfo
    size: tuple[int, int]  # the processing size, (width, height)
    reader: VideoReader  # not yet opened
    timeline: Timeline

    @property
    def frames(self) -> int:
        return self.reader.expected_frames

    def warnings(self) -> list[str]:
        return self.timeline.past_end(self.frames)

    def describe(self) -> str:
        """The plan as text: what --dry-run prints."""
        config, info = self.config, self.info
        width, height = self.size
        seconds = self.frames / float(info.fps)
        lines = [
            f"input      {self.input}: {info.width}x{info.height} at {float(info.fps):.3f} fps",
            f"frames     {self.frames} (frames {self.reader.start_frame}-{self.reader.start_frame + self.frames - 1} "
            f"of the input, {seconds:.2f} s)",
            f"size       {width}x{height} (--max-side {config.max_side})",
            f"model      {config.model} on {config.device}, {config.dtype}",
            f"sampler    {config.scheduler}, {config.steps} steps, noise {config.noise}",
            f"output     {self.output}",
        ]
        scheduled = self.timeline.scheduled()
        if scheduled:
            lines.append(f"keyframes  ({config.interpolation} between them, seeds held; frame: value)")
            for name, schedule in scheduled.items():
                lines.append(f"  {name}: {_keyframes(schedule, float(info.fps))}")
        else:
            lines.append("keyframes  none: every frame has the same settings")
        return "\n".join(lines + self.warnings())


def _keyframes(schedule: Schedule, fps: float) -> str:
    shown = []
    for keyframe, position in zip(schedule.keyframes, schedule.positions):
        where = f"{position:g}" if not keyframe.seconds else f"{position:g} ({keyframe.at:g}s)"
        value = f"{keyframe.value!r}" if isinstance(keyframe.value, str) else f"{keyframe.value:g}"
        shown.append(f"{where}: {value}")
    return ", ".join(shown)


def plan_run(input: str | os.PathLike, output: str | os.PathLike, config: Config) -> RunPlan:
    """Check the settings, the input and the output, and place the keyframes; loads no model."""
    config.validate()
    if not config.prompt.strip():
        raise VidiffError("no prompt: give --prompt TEXT or --preset NAME (`vidiff presets` lists them)")
    info = probe(input, config.fps)
    check_output_path(output, input, config.overwrite)
    size = fit_size(info.width, info.height, config.max_side)
    reader = VideoReader(info, size, config.start, config.duration, config.max_frames, on_bad_frame=config.on_bad_frame)
    if reader.expected_frames == 0:
        raise VidiffError(f"input {input} has no frames from {config.start} s on (it has {info.frame_count}); lower --start")
    timeline = Timeline(config, float(info.fps))
    return RunPlan(os.fspath(input), os.fspath(output), config, info, size, reader, timeline)
