"""Write a tiny SD 1.x, 2.x or XL model as a single-file checkpoint in the original (LDM / SGM) layout,
as model sites ship them, so that single-file loading is tested offline on a file the test made itself.

The inverse of diffusers' single-file loader (loaders/single_file_utils.py: convert_ldm_unet_checkpoint,
convert_ldm_vae_checkpoint, convert_ldm_clip_checkpoint, convert_open_clip_checkpoint), after diffusers'
scripts/convert_diffusers_to_original_stable_diffusion.py and convert_diffusers_to_original_sdxl.py,
generalised to any number of blocks and layers. The layout of each kind:

    SD 1.x  model.diffusion_model.*  first_stage_model.*  cond_stage_model.transformer.text_model.* (CLIP, HF names)
    SD 2.x  model.diffusion_model.*  first_stage_model.*  cond_stage_model.model.* (OpenCLIP names)
    SDXL    model.diffusion_model.*  first_stage_model.*  conditioner.embedders.0.transformer.text_model.* (CLIP-L,
            HF names) and conditioner.embedders.1.model.* (OpenCLIP bigG names, with text_projection)
"""

from __future__ import annotations

import math
import re

import torch

RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0", "conv2": "out_layers.3",
          "time_emb_proj": "emb_layers.1", "conv_shortcut": "skip_connection"}  # fmt: skip
UNET_TOP = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
            "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2",
            "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2"}  # fmt: skip


def _resnet(rest: str) -> str:
    head, _, tail = rest.partition(".")
    return f"{RESNET[head]}.{tail}"


def unet_key(key: str, config) -> str:
    """The LDM name of a diffusers UNet tensor (any kind: SD 2.x's linear projections and SDXL's several
    transformer layers per block keep their names inside a block; SDXL's add_embedding is label_emb)."""
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


def vae_tensor(ldm_key: str, value: torch.Tensor) -> torch.Tensor:
    """The VAE's mid-block attention is 1×1 convolutions in the original layout (diffusers' Linear + 1×1)."""
    if re.search(r"\.mid\.attn_1\.(q|k|v|proj_out)\.weight$", ldm_key) and value.ndim == 2:
        return value.reshape(*value.shape, 1, 1)
    return value


def clip_layout(encoder, prefix: str) -> dict:
    """An OpenAI CLIP text encoder in transformers' names under `prefix` (SD 1.x, SDXL's first encoder);
    the names as transformers 4 had them (text_model.*), whichever transformers built `encoder`."""
    return {prefix + "text_model." + key.removeprefix("text_model."): value
            for key, value in encoder.state_dict().items()}  # fmt: skip


OPEN_CLIP_TOP = {"embeddings.token_embedding.weight": "token_embedding.weight",
                 "embeddings.position_embedding.weight": "positional_embedding",
                 "final_layer_norm.weight": "ln_final.weight", "final_layer_norm.bias": "ln_final.bias"}  # fmt: skip
OPEN_CLIP_LAYER = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj",
                   "self_attn.out_proj": "attn.out_proj"}  # fmt: skip


def open_clip_layout(encoder, prefix: str) -> dict:
    """A text encoder in OpenCLIP's names under `prefix` (SD 2.x's ViT-H, SDXL's bigG): q, k and v in one
    in_proj, and text_projection as a (width, embed) matrix that the text is multiplied by (x @ P)."""
    state = {key.removeprefix("text_model."): value for key, value in encoder.state_dict().items()}
    out, qkv = {}, {}
    for key, value in state.items():
        if key in OPEN_CLIP_TOP:
            out[OPEN_CLIP_TOP[key]] = value
        elif key == "text_projection.weight":
            out["text_projection"] = value.T
        elif match := re.match(r"encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)", key):
            qkv.setdefault((match[1], match[3]), {})[match[2]] = value
        elif match := re.match(r"encoder\.layers\.(\d+)\.(.*)\.(weight|bias)", key):
            out[f"transformer.resblocks.{match[1]}.{OPEN_CLIP_LAYER[match[2]]}.{match[3]}"] = value
        else:
            raise KeyError(key)
    for (layer, kind), parts in qkv.items():
        out[f"transformer.resblocks.{layer}.attn.in_proj_{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]])
    if "text_projection" not in out:
        # SD 2.x files carry OpenCLIP's projection too, though SD uses the hidden states only (diffusers skips it)
        width = out["positional_embedding"].shape[-1]
        out["text_projection"] = torch.eye(width)
    out["logit_scale"] = torch.tensor(math.log(1 / 0.07))  # OpenCLIP's, in every such file; no use to SD
    return {prefix + key: value for key, value in out.items()}


def original_layout(parts) -> dict:
    """The tiny parts (of parts.kind: "sd1", "sd2" or "sdxl") as one state dict in the original layout."""
    state = {}
    for key, value in parts.unet.state_dict().items():
        state["model.diffusion_model." + unet_key(key, parts.unet.config)] = value
    for key, value in parts.vae.state_dict().items():
        ldm_key = vae_key(key, parts.vae.config)
        state["first_stage_model." + ldm_key] = vae_tensor(ldm_key, value)
    if parts.kind == "sd1":
        state.update(clip_layout(parts.text_encoder, "cond_stage_model.transformer."))
    elif parts.kind == "sd2":
        state.update(open_clip_layout(parts.text_encoder, "cond_stage_model.model."))
    elif parts.kind == "sdxl":
        state.update(clip_layout(parts.text_encoder, "conditioner.embedders.0.transformer."))
        state.update(open_clip_layout(parts.text_encoder_2, "conditioner.embedders.1.model."))
    else:
        raise ValueError(parts.kind)
    return {key: value.contiguous() for key, value in state.items()}
