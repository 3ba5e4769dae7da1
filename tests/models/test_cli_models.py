"""LoRA, embeddings and ControlNet from the command line and from a preset, end to end on tiny models."""

from __future__ import annotations

import torch
from click.testing import CliRunner
from safetensors.torch import save_file

from helpers import read_frames, tiny_controlnet, write_tiny_lora
from vidiff.cli import cli
from vidiff.models.tiny import tiny_parts


def extras(folder):
    """A LoRA file, an embedding file and a ControlNet folder for the tiny SD 1.x model."""
    lora = write_tiny_lora(folder / "lora")
    embedding = folder / "clay-style.safetensors"
    save_file({"emb_params": torch.randn(1, 32, generator=torch.Generator().manual_seed(3))}, str(embedding))
    tiny_controlnet(tiny_parts().unet).save_pretrained(folder / "controlnet")
    return lora, embedding, folder / "controlnet"


def test_command_line_and_preset_give_the_same_video(clips, tmp_path):
    lora, embedding, controlnet = extras(tmp_path)
    common = ["--model", "tiny", "--max-side", "64", "--steps", "4", "--max-frames", "2", "--quiet"]
    by_options = [
        "--prompt", "a clay-style fox", "--strength", "0.8", "--lora", f"{lora}:0.5", "--embedding", str(embedding),
        "--controlnet", f"{controlnet}:0.7", "--control", "softedge",
    ]  # fmt: skip
    preset = tmp_path / "mine.toml"
    preset.write_text(
        'prompt = "a clay-style fox"\nstrength = 0.8\n'
        f'lora = ["{lora}:0.5"]\nembedding = ["{embedding}"]\ncontrolnet = ["{controlnet}:0.7"]\ncontrol = ["softedge"]\n'
    )
    outputs = []
    for name, options in (("options", by_options), ("preset", ["--preset", str(preset)])):
        output = tmp_path / f"{name}.mp4"
        result = CliRunner().invoke(cli, ["stylize", str(clips["plain"]), str(output), *common, *options])
        assert result.exit_code == 0, (result.output, result.exception)
        outputs.append(read_frames(output))
    assert len(outputs[0]) == 2
    assert all((a == b).all() for a, b in zip(*outputs))
    plain = tmp_path / "plain.mp4"
    result = CliRunner().invoke(cli, ["stylize", str(clips["plain"]), str(plain), *common, "--prompt", "a clay-style fox",
                                      "--strength", "0.8"])  # fmt: skip
    assert result.exit_code == 0
    assert any((a != b).any() for a, b in zip(outputs[0], read_frames(plain)))  # the extras changed the video


def test_loading_a_model_folder_shows_no_library_loading_bars(clips, tmp_path):
    from vidiff.models.adapters import _pipeline

    _pipeline(tiny_parts()).save_pretrained(tmp_path / "model")
    args = ["stylize", str(clips["plain"]), str(tmp_path / "out.mp4"), "--model", str(tmp_path / "model"),
            "--prompt", "x", "--steps", "2", "--max-frames", "2", "--max-side", "64", "--overwrite"]  # fmt: skip
    quiet = CliRunner().invoke(cli, [*args, "--quiet"])
    assert quiet.exit_code == 0, (quiet.output, quiet.exception)
    assert quiet.stderr == ""  # no library's loading bars either
    assert quiet.stdout == "" and (tmp_path / "out.mp4").exists()  # quiet means quiet: not even the summary
    shown = CliRunner().invoke(cli, args)
    assert shown.exit_code == 0
    assert "Loading pipeline components" not in shown.stderr and "Loading weights" not in shown.stderr
