"""How steady a stylised video is: its flicker, measured against the motion of its source.

The source's motion is the reference. For each pair of consecutive frames (t, t+1), optical flow
is computed on the SOURCE (vidiff.motion.backward_flow: DIS, with a forward-backward occlusion
check), stylised frame t is warped along it onto t+1, and compared with stylised frame t+1 over
the pixels the flow is trusted on. A perfectly consistent stylisation moves with its source, so
what is left is flicker. The metrics, all averaged with one weight per frame pair:

- `warp_error`: mean absolute difference, on the 0-255 scale, over the trusted pixels and the
  three channels: the L1 warping error, read directly as grey levels.
- `warp_mse`: mean squared difference, on the 0-1 scale, over the same pixels and channels: the
  warping error E_warp of Lai et al., "Learning Blind Video Temporal Consistency" (ECCV 2018), as
  their evaluation code computes it (per channel, non-occluded pixels, averaged over frame pairs),
  the figure many video-consistency papers quote. The two don't convert into each other.
- `flicker`: |mean luma of stylised t+1 − mean luma of warped stylised t| over trusted pixels,
  0-255 (Rec. 601 luma): global brightness pumping, which a per-pixel error can dilute.
- `source_warp_error`: `warp_error` of the source against itself, the floor the flow allows: a
  stylised video can't be expected to score much below it.
- `change_from_source`: mean absolute difference between each stylised frame and its source frame
  (resized to the stylised size), 0-255, over every frame and pixel. A "stylisation" that changes
  nothing scores the source's own warp error, as good as it gets; this says whether that happened.
- `detail` and `source_detail`: mean |luma − luma blurred| (Gaussian, σ = the longer side ÷ 64),
  0-255, over every frame: the fine texture. Blur is the other way to look steady: a video whose
  detail fades scores a low warp error too, and this says whether that happened.

Pairs across a hard cut in the source (vidiff.motion.is_cut) are left out: nothing flows across a
cut. Pairs whose flow is trusted on no pixel at all are left out too. With no pair left (a single
frame, or cuts everywhere), the pair metrics are None rather than 0, which would read as perfect.

Both videos are streamed: only the previous frame of each is held.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from .errors import VidiffError
from .io.atomic import write_atomic
from .io.reader import VideoReader, probe
from .settings.config import Config
from .temporal.change import cut_score, is_cut
from .temporal.flow import backward_flow, warp

# Rec. 601 luma, the weights OpenCV's RGB2GRAY uses
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
# the plot's size in pixels (width, height)
PLOT_SIZE = (800, 360)


@dataclass(frozen=True)
class PairErrors:
    """How far stylised frame t+1 is from stylised frame t warped onto it, over trusted pixels."""

    warp_error: float  # mean |difference|, 0-255
    warp_mse: float  # mean squared difference, 0-1
    flicker: float  # |difference of mean luma|, 0-255
    trusted_fraction: float  # share of the frame's pixels the flow is trusted on


def detail(image: np.ndarray) -> float:
    """Fine texture of an RGB frame: mean |luma − luma blurred| (σ = the longer side ÷ 64), 0-255."""
    luma = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    sigma = max(image.shape[:2]) / 64
    return float(np.abs(luma - cv2.GaussianBlur(luma, (0, 0), sigma)).mean())


def pair_errors(prev: np.ndarray, cur: np.ndarray, flow: np.ndarray, trusted: np.ndarray) -> PairErrors | None:
    """Warp `prev` along `flow` (cur → prev, as backward_flow gives it) and compare it with `cur`
    over the `trusted` pixels; None where no pixel is trusted."""
    if not trusted.any():
        return None
    warped = warp(prev, flow)[trusted].astype(np.float32)
    target = cur[trusted].astype(np.float32)
    diff = target - warped
    return PairErrors(
        warp_error=float(np.abs(diff).mean()),
        warp_mse=float(np.square(diff / 255.0).mean()),
        flicker=float(abs((target @ LUMA).mean() - (warped @ LUMA).mean())),
        trusted_fraction=float(trusted.mean()),
    )


@dataclass(frozen=True)
class ScoreReport:
    """The temporal consistency of `stylized` measured against `source`; see the module docstring.

    Pair metrics are None when no frame pair could be measured (`pairs` == 0). In the `per_frame`
    series, entry t is about the pair (t − 1, t): None at frame 0, at a cut and where the flow
    trusted no pixel; `change_from_source` and `detail` have a value for every frame.
    """

    source: str
    stylized: str
    frames: int
    width: int
    height: int
    pairs: int  # frame pairs measured: frames − 1, less the cuts and the pairs with no trusted pixel
    cut_threshold: float | None  # None: cut detection was off
    cuts: list[int]  # frames that start a new shot in the source
    warp_error: float | None
    warp_mse: float | None
    flicker: float | None
    source_warp_error: float | None
    change_from_source: float
    detail: float  # mean fine texture of the stylised frames; see detail()
    source_detail: float  # the same of the source frames, at the stylised size
    trusted_fraction: float | None  # mean share of pixels the flow was trusted on
    per_frame: dict[str, list[float | None]]  # warp_error, source_warp_error, flicker, change_from_source, detail, cut_score

    def to_dict(self) -> dict:
        return asdict(self)

    def table(self) -> str:
        """The headline figures, one per line, readable in a terminal."""

        def number(value: float | None, digits: int) -> str:
            return "n/a" if value is None else f"{value:.{digits}f}"

        cuts = "cut detection off" if self.cut_threshold is None else (
            _count(len(self.cuts), "cut") + (f" (at frame {', '.join(map(str, self.cuts))})" if self.cuts else "")
        )
        trusted = "n/a" if self.trusted_fraction is None else f"{self.trusted_fraction:.0%}"
        rows = [
            ("warp error", number(self.warp_error, 3), "mean |stylised t+1 - warped t|, 0-255; lower is steadier"),
            ("source warp error", number(self.source_warp_error, 3), "the same on the source: the floor"),
            ("warp MSE", number(self.warp_mse, 6), "mean squared, 0-1"),
            ("flicker", number(self.flicker, 3), "mean |change of mean luma| after warping, 0-255"),
            ("change from source", number(self.change_from_source, 3), "mean |stylised - source|, 0-255"),
            ("detail", number(self.detail, 3), f"fine texture, 0-255 (the source: {self.source_detail:.3f}); blur lowers it"),
            ("trusted pixels", trusted, "where the source's flow is reliable"),
        ]
        name_width = max(len(name) for name, _, _ in rows)
        value_width = max(len(value) for _, value, _ in rows)
        size = f"{self.width}x{self.height}"
        header = f"{_count(self.frames, 'frame')} at {size}; {_count(self.pairs, 'pair')} measured, {cuts}"
        return "\n".join([header, *(f"{n:<{name_width}}  {v:<{value_width}}  {m}" for n, v, m in rows)])


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'s' * (number != 1)}"


def score_video(
    source: str | os.PathLike,
    stylized: str | os.PathLike,
    cut_threshold: float | None = Config.cut_threshold,
    *,
    json_path: str | os.PathLike | None = None,
    plot_path: str | os.PathLike | None = None,
    progress: bool = False,
) -> ScoreReport:
    """Measure how steady `stylized` is against the motion of `source`, its source video.

    The source is resized to the stylised video's size; both must have the same number of frames.
    `cut_threshold` is the cut_score above which a source frame starts a new shot (None: never).
    `json_path` and `plot_path` (a .png) are checked before any work, written once it is done.
    Raises VidiffError, with a message meant for the user, for anything the user can fix.
    """
    # 1. Check the inputs and where the reports go before the long part
    styl_info = probe(stylized)
    src_info = probe(source)
    for path, option, suffix in ((json_path, "--json", None), (plot_path, "--plot", ".png")):
        if path is not None:
            _check_report_path(path, option, suffix, (source, stylized))

    # 2. Stream both videos, one frame pair at a time
    size = (styl_info.width, styl_info.height)
    totals = _Totals()
    with VideoReader(src_info, size) as src_reader, VideoReader(styl_info) as styl_reader, tqdm(
        total=styl_reader.expected_frames, unit="frame", disable=True if not progress else None, leave=False
    ) as bar:
        sources, stylized_frames = iter(src_reader), iter(styl_reader)
        prev_src = prev_styl = None
        for index in itertools.count():
            src, styl = next(sources, None), next(stylized_frames, None)
            if src is None or styl is None:
                if src is not None or styl is not None:
                    # count the rest of the longer one, so the message can say by how much
                    src_count = index + (src is not None) + sum(1 for _ in sources)
                    styl_count = index + (styl is not None) + sum(1 for _ in stylized_frames)
                    raise VidiffError(
                        f"stylised video {stylized} has {styl_count} frames but source {source} has {src_count}; "
                        f"score needs the same frames (if STYLIZED was cut with --start/--duration/--max-frames, "
                        f"cut SOURCE the same way first)"
                    )
                break
            totals.frame(src, styl)
            if prev_src is not None:
                totals.pair(index, prev_src, src, prev_styl, styl, cut_threshold)
            prev_src, prev_styl = src, styl
            bar.update(1)
    if totals.frames == 0:
        raise VidiffError(f"stylised video {stylized} has no frames that can be decoded")

    # 3. Summarise, then write the reports
    report = totals.report(str(source), str(stylized), size, cut_threshold)
    if json_path is not None:
        write_json(report, json_path)
    if plot_path is not None:
        write_plot(report, plot_path)
    return report


class _Totals:
    """Running sums and per-frame series while the frames stream past."""

    def __init__(self) -> None:
        self.frames = 0
        self.cuts: list[int] = []
        self.sums = {"warp_error": 0.0, "warp_mse": 0.0, "flicker": 0.0, "source_warp_error": 0.0,
                     "trusted_fraction": 0.0}  # fmt: skip
        self.pairs = 0
        self.change_sum = 0.0
        self.detail_sum = self.source_detail_sum = 0.0
        self.series: dict[str, list[float | None]] = {
            "warp_error": [], "source_warp_error": [], "flicker": [], "change_from_source": [], "detail": [], "cut_score": [],
        }  # fmt: skip

    def frame(self, src: np.ndarray, styl: np.ndarray) -> None:
        """What is measured on every frame: its change from the source, and the detail of both."""
        value = float(np.abs(styl.astype(np.float32) - src.astype(np.float32)).mean())
        self.frames += 1
        self.change_sum += value
        self.series["change_from_source"].append(value)
        styl_detail = detail(styl)
        self.detail_sum += styl_detail
        self.source_detail_sum += detail(src)
        self.series["detail"].append(styl_detail)
        if self.frames == 1:  # frame 0 starts no pair
            for name in ("warp_error", "source_warp_error", "flicker", "cut_score"):
                self.series[name].append(None)

    def pair(self, index, prev_src, src, prev_styl, styl, cut_threshold) -> None:
        self.series["cut_score"].append(cut_score(prev_src, src))
        styl_errors = source_errors = None
        if is_cut(prev_src, src, cut_threshold):
            self.cuts.append(index)
        else:
            flow, trusted = backward_flow(prev_src, src)
            styl_errors = pair_errors(prev_styl, styl, flow, trusted)
            source_errors = pair_errors(prev_src, src, flow, trusted)
        if styl_errors is not None:
            self.pairs += 1
            for name in ("warp_error", "warp_mse", "flicker", "trusted_fraction"):
                self.sums[name] += getattr(styl_errors, name)
            self.sums["source_warp_error"] += source_errors.warp_error
        self.series["warp_error"].append(None if styl_errors is None else styl_errors.warp_error)
        self.series["flicker"].append(None if styl_errors is None else styl_errors.flicker)
        self.series["source_warp_error"].append(None if source_errors is None else source_errors.warp_error)

    def report(self, source: str, stylized: str, size: tuple[int, int], cut_threshold) -> ScoreReport:
        means = {name: (total / self.pairs if self.pairs else None) for name, total in self.sums.items()}
        return ScoreReport(
            source=source, stylized=stylized, frames=self.frames, width=size[0], height=size[1], pairs=self.pairs,
            cut_threshold=cut_threshold, cuts=self.cuts, **means,
            change_from_source=self.change_sum / self.frames, detail=self.detail_sum / self.frames,
            source_detail=self.source_detail_sum / self.frames, per_frame=self.series,
        )  # fmt: skip


def _check_report_path(path, option: str, suffix: str | None, inputs) -> None:
    """Refuse a report path we can't or shouldn't write, before any work is done."""
    path = Path(path)
    if suffix is not None and path.suffix.lower() != suffix:
        raise VidiffError(f"{option} {path}: the plot is a PNG image; give a name ending in {suffix}")
    for video in inputs:
        if os.path.exists(path) and os.path.samefile(path, video):
            raise VidiffError(f"{option} {path} is one of the videos being scored; write the report to another file")
    if path.is_dir():
        example = path / ("score" + (suffix or ".json"))
        raise VidiffError(f"{option} {path} is a folder; give a file name such as {example}")
    folder = path.parent
    if not folder.is_dir():
        raise VidiffError(f"{option} {path}: folder {folder} does not exist; create it or choose another path")
    if not os.access(folder, os.W_OK):
        raise VidiffError(f"{option} {path}: folder {folder} is not writable")


def write_json(report: ScoreReport, path: str | os.PathLike) -> None:
    """The report as JSON (None as null), written atomically."""
    text = json.dumps(report.to_dict(), indent=2, allow_nan=False) + "\n"
    write_atomic(path, lambda file: file.write(text.encode("utf-8")))


def write_plot(report: ScoreReport, path: str | os.PathLike) -> None:
    """The per-frame warp error as a line chart (PNG, PLOT_SIZE), cuts marked, written atomically."""
    ok, png = cv2.imencode(".png", draw_plot(report))
    if not ok:
        raise VidiffError(f"--plot {path}: OpenCV could not encode the plot as PNG")
    write_atomic(path, lambda file: file.write(png.tobytes()))


# plot colours, BGR
_INK, _GRID, _STYLIZED, _SOURCE, _CUT = (40, 40, 40), (225, 225, 225), (180, 90, 20), (150, 150, 150), (40, 40, 220)


def draw_plot(report: ScoreReport) -> np.ndarray:
    """The chart as a BGR image: stylised warp error per frame, the source's floor in grey, cuts in red."""
    width, height = PLOT_SIZE
    left, top, bottom = CHART_MARGINS[0], CHART_MARGINS[2], CHART_MARGINS[3]
    image = np.full((height, width, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    styl = report.per_frame["warp_error"]
    floor = report.per_frame["source_warp_error"]
    values = [v for v in styl + floor if v is not None]
    y_max, divisions = _value_axis(max(values, default=0.0))
    x_max = max(report.frames - 1, 1)

    at = chart_axes(image, x_max, y_max, divisions, "frame")

    for cut in report.cuts:
        x, _ = at(cut, 0)
        for y in range(top, height - bottom, 8):  # dashed
            cv2.line(image, (x, y), (x, min(y + 4, height - bottom)), _CUT, 1)
    for series, colour in ((floor, _SOURCE), (styl, _STYLIZED)):
        _polyline(image, [None if v is None else at(i, v) for i, v in enumerate(series)], colour)

    title = "warp error per frame, 0-255 (blue: stylised, grey: source floor, red: cuts)"
    if report.pairs == 0:
        title = "warp error per frame: no frame pairs to measure"
    cv2.putText(image, title, (left, 20), font, 0.45, _INK, 1, cv2.LINE_AA)
    return image


CHART_MARGINS = (64, 20, 34, 44)  # left, right, top, bottom: room for the tick labels and the title


def chart_axes(image: np.ndarray, x_max: float, y_max: float, divisions: int, x_name: str):
    """Draw a line chart's grid, tick labels and axes on `image` (x from 0 to x_max, values from 0 to
    y_max in `divisions` steps); returns the map from (x, value) to the pixel."""
    height, width = image.shape[:2]
    left, right, top, bottom = CHART_MARGINS
    font = cv2.FONT_HERSHEY_SIMPLEX

    def at(x_value: float, value: float) -> tuple[int, int]:
        x = left + x_value / x_max * (width - left - right)
        y = height - bottom - value / y_max * (height - top - bottom)
        return int(round(x)), int(round(y))

    for value in np.linspace(0, y_max, divisions + 1):
        cv2.line(image, at(0, value), at(x_max, value), _GRID, 1)
        label = f"{value:.3g}"
        (text_w, text_h), _ = cv2.getTextSize(label, font, 0.4, 1)
        x, y = at(0, value)
        cv2.putText(image, label, (x - text_w - 6, y + text_h // 2), font, 0.4, _INK, 1, cv2.LINE_AA)
    for tick in _frame_ticks(int(x_max)):
        x, y = at(tick, 0)
        cv2.line(image, (x, y), (x, y + 4), _INK, 1)
        label = str(tick)
        (text_w, text_h), _ = cv2.getTextSize(label, font, 0.4, 1)
        cv2.putText(image, label, (x - text_w // 2, y + 8 + text_h), font, 0.4, _INK, 1, cv2.LINE_AA)
    cv2.line(image, at(0, 0), at(x_max, 0), _INK, 1)
    cv2.line(image, at(0, 0), at(0, y_max), _INK, 1)
    cv2.putText(image, x_name, (width - right - 40, height - 6), font, 0.4, _INK, 1, cv2.LINE_AA)
    return at


def _polyline(image: np.ndarray, points: list[tuple[int, int] | None], colour) -> None:
    """Join consecutive points; a None breaks the line (a cut, frame 0), a lone point is a dot."""
    run: list[tuple[int, int]] = []
    for point in [*points, None]:
        if point is not None:
            run.append(point)
            continue
        if len(run) == 1:
            cv2.circle(image, run[0], 2, colour, -1, cv2.LINE_AA)
        elif run:
            cv2.polylines(image, [np.array(run, np.int32)], False, colour, 1, cv2.LINE_AA)
        run = []


def _value_axis(value: float) -> tuple[float, int]:
    """The top of the value axis, the smallest 1, 2, 2.5 or 5 × 10^k at or above `value`, and how
    many steps to divide it into so that the ticks are round numbers (2 → 0.5 steps, not 0.4)."""
    if value <= 0:
        return 1.0, 5
    power = 10.0 ** math.floor(math.log10(value))
    return next(
        (top * power, divisions)
        for top, divisions in ((1, 5), (2, 4), (2.5, 5), (5, 5), (10, 5))
        if top * power >= value * (1 - 1e-9)
    )


def _frame_ticks(last: int) -> list[int]:
    """About six round frame numbers from 0 to `last`."""
    top, _ = _value_axis(last / 6)
    step = max(1, int(top))
    return list(range(0, last + 1, step))
