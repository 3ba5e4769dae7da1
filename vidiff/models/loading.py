"""Load the model parts: from a hub id, a local folder, a single file, or the tiny offline model;
kinds (SD 1.x, 2.x, SDXL) told apart by their configs or tensor names."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..errors import VidiffError
from ..settings.config import Config
from ..settings.keyframes import split_weighted
from .adapters import add_embeddings, fuse_loras, load_controlnets, load_vae
from .device import _placed, resolve_device, resolve_dtype
from .ip_adapter import load_ip_adapter
from .motion import add_motion_adapter
from .parts import KIND_NAMES, SINGLE_FILE_SUFFIXES, ModelParts, _first_line, _looks_like_path, refuse_pickle
from .tiny import TINY_MODELS, tiny_parts


# The diffusers folder whose configs a single file of each kind is loaded with, when none is given
# (diffusers' own defaults): used from the hub cache, so one online run makes it work offline.
DEFAULT_CONFIGS = {
    "sd1": "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "sd2": "stabilityai/stable-diffusion-2-1",
    "sdxl": "stabilityai/stable-diffusion-xl-base-1.0",
}


SD_PIPELINES = ("StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline")


SDXL_PIPELINES = ("StableDiffusionXLPipeline", "StableDiffusionXLImg2ImgPipeline")


def load_parts(
    model: "str | Config",
    device: str = "auto",
    dtype: str = "auto",
    allow_pickle: bool = False,
    *,
    model_config: str | None = None,
    lora: tuple[str, ...] | list[str] = (),
    embedding: tuple[str, ...] | list[str] = (),
    controlnet: tuple[str, ...] | list[str] = (),
    vae: str = "full",
    motion_adapter: str | None = None,
    ip_adapter: str | None = None,
) -> ModelParts:
    """Build the model parts for `model` ('tiny', 'tiny-sdxl', a local folder, a single checkpoint file,
    or a hub id), with LoRAs fused in, embeddings added and ControlNets loaded (each "PATH_OR_ID[:SCALE]"); with `motion_adapter` the UNet is a motion UNet; `ip_adapter` loads an IP-Adapter for style images.

    `model` may also be a Config: the parts it names (model, device, dtype, LoRAs, embeddings,
    ControlNets, VAE) are built, and the other arguments are not used. Runs given the parts leave
    them as they found them (cross-frame attention puts the UNet's processors back), except that a
    half-precision VAE that overflows is upcast to fp32 for good, as diffusers' upcast_vae does.
    """
    if isinstance(model, Config):
        config = model
        return load_parts(
            config.model, config.device, config.dtype, config.allow_pickle, model_config=config.model_config,
            lora=config.lora, embedding=config.embedding, controlnet=config.controlnet, vae=config.vae,
            motion_adapter=config.motion_adapter, ip_adapter=config.ip_adapter if config.style_image else None,
        )  # fmt: skip
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    if model in TINY_MODELS:
        if model_config is not None:
            raise VidiffError(f"--model-config is for a single-file --model; {model} is built in")
        parts = tiny_parts(kind=TINY_MODELS[model])
        parts.name = model
    else:
        parts = _load_pretrained(model, torch_dtype, allow_pickle, model_config)
    lora, embedding, controlnet = (_specs(v) for v in (lora, embedding, controlnet))
    # before the LoRAs, so that a motion LoRA finds the motion modules it adds to
    add_motion_adapter(parts, motion_adapter, torch_dtype, allow_pickle)
    fuse_loras(parts, lora, allow_pickle)
    add_embeddings(parts, embedding, allow_pickle)
    parts.controlnets = load_controlnets(parts, controlnet, torch_dtype, allow_pickle)
    parts.controlnet = controlnet
    load_vae(parts, vae, torch_dtype, allow_pickle)
    load_ip_adapter(parts, ip_adapter, allow_pickle)
    parts.vae_source = vae
    return _placed(parts, torch_device, torch_dtype)


def parts_key(config: Config) -> tuple:
    """What load_parts(config) builds the parts from: configs with equal keys can share one set of parts
    (ControlNet scales are applied per frame, so only their paths count; LoRA scales are fused in)."""
    return (config.model, config.device, config.dtype, config.allow_pickle, config.model_config, tuple(config.lora),
            tuple(config.embedding), tuple(split_weighted(spec)[0] for spec in config.controlnet), config.vae,
            config.motion_adapter, config.ip_adapter if config.style_image else None)  # fmt: skip


def check_parts(parts: ModelParts, config: Config) -> None:
    """Parts loaded once for several videos must hold what the config names (LoRA scales are fused in)."""
    loaded = {"lora": tuple(parts.lora), "embedding": tuple(parts.embedding),
              "controlnet": tuple(split_weighted(spec)[0] for spec in parts.controlnet), "vae": parts.vae_source,
              "motion_adapter": parts.motion_adapter, "ip_adapter": parts.ip_adapter}  # fmt: skip
    wanted = {"lora": config.lora, "embedding": config.embedding,
              "controlnet": tuple(split_weighted(spec)[0] for spec in config.controlnet), "vae": config.vae,
              "motion_adapter": config.motion_adapter,
              "ip_adapter": config.ip_adapter if config.style_image else None}  # fmt: skip
    for name in loaded:
        if loaded[name] != wanted[name]:
            raise VidiffError(
                f"the model parts were loaded with {name} {loaded[name]} but the settings name {wanted[name]}; "
                f"load them with load_parts(..., {name}=config.{name})"
            )


def _specs(value) -> tuple[str, ...]:
    """One spec or several: a lone string is one, not a sequence of characters."""
    return (value,) if isinstance(value, str) else tuple(value)


def _load_pretrained(model: str, dtype: torch.dtype, allow_pickle: bool, model_config: str | None) -> ModelParts:
    path = Path(model).expanduser()
    if _looks_like_path(model) and not path.exists():
        raise VidiffError(
            f"model not found: {model} is not a file or folder; give a diffusers folder, a .safetensors file, "
            "a hub id, or --model tiny to check the install"
        )
    if path.is_file():
        return _load_single_file(path, model, dtype, allow_pickle, model_config)
    if model_config is not None:
        raise VidiffError(f"--model-config is for single-file models; {model} is a diffusers folder or hub id")
    if path.is_dir() and not (path / "model_index.json").is_file():
        raise VidiffError(f"model folder {model} has no model_index.json: it is not a diffusers model folder")
    from diffusers import DiffusionPipeline

    source = str(path) if path.is_dir() else model
    try:
        pipeline_class = _pipeline_class(DiffusionPipeline.load_config(source), f"model {model}")
        pipe = pipeline_class.from_pretrained(source, torch_dtype=dtype, **_pipeline_kwargs(pipeline_class))
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
    return _parts_of(pipe, model)


def _pipeline_class(model_index: dict, what: str):
    """The diffusers pipeline class for a model_index.json: SD 1.x/2.x or SDXL; any other kind is an error."""
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    name = model_index.get("_class_name")
    if name in SDXL_PIPELINES:
        if (model_index.get("text_encoder") or [None])[0] is None:
            raise VidiffError(f"{what} is an SDXL refiner (it has no first text encoder); give an SDXL base model")
        return StableDiffusionXLPipeline
    if name in SD_PIPELINES:
        return StableDiffusionPipeline
    raise VidiffError(f"{what} is a {name or 'model of unknown kind'}; vidiff runs Stable Diffusion 1.x, 2.x and XL")


def _pipeline_kwargs(pipeline_class) -> dict:
    if pipeline_class.__name__ == "StableDiffusionPipeline":
        return {"safety_checker": None, "requires_safety_checker": False}
    return {}


def _parts_of(pipe, name: str) -> ModelParts:
    unet = pipe.unet
    if unet.config.in_channels != 4:
        raise VidiffError(
            f"model {name} takes {unet.config.in_channels} input channels (an inpainting or other special model); "
            "vidiff needs a text-to-image model with 4"
        )
    sdxl = hasattr(pipe, "text_encoder_2")
    kind = "sdxl" if sdxl else "sd2" if unet.config.cross_attention_dim == 1024 else "sd1"
    return ModelParts(
        vae=pipe.vae,
        text_encoder=pipe.text_encoder,
        tokenizer=pipe.tokenizer,
        unet=unet,
        scheduler_config=pipe.scheduler.config,
        device=torch.device("cpu"),
        dtype=unet.dtype,
        name=name,
        kind=kind,
        text_encoder_2=pipe.text_encoder_2 if sdxl else None,
        tokenizer_2=pipe.tokenizer_2 if sdxl else None,
        force_zeros_for_empty_prompt=bool(sdxl and pipe.config.get("force_zeros_for_empty_prompt", True)),
    )


def _load_single_file(
    path: Path, model: str, dtype: torch.dtype, allow_pickle: bool, model_config: str | None
) -> ModelParts:
    if path.suffix.lower() not in SINGLE_FILE_SUFFIXES:
        raise VidiffError(
            f"model file {model}: unknown kind {path.suffix.lower()!r}; give a .safetensors checkpoint or a diffusers folder"
        )
    refuse_pickle(path, "model file", allow_pickle)
    kind = checkpoint_kind(checkpoint_shapes(path, f"model file {model}"), f"model file {model}")
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    pipeline_class = StableDiffusionXLPipeline if kind == "sdxl" else StableDiffusionPipeline
    config = None
    if model_config is not None:
        folder = Path(model_config).expanduser()
        if not (folder / "model_index.json").is_file():
            raise VidiffError(
                f"--model-config {model_config}: not a diffusers model folder (it has no model_index.json)"
            )
        from diffusers import DiffusionPipeline

        config_class = _pipeline_class(DiffusionPipeline.load_config(str(folder)), f"--model-config {model_config}")
        if config_class is not pipeline_class:
            config_kind = "SDXL" if config_class is StableDiffusionXLPipeline else "SD 1.x/2.x"
            raise VidiffError(
                f"model file {model} is an {KIND_NAMES[kind]} checkpoint but --model-config {model_config} is an "
                f"{config_kind} model; give a config folder of the same kind"
            )
        config = str(folder)
    try:
        pipe = pipeline_class.from_single_file(
            str(path), config=config, torch_dtype=dtype, **_pipeline_kwargs(pipeline_class)
        )
    except VidiffError:
        raise
    except Exception as err:  # diffusers raises many kinds here; each becomes one line naming the file
        if config is None:
            raise VidiffError(
                f"model file {model} is an {KIND_NAMES[kind]} checkpoint whose config is not available offline "
                f"({_first_line(err)}); give --model-config DIR, a diffusers folder of an {KIND_NAMES[kind]} model "
                f"(such as {DEFAULT_CONFIGS[kind]}), or run once online so that the hub cache holds its config"
            ) from None
        raise VidiffError(f"could not load model file {model} with --model-config {model_config}: {_first_line(err)}") from None
    _refuse_missing_tensors(pipe, model)
    return _parts_of(pipe, model)


def _refuse_missing_tensors(pipe, model: str) -> None:
    """diffusers leaves a text encoder's tensors that the file lacks unloaded (on the meta device) and
    returns; moving it to the device would then fail with a traceback. Say which part is incomplete."""
    for name in ("text_encoder", "text_encoder_2", "unet", "vae"):
        module = getattr(pipe, name, None)
        if module is None:
            continue
        missing = [key for key, tensor in module.state_dict().items() if tensor.is_meta]
        if missing:
            raise VidiffError(
                f"model file {model} lacks {len(missing)} tensor(s) of its {name} (such as {missing[0]}): "
                "the file is incomplete, or that part is not the kind its config describes"
            )


def checkpoint_shapes(path: Path, what: str) -> dict[str, tuple[int, ...]]:
    """Every tensor's name and shape in a checkpoint; a .safetensors file is read from its header only."""
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), "pt") as handle:
                return {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
        from diffusers.loaders.single_file_utils import load_single_file_checkpoint

        return {key: tuple(getattr(value, "shape", ())) for key, value in load_single_file_checkpoint(str(path)).items()}
    except Exception as err:  # a damaged or foreign file: safetensors and torch each raise their own kinds
        raise VidiffError(f"{what} could not be read as a checkpoint: {_first_line(err)}") from None


def checkpoint_kind(shapes: dict[str, tuple[int, ...]], what: str) -> str:
    """'sd1', 'sd2' or 'sdxl' from a single-file (original layout) checkpoint's tensor names."""
    unet = "model.diffusion_model."
    if not any(key.startswith(unet) for key in shapes):
        raise VidiffError(f"{what} is not a Stable Diffusion checkpoint{_looks_like(shapes)}")
    channels = shapes.get(unet + "input_blocks.0.0.weight", (0, 4))[1]
    if channels != 4:
        raise VidiffError(
            f"{what} takes {channels} input channels (an inpainting or other special model); "
            "vidiff needs a text-to-image model with 4"
        )
    if any(key.startswith("conditioner.embedders.1.") for key in shapes):
        return "sdxl"
    if any(key.startswith("conditioner.embedders.0.model.") for key in shapes):
        raise VidiffError(f"{what} is an SDXL refiner (it has no first text encoder); give an SDXL base model")
    if any(key.startswith("cond_stage_model.model.") for key in shapes):
        return "sd2"
    if any(key.startswith("cond_stage_model.transformer.") for key in shapes):
        return "sd1"
    raise VidiffError(f"{what} has a UNet but no text encoder this version knows (SD 1.x, 2.x or SDXL)")


def _looks_like(shapes: dict) -> str:
    keys = list(shapes)
    if any("lora" in key for key in keys):
        return " (it looks like a LoRA: give it with --lora)"
    if any(key.startswith(("control_model.", "controlnet_cond_embedding.")) for key in keys):
        return " (it looks like a ControlNet: give it with --controlnet)"
    if any(key in ("emb_params", "clip_l", "clip_g", "string_to_param") for key in keys) or len(keys) == 1:
        return " (it looks like an embedding: give it with --embedding)"
    if any(key.startswith(("down_blocks.", "encoder.down_blocks.")) for key in keys):
        return " (it is one part in diffusers' layout: give the whole diffusers folder)"
    if any(key.startswith(("encoder.down.", "first_stage_model.")) for key in keys):
        return " (it looks like a VAE alone)"
    return ""
