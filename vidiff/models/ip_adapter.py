"""IP-Adapter: a style image instead of words. The adapter's image projection and cross-attention
layers are loaded onto the UNet through diffusers' load_ip_adapter, with its CLIP image encoder; the
style image is encoded once per video, as diffusers' pipelines encode `ip_adapter_image`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import VidiffError
from .adapters import _library_messages, _local_file, _pipeline
from .parts import KIND_NAMES, ModelParts, _first_line, refuse_pickle

# Where a repository laid out as h94/IP-Adapter keeps each kind's adapter; its image encoder is the
# `image_encoder` folder beside it
LAYOUT = {"sd1": ("models", "ip-adapter_sd15.safetensors"), "sdxl": ("sdxl_models", "ip-adapter_sdxl.safetensors")}


def load_ip_adapter(parts: ModelParts, source: str | None, allow_pickle: bool = False) -> None:
    """Load the IP-Adapter at `source` onto the parts (nothing when None): a hub id or folder laid out
    as h94/IP-Adapter, or an adapter file with its image encoder in an `image_encoder` folder beside it."""
    if source is None:
        return
    if parts.kind not in LAYOUT:
        raise VidiffError(
            f"--style-image: IP-Adapters are made for SD 1.x and SDXL; --model {parts.name} is {KIND_NAMES[parts.kind]}"
        )
    file = _local_file(source, "--ip-adapter")
    if file is not None:
        refuse_pickle(file, "--ip-adapter", allow_pickle)
        where, subfolder, weight = str(file.parent), "", file.name
    else:
        where, (subfolder, weight) = source, LAYOUT[parts.kind]
    pipe = _pipeline(parts)
    try:
        with _library_messages():
            pipe.load_ip_adapter(where, subfolder=subfolder, weight_name=weight, image_encoder_folder="image_encoder")
    except Exception as err:  # huggingface_hub, transformers and diffusers raise many kinds: one line
        raise VidiffError(
            f"--ip-adapter {source} could not be loaded for the {KIND_NAMES[parts.kind]} model (--model {parts.name}): "
            f"{_first_line(err)}; give a hub id or folder laid out as h94/IP-Adapter, or an adapter file with an "
            "image_encoder folder beside it"
        ) from None
    parts.unet, parts.image_encoder, parts.feature_extractor = pipe.unet, pipe.image_encoder, pipe.feature_extractor
    parts.ip_adapter = source


def read_style_image(path: str) -> np.ndarray:
    """The style image as RGB uint8; a missing or unreadable file is one line."""
    from PIL import Image, UnidentifiedImageError

    if not Path(path).expanduser().is_file():
        raise VidiffError(f"--style-image {path} not found: give a picture file (.png, .jpg, ...)")
    try:
        with Image.open(Path(path).expanduser()) as image:
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError) as err:
        raise VidiffError(f"--style-image {path} could not be read as a picture: {_first_line(err)}") from None


@torch.no_grad()
def encode_style_image(parts: ModelParts, image: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """The image's embedding and the unconditional one, each (1, tokens or 1, width), as diffusers'
    prepare_ip_adapter_image_embeds makes them for one image: the projected image embedding and zeros,
    or for "plus" adapters the encoder's penultimate hidden states of the image and of a black image."""
    from diffusers.models.embeddings import ImageProjection

    encoder = parts.image_encoder
    pixels = parts.feature_extractor(image, return_tensors="pt").pixel_values
    pixels = pixels.to(device=parts.device, dtype=next(encoder.parameters()).dtype)
    if isinstance(parts.unet.encoder_hid_proj.image_projection_layers[0], ImageProjection):
        embeds = encoder(pixels).image_embeds
        return embeds[None], torch.zeros_like(embeds)[None]
    hidden = encoder(pixels, output_hidden_states=True).hidden_states[-2]
    negative = encoder(torch.zeros_like(pixels), output_hidden_states=True).hidden_states[-2]
    return hidden[None], negative[None]


def set_style_scale(unet, scale: float) -> None:
    """How strongly the style image acts, on every IP-Adapter attention layer (diffusers' set_ip_adapter_scale)."""
    for processor in unet.attn_processors.values():
        if isinstance(getattr(processor, "scale", None), list):
            processor.scale = [scale] * len(processor.scale)
