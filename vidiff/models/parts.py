"""The model parts a run is handed (as a diffusers pipeline is), and the small helpers every loader shares."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import VidiffError


PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")


SINGLE_FILE_SUFFIXES = (".safetensors",) + PICKLE_SUFFIXES


# Model kinds: which conditioning the UNet takes, and how the text is encoded for it.
KIND_NAMES = {"sd1": "SD 1.x", "sd2": "SD 2.x", "sdxl": "SDXL"}


@dataclass
class ModelParts:
    """What the stylizer needs, built once per run and passed in (as a diffusers pipeline is)."""

    vae: Any
    text_encoder: Any
    tokenizer: Any
    unet: Any
    scheduler_config: Any  # the model's own scheduler config; samplers are built from it by name
    device: torch.device
    dtype: torch.dtype
    name: str
    kind: str = "sd1"  # "sd1", "sd2" or "sdxl" (see KIND_NAMES)
    text_encoder_2: Any = None  # SDXL's second text encoder (with projection: it gives the pooled embedding)
    tokenizer_2: Any = None
    # SDXL: an empty negative prompt is all zeros rather than the encoding of "" (the model's own config)
    force_zeros_for_empty_prompt: bool = False
    controlnets: list = field(default_factory=list)  # ControlNetModels, in the order of `controlnet`
    # what was loaded onto the parts, as the settings spelled it: a run checks its config against them
    lora: tuple[str, ...] = ()
    embedding: tuple[str, ...] = ()
    controlnet: tuple[str, ...] = ()
    vae_source: str = "full"  # --vae: "full" (the model's own), "tiny", or where another VAE came from
    motion_adapter: str | None = None  # --motion-adapter: the UNet is then a UNetMotionModel
    ip_adapter: str | None = None  # --ip-adapter, loaded for --style-image: the UNet then takes image embeddings
    image_encoder: Any = None  # the IP-Adapter's CLIP image encoder
    feature_extractor: Any = None  # its image preprocessing


def _looks_like_path(model: str) -> bool:
    """A hub id is 'owner/name'; anything else that names a file, or exists, is a local path."""
    return (
        os.path.exists(os.path.expanduser(model))
        or model.startswith((".", "/", "~"))
        or model.lower().endswith(SINGLE_FILE_SUFFIXES)
        or model.count("/") > 1
        or os.sep != "/" and os.sep in model
    )


def refuse_pickle(path: Path, what: str, allow_pickle: bool) -> None:
    """Pickle files run code when loaded: only with --allow-pickle."""
    if path.suffix.lower() in PICKLE_SUFFIXES and not allow_pickle:
        raise VidiffError(
            f"{what} {path} is a pickle file: loading it runs code from the file. "
            "Use a .safetensors file, or pass --allow-pickle if you trust its source"
        )


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
