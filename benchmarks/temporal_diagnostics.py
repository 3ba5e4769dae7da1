"""Why the temporal benchmark's numbers come out as they do: one-off checks on the tiny model.

    python benchmarks/temporal_diagnostics.py

Prints its findings; writes nothing. Some checks swap a vidiff function for a variant to show what a
change would do (a looser latent trust, rounding in match_colors); they patch this process only.
Same clips and settings as benchmarks/temporal.py (10 frames at 256x192), but the frames stay in memory
(no H.264 round trip), so its warp errors differ a little from the tables in RESULTS.md.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import vidiff.stylizer as stylizer_module  # noqa: E402
from clips import clip_frames, pan_frames  # noqa: E402
from temporal import BASE, MODES, OFF, make_config  # noqa: E402
from vidiff.attention import CrossFrameAttnProcessor  # noqa: E402
from vidiff.models import tiny_parts  # noqa: E402
from vidiff.motion import backward_flow, downscale_flow  # noqa: E402
from vidiff.schedulers import make_scheduler  # noqa: E402
from vidiff.score import pair_errors  # noqa: E402
from vidiff.stylizer import Stylizer  # noqa: E402

SIZE, FRAMES = (256, 192), 10


def stylise(parts, frames, **settings) -> tuple[list[np.ndarray], list[torch.Tensor]]:
    """The stylised frames and each frame's starting noise."""
    images, noises, state = [], [], None
    with Stylizer(parts, make_config(settings, SIZE, parts.name)) as stylizer:
        for index, frame in enumerate(frames):
            result = stylizer(frame, index, state)
            state = result.state
            images.append(result.image)
            noises.append(state.noise)
    return images, noises


def warp_error(sources, images, masks=None) -> float:
    errors = []
    for t in range(1, len(sources)):
        flow, trusted = backward_flow(sources[t - 1], sources[t])
        if masks is not None:
            trusted = trusted & masks[t]
        errors.append(pair_errors(images[t - 1], images[t], flow, trusted).warp_error)
    return float(np.mean(errors))


def flickers(sources, images) -> list[float]:
    out = []
    for t in range(1, len(sources)):
        flow, trusted = backward_flow(sources[t - 1], sources[t])
        out.append(pair_errors(images[t - 1], images[t], flow, trusted).flicker)
    return out


def signal_to_noise(parts) -> None:
    picture = torch.from_numpy(pan_frames(SIZE, 1)[0]).float().div(255).permute(2, 0, 1)[None] * 2 - 1
    with torch.no_grad():
        latents = parts.vae.encode(picture).latent_dist.mean
    scale = parts.vae.config.scaling_factor
    print(f"1. tiny VAE latents: std {latents.std():.3f}; × scaling_factor {scale} = {latents.std() * scale:.3f} "
          "(SD's own VAE: about 1, which is what its scaling factor is chosen for)")  # fmt: skip
    for strength in (0.3, 0.55, 0.7):
        scheduler = make_scheduler(BASE["scheduler"], parts.scheduler_config)
        scheduler.set_timesteps(BASE["steps"])
        start = BASE["steps"] - int(BASE["steps"] * strength)
        sigma = float(scheduler.sigmas[start])
        print(f"   strength {strength}: first sigma {sigma:.3f}; source signal ÷ noise {latents.std() * scale / sigma:.3f}")


def rescaled_vae(parts) -> None:
    """Would SD-like latent statistics make the tiny model keep its source? Only in part."""
    picture, other = pan_frames(SIZE, 1)[0], clip_frames("cut", SIZE, 2)[1]
    rescaled = tiny_parts()
    tensor = torch.from_numpy(picture).float().div(255).permute(2, 0, 1)[None] * 2 - 1
    with torch.no_grad():
        std = float(rescaled.vae.encode(tensor).latent_dist.mean.std())
    rescaled.vae.register_to_config(scaling_factor=1 / std)
    for name, model in (("as built", parts), (f"scaling_factor 1/std = {1 / std:.2f}", rescaled)):
        out_a = stylise(model, [picture])[0][0].astype(np.float32)
        out_b = stylise(model, [other])[0][0].astype(np.float32)
        out_a2 = stylise(model, [picture], seed=BASE["seed"] + 1)[0][0].astype(np.float32)
        print(f"2. tiny VAE {name}: |out(A) − out(B)| same seed {np.abs(out_a - out_b).mean():.2f}; "
              f"|out(A) − out(A')| seed + 1 {np.abs(out_a - out_a2).mean():.2f}; |A − B| "
              f"{np.abs(picture.astype(np.float32) - other).mean():.2f}")  # fmt: skip


def cross_frame_attention(parts) -> None:
    pan = clip_frames("pan", SIZE, 6)
    for noise in ("per-frame", "fixed"):
        plain = stylise(parts, pan, noise=noise)[0]
        crossed = stylise(parts, pan, noise=noise, cross_frame_attn=True)[0]
        change = np.mean([np.abs(a.astype(np.float32) - b).mean() for a, b in zip(plain, crossed)])
        print(f"3. cross-frame attention, {noise} noise: changes the output by {change:.2f} levels of 255 on average")
    # how peaked the up blocks' self-attention is: near-uniform weights make extra keys change little
    hidden = {}

    def grab(self, attn, hidden_states, *args, **kwargs):
        hidden.setdefault("states", (attn, hidden_states))
        return original(self, attn, hidden_states, *args, **kwargs)

    original = CrossFrameAttnProcessor.__call__
    CrossFrameAttnProcessor.__call__ = grab
    try:
        stylise(parts, pan[:1], cross_frame_attn=True)
    finally:
        CrossFrameAttnProcessor.__call__ = original
    attn, states = hidden["states"]
    with torch.no_grad():
        query, key = attn.to_q(states), attn.to_k(states)
        heads, dim = attn.heads, query.shape[-1] // attn.heads
        query = query.view(query.shape[0], -1, heads, dim).transpose(1, 2)
        key = key.view(key.shape[0], -1, heads, dim).transpose(1, 2)
        logits = query @ key.transpose(-1, -2) / dim**0.5
    print(f"   up-block self-attention logits: std {logits.std():.3f}, largest {logits.abs().max():.2f} "
          "(near-uniform softmax over the tokens)")  # fmt: skip


def warped_noise_motion(parts) -> None:
    for clip in ("zoom", "pan", "object"):
        frames = clip_frames(clip, SIZE, FRAMES)
        noises = stylise(parts, frames, noise="warped")[1]
        moved, kept, fresh, speed = [], [], [], []
        for t in range(1, FRAMES):
            flow, trusted = backward_flow(frames[t - 1], frames[t])
            small, small_trusted = downscale_flow(flow, trusted, (noises[t].shape[-1], noises[t].shape[-2]))
            moved.append((np.abs(np.round(small)).max(-1) > 0).mean())
            kept.append(float((noises[t] == noises[t - 1]).all(1)[0].float().mean()))
            fresh.append(1 - small_trusted.mean())
            speed.append(np.abs(small).mean(axis=(0, 1)))
        dx, dy = np.mean(speed, axis=0)
        print(f"4. warped noise on {clip}: mean |flow| ({dx:.2f}, {dy:.2f}) latent px/frame; cells whose rounded "
              f"flow moves their noise {np.mean(moved):.0%}; noise unchanged in place {np.mean(kept):.0%}; "
              f"cells untrusted (fresh noise each frame) {np.mean(fresh):.0%}; pixels trusted "
              f"{np.mean([backward_flow(frames[t - 1], frames[t])[1].mean() for t in range(1, FRAMES)]):.0%}")  # fmt: skip


def object_regions_and_trust(parts) -> None:
    frames = clip_frames("object", SIZE, FRAMES)
    near = [np.zeros(frames[0].shape[:2], bool)] + [
        cv2.dilate((np.abs(frames[t].astype(int) - frames[t - 1]).sum(-1) > 0).astype(np.uint8), np.ones((33, 33), np.uint8)) > 0
        for t in range(1, FRAMES)
    ]  # fmt: skip
    far = [~mask for mask in near]
    for noise in ("fixed", "warped"):
        images = stylise(parts, frames, noise=noise)[0]
        print(f"5. object, {noise} noise: warp error {warp_error(frames, images):.2f}; on the still background "
              f"16+ px from the disc {warp_error(frames, images, far):.2f}; on and near the disc "
              f"{warp_error(frames, images, near):.2f}")  # fmt: skip
    original = stylizer_module.downscale_flow

    def half_trusted(flow, trusted, size):
        small, _ = original(flow, trusted, size)
        return small, cv2.resize(trusted.astype(np.float32), size, interpolation=cv2.INTER_AREA) >= 0.5

    stylizer_module.downscale_flow = half_trusted
    try:
        images = stylise(parts, frames, noise="warped")[0]
        print(f"   object, warped noise with a latent cell trusted when half its pixels are (not all): "
              f"warp error {warp_error(frames, images):.2f}")  # fmt: skip
    finally:
        stylizer_module.downscale_flow = original


def colour_match_rounding(parts) -> None:
    def rounded(image, reference):
        lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(np.float32)
        ref = cv2.cvtColor(reference, cv2.COLOR_RGB2LAB).astype(np.float32)
        mean, std = lab.mean(axis=(0, 1)), lab.std(axis=(0, 1))
        ref_mean, ref_std = ref.mean(axis=(0, 1)), ref.std(axis=(0, 1))
        matched = (lab - mean) * (ref_std / np.maximum(std, 1e-3)) + ref_mean
        return cv2.cvtColor(np.rint(matched.clip(0, 255)).astype(np.uint8), cv2.COLOR_LAB2RGB)

    picture = pan_frames(SIZE, 1)[0]
    darker = np.clip(picture.astype(np.float32) * 0.9 + 12, 0, 255).astype(np.uint8)
    luma = lambda image: float((image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).mean())  # noqa: E731
    print(f"6. match_colors(darker copy, reference): mean luma {luma(stylizer_module.match_colors(darker, picture)):.2f} "
          f"against the reference's {luma(picture):.2f}; rounding instead of truncating: {luma(rounded(darker, picture)):.2f}")  # fmt: skip
    frames = clip_frames("pan", SIZE, FRAMES)
    settings = {**MODES["flow-blend"]}
    for name, colour in (("no colour match", False), ("colour match as it is", True)):
        images = stylise(parts, frames, **settings, color_match=colour)[0]
        print(f"   pan, flow-blend, {name}: flicker {np.mean(flickers(frames, images)):.3f}")
    original = stylizer_module.match_colors
    stylizer_module.match_colors = rounded
    try:
        images = stylise(parts, frames, **settings, color_match=True)[0]
        print(f"   pan, flow-blend, colour match rounding: flicker {np.mean(flickers(frames, images)):.3f}")
    finally:
        stylizer_module.match_colors = original


def main() -> None:
    warnings.filterwarnings("ignore", category=FutureWarning)
    torch.set_num_threads(1)
    parts = tiny_parts()
    for module in (parts.vae, parts.text_encoder, parts.unet):
        module.eval().requires_grad_(False)
    print(f"settings: {', '.join(f'{k} {v}' for k, v in {**BASE, **OFF}.items() if k not in ('overwrite', 'crf'))}")
    signal_to_noise(parts)
    rescaled_vae(parts)
    cross_frame_attention(parts)
    warped_noise_motion(parts)
    object_regions_and_trust(parts)
    colour_match_rounding(parts)


if __name__ == "__main__":
    main()
