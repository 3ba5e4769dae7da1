"""Load the model parts (from a hub id, a local folder, a single file, or the tiny offline model),
and pick the device and dtype. The only place that knows about devices."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .errors import VidiffError

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
SINGLE_FILE_SUFFIXES = (".safetensors",) + PICKLE_SUFFIXES
TINY = "tiny"


# Model kinds: which conditioning the UNet takes, and how the text is encoded for it.
KIND_NAMES = {"sd1": "SD 1.x", "sd2": "SD 2.x", "sdxl": "SDXL"}
# The diffusers folder whose configs a single file of each kind is loaded with, when none is given
# (diffusers' own defaults): used from the hub cache, so one online run makes it work offline.
DEFAULT_CONFIGS = {
    "sd1": "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "sd2": "stabilityai/stable-diffusion-2-1",
    "sdxl": "stabilityai/stable-diffusion-xl-base-1.0",
}
SD_PIPELINES = ("StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline")
SDXL_PIPELINES = ("StableDiffusionXLPipeline", "StableDiffusionXLImg2ImgPipeline")
# --model names of the small random models built offline, and their kinds
TINY_MODELS = {TINY: "sd1", "tiny-sdxl": "sdxl"}


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
    kind: str = "sd1"  # "sd1", "sd2" or "sdxl" (see KIND_NAMES)
    text_encoder_2: Any = None  # SDXL's second text encoder (with projection: it gives the pooled embedding)
    tokenizer_2: Any = None
    # SDXL: an empty negative prompt is all zeros rather than the encoding of "" (the model's own config)
    force_zeros_for_empty_prompt: bool = False
    controlnets: list = field(default_factory=list)  # ControlNetModels, in the order of `controlnet`
    # what was loaded onto the parts, as the settings spelled it: a run checks its config against them
    lora: tuple[str, ...] = ()
    embedding: tuple[str, ...] = ()
    controlnet: tuple[str, ...] = ()
    vae_source: str = "full"  # --vae: "full" (the model's own), "tiny", or where another VAE came from


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


def load_parts(
    model: str,
    device: str = "auto",
    dtype: str = "auto",
    allow_pickle: bool = False,
    *,
    model_config: str | None = None,
    lora: tuple[str, ...] | list[str] = (),
    embedding: tuple[str, ...] | list[str] = (),
    controlnet: tuple[str, ...] | list[str] = (),
    vae: str = "full",
) -> ModelParts:
    """Build the model parts for `model` ('tiny', 'tiny-sdxl', a local folder, a single checkpoint file,
    or a hub id), with LoRAs fused in, embeddings added and ControlNets loaded (each "PATH_OR_ID[:SCALE]")."""
    from .adapters import add_embeddings, fuse_loras, load_controlnets, load_vae

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
    fuse_loras(parts, lora, allow_pickle)
    add_embeddings(parts, embedding, allow_pickle)
    parts.controlnets = load_controlnets(parts, controlnet, torch_dtype, allow_pickle)
    parts.controlnet = controlnet
    load_vae(parts, vae, torch_dtype, allow_pickle)
    parts.vae_source = vae
    return _placed(parts, torch_device, torch_dtype)


def _specs(value) -> tuple[str, ...]:
    """One spec or several: a lone string is one, not a sequence of characters."""
    return (value,) if isinstance(value, str) else tuple(value)


def _placed(parts: ModelParts, device: torch.device, dtype: torch.dtype) -> ModelParts:
    modules = [parts.vae, parts.text_encoder, parts.text_encoder_2, parts.unet, *parts.controlnets]
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


def _looks_like_path(model: str) -> bool:
    """A hub id is 'owner/name'; anything else that names a file, or exists, is a local path."""
    return (
        os.path.exists(os.path.expanduser(model))
        or model.startswith((".", "/", "~"))
        or model.lower().endswith(SINGLE_FILE_SUFFIXES)
        or model.count("/") > 1
        or os.sep != "/" and os.sep in model
    )


def refuse_pickle(path: Path, what: str, allow_pickle: bool) -> None:
    """Pickle files run code when loaded: only with --allow-pickle."""
    if path.suffix.lower() in PICKLE_SUFFIXES and not allow_pickle:
        raise VidiffError(
            f"{what} {path} is a pickle file: loading it runs code from the file. "
            "Use a .safetensors file, or pass --allow-pickle if you trust its source"
        )


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
