"""`vidiff try` and vidiff.try_looks: a labelled grid of looks of one moment, each cell's command reproducing it."""

from __future__ import annotations

import shlex
import threading
from fractions import Fraction

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

import vidiff
from helpers import make_clip, read_frames, write_tiny_lora
from vidiff.cli import cli
from vidiff.io.grid import MAX_SIDE, layout
from vidiff.io.reader import VideoInfo, VideoReader
from vidiff.tryout import expand, parse_at, parse_vary, start_text

BASE = dict(model="tiny", prompt="a wooden carving", steps=4, strength=0.5, max_side=64)
BASE_OPTIONS = ["--model", "tiny", "--prompt", "a wooden carving", "--steps", "4", "--max-side", "64"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    # 12 frames of a moving test picture: each frame differs from the next
    return make_clip(tmp_path_factory.mktemp("try") / "clip.mp4", size="64x48", rate="24", seconds=0.5)


@pytest.fixture(scope="module")
def parts():
    return vidiff.load_parts(vidiff.Config(**BASE))


@pytest.fixture
def loads(monkeypatch):
    """Count the model loads; a load inside a cell's run (parts not handed over) fails the test."""
    import vidiff.models.loading as loading

    calls = []
    real = loading.load_parts

    def counted(model, *args, **kwargs):
        if isinstance(model, vidiff.Config):  # load_parts(config) calls itself with the config's fields
            calls.append(model)
        return real(model, *args, **kwargs)

    def refused(*args, **kwargs):
        raise AssertionError("a cell's run loaded its own model parts")

    monkeypatch.setattr(loading, "load_parts", counted)
    monkeypatch.setattr("vidiff.run.load_parts", refused)
    return calls


def _png(path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _cell(grid: np.ndarray, cell) -> np.ndarray:
    x, y, width, height = cell.box
    return grid[y : y + height, x : x + width]


def test_grid_is_a_header_and_rows_by_columns_of_cells_with_labels(clip, parts, tmp_path):
    result = vidiff.try_looks(clip, tmp_path / "grid.png", parts=parts, at="5",
                              vary=[("seed", ["1", "1", "2"]), ("strength", ["0.5", "0.75"])], **BASE)  # fmt: skip
    grid = _png(tmp_path / "grid.png")
    assert len(result.cells) == 6 and result.frames == 1 and result.scale == 1
    assert [(c.row, c.col) for c in result.cells[:4]] == [
        ("strength=0.5", "seed=1"), ("strength=0.5", "seed=1"), ("strength=0.5", "seed=2"), ("strength=0.75", "seed=1")
    ]  # fmt: skip
    assert result.cells[5].settings == {"strength": 0.75, "seed": 2}
    boxes = [c.box for c in result.cells]
    assert all((w, h) == (64, 48) for _x, _y, w, h in boxes)  # small cells keep their pixels
    xs, ys = sorted({x for x, *_ in boxes}), sorted({y for _x, y, *_ in boxes})
    assert len(xs) == 3 and len(ys) == 2
    assert all(b - a >= 64 for a, b in zip(xs, xs[1:])) and ys[1] - ys[0] >= 48  # cells don't overlap
    assert grid.shape[0] >= ys[0] + 2 * 48 and grid.shape[1] >= xs[0] + 3 * 64
    # the header row above the cells and the label column left of them hold text
    assert ys[0] > 0 and grid[: ys[0], xs[0]:].std() > 10
    assert xs[0] > 0 and grid[ys[0]:, : xs[0]].std() > 10
    cells = [_cell(grid, c) for c in result.cells]
    assert np.array_equal(cells[0], cells[1])  # equal settings, equal cells
    assert not np.array_equal(cells[0], cells[2])  # another seed
    assert not np.array_equal(cells[0], cells[3])  # another strength


def test_the_printed_command_reproduces_its_cell_and_the_preset_comes_under_the_options(clip, parts, tmp_path,
                                                                                         monkeypatch):  # fmt: skip
    monkeypatch.chdir(tmp_path)
    result = vidiff.try_looks(clip, "grid.png", parts=parts, at="0.25s", vary=[("preset", ["watercolour", "oil-painting"])],
                              model="tiny", steps=4, strength=0.3, max_side=64)  # fmt: skip
    cell = result.cells[1]
    words = shlex.split(cell.command)
    assert words[:3] == ["vidiff", "stylize", str(clip)]
    assert words[words.index("--preset") + 1] == "oil-painting"
    assert words[words.index("--strength") + 1] == "0.3"  # the option given beats the preset's 0.55
    assert words[words.index("--max-frames") + 1] == "1"
    run = CliRunner().invoke(cli, [*words[1:], "--save-frames", "frames", "-q"])
    assert run.exit_code == 0, run.output
    made = _png(tmp_path / "frames" / "frame_000000.png")
    grid = _png(tmp_path / "grid.png")
    assert np.array_equal(_cell(grid, cell), made)
    assert not np.array_equal(_cell(grid, result.cells[0]), made)


def test_the_command_line_prints_each_cells_command_and_loads_the_model_once(clip, tmp_path, loads):
    run = CliRunner().invoke(cli, ["try", str(clip), str(tmp_path / "grid.jpg"), *BASE_OPTIONS, "--at", "3",
                                   "--vary", "seed=1..2", "--vary", "guidance=1,7.5"])  # fmt: skip
    assert run.exit_code == 0, run.output
    commands = [line for line in run.stdout.splitlines() if line.startswith("vidiff stylize")]
    assert len(commands) == 4 and len(set(commands)) == 4
    assert all("--seed" in c and "--guidance" in c and "--start 0.125" in c for c in commands)
    assert len(loads) == 1
    assert (tmp_path / "grid.jpg").stat().st_size > 0


def test_settings_that_need_other_parts_load_them_once_each(clip, tmp_path, loads):
    lora = write_tiny_lora(tmp_path / "lora")
    run = CliRunner().invoke(cli, ["try", str(clip), str(tmp_path / "grid.png"), *BASE_OPTIONS,
                                   "--vary", f"lora=,{lora},{lora}"])  # fmt: skip
    assert run.exit_code == 0, run.output
    assert len(loads) == 2


@pytest.mark.parametrize("suffix", [".gif", ".mp4"])
def test_an_animated_grid_has_the_frames_asked_for(clip, parts, tmp_path, suffix):
    seen = []
    result = vidiff.try_looks(clip, tmp_path / f"grid{suffix}", parts=parts, at="2", frames=3, on_progress=seen.append,
                              vary=[("noise", ["fixed", "per-frame"])], **BASE)  # fmt: skip
    frames = read_frames(tmp_path / f"grid{suffix}")
    assert result.frames == 3 and len(frames) == 3
    assert [p.done for p in seen] == list(range(1, 7)) and {p.total for p in seen} == {6}
    assert {(p.cell, p.index) for p in seen} == {(c, i) for c in (0, 1) for i in range(3)}
    # the frames move (the source does)
    assert not np.array_equal(_cell(frames[0], result.cells[0]), _cell(frames[2], result.cells[0]))


def test_cancel_stops_and_writes_nothing(clip, parts, tmp_path):
    cancel = threading.Event()
    with pytest.raises(vidiff.Interrupted, match="nothing was written"):
        vidiff.try_looks(clip, tmp_path / "grid.png", parts=parts, cancel=cancel, on_progress=lambda p: cancel.set(),
                         vary=[("seed", ["1..3"])], **BASE)  # fmt: skip
    assert list(tmp_path.iterdir()) == []  # neither the grid nor the scratch folder


@pytest.mark.parametrize(
    "args, words",
    [
        (["--vary", "strenght=0.1,0.2"], "did you mean strength"),
        (["--vary", "strength=0.5,1.5"], "--strength 1.5"),
        (["--vary", "color-match=maybe"], "true or false"),
        (["--vary", "seed"], "KEY=V1,V2"),
        (["--vary", "seed=1..100"], "at most 64"),
        (["--vary", "seed=1..9", "--vary", "strength=0.2..0.9:0.1"], "72 cells"),
        (["--vary", "seed=1,2", "--vary", "steps=4,5", "--vary", "guidance=1,2"], "at most 2 axes"),
        (["--vary", "seed=1,2", "--vary", "seed=3"], "given twice"),
        (["--vary", "start=0,1"], "--at and --frames"),
        (["--vary", "preset=no-such-style"], "unknown preset"),
        (["--preset", "watercolour", "--vary", "preset=claymation"], "--vary only"),
        (["--frames", "3"], ".mp4 or .gif"),
        (["--frames", "500"], "from 1 to 100"),
        (["--at", "1.5"], "frame number (48), seconds (1.5s)"),
        (["--at", "999"], "no frame 999"),
    ],
)
def test_bad_requests_are_one_line_and_exit_2_before_any_model_loads(clip, tmp_path, loads, args, words):
    run = CliRunner().invoke(cli, ["try", str(clip), str(tmp_path / "grid.png"), *BASE_OPTIONS, *args])
    assert run.exit_code == 2, run.output
    assert run.stderr.startswith("vidiff: error:") and run.stderr.count("\n") == 1, run.stderr
    assert words in run.stderr
    assert loads == []
    assert not (tmp_path / "grid.png").exists()


def test_an_existing_grid_is_replaced_only_with_overwrite_and_never_the_input(clip, tmp_path):
    (tmp_path / "grid.png").write_bytes(b"keep")
    run = CliRunner().invoke(cli, ["try", str(clip), str(tmp_path / "grid.png"), *BASE_OPTIONS])
    assert run.exit_code == 2 and "--overwrite" in run.stderr
    assert (tmp_path / "grid.png").read_bytes() == b"keep"
    run = CliRunner().invoke(cli, ["try", str(clip), str(clip), "--overwrite", *BASE_OPTIONS])
    assert run.exit_code == 2 and "is the input" in run.stderr


def test_a_grid_too_large_is_scaled_down_to_fit_and_one_too_large_to_scale_is_refused():
    grid = layout([f"seed={n}" for n in range(16)], ["a", "b"], [(512, 384)] * 32)
    width, height = grid.size
    assert width <= MAX_SIDE and height <= MAX_SIDE and width % 2 == 0 and height % 2 == 0
    assert grid.scale < 1
    assert all(w == int(512 * grid.scale) and h == int(384 * grid.scale) for _x, _y, w, h in grid.boxes)
    with pytest.raises(vidiff.VidiffError, match="can't fit"):
        layout(["x"] * 64, None, [(64, 2)] * 64)


def test_values_ranges_and_moments_are_read_as_written():
    assert parse_vary('prompt="a carving, oak", a statue') == ("prompt", ["a carving, oak", "a statue"])
    assert expand(["1..4"]) == ["1", "2", "3", "4"]
    assert expand(["3..1", "7"]) == ["3", "2", "1", "7"]
    assert expand(["0.2..0.8:0.2"]) == ["0.2", "0.4", "0.6", "0.8"]
    assert expand(["0:0.3, 48:0.7"]) == ["0:0.3, 48:0.7"]  # keyframes are not a range
    fps = Fraction(30000, 1001)
    assert [parse_at(text, Fraction(24)) for text in ("48", "1.5s", "00:01.5", "0:00:02")] == [48, 36, 36, 48]
    # the printed --start lands on the frame, as the reader places it
    info = VideoInfo("clip.mp4", 64, 48, fps, 10**6)
    for frame in [0, 1, 2, 3, 29, 30, 1001, 99_999, 123_457]:
        assert VideoReader(info, start=float(start_text(frame, fps))).start_frame == frame
