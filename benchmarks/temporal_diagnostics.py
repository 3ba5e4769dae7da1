"""Why the temporal benchmark's numbers come out as they do: one-off checks on its model.

    python benchmarks/temporal_diagnostics.py [--model M]

Prints its findings; writes nothing. The model is vidiff/models/tiny_trained unless --model names
another (`--model tiny` is the random tiny model). Same clips and settings as benchmarks/temporal.py
(10 frames at 256x192), but the frames stay in memory (no H.264 round trip) and each is stylised
alone, so its warp errors differ a little from the tables in RESULTS.md.

Checks 7 and 8 swap a vidiff function for a variant, in this process only, to show what a change
would do: noise carried at the image's resolution instead of the latents' (7), and warp_noise
settling a sample claimed by several pixels nearest-first (8). (vidiff's warp_noise already takes
the sample nearest where the content was: that was this check's first variant, now adopted.)
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import vidiff.temporal.attention as attention_module  # noqa: E402
import vidiff.pipelines.img2img as stylizer_module  # noqa: E402
import vidiff.pipelines.noise as noise_module  # noqa: E402
from clips import clip_frames, pan_frames  # noqa: E402
from temporal import BASE, MODES, OFF, load_model, make_config  # noqa: E402
from vidiff.settings.config import Config  # noqa: E402
from vidiff.temporal.change import is_cut  # noqa: E402
from vidiff.temporal.flow import backward_flow, downscale_flow  # noqa: E402
from vidiff.temporal.noise import warp_noise  # noqa: E402
from vidiff.pipelines.samplers import make_scheduler  # noqa: E402
from vidiff.score import pair_errors  # noqa: E402
from vidiff.pipelines.img2img import Img2ImgProcessor  # noqa: E402

SIZE, FRAMES = (256, 192), 10


def stylise(parts, frames, **settings) -> tuple[list[np.ndarray], list[torch.Tensor]]:
    """The stylised frames, one at a time, and each frame's starting noise."""
    images, noises, state = [], [], None
    with Img2ImgProcessor(parts, make_config(settings, SIZE, parts.name)) as stylizer:
        for index, frame in enumerate(frames):
            result = stylizer(frame, index, state)
            state = result.state
            images.append(result.image)
            noises.append(state.noise)
    return images, noises


def to_batch(frames: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(frames)).float().div(127.5).sub(1).permute(0, 3, 1, 2)


@torch.no_grad()
def round_trip(parts, frames: list[np.ndarray]) -> list[np.ndarray]:
    """Each frame through the VAE and back (the latent mean), with no noise and no UNet."""
    vae = parts.vae
    out = []
    for frame in frames:
        decoded = vae.decode(vae.encode(to_batch([frame])).latent_dist.mean).sample.clamp(-1, 1)
        out.append(((decoded[0].permute(1, 2, 0) + 1) * 127.5).round().byte().numpy())
    return out


def warp_error(sources, images, masks=None) -> float:
    errors = []
    for t in range(1, len(sources)):
        if is_cut(sources[t - 1], sources[t], Config.cut_threshold):
            continue
        flow, trusted = backward_flow(sources[t - 1], sources[t])
        if masks is not None:
            trusted = trusted & masks[t]
        errors.append(pair_errors(images[t - 1], images[t], flow, trusted).warp_error)
    return float(np.mean(errors))


def difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float32) - b).mean())


def signal_to_noise(parts) -> None:
    with torch.no_grad():
        dist = parts.vae.encode(to_batch([pan_frames(SIZE, 1)[0]])).latent_dist
    scale = parts.vae.config.scaling_factor
    latents = dist.mean * scale
    print(f"1. VAE latents × scaling_factor {scale:.4f}: std {latents.std():.3f} (SD's: about 1); the VAE's own "
          f"sampling noise, std {float(dist.std.mean()) * scale:.4f}")  # fmt: skip
    for strength in (0.3, 0.55, 0.7):
        scheduler = make_scheduler(BASE["scheduler"], parts.scheduler_config)
        scheduler.set_timesteps(BASE["steps"])
        start = BASE["steps"] - int(BASE["steps"] * strength)
        sigma = float(scheduler.sigmas[start])
        print(f"   strength {strength}: first sigma {sigma:.3f}; source signal ÷ noise {latents.std() / sigma:.3f}")


def source_and_noise(parts) -> None:
    """How much of the output comes from the source, from the noise, and from the VAE alone."""
    a, b = pan_frames(SIZE, 1)[0], clip_frames("cut", SIZE, 2)[1]
    out_a, out_b = stylise(parts, [a])[0][0], stylise(parts, [b])[0][0]
    out_a2 = stylise(parts, [a], seed=BASE["seed"] + 1)[0][0]
    plain = stylise(parts, [a], prompt=BASE["negative_prompt"], guidance=1.0)[0][0]
    trip = round_trip(parts, [a])[0]
    print(f"2. |A − B| {difference(a, b):.2f}; |out(A) − out(B)| same seed {difference(out_a, out_b):.2f}; "
          f"|out(A) − out(A')| seed + 1 {difference(out_a, out_a2):.2f}")  # fmt: skip
    print(f"   |VAE round trip of A − A| {difference(trip, a):.2f}; |out(A) − A| {difference(out_a, a):.2f}; "
          f"|out(A) − round trip| {difference(out_a, trip):.2f}; A with the plain prompt "
          f"{BASE['negative_prompt']!r}, no guidance: |out − A| {difference(plain, a):.2f}")  # fmt: skip
    high = {"strength": 0.9}
    out_a, out_b = stylise(parts, [a], **high)[0][0], stylise(parts, [b], **high)[0][0]
    out_a2 = stylise(parts, [a], seed=BASE["seed"] + 1, **high)[0][0]
    print(f"   at strength 0.9: |out(A) − out(B)| same seed {difference(out_a, out_b):.2f}; |out(A) − out(A')| seed + 1 "
          f"{difference(out_a, out_a2):.2f}; |out(A) − A| {difference(out_a, a):.2f}")  # fmt: skip


def floors(parts) -> None:
    """The warp error of the source itself and of the VAE's round trip: what no noise mode can go below."""
    for clip in ("pan", "zoom", "object", "cut"):
        frames = clip_frames(clip, SIZE, FRAMES)
        trips = round_trip(parts, frames)
        print(f"3. {clip}: warp error of the source {warp_error(frames, frames):.3f}; of the VAE round trip alone "
              f"{warp_error(frames, trips):.3f}, which changes the source by "
              f"{np.mean([difference(t, f) for t, f in zip(trips, frames)]):.2f}")  # fmt: skip


def cross_frame_attention(parts) -> None:
    pan = clip_frames("pan", SIZE, 6)
    for noise in ("per-frame", "fixed"):
        plain = stylise(parts, pan, noise=noise)[0]
        crossed = stylise(parts, pan, noise=noise, cross_frame_attn=True)[0]
        change = np.mean([difference(a, b) for a, b in zip(plain[1:], crossed[1:])])
        print(f"4. cross-frame attention, {noise} noise: changes frames 1-5 by {change:.2f} levels of 255 on average; "
              f"warp error {warp_error(pan, plain):.2f} without, {warp_error(pan, crossed):.2f} with")  # fmt: skip
    # how much of each up-block self-attention's weight goes to the anchor's and previous frame's tokens
    shares, peaks = [], []
    original = attention_module.CrossFrameAttnProcessor.__call__

    def measure(self, attn, hidden_states, *args, **kwargs):
        memory, key_id = self.memory, (self.name, self.memory.step)
        others = [part[key_id] for part in (memory.anchor, memory.previous) if key_id in part]
        if memory.frames == 1 and not memory.starts_shot and len(others) == 2 and others[0] is not others[1]:
            halves = hidden_states.shape[0]
            context = torch.cat([hidden_states.view(halves, -1, hidden_states.shape[-1]), *others], dim=1)
            heads = attn.heads
            query, key = attn.to_q(hidden_states), attn.to_k(context)
            dim = query.shape[-1] // heads
            query = query.view(halves, -1, heads, dim).transpose(1, 2)
            key = key.view(halves, -1, heads, dim).transpose(1, 2)
            weights = (query @ key.transpose(-1, -2) / dim**0.5).softmax(-1)
            tokens = hidden_states.shape[1]
            shares.append(float(weights[..., tokens:].sum(-1).mean()))
            peaks.append(float(weights.max(-1).values.mean()))
        return original(self, attn, hidden_states, *args, **kwargs)

    attention_module.CrossFrameAttnProcessor.__call__ = measure
    try:
        stylise(parts, pan[:4], cross_frame_attn=True)
    finally:
        attention_module.CrossFrameAttnProcessor.__call__ = original
    if shares:
        print(f"   frames 2-3: share of the attention weight on the anchor's and previous frame's tokens "
              f"{np.mean(shares):.2f} (uniform attention: 0.67); mean largest weight {np.mean(peaks):.4f} "
              f"(uniform over the three frames' tokens: {1 / (3 * 192):.4f})")  # fmt: skip


def warped_noise_motion(parts) -> None:
    for clip in ("zoom", "pan", "object"):
        frames = clip_frames(clip, SIZE, FRAMES)
        noises = stylise(parts, frames, noise="warped")[1]
        kept, fresh, speed, spread = [], [], [], []
        for t in range(1, FRAMES):
            flow, trusted = backward_flow(frames[t - 1], frames[t])
            small, small_trusted = downscale_flow(flow, trusted, (noises[t].shape[-1], noises[t].shape[-2]))
            kept.append(float((noises[t] == noises[t - 1]).all(1)[0].float().mean()))
            # a sample carried from anywhere in the previous noise (not drawn fresh)
            previous = set(map(tuple, noises[t - 1][0].flatten(1).T.tolist()))
            carried = [tuple(v) in previous for v in noises[t][0].flatten(1).T.tolist()]
            fresh.append(1 - float(np.mean(carried)))
            speed.append(np.abs(small).mean(axis=(0, 1)))
            inner = small[1:-1, 1:-1][small_trusted[1:-1, 1:-1]]  # the trusted cells off the edges
            spread.append(inner.max(axis=0) - inner.min(axis=0))
        dx, dy = np.mean(speed, axis=0)
        sx, sy = np.mean(spread, axis=0)
        print(f"5. warped noise on {clip}: mean |flow| ({dx:.2f}, {dy:.2f}) latent px/frame, max − min within a frame "
              f"({sx:.2f}, {sy:.2f}) on average; noise samples left in place {np.mean(kept):.0%}; drawn fresh "
              f"{np.mean(fresh):.0%}")  # fmt: skip


def object_regions(parts) -> None:
    frames = clip_frames("object", SIZE, FRAMES)
    near = [np.zeros(frames[0].shape[:2], bool)] + [
        cv2.dilate((np.abs(frames[t].astype(int) - frames[t - 1]).sum(-1) > 0).astype(np.uint8), np.ones((33, 33), np.uint8)) > 0
        for t in range(1, FRAMES)
    ]  # fmt: skip
    far = [~mask for mask in near]
    trips = round_trip(parts, frames)
    print(f"6. object, VAE round trip: on the still background 16+ px from the disc {warp_error(frames, trips, far):.2f}; "
          f"on and near the disc {warp_error(frames, trips, near):.2f}")  # fmt: skip
    for noise in ("per-frame", "fixed", "warped"):
        images = stylise(parts, frames, noise=noise)[0]
        print(f"   object, {noise} noise: warp error {warp_error(frames, images):.2f}; on the still background "
              f"{warp_error(frames, images, far):.2f}; on and near the disc {warp_error(frames, images, near):.2f}")  # fmt: skip


def fine_noise(coarse: torch.Tensor, generator: torch.Generator, factor: int) -> torch.Tensor:
    """Noise at `factor`× the resolution whose factor×factor blocks sum to factor × `coarse`: each
    sample N(0, 1) and independent, given nothing (How I Warped Your Noise's conditional upsampling)."""
    batch, channels, height, width = coarse.shape
    z = torch.randn((batch, channels, height, factor, width, factor), generator=generator)
    z = z - z.mean(dim=(3, 5), keepdim=True) + coarse[:, :, :, None, :, None] / factor
    return z.reshape(batch, channels, height * factor, width * factor)


def subpixel_noise(latents, generator, frame_index, seed, mode, prev_noise, prev_offset, flow, trusted):
    """A variant of vidiff.pipelines.noise.prepare_noise for noise = "warped": the noise lives at the image's resolution
    (64 samples per latent pixel), is carried along the flow there by vidiff's own warp_noise, and each
    latent pixel's noise is its 64 samples' sum ÷ 8, so it follows motion to within an image pixel
    instead of a latent pixel. Kept in the state's noise_offset slot: (fine noise, its offsets)."""
    factor = 8
    height, width = latents.shape[-2:]
    if mode != "warped":
        return original_noise(latents, generator, frame_index, seed, mode, prev_noise, prev_offset, flow, trusted)
    fine_generator = torch.Generator("cpu").manual_seed(seed + frame_index + 1_000_003)
    if prev_noise is None or flow is None or not isinstance(prev_offset, tuple):
        coarse = torch.randn(latents.shape, generator=generator)
        return coarse, (fine_noise(coarse, fine_generator, factor), None)
    previous, offset = prev_offset
    fresh = torch.randn(previous.shape, generator=fine_generator)
    fine, offset = warp_noise(previous, torch.from_numpy(flow), torch.from_numpy(trusted), fresh, offset)
    coarse = fine.view(1, -1, height, factor, width, factor).sum(dim=(3, 5)) / factor
    return coarse, (fine, offset)


original_noise = stylizer_module.prepare_noise


def subpixel_warped_noise(parts) -> None:
    """What noise that follows motion to the image pixel would change (patched into this process only)."""
    results = {}
    for variant in ("as vidiff has it", "sub-pixel"):
        if variant == "sub-pixel":
            stylizer_module.prepare_noise = subpixel_noise
        try:
            for clip in ("pan", "zoom", "object", "cut"):
                frames = clip_frames(clip, SIZE, FRAMES)
                for label, settings in (("warped noise", {"noise": "warped"}), ("everything on", MODES["everything on"])):
                    results[(variant, clip, label)] = warp_error(frames, stylise(parts, frames, **settings)[0])
        finally:
            stylizer_module.prepare_noise = original_noise
    for clip in ("pan", "zoom", "object", "cut", "mean"):
        cells = []
        for label in ("warped noise", "everything on"):
            for variant in ("as vidiff has it", "sub-pixel"):
                if clip == "mean":
                    value = np.mean([results[(variant, c, label)] for c in ("pan", "zoom", "object", "cut")])
                else:
                    value = results[(variant, clip, label)]
                cells.append(f"{label}, {variant} {value:.2f}")
        print(f"7. {clip}: warp error " + "; ".join(cells))


def warp_noise_matched(prev_noise, flow, trusted, fresh, prev_offset=None, rounds=3):
    """Nearest true position among the 3x3 candidates; a sample claimed by several pixels goes to the
    nearest, and the others try their next-nearest unclaimed candidate (a few rounds); what is left
    takes fresh noise."""
    height, width = flow.shape[:2]
    n = height * width
    if prev_offset is None:
        prev_offset = torch.zeros(height, width, 2)
    prev_offset = prev_offset.to(flow.dtype)
    ys, xs = torch.meshgrid(torch.arange(height, dtype=flow.dtype), torch.arange(width, dtype=flow.dtype), indexing="ij")
    want_x, want_y = (xs + flow[..., 0]).flatten(), (ys + flow[..., 1]).flatten()
    near_x, near_y = torch.floor(want_x + 0.5).long(), torch.floor(want_y + 0.5).long()
    cands, dists = [], []
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            cx, cy = near_x + dx, near_y + dy
            inside = (cx >= 0) & (cx < width) & (cy >= 0) & (cy < height)
            ccx, ccy = cx.clamp(0, width - 1), cy.clamp(0, height - 1)
            d = (ccx + prev_offset[ccy, ccx, 0] - want_x) ** 2 + (ccy + prev_offset[ccy, ccx, 1] - want_y) ** 2
            cands.append(ccy * width + ccx)
            dists.append(torch.where(inside, d, torch.full_like(d, float("inf"))))
    cands, dists = torch.stack(cands, 1), torch.stack(dists, 1)  # (n, 9)
    order = dists.argsort(1)
    cands, dists = cands.gather(1, order), dists.gather(1, order)
    trusted = trusted.flatten()
    assigned = torch.full((n,), -1, dtype=torch.long)
    taken = torch.zeros(n, dtype=torch.bool)
    for _ in range(rounds):
        pending = trusted & (assigned < 0)
        if not pending.any():
            break
        # each pending pixel's nearest candidate not yet taken
        free = ~taken[cands] & torch.isfinite(dists) & (dists < 2.0)
        has = free.any(1) & pending
        first = free.float().argmax(1)
        choice = cands[torch.arange(n), first]
        dist = dists[torch.arange(n), first]
        dst = torch.arange(n)[has]
        key = (dist[has] * 1e6).long() * n + dst  # nearest claimant wins, then the lowest index
        best = torch.full((n,), torch.iinfo(torch.long).max, dtype=torch.long)
        best = best.scatter_reduce(0, choice[has], key, reduce="amin")
        wins = has.clone()
        wins[has] = best[choice[has]] == key
        assigned[wins] = choice[wins]
        taken[choice[wins]] = True
    keep = assigned >= 0
    src = assigned.clamp(min=0)
    carried = prev_noise.flatten(2)[:, :, src]
    noise = torch.where(keep, carried, fresh.flatten(2)).view_as(fresh)
    src_x, src_y = src % width, src // width
    offset = torch.stack([src_x + prev_offset.view(-1, 2)[src, 0] - want_x, src_y + prev_offset.view(-1, 2)[src, 1] - want_y], -1)
    offset = torch.where(keep[:, None], offset, torch.zeros_like(offset)).view(height, width, 2)
    return noise, offset


def noise_transport(parts) -> None:
    """warp_noise's bookkeeping, and a variant of it (patched into this process only)."""
    variants = {
        "as vidiff has it (nearest sample)": warp_noise,
        "nearest sample, matched": warp_noise_matched,
    }
    # a steady pan of (0.75, 0.25) latent px a frame, each cell's flow off by up to ±0.05, trusted everywhere
    for name, function in variants.items():
        generator = torch.Generator().manual_seed(1)
        noise, offset, largest, fresh_share = torch.randn((1, 4, 24, 32), generator=generator), None, 0.0, []
        for _ in range(FRAMES - 1):
            flow = torch.tensor([0.75, 0.25]).expand(24, 32, 2) + (torch.rand((24, 32, 2), generator=generator) - 0.5) * 0.1
            fresh = torch.randn(noise.shape, generator=generator)
            noise, offset = function(noise, flow, torch.ones(24, 32, dtype=torch.bool), fresh, offset)
            largest = max(largest, float(offset.abs().max()))
            fresh_share.append(float((noise == fresh).all(1)[0, 1:-1, 1:-1].float().mean()))
        print(f"8. synthetic pan (0.75, 0.25) ± 0.05 latent px, {name}: largest |offset| {largest:.2f}; cells off the "
              f"edges drawing fresh noise {min(fresh_share[1:]):.0%}-{max(fresh_share[1:]):.0%} a frame (frames 2-9)")  # fmt: skip
    for clip in ("pan", "zoom"):
        frames = clip_frames(clip, SIZE, FRAMES)
        flows = [downscale_flow(*backward_flow(frames[t - 1], frames[t]), (SIZE[0] // 8, SIZE[1] // 8)) for t in range(1, FRAMES)]
        for name, function in variants.items():
            generator = torch.Generator().manual_seed(0)
            noise, offset, fresh_share, largest = torch.randn((1, 4, SIZE[1] // 8, SIZE[0] // 8), generator=generator), None, [], []
            for small, small_trusted in flows:
                fresh = torch.randn(noise.shape, generator=generator)
                noise, offset = function(noise, torch.from_numpy(small), torch.from_numpy(small_trusted), fresh, offset)
                fresh_share.append(((noise == fresh).all(1)[0].numpy() & small_trusted).mean())
                largest.append(max(float(offset.abs().max()), largest[-1] if largest else 0.0))
            print(f"8. {clip}, {name}: trusted cells drawing fresh noise {np.mean(fresh_share):.0%} a frame "
                  f"(frame 9: {fresh_share[-1]:.0%}); largest |offset| {largest[3]:.2f} by frame 4, {max(largest):.2f} "
                  f"by frame 9; noise std at frame 9 {float(noise.std()):.3f}")  # fmt: skip
    original = noise_module.warp_noise
    try:
        for name, function in variants.items():
            noise_module.warp_noise = function
            for label, settings in (("warped noise", {"noise": "warped"}), ("everything on", MODES["everything on"])):
                errors = {}
                for clip in ("pan", "zoom", "object", "cut"):
                    frames = clip_frames(clip, SIZE, FRAMES)
                    errors[clip] = warp_error(frames, stylise(parts, frames, **settings)[0])
                print(f"   {name}, {label}: warp error " + ", ".join(f"{c} {v:.2f}" for c, v in errors.items())
                      + f"; mean {np.mean(list(errors.values())):.2f}")  # fmt: skip
    finally:
        noise_module.warp_noise = original


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="default vidiff/models/tiny_trained; 'tiny' is the random one")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    parts = load_model(args.model, "cpu")
    print(f"model {parts.name}; settings: "
          f"{', '.join(f'{k} {v}' for k, v in {**BASE, **OFF}.items() if k not in ('overwrite', 'crf', 'model'))}")  # fmt: skip
    signal_to_noise(parts)
    source_and_noise(parts)
    floors(parts)
    cross_frame_attention(parts)
    warped_noise_motion(parts)
    object_regions(parts)
    subpixel_warped_noise(parts)
    noise_transport(parts)


if __name__ == "__main__":
    main()
