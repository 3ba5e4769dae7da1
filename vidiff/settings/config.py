"""The settings of one run, each declared once, on its Config field; validation with teaching errors.

A field's name is also its command-line option (`max_side` is `--max-side`) and its preset key. Its
`setting(...)` declares everything else about it: the help text, the check, whether a preset may set
it, whether it takes keyframes or repeats, whether it enters the resume fingerprint, and what the
command line needs to parse it. The command line, presets, keyframes and the work folder read these
declarations (SETTINGS) rather than keeping lists of their own.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable

from ..errors import ConfigError
from ..io.rates import parse_fps
from ..pipelines.samplers import SCHEDULERS
from .keyframes import (
    INTERPOLATIONS, NUMBERS, TEXTS, WHOLE_NUMBERS, ScheduleError, is_text_schedule, parse_mix, parse_numbers,
    parse_texts, split_weighted,
)

# The model a plain `vidiff stylize` uses: Stable Diffusion 1.5, fetched and cached by huggingface_hub.
DEFAULT_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"

NOISE_MODES = ("fixed", "per-frame", "warped")
# How a source frame becomes a ControlNet's control image (see pipelines/control_images.py).
CONTROLS = ("canny", "softedge", "depth-from-luma", "tile")
# What the reader does with a frame that can't be decoded in the middle of the input.
BAD_FRAME_ACTIONS = ("stop", "skip")
DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "fp32", "fp16", "bf16")
# A .mov or .mkv OUTPUT's video codec (io/formats.py says which container takes which).
CODECS = ("h264", "h265", "prores", "ffv1")


@dataclass(frozen=True)
class Setting:
    """What a Config field declares beside its name, type and default.

    Help texts name other settings in backquotes (`blend`): the command line shows them as options.
    """

    help: str  # for people: the command line's --help and Config's docstring
    check: Callable[[Any], bool]  # is a value allowed?
    allowed: str  # what is allowed, in words: the end of the error message
    preset: bool  # a preset may set it: the look and the model, not where a particular run starts or writes
    keyframes: str | None  # NUMBERS, WHOLE_NUMBERS or TEXTS: the setting may change over the video
    repeatable: bool  # a tuple: a list in a preset, a repeated option on the command line
    # False for settings that don't change a single output pixel: a run may resume with them changed
    fingerprint: bool
    each: Callable[[str, Any], None] | None  # a further check of each entry, raising ConfigError
    choices: tuple[str, ...]  # the values it may take, which the command line lists
    metavar: str | None  # the command line's name for the value
    negatable: bool  # a bool given as --x/--no-x rather than as a plain --x flag
    folder: bool  # a folder vidiff writes into: the command line refuses a file there


def setting(
    default: Any,
    help: str,
    check: tuple[Callable[[Any], bool], str] | None = None,
    *,
    choices: tuple[str, ...] = (),
    preset: bool = False,
    keyframes: str | None = None,
    each: Callable[[str, Any], None] | None = None,
    fingerprint: bool = True,
    metavar: str | None = None,
    negatable: bool = False,
    folder: bool = False,
) -> Any:
    """A Config field with its declaration. `check` is (is it allowed?, the words); `choices` alone make one.
    A tuple default makes the setting repeatable."""
    test, words = check or _choice(choices)
    declared = Setting(
        help=help, check=test, allowed=words, preset=preset, keyframes=keyframes,
        repeatable=isinstance(default, tuple), fingerprint=fingerprint, each=each, choices=choices, metavar=metavar,
        negatable=negatable, folder=folder,
    )
    # keyframes.Timeline reads the declaration under this key too
    return field(default=default, metadata={"setting": declared})


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _integer(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _choice(options: tuple[str, ...]) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: v in options), "must be one of " + ", ".join(options)


def _text(v: Any) -> bool:
    return isinstance(v, str)


def _texts(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and all(isinstance(item, str) for item in v)


def split_embedding(spec: str) -> tuple[str, str | None]:
    """'PATH[:TOKEN]' -> (path, token or None); a drive letter (C:\\...) is not a token."""
    head, sep, tail = spec.rpartition(":")
    if sep and head and len(head) > 1 and not tail.startswith(("\\", "/")):
        return head, tail
    return spec, None


def _spec_list(v: Any, valid: Callable[[str], bool]) -> bool:
    """A list of non-blank strings, each of which `valid` accepts."""
    return isinstance(v, (tuple, list)) and all(isinstance(spec, str) and spec.strip() and valid(spec) for spec in v)


def _weighted_list(v: Any, keyframes: bool = False) -> bool:
    """A list of 'PATH_OR_ID[:SCALE]', each scale in [-10, 10]; with `keyframes` a scale may be keyframes."""

    def valid(spec: str) -> bool:
        path, scale = split_weighted(spec)
        if isinstance(scale, str) and not keyframes:
            return False
        scales = [k.value for k in parse_numbers(scale)] if isinstance(scale, str) else [scale]
        return bool(path.strip()) and all(math.isfinite(s) and -10 <= s <= 10 for s in scales)

    return _spec_list(v, valid)


def _embedding_list(v: Any) -> bool:
    """A list of 'PATH[:TOKEN]', the token one word."""

    def valid(spec: str) -> bool:
        path, token = split_embedding(spec)
        return bool(path.strip()) and (token is None or (bool(token.strip()) and " " not in token))

    return _spec_list(v, valid)


def _frame_rate(v: Any) -> bool:
    try:
        parse_fps(v)
    except ValueError:
        return False
    return True


_MIX_WEIGHT = (lambda v: _number(v) and 0 <= v <= 1, "must be a number in [0, 1]")


def _mix_entry(name: str, entry: str) -> None:
    """A 'TEXT:WEIGHT' entry, the weight a number in [0, 1] or keyframes."""
    try:
        _, weight = parse_mix(entry)
    except ScheduleError as err:
        raise ConfigError(name, entry, str(err)) from None
    _check_keyframes(name, entry, weight, *_MIX_WEIGHT)


_TEXT = (_text, "must be text")
_TRUE_OR_FALSE = (lambda v: isinstance(v, bool), "must be true or false")
_MIX = (_texts, "must be a list of TEXT:WEIGHT texts")
_SHARE = (lambda v: _number(v) and 0 <= v <= 1, "must be a number in [0, 1]")
_BLEND = (lambda v: _number(v) and 0 <= v < 1, "must be a number in [0, 1) (1 would never let the video change)")
_GRADIENT = (lambda v: _integer(v) and 0 <= v <= 1000, "must be a whole number from 0 to 1000")


@dataclass
class Config:
    """The settings of one run; every field has a default, so give only the ones you change.

    Settings marked (keyframes) also take a keyframe string that changes them over the video:
    "0:0.3, 48:0.7" by frame, "0s:0.3, 2.5s:0.7" by seconds from the output's start (see keyframes.py).
    """

    # --- the style ---
    prompt: str = setting(
        "",
        "What every frame should look like ('a wooden carving, detailed grain'). Keyframes travel from text to "
        "text: '0:a wooden carving | 120:a marble statue'.",
        _TEXT, preset=True, keyframes=TEXTS,
    )
    negative_prompt: str = setting(
        "",
        "What to steer away from; empty is diffusers' own unconditional prompt. Keyframes as for `prompt`.",
        _TEXT, preset=True, keyframes=TEXTS,
    )
    mix: tuple[str, ...] = setting(
        (),
        "Other texts mixed into the prompt's conditioning, each TEXT:WEIGHT (WEIGHT a number in [0, 1], or "
        "keyframes): (1 - Σw)·E(prompt) + Σ wᵢ·E(textᵢ) on the text encoder's output embeddings.",
        _MIX, each=_mix_entry, preset=True, metavar="TEXT:WEIGHT",
    )
    negative_mix: tuple[str, ...] = setting(
        (),
        "The same as `mix`, for the negative prompt.",
        _MIX, each=_mix_entry, preset=True, metavar="TEXT:WEIGHT",
    )
    strength: float | str = setting(
        0.5,
        "How far each frame is noised before denoising, in [0, 1]: near 0 keeps the source, 1 ignores it.",
        (lambda v: _number(v) and 0 <= v <= 1, "must be a number in [0, 1]"), preset=True, keyframes=NUMBERS,
    )
    steps: int = setting(
        30,
        "Denoising steps of a full-strength run; int(steps × strength) of them run per frame.",
        (lambda v: _integer(v) and 1 <= v <= 1000, "must be a whole number from 1 to 1000"), preset=True,
    )
    guidance: float | str = setting(
        7.5,
        "Classifier-free guidance scale; at 1 or below CFG is off, which halves the UNet work.",
        (lambda v: _number(v) and 0 <= v <= 50, "must be a number in [0, 50]"), preset=True, keyframes=NUMBERS,
    )
    scheduler: str = setting(
        "dpm++2m",
        "The sampler, built from the model's own scheduler config.",
        choices=tuple(SCHEDULERS), preset=True,
    )
    seed: int | str = setting(
        0,
        "Seed of the noise; with `noise` fixed, every frame gets this seed's noise. A keyframed seed holds until "
        "the next keyframe: '0:1234, 120:99' changes it at a cut.",
        (lambda v: _integer(v) and 0 <= v < 2**63, "must be a whole number ≥ 0"), preset=True,
        keyframes=WHOLE_NUMBERS,
    )
    interpolation: str = setting(
        "linear",
        "How keyframed settings move between keyframes: linear, step (hold until the next one) or smooth (ease "
        "out of one keyframe and into the next).",
        choices=INTERPOLATIONS, preset=True,
    )

    # --- temporal consistency (anti-flicker) ---
    noise: str = setting(
        "fixed",
        "fixed: the same noise on every frame (less flicker, but texture sticks to the screen); per-frame: seed + "
        "frame index; warped: the previous frame's noise carried along the source's optical flow, fresh noise "
        "where it can't be (texture moves with the content).",
        choices=NOISE_MODES, preset=True,
    )
    blend: float | str = setting(
        0.0,
        "Weight W in [0, 1) of the previous frame's denoised latents mixed into each frame's encoded latents "
        "before noising: (1 - W)·enc(frame) + W·previous. 0 makes frames independent; it smears motion.",
        _BLEND, preset=True, keyframes=NUMBERS,
    )
    flow_blend: float | str = setting(
        0.0,
        "Weight W in [0, 1) of the previous stylised frame, warped along the source's optical flow, blended into "
        "each frame before encoding; occluded pixels keep the current frame. Follows motion, unlike `blend`.",
        _BLEND, preset=True, keyframes=NUMBERS,
    )
    fusion: float | str = setting(
        0.0,
        "Weight W in [0, 1] with which each early denoising step's estimate of the clean frame is pulled towards "
        "the previous output, warped along the source's flow where the flow is trusted (Rerender-A-Video's "
        "cross-frame latent fusion); the steps after `fusion_end` run free to redraw detail.",
        _SHARE, preset=True, keyframes=NUMBERS,
    )
    fusion_end: float = setting(
        0.5,
        "The share of each frame's denoising steps, from the first, that `fusion` acts on.",
        (lambda v: _number(v) and 0 < v <= 1, "must be a share of the steps in (0, 1]"), preset=True,
    )
    color_match: bool = setting(
        False,
        "Match each output's colours (LAB mean and spread) to the first stylised frame of its shot.",
        _TRUE_OR_FALSE, preset=True, negatable=True,
    )
    cross_frame_attn: bool = setting(
        False,
        "Self-attention in the UNet's up blocks also attends to the shot's first frame and the previous one.",
        _TRUE_OR_FALSE, preset=True, negatable=True,
    )
    cuts: bool = setting(
        True,
        "Detect hard cuts in the input and start each shot afresh (no state carried across a cut).",
        _TRUE_OR_FALSE, preset=True, negatable=True,
    )
    cut_threshold: float = setting(
        0.35,
        "Colour-histogram distance in (0, 1] between consecutive source frames above which a cut is declared.",
        (lambda v: _number(v) and 0 < v <= 1, "must be a number in (0, 1]"), preset=True,
    )

    # --- the model ---
    model: str = setting(
        DEFAULT_MODEL,
        "SD 1.x, 2.x or SDXL: a hub id, a local diffusers folder, a single-file .safetensors checkpoint, or "
        "'tiny' / 'tiny-sdxl' (a small random model built offline, for smoke tests: its output carries no style).",
        (lambda v: isinstance(v, str) and v.strip() != "", "must be a hub id, a folder, a .safetensors file or 'tiny'"),
        preset=True,
    )
    device: str = setting(
        "auto",
        "Where the model runs: auto picks cuda, then mps, then cpu.",
        # not in the fingerprint: a run may resume on another device
        choices=DEVICES, fingerprint=False,
    )
    dtype: str = setting("auto", "Weights' precision: auto is fp16 on cuda and fp32 elsewhere.", choices=DTYPES)
    allow_pickle: bool = setting(
        False,
        "Allow .ckpt/.pt/.bin checkpoints, which are pickles: loading one runs code from the file.",
        _TRUE_OR_FALSE,
    )
    model_config: str | None = setting(
        None,
        "A diffusers folder (model_index.json and the parts' configs) of the same kind as a single-file `model`, "
        "so that the file loads offline; if not given, the config in the hub cache for its kind.",
        (lambda v: v is None or (isinstance(v, str) and v.strip() != ""), "must be a folder path"), preset=True,
        metavar="DIR",
    )
    lora: tuple[str, ...] = setting(
        (),
        "LoRAs fused into the model, each PATH_OR_ID[:SCALE] (scale 1 if left out); e.g. a style LoRA, or an "
        "LCM-LoRA with `scheduler` lcm, 4-8 `steps` and `guidance` 1-2 for fast runs.",
        (_weighted_list, "must be a list of PATH_OR_ID[:SCALE], the scale a number from -10 to 10"), preset=True,
        metavar="PATH_OR_ID[:SCALE]",
    )
    embedding: tuple[str, ...] = setting(
        (),
        "Textual-inversion embeddings, each PATH[:TOKEN]; the token (the file's name if left out) then stands "
        "for the learned concept in the prompts.",
        (_embedding_list, "must be a list of PATH[:TOKEN], the token one word"), preset=True,
        metavar="PATH[:TOKEN]",
    )

    # --- structure guidance (ControlNet) ---
    controlnet: tuple[str, ...] = setting(
        (),
        "ControlNets, each PATH_OR_ID[:SCALE] (conditioning scale, 1 if left out; it may be keyframes): they "
        "hold the source's shapes, so that `strength` can go higher without losing them.",
        (lambda v: _weighted_list(v, keyframes=True),
         "must be a list of PATH_OR_ID[:SCALE], the scale a number from -10 to 10 or keyframes"),
        preset=True, metavar="PATH_OR_ID[:SCALE]",
    )
    control: tuple[str, ...] = setting(
        ("canny",),
        "How each source frame becomes the control image, one for all ControlNets or one per ControlNet: canny "
        "(edges), softedge (soft gradient edges), depth-from-luma (brightness as a stand-in for depth: no depth "
        "model is run), tile (the frame itself, for tile ControlNets).",
        (lambda v: isinstance(v, (tuple, list)) and len(v) >= 1 and all(c in CONTROLS for c in v),
         "must be one or more of " + ", ".join(CONTROLS)),
        choices=CONTROLS, preset=True,
    )
    canny_low: int = setting(
        100,
        "Canny's lower hysteresis threshold on 0-255 gradients: lower finds more (and noisier) edges.",
        _GRADIENT, preset=True,
    )
    canny_high: int = setting(
        200,
        "Canny's upper threshold: an edge must pass it somewhere to be kept.",
        _GRADIENT, preset=True,
    )

    # --- motion windows (AnimateDiff) ---
    motion_adapter: str | None = setting(
        None,
        "An AnimateDiff motion module (a diffusers MotionAdapter: a hub id such as "
        "guoyww/animatediff-motion-adapter-v1-5-3, a diffusers folder, or a .safetensors file) for an SD 1.x "
        "model: the frames are then denoised together, `context` at a time, and the model sees motion.",
        (lambda v: v is None or (isinstance(v, str) and v.strip() != ""), "must be a hub id, a folder or a file"),
        preset=True, metavar="ID|PATH",
    )
    context: int = setting(
        16,
        "With `motion_adapter`: the frames denoised together in one window (motion modules are trained on 16; "
        "memory grows with it).",
        (lambda v: _integer(v) and 2 <= v <= 64, "must be a whole number of frames from 2 to 64"), preset=True,
    )
    context_overlap: int = setting(
        4,
        "With `motion_adapter`: the frames a window shares with the one before it; they hold the new window to "
        "the frames already made, so motion runs on across window edges. Fewer is faster, more is smoother.",
        (lambda v: _integer(v) and 0 <= v <= 63, "must be a whole number of frames from 0 to 63"), preset=True,
    )

    # --- style image (IP-Adapter) ---
    style_image: str | None = setting(
        None,
        "A picture whose look the frames take, beside the prompt, as PATH[:SCALE] (scale 1 if left out; it may "
        "be keyframes, such as 'look.png:0:0.3, 48:0.8'): encoded once per video by the `ip_adapter`'s image "
        "encoder.",
        (lambda v: v is None or (isinstance(v, str) and _weighted_list([v], keyframes=True)),
         "must be PATH[:SCALE], the scale a number from -10 to 10 or keyframes"),
        preset=True, metavar="PATH[:SCALE]",
    )
    ip_adapter: str = setting(
        "h94/IP-Adapter",
        "The IP-Adapter that reads `style_image`: a hub id or folder laid out as h94/IP-Adapter (its SD 1.x or "
        "SDXL adapter is taken, whichever the model is), or an adapter file with its image encoder in an "
        "image_encoder folder beside it.",
        (lambda v: isinstance(v, str) and v.strip() != "", "must be a hub id, a folder or a file"),
        preset=True, metavar="ID|PATH",
    )

    # --- the video ---
    max_side: int = setting(
        512,
        "Frames are scaled down to fit this many pixels on their longer side (both sides then rounded to a "
        "multiple of 8, which the VAE needs). Larger is slower and closer to the model's training size.",
        (lambda v: _integer(v) and 8 <= v <= 8192, "must be a whole number of pixels from 8 to 8192"), preset=True,
    )
    start: float = setting(
        0.0,
        "Seconds into the input where the output begins.",
        (lambda v: _number(v) and v >= 0, "must be a number of seconds ≥ 0"),
    )
    duration: float | None = setting(
        None,
        "Seconds of input to stylise from `start`; if not given, to the end.",
        (lambda v: v is None or (_number(v) and v > 0), "must be a number of seconds > 0"),
    )
    max_frames: int | None = setting(
        None,
        "Stop after this many frames; if not given, run to the end.",
        (lambda v: v is None or (_integer(v) and v >= 1), "must be a whole number ≥ 1"),
    )
    crf: int = setting(
        18,
        "H.264, H.265 and VP9 (.webm) quality: lower is better and bigger; 18 is visually lossless for most clips.",
        (lambda v: _integer(v) and 0 <= v <= 51, "must be a whole number from 0 (lossless) to 51"), preset=True,
    )
    codec: str | None = setting(
        None,
        "The video codec of a .mov, .mkv or .mp4 OUTPUT: h264 (the default), h265 (smaller, slower to encode), "
        "prores (ProRes 422 HQ, for editors; .mov or .mkv) or ffv1 (lossless; .mov or .mkv). A .webm is VP9, "
        "a .gif, a picture or a sequence has its own.",
        (lambda v: v is None or v in CODECS, "must be one of " + ", ".join(CODECS)),
        # in the fingerprint: the work folder's segments are encoded with it
        choices=CODECS,
    )
    fps: float | str | None = setting(
        None,
        "Frame rate of an image-sequence input (a folder of numbered images, or a pattern such as "
        "frames/img_%04d.png): a number, or a fraction such as 30000/1001; 24 if not given. A video keeps its own.",
        (lambda v: v is None or _frame_rate(v),
         "must be a frame rate above 0 and at most 1000, such as 24, 12.5 or 30000/1001"),
        metavar="RATE",
    )
    on_bad_frame: str = setting(
        "stop",
        "A frame that can't be decoded before the end of the input (a damaged file): stop ends the run with an "
        "error naming the frame; skip reports it, leaves it out and goes on. stop is the default because "
        "skipping changes the video: what follows a skipped frame plays one frame earlier against the audio, so "
        "that is for you to choose once you know the file is damaged.",
        # not in the fingerprint: the frames before a damaged one are the same either way, and a run
        # stopped there resumes with skip from where it stopped
        choices=BAD_FRAME_ACTIONS, fingerprint=False,
    )

    # --- speed ---
    batch_size: int | None = setting(
        None,
        "Frames that go through the VAE and UNet together; if not given, a size picked from the device and frame "
        "size. Only frames that don't depend on the previous output batch: with `blend`, `flow_blend` or "
        "`fusion` on, frames run one at a time whatever this says. Same output either way.",
        (lambda v: v is None or (_integer(v) and 1 <= v <= 256), "must be a whole number from 1 to 256"),
    )
    skip_similar: float = setting(
        0.0,
        "Reuse the previous output when a source frame differs from the last stylised one by less than this "
        "many 8-bit levels on average (0 = off). Saves the model work on still shots; a trade of quality for "
        "speed, as StreamDiffusion's similar-image filter.",
        (lambda v: _number(v) and 0 <= v <= 255, "must be a number of 8-bit levels in [0, 255] (0 is off)"),
        preset=True, metavar="LEVELS",
    )
    cadence: int | str = setting(
        1,
        "Diffuse every K-th frame of a shot (and each 48-frame segment's last frame, and the shot's last) and "
        "make the frames between by warping their two diffused neighbours' outputs along the source's optical "
        "flow and blending them by nearness and trust (1 = diffuse every frame). About K times fewer model "
        "runs; fast motion smears and uncovered areas can ghost. 'auto' diffuses a new frame where the share of "
        "the frame the flow from the last diffused frame can't be trusted on passes `cadence_threshold`, or "
        "after `cadence_max_gap` frames: still shots diffuse little, fast ones more.",
        (lambda v: v == "auto" or (_integer(v) and v >= 1), "must be a whole number ≥ 1 (1 diffuses every frame) or auto"),
        preset=True, metavar="K|auto",
    )
    cadence_max_gap: int = setting(
        8,
        "With `cadence` auto: the most frames from one diffused frame to the next.",
        (lambda v: _integer(v) and 1 <= v <= 1000, "must be a whole number from 1 to 1000"), preset=True,
    )
    cadence_threshold: float = setting(
        0.1,
        "With `cadence` auto: the share (0-1) of the frame where the flow from the last diffused frame is not "
        "trusted (uncovered, occluded or lost content) above which a frame is diffused anew.",
        (lambda v: _number(v) and 0 <= v <= 1, "must be a share of the frame in [0, 1]"), preset=True,
    )
    vae: str = setting(
        "full",
        "The VAE: full (the model's own), tiny (TAESD: several times faster to encode and decode, a little "
        "blurrier), or a hub id, diffusers folder or .safetensors file of another VAE.",
        (lambda v: isinstance(v, str) and v.strip() != "",
         "must be full, tiny, a hub id, a folder or a .safetensors file"),
        preset=True,
    )
    compile: bool = setting(
        False,
        "Compile the UNet and VAE with torch.compile: slow to start (minutes), then faster per frame on a GPU. "
        "Frames keep their size and batch shape, so it compiles once.",
        _TRUE_OR_FALSE,
    )

    # --- many GPUs, many machines (Ray; see vidiff/distributed/) ---
    # None of these enters the fingerprint: where frames are made doesn't change them. Chunks with a
    # warm-up do change the frames of chained settings; the distributed run's own work folder
    # fingerprint holds the chunk layout (distributed/chunks.py)
    ray: str | None = setting(
        None,
        "Run on Ray: local (start a Ray runtime on this machine), auto (join the cluster this machine belongs "
        "to, after `ray start`), or a cluster's address (ray://host:10001). Needs pip install vidiff[ray].",
        (lambda v: v is None or (isinstance(v, str) and v.strip() != ""), "must be local, auto or an address"),
        fingerprint=False, metavar="local|auto|ADDRESS",
    )
    workers: int | None = setting(
        None,
        "With `ray`: how many workers, each loading the model once; if not given, one per GPU of the cluster "
        "(or 1 without GPUs).",
        (lambda v: v is None or (_integer(v) and 1 <= v <= 4096), "must be a whole number from 1 to 4096"),
        fingerprint=False,
    )
    gpus_per_worker: float | None = setting(
        None,
        "With `ray`: the GPUs each worker reserves (0.5 puts two on a GPU); if not given, 1 where the cluster "
        "has GPUs, else 0 (CPU workers).",
        (lambda v: v is None or (_number(v) and 0 <= v <= 64), "must be a number of GPUs from 0 to 64"),
        fingerprint=False,
    )
    chunk: int | None = setting(
        None,
        "With `ray`: split shots longer than this many frames into chunks (rounded up to whole 48-frame "
        "segments) that workers take on their own; if not given, a shot is the unit of work.",
        (lambda v: v is None or (_integer(v) and v >= 1), "must be a whole number of frames ≥ 1"),
        fingerprint=False, metavar="FRAMES",
    )
    chunk_warmup: int = setting(
        8,
        "With `chunk`: frames before each chunk processed (not kept) so that flow-blend, fusion and warped "
        "noise settle before its first kept frame (colours are matched to the shot's first frame, made again). "
        "Unused where frames are independent.",
        (lambda v: _integer(v) and 0 <= v <= 10000, "must be a whole number of frames ≥ 0"),
        fingerprint=False, metavar="FRAMES",
    )

    # --- the output (none of these changes an output pixel: a run resumes across them) ---
    overwrite: bool = setting(
        False, "Replace an existing OUTPUT; without it vidiff refuses to.", _TRUE_OR_FALSE, fingerprint=False
    )
    restart: bool = setting(
        False,
        "Discard the unfinished work of an earlier run (OUTPUT.vidiff/) instead of resuming it.",
        _TRUE_OR_FALSE, fingerprint=False,
    )
    bit_depth: int = setting(
        8,
        "Bits per channel of a PNG OUTPUT (a .png picture or a sequence such as out_%05d.png): 8, or 16 for "
        "compositing tools that want 16-bit files (the frames themselves are made with 8).",
        (lambda v: v in (8, 16) and not isinstance(v, bool), "must be 8 or 16"),
        # not in the fingerprint: the segments are lossless and the depth is chosen when OUTPUT is written
        fingerprint=False, metavar="8|16",
    )
    save_frames: str | None = setting(
        None,
        "Also write every stylised frame as a lossless PNG into this folder.",
        (lambda v: v is None or (isinstance(v, str) and v != ""), "must be a folder path"),
        fingerprint=False, metavar="DIR", folder=True,
    )

    preview: bool = setting(
        False,
        "Also write OUTPUT's stem + .preview + its extension beside it (out.mp4: out.preview.mp4): the source "
        "and the result side by side, with the audio.",
        _TRUE_OR_FALSE, fingerprint=False,
    )

    def __post_init__(self):
        # a preset's TOML gives lists, the command line tuples, the API maybe one string: one type,
        # so that equal settings compare equal
        for name in REPEATABLE:
            value = getattr(self, name)
            if isinstance(value, str):
                setattr(self, name, (value,))
            elif isinstance(value, list):
                setattr(self, name, tuple(value))

    def validate(self) -> "Config":
        """Check every field, raising ConfigError naming the first bad one; returns self."""
        for name, value in asdict(self).items():
            check_field(name, value)
        if len(self.control) not in (1, max(len(self.controlnet), 1)):
            raise ConfigError(
                "control", list(self.control), f"give one for all ControlNets, or one per ControlNet ({len(self.controlnet)})"
            )
        if self.canny_low > self.canny_high:
            raise ConfigError(
                "canny_low", self.canny_low, f"must not be above canny_high ({self.canny_high})",
                mentions=("canny_high",),
            )
        for name in ("workers", "gpus_per_worker", "chunk"):
            if self.ray is None and getattr(self, name) is not None:
                raise ConfigError(name, getattr(self, name), "acts only on a Ray run: add ray (local, auto or an "
                                  "address)", mentions=("ray",))  # fmt: skip
        if self.context_overlap >= self.context:
            raise ConfigError(
                "context_overlap", self.context_overlap, f"must be below context ({self.context}): a window needs new frames",
                mentions=("context",),
            )
        if self.motion_adapter is not None:
            _check_motion(self)
        if self.style_image is not None and self.cross_frame_attn:
            raise ConfigError(
                "cross_frame_attn", True, "replaces the attention layers that carry `style_image`: use one of them",
                mentions=("style_image",),
            )
        lowest = min(values_of("strength", self.strength))
        if int(self.steps * lowest) < 1:
            raise ConfigError(
                "strength",
                self.strength,
                f"with steps = {self.steps}, a strength of {lowest} gives int(steps × strength) = 0 denoising steps; "
                "raise strength or steps",
            )
        return self

    def replace(self, **changes: Any) -> "Config":
        return Config(**{**asdict(self), **changes})


# Per-frame techniques that motion windows don't run (the motion module carries the frames along
# itself), each with the value that leaves it off.
_NOT_WITH_MOTION = {"cadence": 1, "cross_frame_attn": False, "blend": 0, "flow_blend": 0, "fusion": 0,
                    "skip_similar": 0, "noise": "fixed", "color_match": False}  # fmt: skip


def _check_motion(config: "Config") -> None:
    for name, off in _NOT_WITH_MOTION.items():
        value = getattr(config, name)
        if value != off and not (name == "noise" and value == "per-frame"):
            raise ConfigError(
                name, value, "is a per-frame technique that motion windows (`motion_adapter`) don't run; leave it out",
                mentions=("motion_adapter",),
            )


# Each field's declaration, by field name.
SETTINGS: dict[str, Setting] = {f.name: f.metadata["setting"] for f in fields(Config)}


def _document() -> None:
    """Add each setting's help to Config's docstring, so that help(vidiff.Config) shows them."""
    lines = [Config.__doc__.rstrip(), ""]
    for f in fields(Config):
        declared = SETTINGS[f.name]
        lines.append(f"    {f.name} = {f.default!r}" + (" (keyframes)" if declared.keyframes else ""))
        lines += textwrap.wrap(declared.help, 100, initial_indent=" " * 8, subsequent_indent=" " * 8)
    Config.__doc__ = "\n".join(lines) + "\n"


_document()

# field -> (is the value allowed?, what is allowed, in words)
RULES: dict[str, tuple[Callable[[Any], bool], str]] = {name: (s.check, s.allowed) for name, s in SETTINGS.items()}
# The settings a preset may hold.
PRESET_KEYS = tuple(name for name, s in SETTINGS.items() if s.preset)
# Settings given as repeated options on the command line and as lists in presets.
REPEATABLE = tuple(name for name, s in SETTINGS.items() if s.repeatable)
# The settings that may vary per frame: numbers, and texts.
SCHEDULABLE = tuple(name for name, s in SETTINGS.items() if s.keyframes in (NUMBERS, WHOLE_NUMBERS))
TEXT_SCHEDULABLE = tuple(name for name, s in SETTINGS.items() if s.keyframes == TEXTS)

_KEYFRAMES_EXAMPLE = "or keyframes, such as '0:0.3, 48:0.7'"


def check_field(name: str, value: Any) -> None:
    """Raise ConfigError if `value` is not allowed for field `name`."""
    declared = SETTINGS[name]
    if name in SCHEDULABLE and isinstance(value, str):
        _check_keyframes(
            name, value, value, declared.check, declared.allowed, integer=declared.keyframes == WHOLE_NUMBERS
        )
        return
    if name in TEXT_SCHEDULABLE and is_text_schedule(value):
        try:
            parse_texts(value)
        except ScheduleError as err:
            raise ConfigError(name, value, str(err)) from None
        return
    if not declared.check(value):
        words = declared.allowed
        raise ConfigError(name, value, f"{words} ({_KEYFRAMES_EXAMPLE})" if name in SCHEDULABLE else words)
    if declared.each:
        for entry in value:
            declared.each(name, entry)


def _check_keyframes(name: str, shown: Any, value: Any, allowed, words: str, integer: bool = False) -> None:
    """Check a number or a keyframe string, value by value; `shown` is what the error quotes."""
    if not isinstance(value, str):
        if not allowed(value):
            raise ConfigError(name, shown, f"weight {value!r} {words}")
        return
    try:
        keyframes = parse_numbers(value, integer)
    except ScheduleError as err:
        raise ConfigError(name, shown, str(err)) from None
    for number, keyframe in enumerate(keyframes, start=1):
        if not allowed(keyframe.value):
            raise ConfigError(name, shown, f"keyframe {number} ({keyframe.label()}): {keyframe.value!r} {words}")


def values_of(name: str, value: Any) -> list:
    """A setting's values: the number itself, or each keyframe's value."""
    if isinstance(value, str):
        return [k.value for k in parse_numbers(value, integer=SETTINGS[name].keyframes == WHOLE_NUMBERS)]
    return [value]


def fingerprint_settings(config: Config) -> dict[str, Any]:
    """The settings a run's finished work depends on, which its resume fingerprint holds (io/workfolder.py)."""
    return {name: value for name, value in asdict(config).items() if SETTINGS[name].fingerprint}
