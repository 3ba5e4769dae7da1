"""`vidiff try`: one moment of the input stylised with each combination of up to two varied settings,
drawn as a labelled grid (A1111's X/Y plot), each cell with the `vidiff stylize` command that makes it.

Each cell is a real run of stylize_video over the same few frames, so its command reproduces it
exactly. The frames [at, at + frames) are decoded once into a lossless image sequence that every
cell reads (a cell doesn't decode the video up to `at` again), and the model parts are loaded once
for all cells that share them.
"""

from __future__ import annotations

import csv
import difflib
import logging
import os
import re
import shlex
import tempfile
import threading
import typing
from contextlib import contextmanager
from dataclasses import dataclass, fields
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from .errors import ConfigError, Interrupted, VidiffError, option_name
from .settings.config import SETTINGS, Config, check_field
from .settings.keyframes import NUMBERS, WHOLE_NUMBERS
from .settings.presets import load_preset

# OpenCV, torch and the run are imported where they are used: the command line imports this module,
# and `vidiff --help` shouldn't wait for them.

log = logging.getLogger("vidiff")

MAX_AXES = 2
MAX_CELLS = 64
MAX_FRAMES = 100  # frames a cell; each cell's frames are a full run
# Settings each cell's run sets itself (the frames come from `at` and `frames`, the run writes to a
# scratch folder), so they can neither be given nor varied.
OWN_SETTINGS = ("start", "duration", "max_frames", "restart", "save_frames")
# Settings that decide nothing about a cell's pixels or its command: left out of the printed command.
_NOT_PRINTED = OWN_SETTINGS + ("overwrite",)
_HINTS = typing.get_type_hints(Config)
_RANGE = re.compile(r"\s*(-?\d+(?:\.\d+)?)\s*\.\.\s*(-?\d+(?:\.\d+)?)\s*(?::\s*(\d+(?:\.\d+)?))?\s*")
_TIME = re.compile(r"(?:(\d+):)?(\d+):(\d+(?:\.\d*)?)")


@dataclass(frozen=True)
class Cell:
    row: str  # the row's label ("" without a second axis)
    col: str  # the column's label
    settings: dict[str, Any]  # the cell's varied values, by Config field (and "preset")
    command: str  # the `vidiff stylize` command that makes this cell, shell-quoted
    box: tuple[int, int, int, int]  # (x, y, width, height) of the cell in the grid


@dataclass(frozen=True)
class TryResult:
    path: str  # the grid written
    cells: list[Cell]  # row by row
    frames: int  # frames in each cell (and in the grid)
    scale: float  # the cells' size in the grid over their own (1: their own pixels)

    def commands(self) -> str:
        """Each cell's label and command, as `vidiff try` prints them."""
        lines = []
        for cell in self.cells:
            lines += [f"# {'; '.join(label for label in (cell.row, cell.col) if label)}", cell.command]
        return "\n".join(lines)

    def summary(self) -> str:
        per_cell = f", {self.frames} frames each" if self.frames > 1 else ""
        return f"{len(self.cells)} cells{per_cell} -> {self.path}"


@dataclass(frozen=True)
class TryProgress:
    """What on_progress is told after each finished frame of each cell (done and total count all cells)."""

    done: int
    total: int
    frame: np.ndarray  # the frame just finished, RGB uint8
    index: int  # its frame number within the cell (0 is the frame at `at`)
    cell: int  # the cell's position in TryResult.cells


@dataclass(frozen=True)
class _Axis:
    key: str  # as given (`flow-blend`), the label's name
    name: str  # the Config field, or "preset"
    texts: list[str]  # each value as typed, ranges expanded: the labels
    values: list[Any]  # each value as the setting holds it


def parse_vary(text: str) -> tuple[str, list[str]]:
    """'KEY=V1,V2,...' -> (KEY, [V1, V2, ...]); a value with commas in it is quoted as in CSV:
    'prompt="a carving, oak","a statue"'."""
    key, sep, values = text.partition("=")
    if not sep or not key.strip():
        raise VidiffError(f"--vary {text!r}: write KEY=V1,V2,... such as strength=0.3,0.5 or seed=1..8")
    return key.strip(), next(csv.reader([values], skipinitialspace=True), [])


def expand(texts: list[str]) -> list[str]:
    """Values with ranges expanded: '1..4' is 1, 2, 3, 4; '0.2..0.8:0.2' steps by 0.2 (both ends included)."""
    found = []
    for text in texts:
        match = _RANGE.fullmatch(text)
        if match is None:
            found.append(text.strip())
            continue
        first, last, step = match.group(1), match.group(2), match.group(3) or "1"
        whole = all("." not in part for part in (first, last, step))
        a, b, s = (Fraction(part) for part in (first, last, step))  # exact: 0.1 steps land on 0.8
        if s == 0:
            raise VidiffError(f"--vary range {text!r}: the step must be above 0")
        count = int(abs(b - a) / s) + 1
        if len(found) + count > MAX_CELLS:
            raise VidiffError(f"--vary range {text!r} has {count} values; a grid holds at most {MAX_CELLS} cells")
        sign = 1 if b >= a else -1
        found += [str(int(v)) if whole else f"{float(v):g}" for v in (a + sign * n * s for n in range(count))]
    return found


def try_looks(
    input: str | os.PathLike,
    output: str | os.PathLike,
    config: Config | None = None,
    *,
    vary: list[tuple[str, list[str]]] = (),
    at: str = "0",
    frames: int = 1,
    parts=None,
    on_progress: Callable[[TryProgress], None] | None = None,
    cancel: threading.Event | None = None,
    **settings,
) -> TryResult:
    """Stylise the moment `at` of `input` (a frame number, '1.5s' or '00:01.5') with each combination of
    the values in `vary` and write them to `output` as a labelled grid: .png or .jpg for one frame a
    cell, .mp4 or .gif for `frames` > 1 (flicker shows only in motion).

    `vary` holds up to two (key, values) axes: the first gives the columns, the second the rows. A key
    is a setting (`strength`, `flow_blend` or `flow-blend`, ...) or `preset`; values are written as on
    the command line ('0.4', 'fixed', '0:0.3, 48:0.7'), ranges such as '1..8' or '0.2..0.8:0.2'
    included. Each cell's settings are, from lowest to highest: `config` (or the defaults), the preset
    (the cell's, when `preset` varies, else a `preset=NAME` keyword), the keyword `settings`, then the
    cell's values. A setting that needs other model parts (model, lora, vae, ...) may vary: the parts
    are loaded once for each distinct set, one set at a time. `parts` given are used for every cell.
    `on_progress(TryProgress)` is called after each frame of each cell; `cancel` stops after the frame
    in progress and raises Interrupted (nothing is written to `output`).
    Raises VidiffError, one line meant for the user, for anything the user can fix.
    """
    preset = settings.pop("preset", None)
    for name in settings:
        if name not in SETTINGS:
            raise VidiffError(f"unknown setting {name!r}{_did_you_mean(name)}")
        if name in OWN_SETTINGS:
            raise VidiffError(f"{option_name(name)}: try sets it for each cell; choose the frames with --at and --frames")
    if not isinstance(frames, int) or not 1 <= frames <= MAX_FRAMES:
        raise VidiffError(f"--frames {frames!r}: must be a whole number from 1 to {MAX_FRAMES}")
    base = config or Config()
    axes = [_axis(key, texts) for key, texts in vary]
    _check_axes(axes, preset)
    combos = _combinations(axes)

    from .io.grid import check_grid_path

    check_grid_path(output, input, animated=frames > 1, overwrite=base.replace(**settings).overwrite)
    with _each_note_once(), tempfile.TemporaryDirectory(prefix=".vidiff-try.", dir=Path(output).parent) as scratch:
        return _render(input, output, base, preset, settings, axes, combos, at, frames, parts, on_progress, cancel,
                       Path(scratch))  # fmt: skip


def _did_you_mean(name: str) -> str:
    close = difflib.get_close_matches(name.replace("-", "_"), [*SETTINGS, "preset"], n=1)
    return f"; did you mean {close[0]}?" if close else ""


def _axis(key: str, texts: list[str]) -> _Axis:
    name = key.lstrip("-").replace("-", "_")
    label_key = key.lstrip("-")
    if name != "preset" and name not in SETTINGS:
        raise VidiffError(f"--vary {key}: not a setting{_did_you_mean(name)} "
                          "(any option of `vidiff stylize`, or preset)")  # fmt: skip
    if name in OWN_SETTINGS:
        raise VidiffError(f"--vary {key}: try sets it for each cell; choose the frames with --at and --frames")
    texts = expand([str(text) for text in texts])  # a program may hand over numbers
    if not texts or not any(text for text in texts):
        raise VidiffError(f"--vary {key}: give at least one value, such as {key}=V1,V2")
    values = []
    for text in texts:
        if name == "preset":
            load_preset(text)  # an unknown preset is named now, before any work
            values.append(text)
            continue
        value = _value(name, text)
        try:
            check_field(name, value)
        except ConfigError as err:
            raise VidiffError(f"--vary {label_key}: {err.on_command_line()}") from None
        values.append(value)
    return _Axis(label_key, name, texts, values)


def _value(name: str, text: str) -> Any:
    """A setting's value from its text as typed on the command line (as the option would take it)."""
    declared, hint = SETTINGS[name], _HINTS[name]
    if declared.repeatable:
        return (text,) if text else ()
    if hint is bool:  # Click's words for a flag's value; anything else is left to the check to refuse
        words = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}
        return words.get(text.lower(), text)
    types = [t for t in typing.get_args(hint) or (hint,) if t is not type(None)]
    if type(None) in typing.get_args(hint) and text.lower() in ("", "none"):
        return None
    if declared.keyframes in (NUMBERS, WHOLE_NUMBERS) or int in types or float in types:
        # a number where the setting holds one; else the text, which the setting's check judges
        for kind in (int, float) if int in types or declared.keyframes == WHOLE_NUMBERS else (float,):
            try:
                return kind(text)
            except ValueError:
                pass
    return text


def _check_axes(axes: list[_Axis], preset: str | None) -> None:
    if len(axes) > MAX_AXES:
        raise VidiffError(f"--vary given {len(axes)} times; a grid has at most {MAX_AXES} axes (columns and rows)")
    names = [axis.name for axis in axes]
    if len(set(names)) < len(names):
        raise VidiffError(f"--vary {axes[1].key} given twice; put all its values in one --vary")
    if "preset" in names and preset is not None:
        raise VidiffError("--preset and --vary preset=... both choose the preset; give the presets in --vary only")
    cells = int(np.prod([len(axis.values) for axis in axes])) if axes else 1
    if cells > MAX_CELLS:
        raise VidiffError(f"--vary gives {cells} cells; a grid holds at most {MAX_CELLS} (vary fewer values)")


def _combinations(axes: list[_Axis]) -> list[tuple[str, str, dict[str, Any]]]:
    """(row label, column label, values by field) of each cell, row by row."""
    columns = axes[0] if axes else None
    rows = axes[1] if len(axes) > 1 else None
    combos = []
    for r in range(len(rows.values) if rows else 1):
        for c in range(len(columns.values) if columns else 1):
            values, labels = {}, []
            for axis, n in ((rows, r), (columns, c)):
                if axis is None:
                    labels.append("")
                    continue
                values[axis.name] = axis.values[n]
                labels.append(f"{axis.key}={axis.texts[n]}")
            combos.append((labels[0], labels[1], values))
    return combos


def parse_at(at: str | int, fps: Fraction) -> int:
    """`--at` as an output frame of the input: a frame number (48), seconds (1.5s) or a time (00:01.5,
    1:02:03.5); times are placed on frames as --start is (the nearest frame)."""
    text = str(at).strip()
    seconds = None
    if re.fullmatch(r"\d+", text):
        return int(text)
    if re.fullmatch(r"\d+(?:\.\d*)?s", text):
        seconds = float(text[:-1])
    elif match := _TIME.fullmatch(text):
        hours, minutes, secs = match.groups()
        seconds = int(hours or 0) * 3600 + int(minutes) * 60 + float(secs)
    if seconds is None:
        raise VidiffError(f"--at {text!r}: give a frame number (48), seconds (1.5s) or a time (00:01.5)")
    return int(round(seconds * fps))


def start_text(frame: int, fps: Fraction) -> str:
    """A --start, in seconds, that the reader places on `frame` (it rounds start × fps): the frame's time,
    to the microsecond (0.125 at 24 fps) or more decimals where that isn't enough."""
    for decimals in range(6, 18):
        text = f"{float(frame / fps):.{decimals}f}".rstrip("0").rstrip(".")
        if int(round(float(text) * fps)) == frame:
            return text
    return repr(float(frame / fps))


def _render(input, output, base: Config, preset, settings, axes, combos, at, frames, parts, on_progress, cancel,
            scratch: Path) -> TryResult:  # fmt: skip
    from .io.grid import layout, write_grid
    from .io.reader import probe
    from .models import loading
    from .plan import plan_run
    from .run import stylize_video

    # 1. The cells' settings, all checked before any frame is decoded or model loaded
    source_info = probe(input, base.replace(**settings).fps)
    first = parse_at(at, source_info.fps)
    configs = [_cell_config(base, preset, settings, values) for _r, _c, values in combos]
    for config in configs:
        config.validate()

    # 2. The frames [at, at + frames), decoded once into a lossless image sequence every cell reads
    source = scratch / "source"
    count = _extract(source_info, configs[0], first, frames, source)
    if count == 0:
        seconds = source_info.frame_count / source_info.fps
        raise VidiffError(f"--at {at}: the input has no frame {first} (it has about {source_info.frame_count} "
                          f"frames, {float(seconds):.2f} s)")  # fmt: skip
    if count < frames:
        log.warning(f"note: the input ends {count} frame(s) after --at {at}; each cell has {count}")
    rate = f"{source_info.fps.numerator}/{source_info.fps.denominator}"
    cells = [config.replace(start=0.0, duration=None, max_frames=None, fps=rate, overwrite=True, restart=True,
                            save_frames=str(scratch / f"cell-{n}"))
             for n, config in enumerate(configs)]  # fmt: skip
    for n, config in enumerate(cells):
        # the input, the output and the prompt are checked here, not after minutes of other cells
        # (with cuts and auto cadence off no pass over the frames is made: only the checks)
        plan_run(source, scratch / f"cell-{n}.mp4", config.replace(cuts=False, cadence=1))

    # 3. Each cell's run, with the parts loaded once for all the cells that share them
    groups: dict[tuple, list[int]] = {}
    for n, config in enumerate(cells):
        groups.setdefault(loading.parts_key(config), []).append(n)
    if parts is not None and len(groups) > 1:
        raise VidiffError("the varied settings need different model parts; leave parts out so that each set is "
                          "loaded once")  # fmt: skip
    total, done = len(cells) * count, 0
    try:
        for members in groups.values():
            group_parts = parts if parts is not None else loading.load_parts(cells[members[0]])
            for n in members:
                if cancel is not None and cancel.is_set():
                    raise Interrupted("")

                def progress(p, n=n):
                    nonlocal done
                    done += 1
                    if on_progress is not None:
                        on_progress(TryProgress(done, total, p.frame, p.index, n))

                stylize_video(source, scratch / f"cell-{n}.mp4", cells[n], parts=group_parts, on_progress=progress,
                              cancel=cancel)  # fmt: skip
            del group_parts  # one set of parts in memory at a time
    except Interrupted:
        raise Interrupted(f"stopped after {done} of {total} frames; nothing was written to {output}") from None

    # 4. The grid: labels drawn once, each frame's cells pasted in
    column_labels = [c for _r, c, _v in combos[: len(axes[0].values) if axes else 1]]
    row_labels = [r for r, _c, _v in combos[:: len(column_labels)]] if len(axes) > 1 else None
    outputs = [sorted((scratch / f"cell-{n}").glob("frame_*.png")) for n in range(len(cells))]
    grid = layout(column_labels, row_labels, [_size(found[0]) for found in outputs])
    written = write_grid(output, (grid.draw([_load(found[t]) if t < len(found) else None for found in outputs])
                                  for t in range(count)), source_info.fps)  # fmt: skip
    result_cells = [
        Cell(row, col, values, _command(input, output, n, base, preset, settings, values, first, count, source_info.fps),
             box)
        for n, ((row, col, values), box) in enumerate(zip(combos, grid.boxes))
    ]  # fmt: skip
    return TryResult(os.fspath(output), result_cells, written, grid.scale)


def _cell_config(base: Config, preset: str | None, settings: dict, values: dict) -> Config:
    """config < preset < keyword settings < the cell's values."""
    chosen = values.get("preset", preset)
    config = base.replace(**load_preset(chosen).settings) if chosen else base
    return config.replace(**{**settings, **{name: value for name, value in values.items() if name != "preset"}})


def _extract(info, config: Config, first: int, frames: int, folder: Path) -> int:
    """Decode input frames [first, first + frames) into `folder` as lossless PNGs, at the input's size
    (each cell's run scales them as it would scale the video's); returns how many there were."""
    import cv2

    from .io.reader import VideoReader

    folder.mkdir()
    count = 0
    reader = VideoReader(info, None, float(start_text(first, info.fps)), max_frames=frames,
                         on_bad_frame=config.on_bad_frame)  # fmt: skip
    with reader:
        for count, frame in enumerate(reader, start=1):
            # fast compression: these files live for one grid
            cv2.imwrite(str(folder / f"frame_{count:06d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR),
                        [cv2.IMWRITE_PNG_COMPRESSION, 1])  # fmt: skip
    return count


def _command(input, output, n: int, base: Config, preset, settings: dict, values: dict, first: int, count: int,
             fps: Fraction) -> str:  # fmt: skip
    """The `vidiff stylize` command that makes cell n: the preset, the settings given, the cell's values, and
    --start/--max-frames for the frames the cell shows."""
    out = Path(output)
    chosen = values.get("preset", preset)
    from_preset = load_preset(chosen).settings if chosen else {}
    given = {f.name: getattr(base, f.name) for f in fields(Config)
             if getattr(base, f.name) != f.default and f.name not in from_preset}  # fmt: skip
    given.update(settings)
    given.update({name: value for name, value in values.items() if name != "preset"})
    words = ["vidiff", "stylize", os.fspath(input), str(out.with_name(f"{out.stem}-{n + 1}.mp4"))]
    if chosen:
        words += ["--preset", chosen]
    for name, value in given.items():
        if name not in _NOT_PRINTED:
            words += _options(name, value)
    words += ["--start", start_text(first, fps), "--max-frames", str(count)]
    return shlex.join(words)


def _options(name: str, value: Any) -> list[str]:
    """The command-line words that give `name` this value."""
    option, declared = option_name(name), SETTINGS[name]
    if value is None:
        return []
    if isinstance(value, bool):
        if declared.negatable:
            return [option if value else f"--no-{option[2:]}"]
        return [option] if value else []
    if declared.repeatable:
        return [word for entry in value for word in (option, str(entry))]
    return [option, str(value)]


def _size(path: Path) -> tuple[int, int]:
    frame = _load(path)
    return frame.shape[1], frame.shape[0]


def _load(path: Path) -> np.ndarray:
    import cv2

    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


@contextmanager
def _each_note_once() -> Iterator[None]:
    """Every cell is a run and would repeat the same notes (the tiny model's, a keyframe's): say each once."""
    seen: set[str] = set()

    def first_time(record: logging.LogRecord) -> bool:
        message = record.getMessage()
        new = message not in seen
        seen.add(message)
        return new

    log.addFilter(first_time)
    try:
        yield
    finally:
        log.removeFilter(first_time)
