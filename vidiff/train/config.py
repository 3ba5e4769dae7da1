"""The settings of one training run, each declared once on its TrainConfig field (the command line's
`vidiff train` options are made from these declarations, as `stylize`'s are from Config's)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

from ..errors import ConfigError
from ..settings.config import DEFAULT_MODEL, DEVICES, DTYPES

FORMATS = ("diffusers", "kohya")


def _setting(default, help: str, *, choices: tuple[str, ...] = (), metavar: str | None = None,
             negatable: bool = False, resume: bool = True):  # fmt: skip
    """A field with its help; `resume` False for settings that don't change the weights (a run may resume
    with them changed)."""
    return field(default=default, metadata={"help": help, "choices": choices, "metavar": metavar,
                                            "negatable": negatable, "resume": resume})  # fmt: skip


@dataclass(frozen=True)
class TrainConfig:
    """How a LoRA is trained on a folder of pictures (vidiff train IMAGES OUT.safetensors)."""

    model: str = _setting(DEFAULT_MODEL, "The base model the LoRA is trained on: a hub id, a diffusers folder, a "
                          "single .safetensors file, or tiny (SD 1.x, 2.x or SDXL).", metavar="ID|PATH")
    token: str | None = _setting(None, "The word for the style: the caption of every picture without a NAME.txt "
                                 "beside it; use it in the stylize prompt.", metavar="TEXT")
    steps: int = _setting(1000, "Training steps (one batch each).")
    rank: int = _setting(16, "LoRA rank: larger learns more detail and makes a larger file.")
    lr: float = _setting(1e-4, "Learning rate (AdamW).")
    batch_size: int = _setting(1, "Pictures per step (from one aspect-ratio bucket).")
    resolution: int | None = _setting(None, "Training size: each bucket holds about RESOLUTION² pixels "
                                      "(default: the model's own, 512 for SD 1.x, 1024 for SDXL).", metavar="PIXELS")
    repeats: int = _setting(1, "How many times each picture is seen per epoch.")
    seed: int = _setting(0, "Seed of the data order, crops, flips, noise and LoRA initialisation.")
    text_encoder: bool = _setting(False, "Also train a LoRA on the text encoder(s).")
    flip: bool = _setting(True, "Flip pictures left-right at random (off for styles with writing or "
                          "a handedness).", negatable=True)
    format: str = _setting("diffusers", "The file's layout: diffusers (diffusers, vidiff) or kohya "
                           "(A1111, ComfyUI, and diffusers too).", choices=FORMATS, resume=False)
    sample_every: int = _setting(0, "Draw a sample picture every N steps into OUT's samples folder (0: never).",
                                 metavar="N", resume=False)
    sample_prompt: str | None = _setting(None, "The sample pictures' prompt (default: the token).",
                                         metavar="TEXT", resume=False)
    sample_steps: int = _setting(20, "Denoising steps of each sample picture.", resume=False)
    checkpoint_every: int = _setting(100, "Save a checkpoint every N steps; the same command resumes from it.",
                                     metavar="N", resume=False)
    gradient_checkpointing: bool | None = _setting(None, "Recompute activations instead of keeping them: less "
                                                   "memory, about a third slower (default: on a GPU).",
                                                   negatable=True, resume=False)
    device: str = _setting("auto", "auto: cuda, then mps, then cpu.", choices=DEVICES, resume=False)
    dtype: str = _setting("auto", "Precision of the frozen model (the LoRA trains in fp32, under autocast on a GPU); "
                          "auto: fp16 on cuda, fp32 elsewhere.", choices=DTYPES)
    preset: str | None = _setting(None, "Also write a stylize preset naming the model, the LoRA and a prompt with the "
                                  "token: NAME (in your presets folder) or FILE.toml.", metavar="NAME|FILE.toml",
                                  resume=False)
    overwrite: bool = _setting(False, "Replace OUT (and the --preset file) if it exists.", resume=False)
    restart: bool = _setting(False, "Discard the checkpoint of an earlier run and start again.", resume=False)
    allow_pickle: bool = _setting(False, "Allow a pickle (.ckpt) --model: loading it runs code from the file.",
                                  resume=False)

    def replace(self, **changes) -> "TrainConfig":
        return replace(self, **changes)

    def validate(self) -> "TrainConfig":
        """Every value checked before anything is loaded or written; a bad one is a ConfigError."""
        whole = {"steps": 1, "rank": 1, "batch_size": 1, "repeats": 1, "sample_steps": 1}
        for name, least in whole.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise ConfigError(name, value, f"give a whole number, at least {least}")
        for name in ("sample_every", "checkpoint_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ConfigError(name, value, "give a whole number of steps (0: never)")
        if not isinstance(self.lr, (int, float)) or not 0 < self.lr < 1:
            raise ConfigError("lr", self.lr, "give a learning rate between 0 and 1, such as 1e-4")
        if self.resolution is not None and (not isinstance(self.resolution, int) or self.resolution < 64
                                            or self.resolution % 8):  # fmt: skip
            raise ConfigError("resolution", self.resolution, "give a multiple of 8, at least 64, such as 512")
        if self.token is not None and not self.token.strip():
            raise ConfigError("token", self.token, "give a word for the style, such as '<my-style>'")
        for name in ("format", "device", "dtype"):
            choices = fields_by_name()[name].metadata["choices"]
            if getattr(self, name) not in choices:
                raise ConfigError(name, getattr(self, name), f"choose one of {', '.join(choices)}")
        return self

    def fingerprint(self) -> dict:
        """The settings a checkpoint must have been trained with to be resumed."""
        return {f.name: value for f, value in zip(fields(self), asdict(self).values()) if f.metadata["resume"]}


def fields_by_name() -> dict:
    return {f.name: f for f in fields(TrainConfig)}
