"""Full-size Stable Diffusion architectures with random weights, built from their configs offline.

Random weights cost the same FLOPs and memory as trained ones, so speed and memory measured on
these are those of the real models; their pictures are noise. The configs are those of the
published models (SD 1.5: runwayml/stable-diffusion-v1-5; SD-Turbo: stabilityai/sd-turbo, the SD 2.1
UNet and OpenCLIP ViT-H text encoder), written out here so that nothing is downloaded.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL, AutoencoderTiny, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from vidiff.models.parts import ModelParts
from vidiff.models.tiny import SD15_SCHEDULER_CONFIG, TINY, _byte_vocab, tiny_parts

# SD-Turbo samples with Euler on trailing timesteps (its scheduler config on the hub)
SD_TURBO_SCHEDULER_CONFIG = {
    **SD15_SCHEDULER_CONFIG,
    "_class_name": "EulerDiscreteScheduler",
    "timestep_spacing": "trailing",
    "steps_offset": 1,
}

# sd15-motion: SD 1.5's UNet joined to an AnimateDiff motion adapter of v1-5's architecture (diffusers'
# MotionAdapter defaults), as --motion-adapter builds it
ARCHITECTURES = (TINY, "sd15", "sd-turbo", "sd15-motion")


def _text_encoder(hidden: int, layers: int, heads: int, intermediate: int, act: str, vocab: dict) -> CLIPTextModel:
    return CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=vocab["<|startoftext|>"],
            eos_token_id=vocab["<|endoftext|>"],
            pad_token_id=vocab["<|endoftext|>"],
            hidden_size=hidden,
            intermediate_size=intermediate,
            num_attention_heads=heads,
            num_hidden_layers=layers,
            hidden_act=act,
            vocab_size=49408,  # CLIP's: the embedding table is real size, the tokenizer only uses its first ids
            max_position_embeddings=77,
        )
    )


def sd_vae() -> AutoencoderKL:
    """The SD 1.x/2.x VAE (the same architecture in both)."""
    return AutoencoderKL(
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=2,
        latent_channels=4,
        norm_num_groups=32,
        sample_size=512,
        scaling_factor=0.18215,
    )


def tiny_vae() -> AutoencoderTiny:
    """TAESD's architecture (madebyollin/taesd), for --vae tiny."""
    return AutoencoderTiny()


def build(name: str, seed: int = 0) -> ModelParts:
    """The parts of architecture `name` (tiny, sd15, sd-turbo, sd15-motion), randomly initialised from `seed`, fp32 on the CPU."""
    if name == TINY:
        return tiny_parts(seed)
    if name == "sd15-motion":
        from diffusers import MotionAdapter, UNetMotionModel

        parts = build("sd15", seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            parts.unet = UNetMotionModel.from_unet2d(parts.unet, MotionAdapter())
        parts.name, parts.motion_adapter = name, "a random MotionAdapter of v1-5's architecture"
        return parts
    vocab = _byte_vocab()
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if name == "sd15":
            unet = UNet2DConditionModel(cross_attention_dim=768, sample_size=64)  # the defaults are SD 1.x's
            text_encoder = _text_encoder(768, 12, 12, 3072, "quick_gelu", vocab)
            scheduler_config = SD15_SCHEDULER_CONFIG
        elif name == "sd-turbo":
            unet = UNet2DConditionModel(
                cross_attention_dim=1024,
                attention_head_dim=(5, 10, 20, 20),
                use_linear_projection=True,
                sample_size=64,
            )
            text_encoder = _text_encoder(1024, 23, 16, 4096, "gelu", vocab)
            scheduler_config = SD_TURBO_SCHEDULER_CONFIG
        else:
            raise ValueError(f"unknown architecture {name!r}; choose one of {', '.join(ARCHITECTURES)}")
        vae = sd_vae()
    from diffusers import PNDMScheduler

    config = PNDMScheduler.from_config(scheduler_config).config
    return ModelParts(vae, text_encoder, tokenizer, unet, config, torch.device("cpu"), torch.float32, name)
