"""The settings of one run: one commented field per setting, and validation with teaching errors.

A field's name is also its command-line option (`max_side` is `--max-side`) and its preset key.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable

from ..errors import VidiffError
from ..io.rates import parse_fps
from ..pipelines.samplers import SCHEDULERS
from .keyframes import (
    INTERPOLATIONS, SCHEDULABLE, TEXT_SCHEDULABLE, ScheduleError, is_text_schedule, parse_mix, parse_numbers,
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


@dataclass
class Config:
    # --- the style ---
    # Settings marked "keyframes" also take a keyframe string that changes them over the video:
    # "0:0.3, 48:0.7" by frame, "0s:0.3, 2.5s:0.7" by seconds from the output's start (see keyframes.py).

    # What every frame should look like ("a wooden carving, detailed grain"). Keyframes travel
    # from prompt to prompt: "0:a wooden carving | 120:a marble statue".
    prompt: str = ""
    # What to steer away from; empty is diffusers' own unconditional prompt. Keyframes as for prompt.
    negative_prompt: str = ""
    # Other texts mixed into the prompt's conditioning, each "TEXT:WEIGHT" (weight a number in [0, 1]
    # or keyframes): (1 − Σw)·E(prompt) + Σ wᵢ·E(textᵢ) on the text encoder's output embeddings.
    mix: tuple[str, ...] = ()
    # The same for the negative prompt.
    negative_mix: tuple[str, ...] = ()
    # How far each frame is noised before denoising: near 0 keeps the source, 1 ignores it. Keyframes.
    strength: float | str = 0.5
    # Denoising steps of a full-strength run; int(steps × strength) of them are run per frame.
    steps: int = 30
    # Classifier-free guidance scale; at 1 or below CFG is off, which halves the UNet work. Keyframes.
    guidance: float | str = 7.5
    # The sampler, by name (see pipelines/samplers.py); built from the model's own scheduler config.
    scheduler: str = "dpm++2m"
    # Seed of the noise; with noise = "fixed" every frame gets the noise of this seed. Keyframes
    # (a seed holds until the next keyframe: "0:1234, 120:99" changes it at a cut).
    seed: int | str = 0
    # How keyframed settings move between keyframes: "linear", "step" (hold until the next one)
    # or "smooth" (ease out of one keyframe and into the next).
    interpolation: str = "linear"

    # --- temporal consistency (anti-flicker) ---
    # "fixed": the same noise on every frame (less flicker, but texture sticks to the screen);
    # "per-frame": seed + frame index; "warped": the previous frame's noise carried along the
    # source's optical flow, fresh noise where it can't be (texture moves with the content).
    noise: str = "fixed"
    # Weight W of the previous frame's denoised latents mixed into this frame's encoded latents
    # before noising: (1 - W)·enc(frame) + W·previous. 0 makes frames independent; smears motion. Keyframes.
    blend: float | str = 0.0
    # Weight W of the previous stylised frame, warped along the source's optical flow, blended into
    # this frame before encoding; occluded pixels keep the current frame. Follows motion, unlike blend. Keyframes.
    flow_blend: float | str = 0.0
    # Weight W with which each denoising step's estimate of the clean frame is pulled towards the
    # previous frame's output latents, warped along the source's flow, where the flow is trusted
    # (Rerender-A-Video's cross-frame latent fusion); the steps after fusion_end run free to redraw detail. Keyframes.
    fusion: float | str = 0.0
    # The share of each frame's denoising steps, from the first, that fusion acts on.
    fusion_end: float = 0.5
    # Match each output's colours (LAB mean and spread) to the first stylised frame of its shot.
    color_match: bool = False
    # Self-attention in the UNet's up blocks also attends to the shot's first frame and the previous one.
    cross_frame_attn: bool = False
    # Detect hard cuts in the source and start each shot afresh (no state carried across a cut).
    cuts: bool = True
    # Colour-histogram distance (0-1) between consecutive source frames above which a cut is declared.
    cut_threshold: float = 0.35

    # --- the model ---
    # A hub id, a local diffusers folder, a single-file .safetensors checkpoint, or "tiny"
    # (a small random model built offline, for smoke tests: its output carries no style).
    model: str = DEFAULT_MODEL
    # Where the model runs: "auto" picks cuda, then mps, then cpu.
    device: str = "auto"
    # Weights' precision: "auto" is fp16 on cuda and fp32 elsewhere.
    dtype: str = "auto"
    # Allow .ckpt/.pt/.bin checkpoints, which are pickles: loading one runs code from the file.
    allow_pickle: bool = False
    # A diffusers folder (model_index.json and the parts' configs) of the same kind as a single-file
    # `model`, so that the file loads offline; None uses the config in the hub cache for its kind.
    model_config: str | None = None
    # LoRAs fused into the model, each "PATH_OR_ID[:SCALE]" (scale 1 if left out); e.g. a style LoRA,
    # or an LCM-LoRA with scheduler = "lcm", steps 4-8 and guidance 1-2 for fast runs.
    lora: tuple[str, ...] = ()
    # Textual-inversion embeddings, each "PATH[:TOKEN]"; the token (the file's name if left out)
    # then stands for the learned concept in the prompts.
    embedding: tuple[str, ...] = ()

    # --- structure guidance (ControlNet) ---
    # ControlNets, each "PATH_OR_ID[:SCALE]" (conditioning scale, 1 if left out): they hold the
    # source's shapes, so that strength can go higher without losing them.
    controlnet: tuple[str, ...] = ()
    # How each source frame becomes the control image, one per ControlNet or one for all: "canny"
    # (edges), "softedge" (soft gradient edges), "depth-from-luma" (brightness as a stand-in for
    # depth: no depth model is run), "tile" (the frame itself, for tile ControlNets).
    control: tuple[str, ...] = ("canny",)
    # Canny's hysteresis thresholds on 0-255 gradients: lower finds more (and noisier) edges.
    canny_low: int = 100
    canny_high: int = 200

    # --- the video ---
    # Frames are scaled down to fit this many pixels on their longer side (both sides then rounded
    # to a multiple of 8, which the VAE needs). Larger is slower and closer to the model's training size.
    max_side: int = 512
    # Seconds into the input where the output begins.
    start: float = 0.0
    # Seconds of input to stylise from `start`; None runs to the end.
    duration: float | None = None
    # Stop after this many frames; None runs to the end.
    max_frames: int | None = None
    # H.264 quality: lower is better and bigger; 18 is visually lossless for most clips.
    crf: int = 18
    # Frame rate of an image-sequence INPUT (a folder of numbered images, or a pattern such as
    # frames/img_%04d.png): a number, or text such as "30000/1001"; None is 24. A video keeps its own.
    fps: float | str | None = None
    # A frame that can't be decoded before the end of the input (a damaged file): "stop" ends the run
    # with an error naming the frame; "skip" reports it, leaves it out and goes on. stop is the
    # default because skipping changes the video: what follows a skipped frame plays one frame
    # earlier against the audio, so that is for you to choose once you know the file is damaged.
    on_bad_frame: str = "stop"

    # --- speed ---
    # Frames that go through the VAE and UNet together; None picks a size from the device and frame
    # size. Only frames that don't depend on the previous output batch: with blend, flow_blend or fusion on,
    # frames run one at a time whatever this says. Same output either way.
    batch_size: int | None = None
    # Reuse the previous output when a source frame differs from the last stylised one by less than
    # this many 8-bit levels on average (0 = off). Saves the model work on still shots; a trade of
    # quality for speed, as StreamDiffusion's similar-image filter.
    skip_similar: float = 0.0
    # The VAE: "full" (the model's own), "tiny" (TAESD: several times faster to encode and decode, a
    # little blurrier), or a hub id, diffusers folder or .safetensors file of another VAE.
    vae: str = "full"
    # Compile the UNet and VAE with torch.compile: slow to start (minutes), then faster per frame on
    # a GPU. Frames keep their size and batch shape, so it compiles once.
    compile: bool = False

    # --- the output ---
    # Replace an existing OUTPUT; without it vidiff refuses to.
    overwrite: bool = False
    # Discard the unfinished work of an earlier run (OUTPUT.vidiff/) instead of resuming it.
    restart: bool = False
    # Also write every stylised frame as a lossless PNG into this folder.
    save_frames: str | None = None

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
            raise ConfigError("canny_low", self.canny_low, f"must not be above --canny-high ({self.canny_high})")
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


class ConfigError(VidiffError):
    """A setting with a bad value; knows the field so each caller can name it its own way."""

    def __init__(self, field: str, value: Any, allowed: str, where: str | None = None):
        self.field, self.value, self.allowed, self.where = field, value, allowed, where
        super().__init__(self._message())

    def _message(self) -> str:
        if self.where:  # a preset file: name the file and the key
            return f"{self.where}: {self.field} = {self.value!r}: {self.allowed}"
        option = "--" + self.field.replace("_", "-")
        return f"{option} {self.value!r}: {self.allowed}"

    def located(self, where: str) -> "ConfigError":
        return ConfigError(self.field, self.value, self.allowed, where)


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


# field -> (is the value allowed?, what is allowed, in words)
RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "prompt": (_text, "must be text"),
    "negative_prompt": (_text, "must be text"),
    "strength": (lambda v: _number(v) and 0 <= v <= 1, "must be a number in [0, 1]"),
    "steps": (lambda v: _integer(v) and 1 <= v <= 1000, "must be a whole number from 1 to 1000"),
    "guidance": (lambda v: _number(v) and 0 <= v <= 50, "must be a number in [0, 50]"),
    "scheduler": _choice(tuple(SCHEDULERS)),
    "seed": (lambda v: _integer(v) and 0 <= v < 2**63, "must be a whole number ≥ 0"),
    "mix": (_texts, "must be a list of TEXT:WEIGHT texts"),
    "negative_mix": (_texts, "must be a list of TEXT:WEIGHT texts"),
    "interpolation": _choice(INTERPOLATIONS),
    "batch_size": (lambda v: v is None or (_integer(v) and 1 <= v <= 256), "must be a whole number from 1 to 256"),
    "vae": (lambda v: isinstance(v, str) and v.strip() != "", "must be full, tiny, a hub id, a folder or a .safetensors file"),
    "compile": (lambda v: isinstance(v, bool), "must be true or false"),
    "skip_similar": (lambda v: _number(v) and 0 <= v <= 255, "must be a number of 8-bit levels in [0, 255] (0 is off)"),
    "noise": _choice(NOISE_MODES),
    "blend": (lambda v: _number(v) and 0 <= v < 1, "must be a number in [0, 1) (1 would never let the video change)"),
    "flow_blend": (lambda v: _number(v) and 0 <= v < 1, "must be a number in [0, 1) (1 would never let the video change)"),
    "fusion": (lambda v: _number(v) and 0 <= v <= 1, "must be a number in [0, 1]"),
    "fusion_end": (lambda v: _number(v) and 0 < v <= 1, "must be a share of the steps in (0, 1]"),
    "color_match": (lambda v: isinstance(v, bool), "must be true or false"),
    "cross_frame_attn": (lambda v: isinstance(v, bool), "must be true or false"),
    "cuts": (lambda v: isinstance(v, bool), "must be true or false"),
    "cut_threshold": (lambda v: _number(v) and 0 < v <= 1, "must be a number in (0, 1]"),
    "model": (lambda v: isinstance(v, str) and v.strip() != "", "must be a hub id, a folder, a .safetensors file or 'tiny'"),
    "device": _choice(DEVICES),
    "dtype": _choice(DTYPES),
    "allow_pickle": (lambda v: isinstance(v, bool), "must be true or false"),
    "model_config": (lambda v: v is None or (isinstance(v, str) and v.strip() != ""), "must be a folder path"),
    "lora": (_weighted_list, "must be a list of PATH_OR_ID[:SCALE], the scale a number from -10 to 10"),
    "embedding": (_embedding_list, "must be a list of PATH[:TOKEN], the token one word"),
    "controlnet": (lambda v: _weighted_list(v, keyframes=True),
                   "must be a list of PATH_OR_ID[:SCALE], the scale a number from -10 to 10 or keyframes"),
    "control": (lambda v: isinstance(v, (tuple, list)) and len(v) >= 1 and all(c in CONTROLS for c in v),
                "must be one or more of " + ", ".join(CONTROLS)),
    "canny_low": (lambda v: _integer(v) and 0 <= v <= 1000, "must be a whole number from 0 to 1000"),
    "canny_high": (lambda v: _integer(v) and 0 <= v <= 1000, "must be a whole number from 0 to 1000"),
    "max_side": (lambda v: _integer(v) and 8 <= v <= 8192, "must be a whole number of pixels from 8 to 8192"),
    "start": (lambda v: _number(v) and v >= 0, "must be a number of seconds ≥ 0"),
    "duration": (lambda v: v is None or (_number(v) and v > 0), "must be a number of seconds > 0"),
    "max_frames": (lambda v: v is None or (_integer(v) and v >= 1), "must be a whole number ≥ 1"),
    "crf": (lambda v: _integer(v) and 0 <= v <= 51, "must be a whole number from 0 (lossless) to 51"),
    "fps": (lambda v: v is None or _frame_rate(v),
            "must be a frame rate above 0 and at most 1000, such as 24, 12.5 or 30000/1001"),
    "on_bad_frame": _choice(BAD_FRAME_ACTIONS),
    "overwrite": (lambda v: isinstance(v, bool), "must be true or false"),
    "restart": (lambda v: isinstance(v, bool), "must be true or false"),
    "save_frames": (lambda v: v is None or (isinstance(v, str) and v != ""), "must be a folder path"),
}

# The settings a preset may hold: the look and the model, not where a particular run starts or writes.
PRESET_KEYS = (
    "prompt", "negative_prompt", "mix", "negative_mix", "interpolation", "strength", "steps", "guidance", "scheduler", "seed",
    "noise", "blend", "flow_blend", "fusion", "fusion_end", "color_match", "cross_frame_attn", "cuts", "cut_threshold",
    "model", "model_config", "lora", "embedding", "controlnet", "control", "canny_low", "canny_high", "vae",
    "skip_similar", "max_side", "crf",
)
# Settings given as repeated options on the command line and as lists in presets.
REPEATABLE = ("mix", "negative_mix", "lora", "embedding", "controlnet", "control")

_KEYFRAMES_EXAMPLE = "or keyframes, such as '0:0.3, 48:0.7'"
_MIX_WEIGHT = (lambda v: _number(v) and 0 <= v <= 1, "must be a number in [0, 1]")


def check_field(name: str, value: Any) -> None:
    """Raise ConfigError if `value` is not allowed for field `name`."""
    allowed, words = RULES[name]
    if name in SCHEDULABLE and isinstance(value, str):
        _check_keyframes(name, value, value, *RULES[name], integer=name == "seed")
        return
    if name in TEXT_SCHEDULABLE and is_text_schedule(value):
        try:
            parse_texts(value)
        except ScheduleError as err:
            raise ConfigError(name, value, str(err)) from None
        return
    if not allowed(value):
        raise ConfigError(name, value, f"{words} ({_KEYFRAMES_EXAMPLE})" if name in SCHEDULABLE else words)
    if name in ("mix", "negative_mix"):
        for entry in value:
            try:
                _text, weight = parse_mix(entry)
            except ScheduleError as err:
                raise ConfigError(name, entry, str(err)) from None
            _check_keyframes(name, entry, weight, *_MIX_WEIGHT)


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
        return [k.value for k in parse_numbers(value, integer=name == "seed")]
    return [value]
