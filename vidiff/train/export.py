"""The trained LoRA as a file: diffusers' layout (what `save_lora_weights` writes) or Kohya's (what
A1111 and ComfyUI read), written crash-safely."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ..errors import VidiffError
from ..io.atomic import write_atomic

UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]  # the UNet's attention projections, as diffusers' example
TEXT_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]  # CLIP's attention projections


def lora_layers(parts) -> dict[str, dict[str, torch.Tensor]]:
    """The LoRA weights of each trained module, keyed as save_lora_weights names its arguments."""
    from peft.utils import get_peft_model_state_dict

    layers = {"unet_lora_layers": get_peft_model_state_dict(parts.unet)}
    for module, name in ((parts.text_encoder, "text_encoder_lora_layers"), (parts.text_encoder_2, "text_encoder_2_lora_layers")):
        if module is not None and getattr(module, "peft_config", None):
            layers[name] = get_peft_model_state_dict(module)
    return layers


def diffusers_state_dict(parts, layers: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The tensors as the pipeline's save_lora_weights packs them ("unet.…", "text_encoder.…")."""
    pipeline = _pipeline_class(parts)
    prefixes = {"unet_lora_layers": "unet", "text_encoder_lora_layers": "text_encoder",
                "text_encoder_2_lora_layers": "text_encoder_2"}  # fmt: skip
    tensors = {}
    for name, state in layers.items():
        if name != "unet_lora_layers":
            state = {_canonical_clip_name(key): value for key, value in state.items()}
        tensors.update(pipeline.pack_weights(state, prefixes[name]))
    return {key: value.detach().to("cpu", torch.float32).contiguous() for key, value in tensors.items()}


def _canonical_clip_name(key: str) -> str:
    """transformers 5's CLIPTextModel has no `text_model.` level (its CLIPTextModelWithProjection keeps it);
    every LoRA file, A1111 and ComfyUI name CLIP's layers with it, and diffusers reads both."""
    return key if key.startswith("text_model.") else "text_model." + key


def kohya_state_dict(parts, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Kohya's names (lora_unet_…, lora_te_… with an alpha per layer), as diffusers' examples convert them."""
    from diffusers.utils import convert_state_dict_to_kohya

    converted = convert_state_dict_to_kohya(tensors)
    if parts.kind != "sdxl":  # SD 1.x/2.x have one text encoder, which Kohya calls lora_te (SDXL's are te1, te2)
        converted = {key.replace("lora_te1_", "lora_te_", 1): value for key, value in converted.items()}
    return {key: value.contiguous() for key, value in converted.items()}


def save_lora(parts, path: str | os.PathLike, file_format: str) -> None:
    """Write the LoRA trained onto `parts` to `path` in `file_format` ("diffusers" or "kohya"), atomically."""
    from safetensors.torch import save

    tensors = diffusers_state_dict(parts, lora_layers(parts))
    if file_format == "kohya":
        tensors = kohya_state_dict(parts, tensors)
    data = save(tensors, metadata={"format": "pt"})
    write_atomic(Path(path), lambda file: file.write(data))


def _pipeline_class(parts):
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    return StableDiffusionXLPipeline if parts.kind == "sdxl" else StableDiffusionPipeline


def preset_path(name_or_path: str) -> Path:
    """Where --preset writes: a FILE.toml as given, a bare NAME into the user's presets folder."""
    from ..settings.presets import user_preset_dir

    if name_or_path.endswith(".toml") or "/" in name_or_path or os.sep in name_or_path:
        return Path(name_or_path).expanduser()
    return user_preset_dir() / f"{name_or_path}.toml"


def check_preset_path(name_or_path: str, overwrite: bool) -> Path:
    """Before training: the preset can be written afterwards, and won't replace one unasked."""
    path = preset_path(name_or_path)
    if path.suffix != ".toml" or not path.stem:
        raise VidiffError(f"--preset {name_or_path}: give a NAME or a FILE.toml")
    if path.exists() and not overwrite:
        raise VidiffError(f"--preset {name_or_path}: {path} exists; give --overwrite to replace it, or another name")
    folder = next((p for p in path.parents if p.exists()), None)
    if folder is None or not folder.is_dir() or not os.access(folder, os.W_OK):
        raise VidiffError(f"--preset {name_or_path}: can't write in {path.parent}")
    return path


def write_preset(path: Path, description: str, settings: dict) -> None:
    """A stylize preset (TOML; strings as JSON strings, whose escapes TOML shares), checked as presets are read."""
    from ..settings.presets import parse_preset

    lines = [f"description = {json.dumps(description, ensure_ascii=False)}"]
    for key, value in settings.items():
        items = value if isinstance(value, list) else [value]
        text = ", ".join(json.dumps(item, ensure_ascii=False) for item in items)
        lines.append(f"{key} = [{text}]" if isinstance(value, list) else f"{key} = {text}")
    data = ("\n".join(lines) + "\n").encode("utf-8")
    parse_preset(data, path.stem, str(path))  # a preset vidiff can't read back is never written
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda file: file.write(data))
