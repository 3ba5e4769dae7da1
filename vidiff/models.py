"""Load the model parts (from a hub id, a local folder, a single file, or the tiny offline model),
and pick the device and dtype. The only place that knows about devices."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .errors import VidiffError

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
SINGLE_FILE_SUFFIXES = (".safetensors",) + PICKLE_SUFFIXES
TINY = "tiny"


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


def is_out_of_memory(err: BaseException) -> bool:
    """Whether `err` is the accelerator running out of memory (CUDA's own type, or MPS's message)."""
    return isinstance(err, torch.cuda.OutOfMemoryError) or (
        isinstance(err, RuntimeError) and "out of memory" in str(err).lower()
    )


def load_parts(model: str, device: str = "auto", dtype: str = "auto", allow_pickle: bool = False) -> ModelParts:
    """Build the model parts for `model`: 'tiny', a local folder, a single checkpoint file, or a hub id."""
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    if model == TINY:
        parts = tiny_parts()
    else:
        parts = _load_pretrained(model, torch_dtype, allow_pickle)
    return _placed(parts, torch_device, torch_dtype)


def _placed(parts: ModelParts, device: torch.device, dtype: torch.dtype) -> ModelParts:
    for module in (parts.vae, parts.text_encoder, parts.unet):
        module.to(device)
        # cast only when needed: diffusers warns on every dtype cast it didn't do itself
        if module.dtype != dtype:
            module.to(dtype=dtype)
        module.eval()
        module.requires_grad_(False)
    parts.device, parts.dtype = device, dtype
    return parts


def _looks_like_path(model: str) -> bool:
    """A hub id is 'owner/name'; anything else that names a file, or exists, is a local path."""
    return (
        os.path.exists(os.path.expanduser(model))
        or model.startswith((".", "/", "~"))
        or model.lower().endswith(SINGLE_FILE_SUFFIXES)
        or model.count("/") > 1
        or os.sep != "/" and os.sep in model
    )


def _load_pretrained(model: str, dtype: torch.dtype, allow_pickle: bool) -> ModelParts:
    path = Path(model).expanduser()
    if _looks_like_path(model) and not path.exists():
        raise VidiffError(
            f"model not found: {model} is not a file or folder; give a diffusers folder, a .safetensors file, "
            "a hub id, or --model tiny to check the install"
        )
    from diffusers import StableDiffusionPipeline

    try:
        if path.is_file():
            suffix = path.suffix.lower()
            if suffix not in SINGLE_FILE_SUFFIXES:
                raise VidiffError(
                    f"model file {model}: unknown kind {suffix!r}; give a .safetensors checkpoint or a diffusers folder"
                )
            if suffix in PICKLE_SUFFIXES and not allow_pickle:
                raise VidiffError(
                    f"model file {model} is a pickle checkpoint: loading it runs code from the file. "
                    "Use a .safetensors file, or pass --allow-pickle if you trust its source"
                )
            pipe = StableDiffusionPipeline.from_single_file(
                str(path), torch_dtype=dtype, safety_checker=None, requires_safety_checker=False
            )
        elif path.is_dir():
            if not (path / "model_index.json").is_file():
                raise VidiffError(
                    f"model folder {model} has no model_index.json: it is not a diffusers model folder"
                )
            pipe = StableDiffusionPipeline.from_pretrained(
                str(path), torch_dtype=dtype, safety_checker=None, requires_safety_checker=False
            )
        else:
            pipe = StableDiffusionPipeline.from_pretrained(
                model, torch_dtype=dtype, safety_checker=None, requires_safety_checker=False
            )
    except VidiffError:
        raise
    except (OSError, ValueError, EnvironmentError) as err:
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
        reason = " (HF_HUB_OFFLINE is set)" if offline else ""
        if path.exists():
            what = f"could not load model {model!r}: {_first_line(err)}"
        else:  # the hub's own message points at a stack trace we don't show: say what was tried
            what = f"could not fetch model {model!r} from the hub{reason}, nor find it in the local cache"
        raise VidiffError(
            f"{what}. Give a local diffusers folder or .safetensors file, or --model tiny to check the install"
        ) from None
    return ModelParts(
        vae=pipe.vae,
        text_encoder=pipe.text_encoder,
        tokenizer=pipe.tokenizer,
        unet=pipe.unet,
        scheduler_config=pipe.scheduler.config,
        device=torch.device("cpu"),
        dtype=dtype,
        name=model,
    )


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


# The scheduler config of Stable Diffusion 1.5, so the tiny model samples on the same schedule.
SD15_SCHEDULER_CONFIG = {
    "_class_name": "PNDMScheduler",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "clip_sample": False,
    "prediction_type": "epsilon",
    "timestep_spacing": "leading",
}


def _byte_vocab() -> dict[str, int]:
    """A CLIP BPE vocabulary of single bytes (GPT-2's byte-to-unicode map): any text tokenises, offline."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = [], 0
    for b in range(256):
        if b in printable:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    vocab: dict[str, int] = {}
    for token in chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]:
        vocab[token] = len(vocab)
    return vocab


def tiny_parts(seed: int = 0) -> ModelParts:
    """A tiny randomly initialised SD 1.x model, built offline and the same every time (per seed).

    It has SD's shape (8× VAE, cross-attention UNet, CLIP text encoder) at a fraction of the size, so
    every code path runs in seconds on a CPU; its output carries no real style.
    """
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    vocab = _byte_vocab()
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)
    # fork_rng: seeded initialisation without touching the caller's global torch RNG state
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(
            block_out_channels=(32, 64),
            layers_per_block=1,
            sample_size=32,
            in_channels=4,
            out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=32,
            attention_head_dim=8,
            norm_num_groups=8,
        )
        vae = AutoencoderKL(
            block_out_channels=(16, 16, 32, 32),
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            latent_channels=4,
            layers_per_block=1,
            norm_num_groups=8,
            sample_size=64,
        )
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                bos_token_id=vocab["<|startoftext|>"],
                eos_token_id=vocab["<|endoftext|>"],
                pad_token_id=vocab["<|endoftext|>"],
                hidden_size=32,
                intermediate_size=37,
                layer_norm_eps=1e-05,
                num_attention_heads=4,
                num_hidden_layers=2,
                vocab_size=len(vocab),
                max_position_embeddings=77,
            )
        )
    scheduler_config = PNDMScheduler.from_config(SD15_SCHEDULER_CONFIG).config
    return ModelParts(vae, text_encoder, tokenizer, unet, scheduler_config, torch.device("cpu"), torch.float32, TINY)
