"""What the tests share besides fixtures: synthetic clips and pictures, tiny adapters, diffusers'
own pipelines as references, and small runs of the processor."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import cv2
import numpy as np
import torch
from diffusers import StableDiffusionImg2ImgPipeline
from PIL import Image

from vidiff.io.ffmpeg import ffmpeg_exe
from vidiff.models.tiny import tiny_parts
from vidiff.pipelines.img2img import Img2ImgProcessor
from vidiff.pipelines.samplers import make_scheduler
from vidiff.settings.config import Config
from vidiff.temporal.flow import backward_flow, warp


def make_clip(
    path: Path,
    size: str = "64x48",
    rate: str = "24",
    seconds: float = 0.5,
    audio: str | None = None,
    pix_fmt: str = "yuv420p",
    source: str = "testsrc2",
) -> Path:
    """A synthetic clip from ffmpeg's test sources; audio: None, 'mono' or 'stereo' (AAC)."""
    width, height = size.split("x")
    # the test sources round odd sizes to even ones: draw larger, then scale to the exact size
    command = [ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", f"{source}=size=320x240:rate={rate}"]
    if audio:
        channels = "1" if audio == "mono" else "2"
        command += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-ac", channels, "-c:a", "aac"]
    command += ["-t", str(seconds), "-vf", f"scale={width}:{height},setsar=1"]
    command += ["-c:v", "libx264", "-pix_fmt", pix_fmt, str(path)]
    subprocess.run(command, check=True)
    return path


def read_frames(path: Path) -> list[np.ndarray]:
    """All frames of a video as RGB arrays (for small test clips only)."""
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    capture.release()
    return frames


def write_static_clip(path: Path, frames: int = 4, size=(64, 48), jitter: float = 0.0, seed: int = 0) -> Path:
    """A clip of one still picture; `jitter` adds fresh sensor-like noise to each frame."""
    from vidiff.io.writer import VideoWriter

    rng = np.random.default_rng(seed)
    width, height = size
    y, x = np.mgrid[0:height, 0:width]
    still = np.stack([x * 255 / width, y * 255 / height, np.full_like(x, 128)], -1).astype(np.float32)
    with VideoWriter(path, size, 24, crf=0) as writer:
        for _ in range(frames):
            frame = still + rng.normal(0, jitter, still.shape) if jitter else still
            writer.write(frame.clip(0, 255).astype(np.uint8))
    return path


def tiny_controlnet(unet, seed: int = 0):
    """A ControlNet made from a tiny UNet (as diffusers' from_unet makes them), its zero-initialised
    output convolutions randomised: a fresh ControlNet adds nothing, and a test must see it act."""
    from diffusers import ControlNetModel

    net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 16, 16, 32))
    generator = torch.Generator().manual_seed(seed)
    zeroed = [*net.controlnet_down_blocks, net.controlnet_mid_block, net.controlnet_cond_embedding.conv_out]
    with torch.no_grad():
        for module in zeroed:
            for parameter in module.parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.05)
    return net.eval().requires_grad_(False)


def write_tiny_lora(folder: Path, kind: str = "sd1", seed: int = 0) -> Path:
    """A random LoRA on the attention projections of the tiny model of `kind`, as diffusers saves one."""
    from diffusers import StableDiffusionPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    unet = tiny_parts(kind=kind).unet
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        # init_lora_weights=False: both LoRA matrices random, so that it changes the output
        unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"],
                                    init_lora_weights=False))  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    StableDiffusionPipeline.save_lora_weights(folder, unet_lora_layers=get_peft_model_state_dict(unet))
    return folder / "pytorch_lora_weights.safetensors"


def reference_pipeline(parts, scheduler: str) -> StableDiffusionImg2ImgPipeline:
    """diffusers' own img2img pipeline on the same parts, as a diffusers user would build it."""
    pipe = StableDiffusionImg2ImgPipeline(
        vae=parts.vae,
        text_encoder=parts.text_encoder,
        tokenizer=parts.tokenizer,
        unet=parts.unet,
        scheduler=make_scheduler(scheduler, parts.scheduler_config),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def reference_frame(pipe, frame: np.ndarray, config: Config, **extra) -> np.ndarray:
    """The frame as `pipe` stylises it with the config's settings; `extra` adds or replaces pipe arguments."""
    arguments = dict(
        prompt=config.prompt,
        negative_prompt=config.negative_prompt,
        image=Image.fromarray(frame),
        strength=config.strength,
        num_inference_steps=config.steps,
        guidance_scale=config.guidance,
        generator=torch.Generator("cpu").manual_seed(config.seed),
    )
    return np.array(pipe(**{**arguments, **extra}).images[0])


def random_frames(count: int = 2, size=(64, 48)) -> list[np.ndarray]:
    rng = np.random.default_rng(5)
    width, height = size
    return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(count)]


def textured(height=240, width=320, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), (7, 7), 0)


def pan(frames: int, dx: int, dy: int = 0, size=(64, 48), seed=0) -> list[np.ndarray]:
    """A textured picture sliding by (dx, dy) pixels per frame: known motion."""
    width, height = size
    big = textured(height + abs(dy) * frames + 16, width + abs(dx) * frames + 16, seed)
    out = []
    for t in range(frames):
        x0, y0 = 8 + (frames - t) * dx if dx > 0 else 8 - t * dx, 8 + (frames - t) * dy if dy > 0 else 8 - t * dy
        out.append(np.ascontiguousarray(big[y0 : y0 + height, x0 : x0 + width]))
    return out


def run_frames(tiny, frames, **settings) -> list:
    config = Config(prompt="a wooden carving", steps=4, strength=0.5, seed=3).replace(**settings)
    results, state = [], None
    with Img2ImgProcessor(tiny, config) as stylizer:
        for index, frame in enumerate(frames):
            result = stylizer(frame, index, state)
            state = result.state
            results.append(result)
    return results


def warp_error(sources, outputs) -> float:
    errors = []
    for t in range(1, len(sources)):
        flow, trusted = backward_flow(sources[t - 1], sources[t])
        errors.append(np.abs(warp(outputs[t - 1], flow).astype(float) - outputs[t])[trusted].mean())
    return float(np.mean(errors))


def ffmpeg(*args) -> None:
    subprocess.run([ffmpeg_exe(), "-v", "error", "-nostdin", "-y", *map(str, args)], check=True)


def clip_args(size: str = "64x48", rate: str = "24", frames: int = 2) -> list[str]:
    """ffmpeg arguments for `frames` frames of testsrc2 at exactly `size`: the input, then output
    options, so nothing but output options and OUTPUT may follow them."""
    width, height = size.split("x")
    # testsrc2 rounds odd sizes to even ones: draw larger, then scale to the exact size
    return ["-f", "lavfi", "-i", f"testsrc2=size=320x240:rate={rate}", "-frames:v", str(frames),
            "-vf", f"scale={width}:{height},setsar=1"]  # fmt: skip


def damage_frames(source: Path, target: Path, frames: set[int]) -> None:
    """Copy an intra-only H.264 MP4 (video only), making the given frames undecodable.

    Each frame is one IDR NAL unit in the mdat box; its length field is set to more than the
    sample holds, so the decoder rejects that frame's packet while the container's index still
    finds every later frame.
    """
    data = bytearray(source.read_bytes())
    position = 0
    while True:
        size, kind = struct.unpack(">I4s", data[position : position + 8])
        if kind == b"mdat":
            break
        position += size
    end, position, idr = position + size, position + 8, -1
    while position < end:
        (length,) = struct.unpack(">I", data[position : position + 4])
        if data[position + 4] & 0x1F == 5:  # an IDR slice: one per frame
            idr += 1
            if idr in frames:
                data[position : position + 4] = struct.pack(">I", 0x7FFFFFFF)
        position += 4 + length
    assert idr >= max(frames)
    target.write_bytes(data)


def damaged_clip(folder: Path, frames: int, damaged: set[int]) -> tuple[Path, Path]:
    """An intra-only H.264 clip of `frames` testsrc2 frames (clean.mp4) and a copy whose `damaged`
    frames can't be decoded (bad.mp4)."""
    clean, bad = folder / "clean.mp4", folder / "bad.mp4"
    ffmpeg(*clip_args(frames=frames), "-c:v", "libx264", "-preset", "ultrafast", "-x264-params", "keyint=1",
           "-pix_fmt", "yuv420p", clean)  # fmt: skip
    damage_frames(clean, bad, damaged)
    return clean, bad


def write_images(folder: Path, names: list[str], size=(64, 48), seed: int = 0) -> list[np.ndarray]:
    """Random RGB pictures saved under `names` in `folder`; returns them in the order given."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pictures = []
    for name in names:
        picture = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        assert cv2.imwrite(str(folder / name), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
        pictures.append(picture)
    return pictures


def cut_clip(path: Path, before: int, after: int, *options: str) -> Path:
    """`before` frames of testsrc2, then `after` of smptebars: a hard cut at frame `before` (H.264)."""
    graph = (f"[0:v]trim=end_frame={before},scale=64:48,setsar=1[a];"
             f"[1:v]trim=end_frame={after},scale=64:48,setsar=1[b];[a][b]concat=n=2:v=1[v]")  # fmt: skip
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=24", "-f", "lavfi", "-i", "smptebars=size=320x240:rate=24",
           "-filter_complex", graph, "-map", "[v]", "-c:v", "libx264", "-pix_fmt", "yuv420p", *options, path)  # fmt: skip
    return path


def stream_codecs(path: Path) -> tuple[str | None, str | None]:
    """The video and the audio codec of a file as the ffmpeg binary names them ('prores', 'opus'); None where absent."""
    import re

    said = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)], capture_output=True, text=True,
                          errors="replace").stderr  # fmt: skip
    video = re.search(r"Stream #\d+:\d+.*?: Video: (\w+)", said)
    audio = re.search(r"Stream #\d+:\d+.*?: Audio: (\w+)", said)
    return (video and video.group(1)), (audio and audio.group(1))


def write_flat_pictures(folder: Path, sizes, colour=(220, 60, 40)) -> Path:
    """Pictures of one flat RGB colour, one per (width, height), named p0.png, p1.png, ... (training sets)."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, (width, height) in enumerate(sizes):
        picture = np.empty((height, width, 3), np.uint8)
        picture[:] = colour
        assert cv2.imwrite(str(folder / f"p{index}.png"), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    return folder
