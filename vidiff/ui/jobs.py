"""The UI's jobs: one at a time, in a folder the UI owns, with progress to show, a stop that leaves the run
resumable, and the model parts kept loaded from one job to the next.

A job's output goes to a folder named by the run's resume fingerprint (the settings and the input's
identity), so that the same settings on the same video continue a stopped run, as re-running the same
command does on the command line.
"""

from __future__ import annotations

import base64
import html
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import Interrupted, VidiffError
from ..settings.config import Config

@dataclass(frozen=True)
class Job:
    input: str
    output: Path
    config: Config


@dataclass(frozen=True)
class Status:
    """What the page shows of the job in progress, or of the last one."""

    state: str = "idle"  # idle, running, stopped, done, failed
    done: int = 0
    total: int = 0
    fps: float | None = None  # frames per second of this run, once two frames are done
    message: str = ""
    frame: np.ndarray | None = field(default=None, repr=False)  # the latest output frame, RGB
    version: int = 0  # changes with every update, so a poller can tell whether anything changed

    @property
    def eta(self) -> float | None:
        if not self.fps or self.state != "running":
            return None
        return (self.total - self.done) / self.fps

    def html(self) -> str:
        """A progress bar with frames, frames per second and time left."""
        parts = [f"{self.done} / {self.total} frames"] if self.total else []
        if self.fps:
            parts.append(f"{self.fps:.2f} frames/s")
        if self.eta is not None:
            parts.append(f"about {_clock(self.eta)} left")
        figures = " · ".join(parts)
        bar = f'<progress value="{self.done}" max="{self.total}" style="width:100%"></progress>' if self.total else ""
        message = f"<div>{html.escape(self.message)}</div>" if self.message else ""
        return (f'<div id="vidiff-status" data-state="{self.state}" data-done="{self.done}">{bar}'
                f"<div>{html.escape(figures)}</div>{message}{_inline_picture(self.frame)}</div>")  # fmt: skip


def _inline_picture(frame: np.ndarray | None, longest: int = 384) -> str:
    """The latest frame as a JPEG inside the page itself: a file per frame would pile up in the upload folder."""
    if frame is None:
        return ""
    import cv2

    height, width = frame.shape[:2]
    scale = min(1.0, longest / max(height, width))
    small = cv2.resize(frame, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        return ""
    data = base64.b64encode(jpeg.tobytes()).decode("ascii")
    return f'<img id="vidiff-latest" alt="the latest finished frame" src="data:image/jpeg;base64,{data}">'


def _shares_parts(common: Config, vary: list[tuple[str, list[str]]]) -> bool:
    """Whether every cell of a try can run on the parts `common` names: no axis varies the preset or a setting
    the parts are built from. Each value is tried as typed, so a setting counts as soon as it enters the
    parts' key at all (a word where a flag goes reads as a change: loading more often is the safe side)."""
    from ..models.loading import parts_key
    from ..settings.config import SETTINGS

    for key, texts in vary:
        name = key.lstrip("-").replace("-", "_")
        if name == "preset":
            return False
        if name in SETTINGS and any(parts_key(common.replace(**{name: text})) != parts_key(common) for text in texts):
            return False
    return True


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else f"{seconds // 60}:{seconds % 60:02d}"


class Jobs:
    """Runs one job at a time (the page's queue lines them up; this refuses a second one meanwhile)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.stopped: Job | None = None  # the last job stopped, which resume() continues
        self.finished: Job | None = None  # the last job done, which score() measures
        self._status = Status()
        self._lock = threading.Lock()
        self._cancel: threading.Event | None = None
        self._started: tuple[float, int] | None = None  # when this run's first frame came, and the count then
        self._parts: tuple[tuple, Any] | None = None
        self._tries = 0
        self.last_try = None  # the last TryResult, which the page shows

    @property
    def status(self) -> Status:
        return self._status

    def output_for(self, input: str, config: Config) -> Path:
        """Where stylizing `input` with `config` writes: the same folder for the same run, so it resumes."""
        from ..io.workfolder import fingerprint

        return self.root / "jobs" / fingerprint(config, input)[:16] / output_name(input, config)

    def stylize(self, input: str, config: Config) -> Path:
        """Stylize `input`; raises Interrupted when stopped (the job can then be resumed) and VidiffError."""
        config = config.replace(overwrite=True)  # the UI's own output of an earlier, identical run
        return self._run(Job(input, self.output_for(input, config), config))

    def resume(self) -> Path:
        if self.stopped is None:
            raise VidiffError("nothing to resume: no run was stopped")
        return self._run(self.stopped)

    def stop(self) -> bool:
        """Ask the running job to stop after the frames in progress; False when none runs."""
        cancel = self._cancel
        if cancel is None:
            return False
        cancel.set()
        self._update(message="stopping after the frames in progress…")
        return True

    def try_looks(self, input: str, vary: list[tuple[str, list[str]]], at: str, frames: int,
                  preset: str | None = None, **settings):  # fmt: skip
        """A grid of looks (`vidiff try`) on a few frames of `input`; returns try_looks' TryResult. `preset`
        and `settings` are the cells' common settings, as try_looks takes them."""
        from ..settings.presets import load_preset
        from ..tryout import try_looks

        self._tries += 1
        output = self.root / "tries" / f"{self._tries:04d}" / ("grid.png" if frames == 1 else "grid.mp4")
        output.parent.mkdir(parents=True, exist_ok=True)
        common = Config(**{**(load_preset(preset).settings if preset else {}), **settings})
        shared = _shares_parts(common, vary)  # if not, try_looks loads each set of parts the cells need
        return self._guarded(lambda cancel: try_looks(
            input, str(output), vary=vary, at=at, frames=frames, parts=self._parts_for(common) if shared else None,
            on_progress=self._progressed, cancel=cancel, **({"preset": preset} if preset else {}), **settings,
        ))  # fmt: skip

    def score(self):
        """`vidiff score` of the last finished job, with its plot: (ScoreReport, plot path)."""
        from ..score import score_video

        job = self.finished
        if job is None:
            raise VidiffError("no finished video to score yet: stylize one first")
        plot = job.output.with_name("flicker.png")
        untrimmed = job.config.start == 0 and job.config.duration is None and job.config.max_frames is None
        source = job.input if untrimmed else self.source_view(job)  # scoring compares frame by frame
        return score_video(source, job.output, job.config.cut_threshold if job.config.cuts else None,
                           plot_path=plot), plot  # fmt: skip

    # --- inside ---

    def _run(self, job: Job) -> Path:
        from ..run import stylize_video

        def run(cancel: threading.Event) -> Path:
            job.output.parent.mkdir(parents=True, exist_ok=True)
            result = stylize_video(job.input, job.output, job.config, parts=self._parts_for(job.config),
                                   on_progress=self._progressed, cancel=cancel)  # fmt: skip
            self._update(message=f"done: {result.summary()}")
            return job.output

        try:
            output = self._guarded(run)
        except Interrupted:
            self.stopped = job
            self._update(state="stopped", message="stopped; the work is kept: Resume continues it")
            raise
        if self.stopped == job:
            self.stopped = None
        self.finished = job
        return output

    def _guarded(self, work: Callable[[threading.Event], Any]) -> Any:
        """Run `work(cancel)` as the one job, keeping the status up to date."""
        cancel = threading.Event()
        with self._lock:
            if self._cancel is not None:
                raise VidiffError("another job is running; stop it or wait for it")
            self._cancel = cancel
        self._started = None
        self._update(state="running", done=0, total=0, fps=None, frame=None, message="starting (loading the model)…")
        try:
            result = work(cancel)
        except VidiffError as err:
            self._update(state="failed", message=str(err))
            raise
        except Interrupted:
            raise
        except Exception as err:  # a bug, but the page must still say the job ended
            self._update(state="failed", message=f"failed: {type(err).__name__}: {err}")
            raise
        finally:
            self._cancel = None
        self._update(state="done")
        return result

    def _progressed(self, progress) -> None:
        """on_progress: frames done, the total, the frame just finished; the rate counts this run's frames only."""
        now = time.perf_counter()
        if self._started is None:
            self._started = (now, progress.done)
        began, first = self._started
        fps = (progress.done - first) / (now - began) if progress.done > first and now > began else None
        stopping = self._cancel is not None and self._cancel.is_set()  # keep saying so
        self._update(done=progress.done, total=progress.total, fps=fps, frame=progress.frame,
                     **({} if stopping else {"message": ""}))

    def _update(self, **changes) -> None:
        self._status = replace(self._status, version=self._status.version + 1, **changes)

    def _parts_for(self, config: Config):
        """The model parts `config` names, loaded once and kept while the next job names the same ones."""
        from ..models.loading import load_parts, parts_key

        key = parts_key(config)
        if self._parts is None or self._parts[0] != key:
            self._parts = None  # let the old parts go before the new ones load
            self._parts = (key, load_parts(config))
        return self._parts[1]

    def source_view(self, job: Job) -> str:
        """The source as the run read it (trimmed by start, duration and max_frames, at the output's size),
        encoded beside the output: shown next to the result, frame for frame, and scored against it."""
        from ..io.reader import VideoReader, probe

        path = job.output.with_name("source.mp4")
        if not path.exists():
            config, info = job.config, probe(job.output)
            _playable_copy(VideoReader(job.input, (info.width, info.height), config.start, config.duration,
                                       config.max_frames, fps=config.fps, on_bad_frame=config.on_bad_frame), path)  # fmt: skip
        return str(path)

    def result_view(self, job: Job) -> str:
        """The result as the page plays it: the output itself when it is H.264, else an H.264 copy (the
        browser may lack HEVC, ProRes or FFV1)."""
        from ..io.reader import VideoReader

        if job.config.codec in (None, "h264"):
            return str(job.output)
        path = job.output.with_name("result-h264.mp4")
        if not path.exists():
            _playable_copy(VideoReader(job.output), path)
        return str(path)


def output_name(input: str, config: Config) -> str:
    """The name of a job's output: .mp4, or .mov for the codecs MP4 can't hold."""
    return f"{Path(input).stem}-stylized{'.mov' if config.codec in ('prores', 'ffv1') else '.mp4'}"


def _playable_copy(reader, path: Path) -> None:
    """Encode the reader's frames to H.264 at `path`: near-lossless, and still a profile browsers play
    (crf 0 would be High 4:4:4 Predictive, which they don't)."""
    from ..io.writer import VideoWriter

    with reader, VideoWriter(path, reader.size, reader.info.fps, crf=12) as writer:
        for frame in reader:
            writer.write(frame)
