"""Write a tiny SD 1.x model as a single-file checkpoint in the original (LDM) layout, as model sites
ship them, so that single-file loading is tested offline on a file the test made itself.

The inverse of diffusers' convert_ldm_* functions, after diffusers' scripts/
convert_diffusers_to_original_stable_diffusion.py, generalised to any number of blocks and layers.
"""

from __future__ import annotations

import re

RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0", "conv2": "out_layers.3",
          "time_emb_proj": "emb_layers.1", "conv_shortcut": "skip_connection"}  # fmt: skip
UNET_TOP = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
            "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2",
            "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2"}  # fmt: skip


def _resnet(rest: str) -> str:
    head, _, tail = rest.partition(".")
    return f"{RESNET[head]}.{tail}"


def unet_key(key: str, config) -> str:
    per_block = config.layers_per_block + 1  # the LDM UNet counts the down/upsampler as a layer
    for diffusers, ldm in UNET_TOP.items():
        if key.startswith(diffusers + "."):
            return ldm + key[len(diffusers) :]
    if match := re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key):
        block, part, layer, rest = int(match[1]), match[2], int(match[3]), match[4]
        index = per_block * block + layer + 1
        return f"input_blocks.{index}.0.{_resnet(rest)}" if part == "resnets" else f"input_blocks.{index}.1.{rest}"
    if match := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key):
        return f"input_blocks.{per_block * (int(match[1]) + 1)}.0.op.{match[2]}"
    if match := re.match(r"mid_block\.resnets\.(\d+)\.(.*)", key):
        return f"middle_block.{2 * int(match[1])}.{_resnet(match[2])}"
    if match := re.match(r"mid_block\.attentions\.0\.(.*)", key):
        return f"middle_block.1.{match[1]}"
    if match := re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key):
        block, part, layer, rest = int(match[1]), match[2], int(match[3]), match[4]
        index = per_block * block + layer
        return f"output_blocks.{index}.0.{_resnet(rest)}" if part == "resnets" else f"output_blocks.{index}.1.{rest}"
    if match := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key):
        block = int(match[1])
        has_attention = "CrossAttn" in config.up_block_types[block]
        return f"output_blocks.{per_block * block + per_block - 1}.{2 if has_attention else 1}.conv.{match[2]}"
    raise KeyError(key)


VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def vae_key(key: str, config) -> str:
    blocks = len(config.up_block_types)
    key = key.replace("conv_norm_out", "norm_out").replace("conv_shortcut", "nin_shortcut")
    if match := re.match(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", key):
        return f"encoder.down.{match[1]}.block.{match[2]}.{match[3]}"
    if match := re.match(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.(.*)", key):
        return f"encoder.down.{match[1]}.downsample.{match[2]}"
    if match := re.match(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", key):
        return f"decoder.up.{blocks - 1 - int(match[1])}.block.{match[2]}.{match[3]}"
    if match := re.match(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.(.*)", key):
        return f"decoder.up.{blocks - 1 - int(match[1])}.upsample.{match[2]}"
    if match := re.match(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.*)", key):
        return f"{match[1]}.mid.block_{int(match[2]) + 1}.{match[3]}"
    if match := re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.*)\.(weight|bias)", key):
        return f"{match[1]}.mid.attn_1.{VAE_ATTENTION[match[2]]}.{match[3]}"
    return key  # conv_in, conv_out, norm_out, quant_conv, post_quant_conv keep their names


def original_layout(parts) -> dict:
    """The tiny SD 1.x parts as one state dict in the original single-file layout."""
    state = {}
    for key, value in parts.unet.state_dict().items():
        state["model.diffusion_model." + unet_key(key, parts.unet.config)] = value.contiguous()
    for key, value in parts.vae.state_dict().items():
        state["first_stage_model." + vae_key(key, parts.vae.config)] = value.contiguous()
    for key, value in parts.text_encoder.state_dict().items():
        # as SD 1.x files have it (transformers 4 named the module text_model)
        state["cond_stage_model.transformer.text_model." + key.removeprefix("text_model.")] = value.contiguous()
    return state
