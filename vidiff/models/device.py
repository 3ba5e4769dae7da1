"""Where the model runs and in what precision: the only place that knows about devices."""

from __future__ import annotations

import torch

from ..errors import VidiffError
from .parts import ModelParts


DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_device(name: str) -> torch.device:
    """'auto' is cuda, then mps, then cpu; an asked-for device that isn't there is an error."""
    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if (name == "cuda" and not cuda) or (name == "mps" and not mps):
        raise VidiffError(f"--device {name}: no {name} device is available here; use --device cpu or auto")
    return torch.device(name)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """'auto' is fp16 on cuda (half the memory, tensor cores) and fp32 elsewhere."""
    if name == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return DTYPES[name]


def default_batch_size(device: torch.device, size: tuple[int, int]) -> int:
    """Frames per batch when --batch-size isn't given: on a GPU enough to fill it (8 at 512², more when
    smaller, at most 16); on a CPU a few, which saves per-call overhead without much memory."""
    width, height = size
    if device.type == "cuda":
        return max(1, min(16, (8 * 512 * 512) // (width * height)))
    return 4


def is_out_of_memory(err: BaseException) -> bool:
    """Whether `err` is the accelerator running out of memory (CUDA's own type, or MPS's message)."""
    return isinstance(err, torch.cuda.OutOfMemoryError) or (
        isinstance(err, RuntimeError) and "out of memory" in str(err).lower()
    )


def _placed(parts: ModelParts, device: torch.device, dtype: torch.dtype) -> ModelParts:
    modules = [parts.vae, parts.text_encoder, parts.text_encoder_2, parts.unet, *parts.controlnets, parts.image_encoder]
    for module in (m for m in modules if m is not None):
        module.to(device)
        # SDXL's VAE overflows below fp32: diffusers' SDXL pipelines run it in fp32 when its config says so
        wanted = torch.float32 if module is parts.vae and _vae_needs_fp32(parts) else dtype
        # cast only when needed: diffusers warns on every dtype cast it didn't do itself
        if module.dtype != wanted:
            module.to(dtype=wanted)
        module.eval()
        module.requires_grad_(False)
    if device.type == "cuda":
        # the layout cuDNN's convolutions run fastest in; the same numbers in another memory order
        for module in (parts.unet, parts.vae, *parts.controlnets):
            module.to(memory_format=torch.channels_last)
    parts.device, parts.dtype = device, dtype
    return parts


def _vae_needs_fp32(parts: ModelParts) -> bool:
    return parts.kind == "sdxl" and bool(getattr(parts.vae.config, "force_upcast", False))
