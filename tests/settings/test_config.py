"""Each setting is declared once, on its Config field: the command line, presets, the resume
fingerprint, the README and the error messages all follow that declaration."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, fields
from pathlib import Path

import pytest
from click.testing import CliRunner

import vidiff
from helpers import make_clip
from vidiff.cli import cli
from vidiff.io.workfolder import fingerprint
from vidiff.settings.config import PRESET_KEYS, Config, ConfigError, check_field, fingerprint_settings
from vidiff.settings.keyframes import ScheduleError, Timeline
from vidiff.settings.presets import parse_preset

NAMES = [f.name for f in fields(Config)]
DEFAULTS = Config()

# For every setting: what the command line is given, and the value that must reach the Config
# (each differs from the default). A new setting needs a line here.
GIVEN = {
    "prompt": (["--prompt", "a paper cutout"], "a paper cutout"),
    "negative_prompt": (["--negative-prompt", "fog"], "fog"),
    "mix": (["--mix", "a frog:0.5", "--mix", "a toad:0:0, 10:1"], ("a frog:0.5", "a toad:0:0, 10:1")),
    "negative_mix": (["--negative-mix", "blurry:0.25"], ("blurry:0.25",)),
    "strength": (["--strength", "0.7"], 0.7),
    "steps": (["--steps", "12"], 12),
    "guidance": (["--guidance", "0:3, 10:5"], "0:3, 10:5"),
    "scheduler": (["--scheduler", "euler-a"], "euler-a"),
    "seed": (["--seed", "99"], 99),
    "interpolation": (["--interpolation", "smooth"], "smooth"),
    "noise": (["--noise", "warped"], "warped"),
    "blend": (["--blend", "0.2"], 0.2),
    "flow_blend": (["--flow-blend", "0.6"], 0.6),
    "fusion": (["--fusion", "0.3"], 0.3),
    "fusion_end": (["--fusion-end", "0.8"], 0.8),
    "color_match": (["--color-match"], True),
    "cross_frame_attn": (["--cross-frame-attn"], True),
    "cuts": (["--no-cuts"], False),
    "cut_threshold": (["--cut-threshold", "0.5"], 0.5),
    "model": (["--model", "tiny"], "tiny"),
    "device": (["--device", "cpu"], "cpu"),
    "dtype": (["--dtype", "fp32"], "fp32"),
    "allow_pickle": (["--allow-pickle"], True),
    "model_config": (["--model-config", "configs/sd15"], "configs/sd15"),
    "lora": (["--lora", "styles/ink.safetensors:0.6"], ("styles/ink.safetensors:0.6",)),
    "embedding": (["--embedding", "emb/owl.safetensors:owl"], ("emb/owl.safetensors:owl",)),
    "controlnet": (["--controlnet", "nets/canny:0.5", "--controlnet", "nets/tile"], ("nets/canny:0.5", "nets/tile")),
    "control": (["--control", "softedge", "--control", "tile"], ("softedge", "tile")),
    "canny_low": (["--canny-low", "50"], 50),
    "canny_high": (["--canny-high", "250"], 250),
    "max_side": (["--max-side", "256"], 256),
    "start": (["--start", "1.5"], 1.5),
    "duration": (["--duration", "2"], 2.0),
    "max_frames": (["--max-frames", "10"], 10),
    "crf": (["--crf", "23"], 23),
    "codec": (["--codec", "prores"], "prores"),
    "fps": (["--fps", "30000/1001"], "30000/1001"),
    "on_bad_frame": (["--on-bad-frame", "skip"], "skip"),
    "batch_size": (["--batch-size", "2"], 2),
    "skip_similar": (["--skip-similar", "3"], 3.0),
    "motion_adapter": (["--motion-adapter", "guoyww/animatediff-motion-adapter-v1-5-3"],
                       "guoyww/animatediff-motion-adapter-v1-5-3"),
    "context": (["--context", "8"], 8),
    "context_overlap": (["--context-overlap", "2"], 2),
    "style_image": (["--style-image", "look.png:0.6"], "look.png:0.6"),
    "ip_adapter": (["--ip-adapter", "ip/adapter.safetensors"], "ip/adapter.safetensors"),
    "cadence": (["--cadence", "4"], 4),
    "cadence_max_gap": (["--cadence-max-gap", "6"], 6),
    "cadence_threshold": (["--cadence-threshold", "0.2"], 0.2),
    "vae": (["--vae", "tiny"], "tiny"),
    "compile": (["--compile"], True),
    "ray": (["--ray", "local"], "local"),
    "workers": (["--workers", "2"], 2),
    "gpus_per_worker": (["--gpus-per-worker", "0.5"], 0.5),
    "chunk": (["--chunk", "96"], 96),
    "chunk_warmup": (["--chunk-warmup", "4"], 4),
    "overwrite": (["--overwrite"], True),
    "restart": (["--restart"], True),
    "bit_depth": (["--bit-depth", "16"], 16),
    "save_frames": (["--save-frames", "frames"], "frames"),
    "preview": (["--preview"], True),
}
# What a run may resume across: none of these changes an output pixel.
# bit_depth: the segments are lossless whatever it says; it is applied when OUTPUT is written.
NOT_IN_FINGERPRINT = {"overwrite", "restart", "save_frames", "device", "on_bad_frame", "bit_depth", "preview",
                      # where frames are made; the chunk layout enters the distributed work folder's own
                      "ray", "workers", "gpus_per_worker", "chunk", "chunk_warmup"}


def test_every_setting_is_listed_here():
    assert set(GIVEN) == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_every_setting_has_help_and_a_check_that_takes_its_default(name):
    declared = next(f for f in fields(Config) if f.name == name).metadata["setting"]
    assert len(declared.help) > 20 and declared.help.endswith("."), declared.help
    check_field(name, getattr(DEFAULTS, name))
    check_field(name, GIVEN[name][1])
    # a TOML table is never a setting's value: refused, named by the setting
    with pytest.raises(ConfigError) as caught:
        check_field(name, {"a": 1})
    assert str(caught.value).startswith(f"{name} {{'a': 1}}: must "), str(caught.value)


def test_every_setting_is_an_option_of_the_same_name():
    options = {p.name: p for p in cli.commands["stylize"].params}
    assert set(options) == set(NAMES) | {"input", "output", "preset", "dry_run", "quiet"}
    for name in NAMES:
        assert "--" + name.replace("_", "-") in options[name].opts, options[name].opts


def test_the_command_line_defaults_are_configs(run_configs):
    assert run_configs() == DEFAULTS


def test_each_option_reaches_its_setting(run_configs):
    args = [arg for given, _value in GIVEN.values() for arg in given]
    config = run_configs(*args)
    for name, (_given, value) in GIVEN.items():
        assert getattr(config, name) == value != getattr(DEFAULTS, name), name


def test_help_shows_every_option_with_its_help():
    result = CliRunner().invoke(cli, ["stylize", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    letters = "".join(text.split())  # --help wraps the lines, also at hyphens
    for name in NAMES:
        declared = next(f for f in fields(Config) if f.name == name).metadata["setting"]
        option = "--" + name.replace("_", "-")
        assert option in text
        # the help's first words, with other settings named as options
        first = re.sub(r"`(\w+)`", lambda m: "--" + m[1].replace("_", "-"), declared.help)[:30]
        assert "".join(first.split()) in letters, (name, first)
    assert "[default: 0.5]" in text and "--cuts / --no-cuts" in text and "--color-match / --no-color-match" in text


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    return json.dumps(value)


@pytest.mark.parametrize("name", NAMES)
def test_a_preset_may_set_exactly_the_preset_settings(name):
    value = GIVEN[name][1]
    text = f"description = 'x'\n{name} = {_toml(value)}\n"
    if name in PRESET_KEYS:
        read = parse_preset(text.encode(), "x", "x.toml").settings
        assert read == {name: list(value) if isinstance(value, tuple) else value}
    else:
        with pytest.raises(vidiff.VidiffError, match=f"x.toml: unknown key '{name}'"):
            parse_preset(text.encode(), "x", "x.toml")


def test_preset_keys_are_the_fields_marked_preset():
    assert set(PRESET_KEYS) == {f.name for f in fields(Config) if f.metadata["setting"].preset}
    # where a particular run starts, writes or runs is not a preset's business
    assert not {"start", "duration", "max_frames", "device", "overwrite", "restart", "save_frames"} & set(PRESET_KEYS)


def test_readme_lists_the_preset_keys():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    sentence = re.search(r"A preset may set (.*?);", readme, re.S)
    assert sentence, "README.md no longer says which keys a preset may set"
    listed = re.findall(r"`(\w+)`", sentence.group(1))
    assert len(listed) == len(set(listed))
    assert set(listed) == set(PRESET_KEYS)


def test_the_fingerprint_leaves_out_exactly_the_settings_that_change_no_pixel(tmp_path):
    source = tmp_path / "in.mp4"
    source.write_bytes(b"not really a video")
    base = fingerprint(DEFAULTS, source)
    for name, (_given, value) in GIVEN.items():
        changed = fingerprint(DEFAULTS.replace(**{name: value}), source) != base
        assert changed == (name not in NOT_IN_FINGERPRINT), name
    config = DEFAULTS.replace(**{name: value for name, (_given, value) in GIVEN.items()})
    assert fingerprint_settings(config) == {k: v for k, v in asdict(config).items() if k not in NOT_IN_FINGERPRINT}


# --- messages: the API names the setting, the command line the option, a preset its file and key ---


def test_the_api_names_the_setting(tmp_path):
    with pytest.raises(ConfigError) as caught:
        vidiff.stylize_video(tmp_path / "in.mp4", tmp_path / "out.mp4", prompt="x", strength=1.5)
    assert str(caught.value) == "strength 1.5: must be a number in [0, 1] (or keyframes, such as '0:0.3, 48:0.7')"
    with pytest.raises(ConfigError, match=r"^max_side 7: must be a whole number of pixels from 8 to 8192$"):
        Config(prompt="x", max_side=7).validate()
    with pytest.raises(ConfigError, match=r"^canny_low 300: must not be above canny_high \(200\)$"):
        Config(prompt="x", canny_low=300).validate()


@pytest.mark.parametrize(
    "args, line",
    [
        (["--strength", "1.5"], "--strength 1.5: must be a number in [0, 1] (or keyframes, such as '0:0.3, 48:0.7')"),
        (["--max-side", "7"], "--max-side 7: must be a whole number of pixels from 8 to 8192"),
        (["--canny-low", "300"], "--canny-low 300: must not be above --canny-high (200)"),
    ],
)
def test_the_command_line_names_the_option(args, line, tmp_path):
    result = CliRunner().invoke(cli, ["stylize", str(tmp_path / "in.mp4"), str(tmp_path / "out.mp4"), "--prompt", "x",
                                      *args])  # fmt: skip
    assert result.exit_code == 2
    assert result.stderr == f"vidiff: error: {line}\n"


def test_a_preset_names_its_file_and_key(tmp_path):
    with pytest.raises(ConfigError) as caught:
        parse_preset(b"max_side = 7\n", "x", "x.toml")
    assert str(caught.value) == "x.toml: max_side = 7: must be a whole number of pixels from 8 to 8192"
    preset = tmp_path / "style.toml"
    preset.write_text("max_side = 7\n")
    result = CliRunner().invoke(cli, ["stylize", "in.mp4", "out.mp4", "--preset", str(preset)])
    assert result.exit_code == 2
    assert result.stderr == f"vidiff: error: {preset}: max_side = 7: must be a whole number of pixels from 8 to 8192\n"


def test_keyframes_that_cant_be_placed_name_the_setting_or_the_option(tmp_path):
    # 2 s is frame 48 at 24 fps, after the next keyframe's frame 24: only placing them finds it
    keyframes = "2s:0.3, 24:0.4"
    config = Config(prompt="x", strength=keyframes).validate()
    with pytest.raises(ConfigError) as caught:
        Timeline(config, 24.0)
    assert isinstance(caught.value, ScheduleError)
    expected = f"strength {keyframes!r}: keyframe 24 falls at frame 24, not after the keyframe before it (frame 48)"
    assert str(caught.value).startswith(expected), str(caught.value)

    clip = make_clip(tmp_path / "clip.mp4", seconds=0.25)
    result = CliRunner().invoke(cli, ["stylize", str(clip), str(tmp_path / "out.mp4"), "--prompt", "x", "--model",
                                      "tiny", "--strength", keyframes, "--dry-run"])  # fmt: skip
    assert result.exit_code == 2
    assert result.stderr.startswith(f"vidiff: error: --{expected}"), result.stderr


def test_errors_beyond_the_checks_name_settings_as_their_user_wrote_them(clips, tmp_path):
    """A message written with options reads as fields from the API and as options on the command line."""
    output = tmp_path / "out.mp4"
    output.write_bytes(b"an earlier result")
    with pytest.raises(vidiff.VidiffError) as raised:
        vidiff.stylize_video(clips["plain"], output, prompt="x", model="tiny")
    assert "pass overwrite to replace it" in str(raised.value) and "--" not in str(raised.value)
    result = CliRunner().invoke(cli, ["stylize", str(clips["plain"]), str(output), "--prompt", "x", "--model", "tiny"])
    assert result.exit_code == 2 and "pass --overwrite to replace it" in result.stderr
    # a file name that looks like an option is left as it is
    assert str(vidiff.VidiffError("input --odd.mp4 not found; give --max-side 64")) == "input --odd.mp4 not found; give max_side 64"
