"""Parts that don't fit the model (a ControlNet, VAE, LoRA or embedding made for another one) are
refused as they load: one line naming both and what differs, exit code 2, nothing at OUTPUT.

Each misfit is built offline from tiny parts and saved as a user would give it (a diffusers folder
or a .safetensors file). Without the checks, most of them load silently and fail at the first
frame with a tensor-size traceback, or (a LoRA with layers the model lacks) run without those layers.
"""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner
from diffusers import AutoencoderKL, ControlNetModel, StableDiffusionPipeline, UNet2DConditionModel
from safetensors.torch import save_file

from helpers import write_tiny_lora
from vidiff.cli import cli
from vidiff.models.fit import motion_adapter_misfit
from vidiff.models.tiny import tiny_parts


def three_block_unet() -> UNet2DConditionModel:
    """The tiny UNet with a third, cross-attention block: the same widths, one more level."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return UNet2DConditionModel(
            block_out_channels=(32, 64, 64), layers_per_block=1, sample_size=32, in_channels=4, out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=32, attention_head_dim=8, norm_num_groups=8,
        )  # fmt: skip


def vae(blocks: int, latent_channels: int = 4) -> AutoencoderKL:
    """A small VAE that downsamples 2^(blocks - 1)×."""
    return AutoencoderKL(
        block_out_channels=(16,) * blocks, down_block_types=("DownEncoderBlock2D",) * blocks,
        up_block_types=("UpDecoderBlock2D",) * blocks, latent_channels=latent_channels, layers_per_block=1,
        norm_num_groups=8,
    )  # fmt: skip


@pytest.fixture(scope="module")
def misfits(tmp_path_factory):
    """Each misfitting part, saved, by name: what --model tiny (or tiny-sdxl) is given."""
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    folder = tmp_path_factory.mktemp("misfits")
    sd, sdxl = tiny_parts(), tiny_parts(kind="sdxl")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        # the model's VAE downsamples 8×: an embedding that downsamples 2× gives residuals 4× too large
        ControlNetModel.from_unet(sd.unet, conditioning_embedding_out_channels=(8, 16)).save_pretrained(folder / "cn-2x")
        ControlNetModel.from_unet(three_block_unet(), conditioning_embedding_out_channels=(8, 16, 16, 32)).save_pretrained(
            folder / "cn-3-blocks"
        )
        ControlNetModel.from_unet(sdxl.unet, conditioning_embedding_out_channels=(8, 16, 16, 32)).save_pretrained(
            folder / "cn-sdxl"
        )
        # a ControlNet for an inpainting model: it takes the 9 channels of latents, mask and masked image
        inpainting = UNet2DConditionModel.from_config({**sd.unet.config, "in_channels": 9})
        ControlNetModel.from_unet(inpainting, conditioning_embedding_out_channels=(8, 16, 16, 32)).save_pretrained(
            folder / "cn-9"
        )
        vae(3).save_pretrained(folder / "vae-4x")
        vae(4, latent_channels=16).save_pretrained(folder / "vae-16")
        unet = three_block_unet()
        unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
        StableDiffusionPipeline.save_lora_weights(folder / "lora-3-blocks", unet_lora_layers=get_peft_model_state_dict(unet))
    write_tiny_lora(folder / "lora-sdxl", kind="sdxl")
    save_file({"emb_params": torch.zeros(2, 768)}, str(folder / "sd15-style.safetensors"))
    save_file({"clip_l": torch.zeros(1, 32), "clip_g": torch.zeros(1, 1280)}, str(folder / "xl-style.safetensors"))
    return folder


# (the model, the option, the part's name in the misfits folder, words the line must hold)
CASES = {
    "controlnet-latent-scale": ("tiny", "--controlnet", "cn-2x", ["downsamples 2×", "VAE 8×"]),
    "controlnet-blocks": ("tiny", "--controlnet", "cn-3-blocks", ["32/64/64", "32/64 "]),
    "controlnet-sdxl-on-sd": ("tiny", "--controlnet", "cn-sdxl", ["for SDXL", "model is SD 1.x"]),
    "controlnet-sd-on-sdxl": ("tiny-sdxl", "--controlnet", "cn-2x", ["for SD 1.x/2.x", "model is SDXL"]),
    "controlnet-channels": ("tiny", "--controlnet", "cn-9", ["9 latent channels", "UNet 4"]),
    "vae-latent-scale": ("tiny", "--vae", "vae-4x", ["downsamples 4×", "VAE 8×"]),
    "vae-channels": ("tiny", "--vae", "vae-16", ["16 latent channels", "takes 4"]),
    "lora-layers-absent": ("tiny", "--lora", "lora-3-blocks/pytorch_lora_weights.safetensors",
                           ["layers the model lacks", "down_blocks.2"]),
    "lora-shapes": ("tiny", "--lora", "lora-sdxl/pytorch_lora_weights.safetensors", ["4×64", "model's 4×32"]),
    "embedding-width": ("tiny", "--embedding", "sd15-style.safetensors", ["768 wide", "text encoder takes 32"]),
    "embedding-sdxl-width": ("tiny-sdxl", "--embedding", "xl-style.safetensors",
                             ["1280 wide", "second text encoder takes 32"]),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_a_part_that_does_not_fit_the_model_is_one_line_and_nothing_is_written(case, misfits, clips, tmp_path):
    model, option, name, words = CASES[case]
    out = tmp_path / "out.mp4"
    part = misfits / name
    result = CliRunner().invoke(cli, ["stylize", str(clips["plain"]), str(out), "--model", model, "--prompt", "x",
                                      "--steps", "2", "--max-frames", "2", "--max-side", "64", option, str(part)])  # fmt: skip
    assert result.exit_code == 2, (result.output, result.exception)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.stderr
    line = lines[0]
    # it names the part and the model it was given with, and what differs
    assert line.startswith(f"vidiff: error: {option} {part}") and f"--model {model}" in line, line
    for word in words:
        assert word in line, line
    assert not out.exists() and not (tmp_path / "out.mp4.vidiff").exists()
    assert result.stdout == ""


def test_a_motion_adapter_of_other_widths_is_named(tiny):
    from diffusers import MotionAdapter

    fits = MotionAdapter(block_out_channels=(32, 64), motion_layers_per_block=1, motion_norm_num_groups=8,
                         motion_num_attention_heads=2)  # fmt: skip
    wider = MotionAdapter(block_out_channels=(64, 128), motion_layers_per_block=1, motion_norm_num_groups=8,
                          motion_num_attention_heads=2)  # fmt: skip
    assert motion_adapter_misfit(fits, tiny) is None
    assert "64/128" in motion_adapter_misfit(wider, tiny) and "32/64" in motion_adapter_misfit(wider, tiny)
