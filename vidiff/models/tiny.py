"""Small random models built offline, with SD's and SDXL's shapes, for smoke runs and tests."""

from __future__ import annotations

from pathlib import Path

import torch

from .parts import ModelParts


TINY = "tiny"


# --model names of the small random models built offline, and their kinds
TINY_MODELS = {TINY: "sd1", "tiny-sdxl": "sdxl"}


# The tiny SD 1.x architecture trained offline on synthetic pictures (benchmarks/train_tiny.py; 2.6 MB
# of float16 weights, a diffusers folder shipped with the package): unlike the random one it follows
# its source, so the demo and the temporal benchmarks use it. What it can and can't show: README, Demo.
TRAINED_TINY = Path(__file__).resolve().parent / "tiny_trained"


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


def tiny_parts(seed: int = 0, kind: str = "sd1") -> ModelParts:
    """A tiny randomly initialised SD 1.x model (or SDXL, kind="sdxl"), built offline, the same every time.

    It has SD's shape (8× VAE, cross-attention UNet, CLIP text encoders; for SDXL two of them, pooled
    embeddings and size conditioning) at a fraction of the size, so every code path runs in seconds on
    a CPU; its output carries no real style.
    """
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    if kind not in ("sd1", "sdxl"):
        raise ValueError(f"tiny models come as sd1 or sdxl, not {kind!r}")
    vocab = _byte_vocab()
    sdxl = kind == "sdxl"

    def text_config(projection_dim: int | None = None) -> CLIPTextConfig:
        extra = {"projection_dim": projection_dim} if projection_dim else {}
        return CLIPTextConfig(
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
            **extra,
        )

    # SDXL: cross-attention on both encoders' hidden states side by side (32 + 32); the added
    # embedding takes the pooled text (32) and six size/crop numbers of 8 dimensions each
    unet_extra = (
        {"addition_embed_type": "text_time", "addition_time_embed_dim": 8,
         "projection_class_embeddings_input_dim": 32 + 6 * 8, "use_linear_projection": True}
        if sdxl else {}
    )  # fmt: skip
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
            cross_attention_dim=64 if sdxl else 32,
            attention_head_dim=8,
            norm_num_groups=8,
            **unet_extra,
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
        text_encoder = CLIPTextModel(text_config())
        text_encoder_2 = CLIPTextModelWithProjection(text_config(projection_dim=32)) if sdxl else None
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)
    tokenizer_2 = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77) if sdxl else None
    scheduler_config = PNDMScheduler.from_config(SD15_SCHEDULER_CONFIG).config
    return ModelParts(
        vae, text_encoder, tokenizer, unet, scheduler_config, torch.device("cpu"), torch.float32, TINY,
        kind=kind, text_encoder_2=text_encoder_2, tokenizer_2=tokenizer_2, force_zeros_for_empty_prompt=sdxl,
    )  # fmt: skip


def tiny_motion_adapter(seed: int = 0, blocks: tuple[int, ...] = (32, 64), layers: int = 1):
    """A tiny random AnimateDiff MotionAdapter that fits the tiny SD 1.x UNets (as diffusers' own tests
    build theirs), built offline; its motion modules know no motion."""
    from diffusers import MotionAdapter

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MotionAdapter(
            block_out_channels=blocks, motion_layers_per_block=layers, motion_norm_num_groups=2,
            motion_num_attention_heads=4,
        )  # fmt: skip
