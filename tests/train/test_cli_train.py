"""`vidiff train` on bad input: one line, exit code 2, nothing written at OUT."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from helpers import write_flat_pictures
from vidiff.cli import cli
from vidiff.settings.config import Config
from vidiff.settings.presets import load_preset


def run_train(tmp_path, pictures, *options):
    out = tmp_path / "style.safetensors"
    result = CliRunner().invoke(cli, ["train", str(pictures), str(out), "--model", "tiny", "--resolution", "64",
                                      "--steps", "2", "--quiet", *options])  # fmt: skip
    return result, out


def assert_one_line_error(result, out, words: str):
    assert result.exit_code == 2, (result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vidiff: error: "), result.stderr
    assert words in lines[0], lines[0]
    assert not out.exists()
    assert not list(out.parent.glob(f".{out.name}*")) and not out.with_name(out.name + ".checkpoint").exists()


def test_a_folder_without_pictures(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.md").write_text("not a picture")
    result, out = run_train(tmp_path, tmp_path / "empty", "--token", "<s>")
    assert_one_line_error(result, out, "holds no pictures")


def test_an_unreadable_picture(tmp_path, red_pictures):
    (red_pictures / "broken.png").write_bytes(b"\x89PNG not really")
    result, out = run_train(tmp_path, red_pictures, "--token", "<s>")
    assert_one_line_error(result, out, "broken.png could not be read")


def test_a_picture_smaller_than_the_resolution(tmp_path):
    pictures = write_flat_pictures(tmp_path / "small", [(64, 64), (48, 64)])
    result, out = run_train(tmp_path, pictures, "--token", "<s>")
    assert_one_line_error(result, out, "p1.png is 48x64, smaller than --resolution 64")


def test_a_caption_without_its_picture(tmp_path, red_pictures):
    (red_pictures / "lost.txt").write_text("a caption of nothing")
    result, out = run_train(tmp_path, red_pictures, "--token", "<s>")
    assert_one_line_error(result, out, "lost.txt has no picture")


def test_pictures_without_captions_or_token(tmp_path, red_pictures):
    result, out = run_train(tmp_path, red_pictures)
    assert_one_line_error(result, out, "--token")


@pytest.mark.parametrize("option, value, words", [
    ("--steps", "0", "--steps 0: give a whole number, at least 1"),
    ("--rank", "0", "--rank 0"),
    ("--lr", "0", "--lr 0.0"),
    ("--resolution", "60", "--resolution 60"),
])  # fmt: skip
def test_bad_settings(tmp_path, red_pictures, option, value, words):
    result, out = run_train(tmp_path, red_pictures, "--token", "<s>", option, value)
    assert_one_line_error(result, out, words)


def test_a_model_it_cannot_train(tmp_path, red_pictures):
    model = tmp_path / "inpaint"
    model.mkdir()
    (model / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionInpaintPipeline"}))
    result, out = run_train(tmp_path, red_pictures, "--token", "<s>", "--model", str(model))
    assert_one_line_error(result, out, "StableDiffusionInpaintPipeline")


def test_out_must_be_a_safetensors_file_and_is_not_replaced_unasked(tmp_path, red_pictures):
    result = CliRunner().invoke(cli, ["train", str(red_pictures), str(tmp_path / "style.pt"), "--token", "<s>"])
    assert result.exit_code == 2 and ".safetensors" in result.stderr
    out = tmp_path / "style.safetensors"
    out.write_bytes(b"an earlier style")
    result, _ = run_train(tmp_path, red_pictures, "--token", "<s>")
    assert result.exit_code == 2 and "--overwrite" in result.stderr
    assert out.read_bytes() == b"an earlier style"


def test_out_among_the_pictures_is_refused(tmp_path, red_pictures):
    result = CliRunner().invoke(cli, ["train", str(red_pictures), str(red_pictures / "style.safetensors"), "--token", "<s>"])
    assert_one_line_error(result, red_pictures / "style.safetensors", "is in IMAGES")


def test_the_summary_the_result_and_a_preset_naming_the_lora(tmp_path, red_pictures):
    out, preset = tmp_path / "style.safetensors", tmp_path / "my style.toml"
    result = CliRunner().invoke(cli, ["train", str(red_pictures), str(out), "--model", "tiny", "--resolution", "64",
                                      "--steps", "2", "--token", '"red" <style>', "--format", "kohya",
                                      "--preset", str(preset)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "pictures   4" in result.stderr and "buckets    " in result.stderr and "epoch      4 steps" in result.stderr
    assert f"wrote {out} (2 steps" in result.stdout
    assert out.exists()
    settings = load_preset(str(preset)).settings
    assert settings == {"model": "tiny", "lora": [str(out.resolve())], "prompt": '"red" <style>'}
    assert Config(**settings).lora == (str(out.resolve()),)


def test_a_preset_is_not_replaced_unasked(tmp_path, red_pictures):
    preset = tmp_path / "mine.toml"
    preset.write_text('description = "an earlier one"\n')
    result, out = run_train(tmp_path, red_pictures, "--token", "<s>", "--preset", str(preset))
    assert_one_line_error(result, out, "--overwrite")
    assert preset.read_text() == 'description = "an earlier one"\n'


def test_out_of_memory_is_one_line_that_says_what_lowers_it(tmp_path, red_pictures, monkeypatch):
    from vidiff.train.loop import Trainer

    def out_of_memory(self, batch, step):
        raise RuntimeError("MPS backend out of memory (MPS allocated: 9 GB)")

    monkeypatch.setattr(Trainer, "step", out_of_memory)
    result, out = run_train(tmp_path, red_pictures, "--token", "<s>")
    assert_one_line_error(result, out, "out of memory at step 1: lower --batch-size or --resolution")
