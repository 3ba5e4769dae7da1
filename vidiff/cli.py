"""The command line: parse, validate, build one Config, call the API. Nothing else lives here.

Presets reach the options through Click's default_map (as Black reads its config file), so the
precedence command line > preset > built-in default needs no merging code of ours.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import warnings
from contextlib import contextmanager
from dataclasses import fields

import click

from . import __version__
from .errors import Interrupted, VidiffError
from .pipelines.samplers import SCHEDULERS
from .settings.config import CONTROLS, DEVICES, DTYPES, NOISE_MODES, PRESET_KEYS, Config
from .settings.keyframes import INTERPOLATIONS
from .settings.presets import list_presets, load_preset, user_preset_dir

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
            click.echo(f"vidiff: error: {_one_line(str(err))}", err=True)
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


def _apply_preset(ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is not None:
        preset = load_preset(value)
        ctx.default_map = {**(ctx.default_map or {}), **preset.settings}
    return value


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
      vidiff demo               an offline smoke run on a synthetic clip
    """


@cli.command()
@click.argument("input", type=click.Path(dir_okay=True, path_type=str))
@click.argument("output", type=click.Path(path_type=str))
@click.option("--preset", is_eager=True, expose_value=False, callback=_apply_preset, metavar="NAME|FILE.toml",
              help="A style preset (see `vidiff presets`); options given here override its values.")
@click.option("--prompt", default=DEFAULTS.prompt,
              help="What the frames should look like. Keyframes travel from text to text: "
                   "'0:a wooden carving | 120:a marble statue'.")
@click.option("--negative-prompt", default=DEFAULTS.negative_prompt,
              help="What to steer away from (keyframes as for --prompt).")
@click.option("--mix", multiple=True, metavar="TEXT:WEIGHT",
              help="Mix another text's embedding into the prompt's: (1 - Σw)·prompt + Σ w·TEXT; repeatable. "
                   "WEIGHT in [0, 1], or keyframes.")
@click.option("--negative-mix", multiple=True, metavar="TEXT:WEIGHT", help="The same for the negative prompt.")
@click.option("--strength", type=NUMBER, default=DEFAULTS.strength, show_default=True,
              help="How far each frame is noised, in [0, 1]: low keeps the source, 1 ignores it." + KEYFRAMES_HELP)
@click.option("--steps", type=int, default=DEFAULTS.steps, show_default=True,
              help="Denoising steps of a full-strength run; int(steps × strength) run per frame.")
@click.option("--guidance", type=NUMBER, default=DEFAULTS.guidance, show_default=True,
              help="Classifier-free guidance scale; 1 or less turns CFG off (twice as fast). Keyframes too.")
@click.option("--scheduler", type=click.Choice(list(SCHEDULERS)), default=DEFAULTS.scheduler, show_default=True,
              help="The sampler.")
@click.option("--seed", type=WHOLE_NUMBER, default=DEFAULTS.seed, show_default=True,
              help="Seed of the noise. Keyframes hold until the next one: '0:1234, 120:99'.")
@click.option("--interpolation", type=click.Choice(INTERPOLATIONS), default=DEFAULTS.interpolation,
              show_default=True, help="How keyframed settings move between keyframes.")
@click.option("--noise", type=click.Choice(NOISE_MODES), default=DEFAULTS.noise, show_default=True,
              help="fixed: the same noise on every frame; per-frame: seed + frame index; "
                   "warped: the noise follows the source's motion.")
@click.option("--blend", type=NUMBER, default=DEFAULTS.blend, show_default=True,
              help="Weight in [0, 1) of the previous frame's latents mixed into each frame before noising. "
                   "Keyframes too.")
@click.option("--flow-blend", type=NUMBER, default=DEFAULTS.flow_blend, show_default=True,
              help="Weight in [0, 1) of the previous output, warped along the source's optical flow, "
                   "blended into each frame before encoding. Keyframes too.")
@click.option("--fusion", type=NUMBER, default=DEFAULTS.fusion, show_default=True,
              help="Weight in [0, 1] with which each early denoising step's estimate is pulled towards the previous "
                   "output, warped along the flow (cross-frame latent fusion). Keyframes too.")
@click.option("--fusion-end", type=float, default=DEFAULTS.fusion_end, show_default=True,
              help="The share of each frame's denoising steps, from the first, that --fusion acts on.")
@click.option("--color-match/--no-color-match", default=DEFAULTS.color_match, show_default=True,
              help="Match each output's colours to the first stylised frame of its shot.")
@click.option("--cross-frame-attn/--no-cross-frame-attn", default=DEFAULTS.cross_frame_attn, show_default=True,
              help="Up-block self-attention also attends to the shot's first frame and the previous one.")
@click.option("--cuts/--no-cuts", default=DEFAULTS.cuts, show_default=True,
              help="Detect hard cuts in INPUT and start each shot afresh.")
@click.option("--cut-threshold", type=float, default=DEFAULTS.cut_threshold, show_default=True,
              help="Colour-histogram distance in (0, 1] between frames that counts as a cut.")
@click.option("--model", default=DEFAULTS.model, show_default=True,
              help="SD 1.x, 2.x or SDXL: a hub id, a diffusers folder, a .safetensors file, or 'tiny' / 'tiny-sdxl' "
                   "(random, offline, for smoke tests).")
@click.option("--model-config", default=None, metavar="DIR",
              help="A diffusers folder of the same kind as a single-file --model, so that it loads offline.")
@click.option("--lora", multiple=True, metavar="PATH_OR_ID[:SCALE]",
              help="A LoRA fused into the model at SCALE (default 1). Repeatable.")
@click.option("--embedding", multiple=True, metavar="PATH[:TOKEN]",
              help="A textual-inversion embedding; TOKEN (default: the file's name) stands for it in the prompt. "
                   "Repeatable.")
@click.option("--controlnet", multiple=True, metavar="PATH_OR_ID[:SCALE]",
              help="A ControlNet that holds the source's shapes, at conditioning SCALE (default 1). Repeatable.")
@click.option("--control", type=click.Choice(CONTROLS), multiple=True, default=DEFAULTS.control, show_default=True,
              help="How each source frame becomes the control image: one for every ControlNet, or one per ControlNet.")
@click.option("--canny-low", type=int, default=DEFAULTS.canny_low, show_default=True,
              help="Canny's lower threshold (0-255 gradients): lower finds more edges.")
@click.option("--canny-high", type=int, default=DEFAULTS.canny_high, show_default=True,
              help="Canny's upper threshold: an edge must pass it somewhere to be kept.")
@click.option("--device", type=click.Choice(DEVICES), default=DEFAULTS.device, show_default=True)
@click.option("--dtype", type=click.Choice(DTYPES), default=DEFAULTS.dtype, show_default=True,
              help="auto: fp16 on cuda, fp32 elsewhere.")
@click.option("--allow-pickle", is_flag=True, help="Allow .ckpt/.pt checkpoints (loading a pickle runs its code).")
@click.option("--batch-size", type=int, default=None,
              help="Frames through the model at once (default: from the device and size). Only frames that "
                   "don't depend on the previous output batch (not with --blend, --flow-blend or --fusion).")
@click.option("--vae", default=DEFAULTS.vae, show_default=True,
              help="full (the model's own), tiny (TAESD: much faster, a little blurrier), or a hub id, folder "
                   "or .safetensors file of another VAE.")
@click.option("--compile", is_flag=True, help="torch.compile the UNet and VAE: minutes to start, faster per frame on a GPU.")
@click.option("--skip-similar", type=float, default=DEFAULTS.skip_similar, show_default=True, metavar="LEVELS",
              help="Reuse the previous output when a source frame differs from the last stylised one by less "
                   "than this mean difference in 8-bit levels (0: off). Faster on still shots.")
@click.option("--max-side", type=int, default=DEFAULTS.max_side, show_default=True,
              help="Scale frames down to fit this many pixels on the longer side (multiples of 8).")
@click.option("--start", type=float, default=DEFAULTS.start, show_default=True, help="Seconds into INPUT to begin.")
@click.option("--duration", type=float, default=None, help="Seconds of INPUT to stylise.")
@click.option("--max-frames", type=int, default=None, help="Stop after this many frames.")
@click.option("--fps", default=None, metavar="RATE",
              help="Frame rate of an image-sequence INPUT (a folder of numbered images, or a pattern such as "
                   "frames/img_%04d.png): a number or a fraction such as 30000/1001; 24 if not given. "
                   "A video keeps its own.")
@click.option("--on-bad-frame", type=click.Choice(("stop", "skip")), default=DEFAULTS.on_bad_frame,
              show_default=True,
              help="A frame of INPUT that can't be decoded (a damaged file): stop with an error naming it, "
                   "or skip it, report it and go on.")
@click.option("--crf", type=int, default=DEFAULTS.crf, show_default=True, help="H.264 quality (lower is better).")
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT if it exists.")
@click.option("--restart", is_flag=True,
              help="Discard the unfinished work of an earlier run (OUTPUT.vidiff/) instead of resuming it.")
@click.option("--save-frames", type=click.Path(file_okay=False, path_type=str), default=None, metavar="DIR",
              help="Also write every stylised frame as a PNG into DIR.")
@click.option("--dry-run", is_flag=True,
              help="Print the plan (frames, size, model, each keyframed value) and exit without loading the model.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or notes; errors and the summary still print.")
def stylize(input: str, output: str, dry_run: bool, quiet: bool, **settings) -> None:
    """Stylise INPUT (a video, a folder of numbered images, or a pattern such as img_%04d.png) into
    OUTPUT (.mp4, .m4v, .mov, .mkv), keeping its audio. Re-run the same command to resume."""
    _setup_logging(quiet)
    config = Config(**settings)
    if dry_run:
        from .plan import plan_run

        click.echo(plan_run(input, output, config).describe())
        return
    from .run import stylize_video

    with _graceful_interrupts() as cancel:
        result = stylize_video(input, output, config, progress=not quiet, cancel=cancel)
    click.echo(result.summary())


@contextmanager
def _graceful_interrupts():
    """The first Ctrl-C lets the frames in progress finish (then the run stops, resumable); a second stops at once."""
    cancel = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield cancel
        return

    def handler(signum, frame):
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()
        logging.getLogger("vidiff").warning("stopping after this frame (Ctrl-C again to stop at once)")

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield cancel
    finally:
        signal.signal(signal.SIGINT, previous)


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
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or notes.")
def demo(output: str, overwrite: bool, quiet: bool) -> None:
    """Stylise a synthetic clip with the tiny offline model: checks the install, needs no download."""
    from .demo import run_demo

    _setup_logging(quiet)
    result = run_demo(output, overwrite=overwrite, progress=not quiet)
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


def main() -> None:
    cli(prog_name="vidiff")
