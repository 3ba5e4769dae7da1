"""Presets: the bundled ones, a user's own, `vidiff presets`, and the precedence
command line > preset > built-in default, checked through the real command line."""

from __future__ import annotations

import sys
from dataclasses import fields
from importlib import resources
from pathlib import Path

import pytest
from click.testing import CliRunner

from vidiff.cli import cli
from vidiff.settings.config import PRESET_KEYS, Config
from vidiff.settings.presets import available, list_presets, load_preset, parse_preset, user_preset_dir

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# what every bundled preset must set: the whole look and the model it was tuned for
REQUIRED = ("prompt", "negative_prompt", "strength", "steps", "guidance", "scheduler", "noise", "blend", "seed",
            "max_side", "model")  # fmt: skip
DEFAULTS = Config()
# the bundled preset files, as the package ships them
BUNDLED = sorted(p.name[: -len(".toml")] for p in (resources.files("vidiff.settings") / "presets").iterdir()
                 if p.name.endswith(".toml"))  # fmt: skip


@pytest.fixture(autouse=True)
def config_home(tmp_path, monkeypatch):
    """An empty XDG_CONFIG_HOME, so that the tester's own presets take no part; returns it."""
    home = tmp_path / "xdg"
    home.mkdir()
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    return home


def user_preset(config_home: Path, name: str, text: str) -> Path:
    folder = config_home / "vidiff" / "presets"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


# --- the bundled presets ---


def test_bundled_presets_are_listed():
    assert len(BUNDLED) >= 6
    assert "wooden-carving" in BUNDLED
    assert sorted(available()) == BUNDLED
    assert [p.name for p in list_presets()] == BUNDLED


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_preset_is_complete_and_valid(name):
    preset = load_preset(name)
    assert preset.name == name
    description = preset.description
    assert description.strip() and "\n" not in description and description == description.strip()
    missing = [key for key in REQUIRED if key not in preset.settings]
    assert not missing, f"{name} does not set {missing}"
    assert preset.settings["prompt"].strip()
    assert set(preset.settings) <= set(PRESET_KEYS)
    Config(**preset.settings).validate()
    config = Config(**preset.settings).replace(prompt="a test prompt").validate()
    assert config.prompt == "a test prompt"
    for key, value in preset.settings.items():
        if key != "prompt":
            # a TOML list is a tuple in the Config
            assert getattr(config, key) == (tuple(value) if isinstance(value, list) else value), key
    # the preset parses the same from its file's bytes, as a path would load it
    path = resources.files("vidiff.settings") / "presets" / f"{name}.toml"
    assert parse_preset(path.read_bytes(), name, str(path)).settings == preset.settings


# --- a user's own presets ---


def test_user_preset_is_listed_and_loadable(config_home):
    path = user_preset(config_home, "mine", 'description = "My own look"\nprompt = "a bronze statue"\nstrength = 0.4\n')
    assert user_preset_dir() == config_home / "vidiff" / "presets"

    preset = load_preset("mine")
    assert preset.settings == {"prompt": "a bronze statue", "strength": 0.4}
    assert preset.description == "My own look"
    assert Path(preset.source) == path
    assert "mine" in available()

    result = CliRunner().invoke(cli, ["presets"])
    assert result.exit_code == 0, result.output
    assert ["mine", "My own look"] in [line.split(None, 1) for line in result.stdout.splitlines()]
    assert str(user_preset_dir()) in result.stdout


def test_user_preset_replaces_a_bundled_one_of_the_same_name(config_home):
    bundled = load_preset("wooden-carving")
    path = user_preset(
        config_home, "wooden-carving", 'description = "My carving"\nprompt = "a pine carving"\nseed = 77\n'
    )
    preset = load_preset("wooden-carving")
    assert Path(preset.source) == path
    assert preset.settings == {"prompt": "a pine carving", "seed": 77}
    assert preset.settings != bundled.settings
    assert sorted(available()) == BUNDLED  # replaced, not added

    listing = CliRunner().invoke(cli, ["presets"]).stdout.splitlines()
    carving = [line for line in listing if line.split(None, 1)[:1] == ["wooden-carving"]]
    assert carving == [carving[0]] and carving[0].split(None, 1)[1] == "My carving"


@pytest.mark.parametrize("xdg", [None, ""])
def test_user_preset_dir_defaults_to_dot_config(xdg, tmp_path, monkeypatch):
    if xdg is None:
        monkeypatch.delenv("XDG_CONFIG_HOME")
    else:
        monkeypatch.setenv("XDG_CONFIG_HOME", xdg)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert user_preset_dir() == tmp_path / ".config" / "vidiff" / "presets"
    user_preset(tmp_path / ".config", "homemade", 'prompt = "a clay pot"\n')
    assert load_preset("homemade").settings == {"prompt": "a clay pot"}


# --- `vidiff presets` ---


def test_presets_lists_names_with_descriptions():
    result = CliRunner().invoke(cli, ["presets"])
    assert result.exit_code == 0, result.output
    rows = [line.split(None, 1) for line in result.stdout.splitlines() if line.strip()]
    for preset in list_presets():
        assert [preset.name, preset.description] in rows, f"{preset.name} is not listed with its description"


def _resolved(preset) -> dict:
    """Every preset key's value as TOML reads it back: the preset's, else the built-in default
    (TOML has no null: unset settings are shown as comments, so they don't read back)."""
    resolved = {key: preset.settings.get(key, getattr(DEFAULTS, key)) for key in PRESET_KEYS}
    return {key: list(value) if isinstance(value, tuple) else value for key, value in resolved.items()
            if value is not None}  # fmt: skip


@pytest.mark.parametrize("which", ["wooden-carving", "sparse-user-preset"])
def test_presets_name_shows_resolved_settings_marking_defaults(which, config_home):
    if which == "sparse-user-preset":
        user_preset(config_home, which, 'description = "Only two keys"\nprompt = "a tin robot"\nsteps = 12\n')
    preset = load_preset(which)

    result = CliRunner().invoke(cli, ["presets", which])

    assert result.exit_code == 0, result.output
    out = result.stdout
    assert which in out.splitlines()[0] and preset.description in out.splitlines()[0]
    assert preset.source in out
    # every preset key is shown once, with the value it resolves to
    shown = tomllib.loads(out)  # the header lines and the markers are TOML comments
    assert shown == _resolved(preset)
    defaults = {key: getattr(DEFAULTS, key) for key in PRESET_KEYS if key not in preset.settings}
    assert all(f"# {key} = (not set)" in out for key, value in defaults.items() if value is None)
    # exactly the keys the preset does not set are marked as built-in defaults
    marked = {line.split("=")[0].strip().removeprefix("# ") for line in out.splitlines()
              if line.endswith("# built-in default")}  # fmt: skip
    assert marked == set(PRESET_KEYS) - set(preset.settings)
    assert marked  # the case above leaves keys out, so the marking is really checked


def test_presets_name_output_round_trips_a_multi_line_prompt(config_home):
    path = user_preset(config_home, "multi", 'prompt = """a carving,\nhighly detailed"""\nnegative_prompt = "a\tb"\n')
    preset = load_preset("multi")
    assert preset.settings["prompt"] == "a carving,\nhighly detailed"
    result = CliRunner().invoke(cli, ["presets", "multi"])
    assert result.exit_code == 0, result.output
    # what is shown can be saved as a preset and gives the same settings back
    shown = parse_preset(result.stdout.encode(), "shown", str(path)).settings
    assert shown == _resolved(preset)


def test_presets_unknown_name_is_an_error():
    result = CliRunner().invoke(cli, ["presets", "no-such-style"])
    assert result.exit_code == 2
    assert result.stderr.startswith("vidiff: error: ") and "no-such-style" in result.stderr
    assert "Traceback" not in result.output


# --- precedence: command line > preset > built-in default, through the real command line ---


def test_command_line_beats_preset_beats_default(run_configs):
    preset = load_preset("wooden-carving").settings
    assert preset["strength"] != 0.3
    config = run_configs("--preset", "wooden-carving", "--strength", "0.3")
    assert config.strength == 0.3
    assert config.prompt == preset["prompt"]
    assert config.seed == preset["seed"]
    for key, value in preset.items():
        if key != "strength":
            assert getattr(config, key) == value, key
    # keys the preset doesn't set keep the built-in default
    unset = [f.name for f in fields(Config) if f.name not in preset]
    assert unset
    for key in unset:
        assert getattr(config, key) == getattr(DEFAULTS, key), key


def test_preset_given_after_an_option_still_loses_to_it(run_configs):
    config = run_configs("--strength", "0.3", "--seed", "9", "--preset", "wooden-carving")
    assert (config.strength, config.seed) == (0.3, 9)
    assert config.prompt == load_preset("wooden-carving").settings["prompt"]


# values that differ from the wooden-carving preset's (checked in the test)
OVERRIDES = {
    "prompt": ("--prompt", "a marble bust", "a marble bust"),
    "negative_prompt": ("--negative-prompt", "fog", "fog"),
    "steps": ("--steps", "12", 12),
    "guidance": ("--guidance", "3.5", 3.5),
    "scheduler": ("--scheduler", "euler-a", "euler-a"),
    "seed": ("--seed", "99", 99),
    "noise": ("--noise", "per-frame", "per-frame"),
    "blend": ("--blend", "0.5", 0.5),
    "model": ("--model", "tiny", "tiny"),
    "max_side": ("--max-side", "256", 256),
    "crf": ("--crf", "23", 23),
    "lora": ("--lora", "styles/ink.safetensors:0.6", ("styles/ink.safetensors:0.6",)),
    "controlnet": ("--controlnet", "nets/canny:0.5", ("nets/canny:0.5",)),
    "control": ("--control", "softedge", ("softedge",)),
    "canny_low": ("--canny-low", "50", 50),
    # an explicit value equal to the built-in default still beats the preset
    "seed=default": ("--seed", str(DEFAULTS.seed), DEFAULTS.seed),
    "negative_prompt=empty": ("--negative-prompt", "", ""),
}


@pytest.mark.parametrize("key", OVERRIDES)
def test_each_option_beats_the_preset(key, run_configs):
    field = key.split("=")[0]
    option, text, value = OVERRIDES[key]
    preset = load_preset("wooden-carving").settings
    assert preset.get(field, getattr(DEFAULTS, field)) != value
    config = run_configs("--preset", "wooden-carving", option, text)
    assert getattr(config, field) == value
    others = {k: v for k, v in preset.items() if k != field}
    assert {k: getattr(config, k) for k in others} == others


def test_without_a_preset_the_built_in_defaults_apply(run_configs):
    config = run_configs("--prompt", "a paper cutout")
    assert config.negative_prompt == ""
    assert config == DEFAULTS.replace(prompt="a paper cutout")


@pytest.mark.parametrize("spelling", ["./x/style.toml", "x/style.toml", "{abs}"])
def test_preset_path(spelling, run_configs, tmp_path):
    path = tmp_path / "x" / "style.toml"
    path.parent.mkdir()
    path.write_text('description = "From a file"\nprompt = "a neon sign"\nstrength = 0.7\nseed = 31\n')
    config = run_configs("--preset", spelling.format(abs=path), "--seed", "5")
    assert (config.prompt, config.strength, config.seed) == ("a neon sign", 0.7, 5)
    assert config.steps == DEFAULTS.steps and config.negative_prompt == DEFAULTS.negative_prompt


def test_user_preset_by_name_on_the_command_line(run_configs, config_home):
    user_preset(config_home, "mine", 'prompt = "a chalk drawing"\nblend = 0.35\n')
    config = run_configs("--preset", "mine")
    assert (config.prompt, config.blend) == ("a chalk drawing", 0.35)
    assert config.strength == DEFAULTS.strength


@pytest.mark.parametrize("name", ["ink-outline", "anime-cel"])
def test_controlnet_presets_hold_shapes_at_high_strength(name, run_configs):
    preset = load_preset(name).settings
    config = run_configs("--preset", name)
    assert config.controlnet == tuple(preset["controlnet"]) and config.control == tuple(preset["control"])
    assert config.strength >= 0.75  # the point of holding the shapes: a strength that would lose them alone
