"""What a run will do, worked out before any model is loaded: the frames, their size, the shots, each
frame's settings.

`vidiff stylize --dry-run` prints it; stylize_video starts from it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .errors import VidiffError
from .io.reader import VideoInfo, VideoReader, fit_size, probe
from .io.formats import PICTURE, OutputForm, output_form
from .io.side_by_side import preview_path
from .io.writer import check_output_path
from .io.workfolder import segment_bounds
from .pipelines.processor import diffused_frames
from .settings.config import Config
from .settings.keyframes import Schedule, Timeline, split_weighted
from .temporal.change import color_histogram, histogram_distance
from .temporal.flow import backward_flow


# Shots listed by --dry-run before the rest are summed up.
SHOWN_SHOTS = 10
# Diffused frames (under cadence) listed by --dry-run.
SHOWN_DIFFUSED = 8


@dataclass(frozen=True)
class Shot:
    """Frames between hard cuts in the source: nothing carries over into a shot from the one before."""

    index: int  # 0 for the first shot
    # output frames [first, end); output frames count from 0 at --start, and leave out the frames
    # that --on-bad-frame skip leaves out
    first: int
    end: int
    source_first: int  # the input frame index of frame `first`: where a reader starts reading this shot


@dataclass(frozen=True)
class RunPlan:
    input: str
    output: str
    config: Config
    info: VideoInfo
    size: tuple[int, int]  # the processing size, (width, height)
    # the trims as VideoReader takes them: --start and --duration in seconds, --max-frames
    start: float
    duration: float | None
    max_frames: int | None
    on_bad_frame: str
    # With cuts on, counted by the shot pass; with cuts off, the container's count, an estimate (the
    # reader reads to the real end, so the last shot may run on past it or end before it)
    frames: int
    shots: tuple[Shot, ...]  # never empty; the last ends at `frames`
    timeline: Timeline
    # the error that ended the shot pass early (a damaged frame, --on-bad-frame stop): the run stops
    # with it too, after stylising the frames before it; None when the pass read to the end
    stopped: str | None = None
    # --cadence auto: the frames to diffuse, chosen by the shot pass from the motion (None otherwise)
    auto_diffused: tuple[int, ...] | None = None
    form: OutputForm | None = None  # what OUTPUT is written as (None: what its name asks for, by default)

    @property
    def output_form(self) -> OutputForm:
        return self.form or output_form(self.output)

    def open_reader(self) -> VideoReader:
        """A reader of the planned frames, to be opened with `with`; reader.frames(shot.first,
        shot.source_first) starts at a shot without converting the frames before it."""
        return VideoReader(self.info, self.size, self.start, self.duration, self.max_frames,
                           on_bad_frame=self.on_bad_frame)  # fmt: skip

    @property
    def start_frame(self) -> int:
        """The input frame index of output frame 0."""
        return self.open_reader().start_frame

    @property
    def start_seconds(self) -> float:
        """Where output frame 0 is in the input, in seconds: where the audio is cut."""
        return self.open_reader().start_seconds

    def shot_at(self, frame: int) -> Shot:
        """The shot that output frame `frame` belongs to; the last shot for frames past `frames`."""
        return next((shot for shot in reversed(self.shots) if shot.first <= frame), self.shots[0])

    def warnings(self) -> list[str]:
        notes = self.timeline.past_end(self.frames)
        if self.stopped is not None:
            notes.append(f"warning: the run will stop after {self.frames} frame(s): {self.stopped}")
        return notes

    def describe(self) -> str:
        """The plan as text: what --dry-run prints."""
        config, info = self.config, self.info
        width, height = self.size
        lines = [
            f"input      {self.input}: {info.width}x{info.height} at {float(info.fps):.3f} fps",
            f"frames     {self._frames()}",
            f"shots      {self._shots()}",
            f"size       {width}x{height} (--max-side {config.max_side})",
            f"model      {config.model} on {config.device}, {config.dtype}",
            f"sampler    {config.scheduler}, {config.steps} steps, noise {config.noise}",
            f"output     {self.output} ({self.output_form.describe()})",
        ]
        if config.cadence != 1:
            lines.append(f"cadence    {config.cadence}: {self._diffused()}")
        if config.motion_adapter is not None:
            lines.append(f"motion     {config.motion_adapter}: windows of {config.context} frames, each sharing "
                         f"{config.context_overlap} with the one before")  # fmt: skip
        if config.style_image is not None:
            lines.append(f"style      {config.style_image} through the IP-Adapter {config.ip_adapter}")
        scheduled = self.timeline.scheduled()
        if scheduled:
            lines.append(f"keyframes  ({config.interpolation} between them, seeds held; frame: value)")
            for name, schedule in scheduled.items():
                lines.append(f"  {name}: {_keyframes(schedule, float(info.fps))}")
        else:
            lines.append("keyframes  none: every frame has the same settings")
        return "\n".join(lines + self.warnings())

    def _frames(self) -> str:
        first = self.start_frame
        if not self.frames:  # the shot pass stopped at the first frame: warnings() says why
            return f"0 (none can be read from frame {first} of the input on)"
        seconds = self.frames / float(self.info.fps)
        return f"{self.frames} (frames {first}-{first + self.frames - 1} of the input, {seconds:.2f} s)"

    def _shots(self) -> str:
        if not self.config.cuts:
            return "1 (cut detection off)"
        shots = [shot for shot in self.shots if shot.end > shot.first]
        ranges = [f"{shot.first}" if shot.end == shot.first + 1 else f"{shot.first}-{shot.end - 1}"
                  for shot in shots[:SHOWN_SHOTS]]  # fmt: skip
        if len(shots) > SHOWN_SHOTS:
            ranges.append(f"… {len(shots) - SHOWN_SHOTS} more")
        return f"{len(shots)} (frames {', '.join(ranges)})" if shots else "0"


    def diffused(self) -> list[int]:
        """The frames cadence diffuses (every frame without it); the others are carried along the flow."""
        if self.auto_diffused is not None:
            return list(self.auto_diffused)
        return [frame for shot in self.shots for frame in diffused_frames(shot.first, shot.end, self.config.cadence)]

    def _diffused(self) -> str:
        frames = self.diffused()
        shown = ", ".join(str(frame) for frame in frames[:SHOWN_DIFFUSED])
        more = ", …" if len(frames) > SHOWN_DIFFUSED else ""
        return f"{len(frames)} of {self.frames} frames diffused ({shown}{more}), the others carried along the flow"


def _keyframes(schedule: Schedule, fps: float) -> str:
    shown = []
    for keyframe, position in zip(schedule.keyframes, schedule.positions):
        where = f"{position:g}" if not keyframe.seconds else f"{position:g} ({keyframe.at:g}s)"
        value = f"{keyframe.value!r}" if isinstance(keyframe.value, str) else f"{keyframe.value:g}"
        shown.append(f"{where}: {value}")
    return ", ".join(shown)


def plan_run(input: str | os.PathLike, output: str | os.PathLike, config: Config) -> RunPlan:
    """Check the settings, the input and the output, place the keyframes, and find the shots (a pass
    over the frames, with cuts on); loads no model."""
    config.validate()
    if not config.prompt.strip():
        raise VidiffError("no prompt: give --prompt TEXT or --preset NAME (`vidiff presets` lists them)")
    style = split_weighted(config.style_image)[0] if config.style_image else None
    if style and not os.path.isfile(os.path.expanduser(style)):  # before the model loads
        raise VidiffError(f"--style-image {style} not found: give a picture file (.png, .jpg, ...)")
    info = probe(input, config.fps)
    form = output_form(output, config.codec, config.bit_depth)
    check_output_path(output, input, config.overwrite, form)
    if config.preview and preview_path(output).parent.is_dir():  # a sequence's folder is made by the run
        check_output_path(preview_path(output), input, config.overwrite)
    size = fit_size(info.width, info.height, config.max_side)
    trims = dict(start=config.start, duration=config.duration, max_frames=config.max_frames,
                 on_bad_frame=config.on_bad_frame)  # fmt: skip
    reader = VideoReader(info, size, **trims)
    if reader.expected_frames == 0:
        raise VidiffError(f"input {input} has no frames from {config.start} s on (it has {info.frame_count}); lower --start")
    if form.kind == PICTURE and reader.expected_frames > 1:
        stem = os.path.splitext(os.fspath(output))[0]
        raise VidiffError(f"output {output} is one picture, but input {input} has {reader.expected_frames} frames; "
                          f"write them all as {stem}_%05d.png, or one with --max-frames 1")  # fmt: skip
    stopped, auto = None, None
    if config.cuts or config.cadence == "auto":
        # --cadence auto measures the motion in the same pass: the frames are decoded once
        auto = AutoCadence(config.cadence_threshold, config.cadence_max_gap) if config.cadence == "auto" else None
        shots, stopped = find_shots(reader, config.cut_threshold if config.cuts else None, auto)
        if shots[-1].end == 0 and stopped is None:  # the container promised frames the decoder can't deliver
            raise VidiffError(f"input {input} has no frames that can be decoded from {config.start} s on")
    else:
        # without cuts nothing needs the frames before the run: one shot, as long as the container says
        shots = (Shot(0, 0, reader.expected_frames, reader.start_frame),)
    timeline = Timeline(config, float(info.fps))
    return RunPlan(os.fspath(input), os.fspath(output), config, info, size, **trims, frames=shots[-1].end,
                   shots=shots, timeline=timeline, stopped=stopped,
                   auto_diffused=None if auto is None else auto.finish(), form=form)  # fmt: skip


class AutoCadence:
    """--cadence auto's diffused frames, chosen frame by frame in the shot pass: a shot's first and last
    frame, each segment's last (as for a fixed cadence), and a frame where the flow from the last diffused
    frame can't be trusted on more than `threshold` of the picture, or `max_gap` frames after it."""

    def __init__(self, threshold: float, max_gap: int):
        self.threshold, self.max_gap = threshold, max_gap
        self.chosen: list[int] = []
        self.anchor, self.anchor_index, self.shot_first, self.last_index = None, 0, 0, None

    def frame(self, index: int, frame, new_shot: bool) -> None:
        if new_shot:
            self._end_shot()
            self.shot_first = index
            self._diffuse(index, frame)
        else:
            _start, segment_end = segment_bounds(index, self.shot_first, None)
            if (index == segment_end - 1 or index - self.anchor_index >= self.max_gap
                    or 1.0 - backward_flow(self.anchor, frame)[1].mean() > self.threshold):  # fmt: skip
                self._diffuse(index, frame)
        self.last_index = index

    def _diffuse(self, index: int, frame) -> None:
        self.chosen.append(index)
        self.anchor, self.anchor_index = frame, index

    def _end_shot(self) -> None:
        """The shot's last frame is diffused: the frames before it need a neighbour after them."""
        if self.last_index is not None and self.chosen[-1] != self.last_index:
            self.chosen.append(self.last_index)

    def finish(self) -> tuple[int, ...]:
        self._end_shot()
        return tuple(self.chosen)


def find_shots(
    reader: VideoReader, threshold: float | None, auto: "AutoCadence | None" = None
) -> tuple[tuple[Shot, ...], str | None]:
    """Read the frames of `reader` (not yet opened) once and split them into shots where
    is_cut(previous frame, frame, threshold) is true, as the stylizer tests consecutive frames.

    Returns the shots, which cover every frame read (one empty shot if none could be), and the
    message of the reader's error if one ended the reading early (a damaged frame with
    on_bad_frame="stop"): the run raises it at the same frame, once the frames before it are done.
    """
    starts = [(0, reader.start_frame)]  # (output frame, input frame) where each shot begins
    count, previous, stopped = 0, None, None
    try:
        with reader:
            for source_index, frame in reader.indexed_frames():
                # is_cut's test, each frame's histogram taken once; memory holds one histogram
                histogram = None if threshold is None else color_histogram(frame)
                if count == 0:
                    starts[0] = (0, source_index)  # after frames left out by --on-bad-frame skip
                elif histogram is not None and histogram_distance(previous, histogram) > threshold:
                    starts.append((count, source_index))
                if auto is not None:
                    auto.frame(count, frame, new_shot=starts[-1][0] == count)
                previous = histogram
                count += 1
    except VidiffError as err:
        stopped = err.on_command_line()  # a warning, worded as the other warnings are
    ends = [first for first, _ in starts[1:]] + [count]
    return tuple(Shot(n, first, end, source) for n, ((first, source), end) in enumerate(zip(starts, ends))), stopped
