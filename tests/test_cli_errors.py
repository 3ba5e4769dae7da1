"""The command line's contract for bad input: exit code 2, one line on stderr, nothing written.

Every case runs `vidiff stylize` in-process through Click's CliRunner inside its own folder, and
checks that the run changed nothing on disk there: no OUTPUT, no hidden temporary files beside it,
the input and any existing OUTPUT byte for byte as they were.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import torch
from click.testing import CliRunner

from helpers import make_clip, read_frames
from vidiff.cli import cli
from vidiff.io.ffmpeg import ffmpeg_exe

# small settings, so that anything that runs by mistake stays fast
SMALL = {"--model": "tiny", "--max-side": "64", "--steps": "2", "--strength": "0.5"}
PROMPT = "a wooden carving"


def stylize_args(input: str, output: str, prompt: str | None = PROMPT, **options: str | None) -> list[str]:
    """`stylize INPUT OUTPUT` with SMALL settings; options as max_side="7" override them, None drops one."""
    settings = dict(SMALL)
    if prompt is not None:
        settings["--prompt"] = prompt
    for name, value in options.items():
        settings["--" + name.replace("_", "-")] = value
    args = ["stylize", input, output]
    for option, value in settings.items():
        if value is not None:
            args += [option, value]
    return args


def snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under root (hidden ones included): relative path -> sha256 or 'folder'."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            found[os.path.relpath(os.path.join(folder, name), root)] = "folder"
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return found


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """Source files made once: a real clip, its truncated start, and an audio-only file."""
    folder = tmp_path_factory.mktemp("media")
    clip = make_clip(folder / "clip.mp4", size="64x48", rate="24", seconds=0.25)
    data = clip.read_bytes()
    truncated = folder / "truncated.mp4"
    truncated.write_bytes(data[: int(len(data) * 0.3)])
    audio = folder / "tone.m4a"
    subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", "sine=frequency=440:duration=0.5", "-c:a", "aac",
         str(audio)],
        check=True,
    )  # fmt: skip
    return {"clip": clip, "truncated": truncated, "audio": audio}


@dataclass
class Workspace:
    """A case's folder (also the working directory): in/ holds INPUT, out/ is where OUTPUT goes."""

    root: Path
    clip: Path  # in/clip.mp4, a copy of a real video
    media: dict

    input = "in/clip.mp4"
    output = "out/result.mp4"

    def file(self, relative: str, content: bytes | str) -> str:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return relative

    def folder(self, relative: str) -> str:
        (self.root / relative).mkdir(parents=True)
        return relative

    def copy(self, name: str, relative: str) -> str:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.media[name], path)
        return relative


@pytest.fixture
def ws(tmp_path, media, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    clip = tmp_path / Workspace.input
    shutil.copyfile(media["clip"], clip)
    return Workspace(tmp_path, clip, media)


@dataclass
class Case:
    # builds the command line in the workspace; returns (args, texts the error line must contain)
    build: Callable[[Workspace], tuple[list[str], list[str]]]
    model: bool = False  # the error comes from loading a model


def _input(relative_or_builder) -> Callable[[Workspace], tuple[list[str], list[str]]]:
    def build(w: Workspace):
        source = relative_or_builder(w) if callable(relative_or_builder) else relative_or_builder
        return stylize_args(source, w.output), [Path(source).name]

    return build


def _option(name: str, value: str) -> Callable[[Workspace], tuple[list[str], list[str]]]:
    def build(w: Workspace):
        return stylize_args(w.input, w.output, **{name: value}), ["--" + name.replace("_", "-")]

    return build


def _preset(relative: str, content: str | None, *mentions: str) -> Callable[[Workspace], tuple[list[str], list[str]]]:
    def build(w: Workspace):
        if content is not None:
            w.file(relative, content)
        return stylize_args(w.input, w.output, preset=relative), [*mentions]

    return build


def _existing_output(w: Workspace):
    w.file(w.output, b"the old OUTPUT, which must survive")
    return stylize_args(w.input, w.output), [Path(w.output).name, "--overwrite"]


def _existing_sequence(w: Workspace):
    w.file("out/f_0007.png", b"a picture of an earlier sequence, which must survive")
    return stylize_args(w.input, "out/f_%04d.png"), ["f_0007.png", "--overwrite"]


def _model(value: str, *mentions: str, **extra) -> Callable[[Workspace], tuple[list[str], list[str]]]:
    def build(w: Workspace):
        return stylize_args(w.input, w.output, model=value, **extra), [*mentions]

    return build


def _ckpt(w: Workspace):
    w.file("models/model.ckpt", b"PK\x03\x04 not really a checkpoint, and never to be unpickled")
    return stylize_args(w.input, w.output, model="models/model.ckpt"), ["model.ckpt", "--allow-pickle"]


def _single_file_without_config(w: Workspace):
    """A file that is an SD 1.x checkpoint by its tensor names; offline, its config can't be found."""
    from safetensors.torch import save_file

    w.file("models/.keep", b"")
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(8, 4, 3, 3),
               "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight": torch.zeros(77, 8)},
              str(w.root / "models/mix.safetensors"))  # fmt: skip
    return stylize_args(w.input, w.output, model="models/mix.safetensors"), ["mix.safetensors", "--model-config"]


def _extra(option: str, name: str, content: bytes | None, *mentions: str):
    def build(w: Workspace):
        relative = f"extras/{name}"
        if content is not None:
            w.file(relative, content)
        return stylize_args(w.input, w.output, **{option: relative}), [*mentions]

    return build


def _lora_for_sdxl(w: Workspace):
    from helpers import write_tiny_lora

    lora = write_tiny_lora(w.root / "extras", kind="sdxl")
    return stylize_args(w.input, w.output, lora=str(lora.relative_to(w.root))), ["--lora", "does not fit"]


CASES = {
    # --- INPUT ---
    "input-missing": Case(_input("in/missing.mp4")),
    "input-is-folder": Case(_input(lambda w: w.folder("in/folder.mp4"))),
    "input-zero-bytes": Case(_input(lambda w: w.file("in/empty.mp4", b""))),
    "input-text-not-video": Case(_input(lambda w: w.file("in/notes.mp4", "these are notes, not a video\n" * 20))),
    "input-truncated-video": Case(_input(lambda w: w.copy("truncated", "in/truncated.mp4"))),
    "input-audio-only": Case(_input(lambda w: w.copy("audio", "in/tone.m4a"))),
    # --- settings ---
    "strength-negative": Case(_option("strength", "-0.1")),
    "strength-above-1": Case(_option("strength", "1.5")),
    "strength-not-a-number": Case(_option("strength", "abc")),
    "steps-zero": Case(_option("steps", "0")),
    "blend-1": Case(_option("blend", "1.0")),
    "blend-negative": Case(_option("blend", "-0.1")),
    "max-side-7": Case(_option("max_side", "7")),
    "guidance-negative": Case(_option("guidance", "-1")),
    "scheduler-unknown": Case(lambda w: (stylize_args(w.input, w.output, scheduler="warp-drive"),
                                         ["--scheduler", "warp-drive"])),
    # --- presets ---
    "preset-unknown-name": Case(_preset("no-such-style", None, "no-such-style")),
    "preset-path-missing": Case(_preset("styles/absent.toml", None, "absent.toml")),
    "preset-invalid-toml": Case(_preset("styles/broken.toml", 'prompt = "unclosed\nstrength = = 0.5\n', "broken.toml")),
    "preset-unknown-key": Case(_preset("styles/extra.toml", 'prompt = "a statue"\ncolour_grade = "teal"\n',
                                       "extra.toml", "colour_grade")),
    "preset-wrong-type": Case(_preset("styles/typed.toml", 'prompt = "a statue"\nstrength = "high"\n',
                                      "typed.toml", "strength")),
    # --- OUTPUT ---
    "output-exists-no-overwrite": Case(_existing_output),
    "output-is-input": Case(lambda w: (stylize_args(w.input, w.input), ["clip.mp4"])),
    "output-is-input-overwrite": Case(lambda w: (stylize_args(w.input, "in/../in/clip.mp4") + ["--overwrite"],
                                                 ["clip.mp4"])),
    "output-folder-missing": Case(lambda w: (stylize_args(w.input, "out/not-made/result.mp4"), ["not-made"])),
    "output-extension-xyz": Case(lambda w: (stylize_args(w.input, "out/result.xyz"), [".xyz"])),
    "output-codec-unknown": Case(_option("codec", "vp9")),
    "output-codec-not-in-container": Case(lambda w: (stylize_args(w.input, w.output, codec="prores"), ["--codec", ".mov"])),
    "output-bit-depth-not-png": Case(lambda w: (stylize_args(w.input, w.output, bit_depth="16"), ["--bit-depth"])),
    "output-picture-from-video": Case(lambda w: (stylize_args(w.input, "out/result.png"), ["out/result_%05d.png"])),
    "output-sequence-exists": Case(_existing_sequence),
    "no-prompt-no-preset": Case(lambda w: (stylize_args(w.input, w.output, prompt=None), ["prompt"])),
    # --- the model ---
    "model-path-missing": Case(_model("./nope/model.safetensors", "nope/model.safetensors"), model=True),
    "model-hub-id-offline": Case(_model("vidiff-tests/no-such-model", "vidiff-tests/no-such-model"), model=True),
    "model-ckpt-without-allow-pickle": Case(_ckpt, model=True),
    "model-single-file-without-config": Case(_single_file_without_config, model=True),
    "model-config-not-a-folder": Case(_model("tiny", "--model-config", model_config="nowhere"), model=True),
    "lora-missing": Case(_extra("lora", "gone.safetensors", None, "--lora", "gone.safetensors"), model=True),
    "lora-pickle-without-allow-pickle": Case(_extra("lora", "style.bin", b"never unpickled", "--allow-pickle"),
                                             model=True),
    "lora-not-a-lora": Case(_extra("lora", "junk.safetensors", b"not a safetensors file", "--lora", "junk"),
                            model=True),
    "lora-for-another-kind": Case(_lora_for_sdxl, model=True),
    "embedding-missing": Case(_extra("embedding", "gone.safetensors", None, "--embedding"), model=True),
    "controlnet-missing": Case(_extra("controlnet", "nets/gone", None, "--controlnet", "gone"), model=True),
}


@pytest.fixture(scope="module")
def model_libraries_imported():
    """Import diffusers' pipeline outside any CliRunner call.

    Importing it makes transformers/diffusers log notes and bind their log handlers to the stderr of
    the moment; done here, that is pytest's and not a test's. What a real user sees on stderr,
    library noise included, is checked by test_real_process_stderr_is_one_line.
    """
    from diffusers import StableDiffusionPipeline  # noqa: F401


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_bad_input_exits_2_with_one_line_and_writes_nothing(case: Case, ws: Workspace, request, monkeypatch):
    if case.model:
        request.getfixturevalue("model_libraries_imported")
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    args, mentions = case.build(ws)
    before = snapshot(ws.root)

    result = CliRunner().invoke(cli, args)

    assert "Traceback" not in result.output + result.stderr, result.output
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("vidiff: error: ") and lines[0] != "vidiff: error: ", lines
    for text in mentions:
        assert text in lines[0], f"the error should mention {text!r}: {lines[0]}"
    # nothing written, nothing left beside OUTPUT, INPUT (and any old OUTPUT) unchanged byte for byte
    assert snapshot(ws.root) == before


# Cases run as the user runs them, in a fresh `python -m vidiff`, where libraries write to the real
# stderr (file descriptor 2) and Python shows warnings; CliRunner sees neither.
# the control first: a check that never touches OpenCV or diffusers; then the ones whose
# libraries print notes of their own unless the command line silences them
REAL_PROCESS_CASES = ["output-extension-xyz", "input-truncated-video", "model-path-missing", "model-hub-id-offline",
                      "model-single-file-without-config", "lora-for-another-kind"]


@pytest.mark.parametrize(
    "name",
    REAL_PROCESS_CASES,
)
def test_real_process_stderr_is_one_line(name: str, ws: Workspace):
    args, _ = CASES[name].build(ws)
    before = snapshot(ws.root)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "default"}
    done = subprocess.run([sys.executable, "-m", "vidiff", *args], cwd=ws.root, env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert snapshot(ws.root) == before
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("vidiff: error: "), done.stderr


def test_overwrite_replaces_an_existing_output(ws: Workspace):
    old = b"the old OUTPUT, to be replaced"
    ws.file(ws.output, old)
    frames = 2
    args = stylize_args(ws.input, ws.output, max_frames=str(frames)) + ["--overwrite"]

    result = CliRunner().invoke(cli, args)

    assert result.exit_code == 0, (result.output, result.exception)
    assert "Traceback" not in result.output
    output = ws.root / ws.output
    assert output.read_bytes() != old
    written = read_frames(output)
    assert len(written) == frames
    assert written[0].shape == read_frames(ws.clip)[0].shape  # 64x48 already fits --max-side 64
    assert sorted(os.listdir(ws.root / "out")) == [output.name]  # no temporary files left beside it
    assert ws.output in result.stdout


@pytest.mark.parametrize("args", [["--help"], ["-h"], ["stylize", "--help"], ["presets", "--help"]])
def test_help_exits_0(args):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Usage:")
    assert result.stderr == ""
    if "stylize" in args:
        for option in ("--strength", "--preset", "--overwrite", "--model", "--blend"):
            assert option in result.stdout


def test_interrupt_leaves_no_output(ws: Workspace, monkeypatch):
    from vidiff.pipelines.img2img import Img2ImgProcessor

    original = Img2ImgProcessor.process
    seen = []

    def interrupted_on_second_frame(self, frames, frame_index, state=None):
        seen.append(frame_index)
        if len(seen) == 2:
            raise KeyboardInterrupt
        return original(self, frames, frame_index, state)

    monkeypatch.setattr(Img2ImgProcessor, "process", interrupted_on_second_frame)
    before = snapshot(ws.root)

    result = CliRunner().invoke(cli, stylize_args(ws.input, ws.output, batch_size="1") + ["--quiet"])

    assert seen == [0, 1]  # the first frame was stylised and written before the interruption
    assert result.exit_code == 130, (result.output, result.exception)
    assert "Traceback" not in result.output
    assert not (ws.root / ws.output).exists()
    # nothing beside OUTPUT but its work folder, which keeps the finished frame for a resume
    after = snapshot(ws.root)
    work = f"{ws.output}.vidiff"
    assert {k: v for k, v in after.items() if not k.startswith(work)} == before
    assert any(k.startswith(work) and "/pending-" in k for k in after)
    assert "interrupt" in result.stderr


# Every numeric option, out of range or malformed: each is refused before any work, naming itself.
OPTION_VALUES = [
    ("steps", "1001"), ("steps", "2.5"), ("guidance", "51"), ("guidance", "nan"), ("seed", "-1"),
    ("flow_blend", "1"), ("flow_blend", "-0.5"), ("fusion", "1.5"), ("fusion_end", "0"), ("cut_threshold", "0"), ("cut_threshold", "1.5"),
    ("max_side", "9000"), ("start", "-1"), ("duration", "0"), ("max_frames", "0"), ("crf", "52"),
    ("crf", "high"), ("fps", "0"), ("noise", "random"), ("device", "tpu"), ("dtype", "fp8"),
    ("on_bad_frame", "ignore"), ("strength", "0:0.3, 48"), ("strength", "0:0.3, 48:2"), ("seed", "0:1, 5:x"),
    ("mix", "a frog"), ("negative_mix", "blurry:2"), ("interpolation", "cubic"), ("prompt", "0:a | 10:"),
    ("on_bad_frame", "ignore"), ("lora", "style.safetensors:inf"), ("controlnet", "nets/canny:50"),
    ("control", "hed"), ("canny_low", "-1"), ("canny_high", "1001"), ("embedding", "x.safetensors:two words"),
]  # fmt: skip


@pytest.mark.parametrize("option, value", OPTION_VALUES, ids=[f"{o}={v}" for o, v in OPTION_VALUES])
def test_every_bad_option_value_exits_2_naming_the_option(option: str, value: str, ws: Workspace):
    before = snapshot(ws.root)
    result = CliRunner().invoke(cli, stylize_args(ws.input, ws.output, **{option: value}))
    assert result.exit_code == 2, (result.output, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("vidiff: error: ") and "Traceback" not in result.stderr
    assert "--" + option.replace("_", "-") in lines[0], lines[0]
    assert snapshot(ws.root) == before
