"""The command line: parse, validate, build one Config, call the API. Nothing else lives here.

Presets reach the options through Click's default_map (as Black reads its config file), so the
precedence command line > preset > built-in default needs no merging code of ours.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import sys
import threading
import typing
import warnings
from contextlib import contextmanager
from dataclasses import fields

import click
from click.core import ParameterSource

from . import __version__
from .errors import Interrupted, VidiffError, option_name
from .settings.config import PRESET_KEYS, SETTINGS, Config, Setting
from .settings.keyframes import NUMBERS, WHOLE_NUMBERS
from .settings.presets import list_presets, load_preset, user_preset_dir
from .tryout import OWN_SETTINGS, parse_vary, try_looks

DEFAULTS = Config()
INTERRUPTED = 130  # the shell's code for a run stopped by Ctrl-C


class VidiffGroup(click.Group):
    """Every error the user can fix ends as one line on stderr and exit code 2, never a traceback."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        _quiet_libraries()
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.ClickException as err:
            click.echo(f"vidiff: error: {_one_line(err.format_message())}", err=True)
            code = err.exit_code
        except VidiffError as err:
            # a bad setting is named as the user gave it here: as an option, or as a preset's key
            message = err.on_command_line()
            click.echo(f"vidiff: error: {_one_line(message)}", err=True)
            code = 2
        except Interrupted as err:
            click.echo(f"vidiff: {err}", err=True)
            code = INTERRUPTED
        except (KeyboardInterrupt, click.Abort):
            click.echo("vidiff: interrupted; nothing was written to OUTPUT (run the same command to resume)", err=True)
            code = INTERRUPTED
        code = code if isinstance(code, int) else 0
        if standalone_mode:
            sys.exit(code)
        return code


def _quiet_libraries() -> None:
    """The command line owns stderr: the libraries' own notes would bury vidiff's one-line messages."""
    # the libraries read these when first imported (set them yourself to see their notes)
    for variable, value in {
        "OPENCV_FFMPEG_LOGLEVEL": "-8",
        "TRANSFORMERS_VERBOSITY": "error",
        "DIFFUSERS_VERBOSITY": "error",
        "HF_HUB_VERBOSITY": "error",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    }.items():
        os.environ.setdefault(variable, value)
    import cv2

    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    for name in ("diffusers", "transformers", "huggingface_hub"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="(diffusers|transformers|huggingface_hub)")


def _one_line(text: str) -> str:
    return " ".join(text.split())


class NumberOrKeyframes(click.ParamType):
    """A number, or a keyframe string ("0:0.3, 48:0.7") that Config.validate checks and explains."""

    name = "number|keyframes"

    def __init__(self, integer: bool = False):
        self.integer = integer

    def convert(self, value, param, ctx):
        if not isinstance(value, str):
            return value
        try:
            return int(value) if self.integer else float(value)
        except ValueError:
            return value.strip()


NUMBER = NumberOrKeyframes()
WHOLE_NUMBER = NumberOrKeyframes(integer=True)
KEYFRAMES_HELP = " Or keyframes: '0:0.3, 48:0.7' (frames) or '0s:0.3, 2.5s:0.7' (seconds)."
_SETTING_NAME = re.compile(r"`(\w+)`")  # how a help text names another setting


def _apply_preset(ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is not None:
        preset = load_preset(value)
        ctx.default_map = {**(ctx.default_map or {}), **preset.settings}
    return value


def _setting_options(command, leave_out: tuple[str, ...] = ()):
    """An option for each Config field, in the fields' order, made from its declaration (config.setting)."""
    hints = typing.get_type_hints(Config)
    for field in reversed([f for f in fields(Config) if f.name not in leave_out]):  # Click lists them in reverse
        command = _setting_option(field.name, SETTINGS[field.name], field.default, hints[field.name])(command)
    return command


def _setting_option(name: str, declared: Setting, default, hint):
    option = option_name(name)
    help = _SETTING_NAME.sub(lambda m: option_name(m[1]) if m[1] in SETTINGS else m[0], declared.help)
    if declared.keyframes == NUMBERS:  # whole numbers (seeds) hold until the next keyframe: their help says so
        help += KEYFRAMES_HELP
    if declared.repeatable:
        help += " Repeatable."
    if hint is bool:
        if declared.negatable:
            return click.option(f"{option}/--no-{option[2:]}", default=default, show_default=True, help=help)
        return click.option(option, is_flag=True, default=default, help=help)
    if declared.keyframes == NUMBERS:
        kind = NUMBER
    elif declared.keyframes == WHOLE_NUMBERS:
        kind = WHOLE_NUMBER
    elif declared.choices:
        kind = click.Choice(declared.choices)
    elif declared.folder:
        kind = click.Path(file_okay=False, path_type=str)
    else:  # the number a field holds (int | None holds an int), or else text
        numbers = [t for t in typing.get_args(hint) or (hint,) if t is not type(None)]
        # a whole number or a word (cadence: K or auto): the number converted, the word checked by Config
        kind = numbers[0] if numbers in ([int], [float]) else WHOLE_NUMBER if numbers == [int, str] else None
    shown = default not in (None, "", ())  # an empty default says nothing in --help
    return click.option(option, type=kind, default=default, multiple=declared.repeatable, show_default=shown,
                        metavar=declared.metavar, help=help)


def _setup_logging(quiet: bool) -> None:
    logger = logging.getLogger("vidiff")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("vidiff: %(message)s"))
        logger.addHandler(handler)
    # the handler writes to the stderr of the moment (CliRunner swaps it per call)
    logger.handlers[0].setStream(sys.stderr)
    logger.setLevel(logging.ERROR if quiet else logging.INFO)
    logger.propagate = False


@click.group(cls=VidiffGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vidiff")
def cli() -> None:
    """Restyle a video with Stable Diffusion img2img.

    \b
      vidiff stylize in.mp4 out.mp4 --preset wooden-carving
      vidiff presets            list the styles
      vidiff try in.mp4 grid.png --preset wooden-carving --vary strength=0.3,0.5
                                a grid of looks of one moment, before the long render
      vidiff demo               an offline run on a synthetic clip, shown side by side
      vidiff train pictures/ style.safetensors --token "<my-style>"   a style of your own
    """


@cli.command()
@click.argument("input", type=click.Path(dir_okay=True, path_type=str))
@click.argument("output", type=click.Path(path_type=str))
@click.option("--preset", is_eager=True, expose_value=False, callback=_apply_preset, metavar="NAME|FILE.toml",
              help="A style preset (see `vidiff presets`); options given here override its values.")
@_setting_options
@click.option("--dry-run", is_flag=True,
              help="Print the plan (frames, size, model, each keyframed value) and exit without loading the model.")
@click.option("--quiet", "-q", is_flag=True, help="Nothing on success: no progress bar, notes or summary; errors still print.")
def stylize(input: str, output: str, dry_run: bool, quiet: bool, **settings) -> None:
    """Stylise INPUT (a video, a picture, a folder of numbered images, or a pattern such as img_%04d.png)
    into OUTPUT: a video (.mp4, .m4v, .mov, .mkv, .webm) keeping the audio, a .gif, one picture (.png, .jpg,
    .webp) from one picture, or numbered pictures (out_%05d.png). Re-run the same command to resume."""
    _setup_logging(quiet)
    config = Config(**settings)
    if dry_run:
        from .plan import plan_run

        click.echo(plan_run(input, output, config).describe())
        return
    from .run import stylize_video

    _no_library_progress_bars()
    with _graceful_interrupts() as cancel:
        result = stylize_video(input, output, config, progress=not quiet, cancel=cancel)
    if not quiet:
        click.echo(result.summary())


def _no_library_progress_bars() -> None:
    """diffusers' and transformers' loading bars off: they would bury vidiff's own lines, and --quiet must
    say nothing (imported here, where the run imports them anyway)."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()


@contextmanager
def _graceful_interrupts(unit: str = "frame"):
    """The first Ctrl-C lets the frames (or training step) in progress finish (then the run stops, resumable);
    a second stops at once."""
    cancel = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield cancel
        return

    def handler(signum, frame):
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()
        logging.getLogger("vidiff").warning(f"stopping after this {unit} (Ctrl-C again to stop at once)")

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield cancel
    finally:
        signal.signal(signal.SIGINT, previous)


def _remember_preset(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    ctx.meta["vidiff.preset"] = value
    return _apply_preset(ctx, param, value)


@cli.command("try")
@click.argument("input", type=click.Path(dir_okay=True, path_type=str))
@click.argument("grid", type=click.Path(path_type=str))
@click.option("--preset", is_eager=True, expose_value=False, callback=_remember_preset, metavar="NAME|FILE.toml",
              help="A style preset for every cell; options given here override its values.")
@click.option("--vary", multiple=True, metavar="KEY=V1,V2,...",
              help="A setting (any option below, or preset) and its values: the first --vary gives the columns, a "
                   "second the rows. Ranges: seed=1..8, strength=0.2..0.8:0.2; a value with commas in double "
                   "quotes: 'prompt=\"a carving, oak\",\"a statue\"'.")
@click.option("--at", default="0", show_default=True, metavar="TIME|FRAME",
              help="The moment to try: a frame number (48), seconds (1.5s) or a time (00:01.5).")
@click.option("--frames", default=1, show_default=True, metavar="N",
              help="Frames from --at in each cell; above 1 GRID is an animation (.mp4 or .gif), where flicker shows.")
@(lambda command: _setting_options(command, leave_out=OWN_SETTINGS))
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or notes; errors and the commands still print.")
def try_(input: str, grid: str, vary: tuple[str, ...], at: str, frames: int, quiet: bool, **settings) -> None:
    """Stylise the moment --at of INPUT with each combination of the --vary values and draw them as a
    labelled grid in GRID (.png, .jpg; .mp4 or .gif with --frames), then print each cell's `vidiff
    stylize` command. The model loads once for the whole grid.

    \b
      vidiff try in.mp4 grid.png --preset watercolour --at 2s --vary strength=0.3,0.45,0.6 --vary seed=1..3
    """
    _setup_logging(quiet)
    ctx = click.get_current_context()
    # only what the command line gave: each cell's preset (the given one, or the varied one) comes under it
    given = {name: value for name, value in settings.items()
             if ctx.get_parameter_source(name) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)}  # fmt: skip
    if ctx.meta.get("vidiff.preset") is not None:
        given["preset"] = ctx.meta["vidiff.preset"]
    _no_library_progress_bars()
    from tqdm import tqdm

    bars = []  # made at the first frame, when the total is known (a bad setting fails before)

    def show(progress) -> None:
        if not bars:
            bars.append(tqdm(total=progress.total, unit="frame", disable=quiet, leave=False, dynamic_ncols=True))
        bars[0].update(1)

    try:
        with _graceful_interrupts() as cancel:
            result = try_looks(input, grid, vary=[parse_vary(text) for text in vary], at=at, frames=frames,
                               on_progress=show, cancel=cancel, **given)  # fmt: skip
    finally:
        for bar in bars:
            bar.close()
    click.echo(result.commands())
    click.echo(result.summary())


@cli.command()
@click.argument("name", required=False)
def presets(name: str | None) -> None:
    """List the presets, or show the settings NAME resolves to."""
    if name is None:
        found = list_presets()
        width = max(len(p.name) for p in found)
        for preset in found:
            click.echo(f"{preset.name:<{width}}  {preset.description}")
        click.echo(f"\nYour own presets go in {user_preset_dir()} (one NAME.toml each).")
        return
    preset = load_preset(name)
    click.echo(f"# {preset.name}: {preset.description}\n# from {preset.source}")
    resolved = {f.name: getattr(DEFAULTS, f.name) for f in fields(Config) if f.name in PRESET_KEYS}
    for key, value in {**resolved, **preset.settings}.items():
        origin = "" if key in preset.settings else "  # built-in default"
        if value is None:  # TOML has no null: an unset setting is shown as a comment
            click.echo(f"# {key} = (not set){origin}")
        else:
            click.echo(f"{key} = {_toml(value)}{origin}")


def _toml(value) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        # JSON's string escapes (\n, \", \\, \uXXXX) are all valid in a TOML basic string
        return json.dumps(value, ensure_ascii=False)
    return repr(value)


@cli.command()
@click.argument("output", default="vidiff-demo.mp4", type=click.Path(path_type=str))
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT if it exists.")
@click.option("--quiet", "-q", is_flag=True, help="Nothing on success: no progress bar, notes or summary.")
def demo(output: str, overwrite: bool, quiet: bool) -> None:
    """Stylise a synthetic clip with the small model vidiff ships (trained offline) and write the source
    and the result side by side beside OUTPUT (OUTPUT.preview.mp4): checks the install, needs no download."""
    from .demo import run_demo

    _setup_logging(quiet)
    _no_library_progress_bars()
    result = run_demo(output, overwrite=overwrite, progress=not quiet)
    if not quiet:
        click.echo(result.summary())


@cli.command()
@click.argument("source", type=click.Path(dir_okay=True, path_type=str))
@click.argument("stylized", type=click.Path(dir_okay=True, path_type=str))
@click.option("--json", "json_path", type=click.Path(path_type=str), default=None, metavar="FILE",
              help="Also write every figure, and the per-frame series, as JSON to FILE.")
@click.option("--plot", "plot_path", type=click.Path(path_type=str), default=None, metavar="FILE.png",
              help="Also draw the per-frame warp error as a chart (PNG), cuts marked.")
@click.option("--cuts/--no-cuts", default=True, show_default=True,
              help="Detect hard cuts in SOURCE and leave the frame pairs across them out; "
                   "--no-cuts measures every pair.")
@click.option("--cut-threshold", type=click.FloatRange(0.0, 1.0, min_open=True), default=DEFAULTS.cut_threshold,
              metavar="T", show_default=True,
              help="Colour-histogram distance in (0, 1] between SOURCE frames that counts as a cut.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar; the figures still print.")
def score(source: str, stylized: str, json_path: str | None, plot_path: str | None, cuts: bool, cut_threshold: float,
          quiet: bool) -> None:
    """Measure the flicker of STYLIZED against the motion of SOURCE, the video it was made from.

    Stylised frame t is warped onto t+1 along SOURCE's optical flow and compared over the pixels
    the flow is trusted on. warp error: mean absolute difference on 0-255; warp MSE: mean squared
    difference on 0-1; flicker: change of mean brightness; change from source: mean |STYLIZED -
    SOURCE| on 0-255, which is near 0 when the stylisation did little. Pairs across a cut in
    SOURCE are left out.
    """
    from .score import score_video

    ctx = click.get_current_context()
    if not cuts and ctx.get_parameter_source("cut_threshold") is click.core.ParameterSource.COMMANDLINE:
        raise click.UsageError("--cut-threshold and --no-cuts contradict each other; give one of them")
    threshold = cut_threshold if cuts else None
    report = score_video(source, stylized, threshold, json_path=json_path, plot_path=plot_path, progress=not quiet)
    click.echo(report.table())


def _train_options(command):
    """An option for each TrainConfig field, made from its declaration (vidiff/train/config.py)."""
    from .train.config import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    for field in reversed(fields(TrainConfig)):
        meta, option, hint = field.metadata, option_name(field.name), hints[field.name]
        numbers = [t for t in typing.get_args(hint) or (hint,) if t is not type(None)]
        if numbers == [bool] and meta["negatable"]:  # --x/--no-x; unset (None) lets the run choose
            decorator = click.option(f"{option}/--no-{option[2:]}", default=field.default,
                                     show_default=field.default is not None, help=meta["help"])  # fmt: skip
        elif numbers == [bool]:
            decorator = click.option(option, is_flag=True, default=field.default, help=meta["help"])
        else:
            kind = click.Choice(meta["choices"]) if meta["choices"] else numbers[0] if numbers[0] is not str else None
            decorator = click.option(option, type=kind, default=field.default, metavar=meta["metavar"],
                                     show_default=field.default is not None, help=meta["help"])  # fmt: skip
        command = decorator(command)
    return command


@cli.command()
@click.argument("images", type=click.Path(path_type=str))
@click.argument("out", type=click.Path(path_type=str))
@_train_options
@click.option("--quiet", "-q", is_flag=True, help="No summary of the pictures or progress bar; errors and the result still print.")
def train(images: str, out: str, quiet: bool, **settings) -> None:
    """Train a LoRA on the pictures in IMAGES (captions from NAME.txt beside each, else --token) and write
    it to OUT (.safetensors), for `vidiff stylize --lora OUT`. Re-run the same command to resume."""
    from .train.config import TrainConfig
    from .train.loop import train_lora

    _setup_logging(quiet)
    config = TrainConfig(**settings).validate()  # a bad value fails before torch and diffusers are imported
    _no_library_progress_bars()
    with _graceful_interrupts("step") as cancel:
        result = train_lora(images, out, config, progress=not quiet, cancel=cancel)
    click.echo(result.summary())


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="The address to serve on; 0.0.0.0 lets other machines in (the page has no login).")
@click.option("--port", type=click.IntRange(1, 65535), default=7860, show_default=True, help="The port to serve on.")
@click.option("--folder", type=click.Path(file_okay=False, path_type=str), default=None, metavar="DIR",
              help="Where uploads, outputs and unfinished runs go (a new temporary folder if not given); "
                   "giving the same one again lets a stopped run resume after a restart.")
def ui(host: str, port: int, folder: str | None) -> None:
    """Serve a local web page (and its API) to upload a video, try looks, stylise with a live preview,
    stop and resume, and score the result. Serves only its own folder: uploads, results, unfinished runs."""
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise click.ClickException("the web UI needs Gradio: pip install vidiff[ui]") from None
    from .ui.app import serve

    _setup_logging(quiet=False)
    _no_library_progress_bars()
    serve(host, port, root=folder)


def main() -> None:
    cli(prog_name="vidiff")
