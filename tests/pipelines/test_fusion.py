"""Cross-frame latent fusion: the sampler arithmetic it rests on, and its effect on frames."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import pan, run_frames, warp_error
from vidiff.pipelines.denoise import FusionHook
from vidiff.pipelines.samplers import SCHEDULERS, make_scheduler, noise_level, output_for, predicted_original
from vidiff.temporal.blending import warp_latents
from vidiff.temporal.fusion import shift_latents


@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_the_denoised_estimate_is_read_from_a_noise_prediction_as_the_sampler_noised_it(tiny, name):
    # x0 and ε are known; the sampler's own add_noise makes the sample, in its own scale (Euler's
    # grows with σ), and scale_model_input gives what the UNet sees: x0 must come back from ε
    scheduler = make_scheduler(name, tiny.scheduler_config)
    scheduler.set_timesteps(10)
    position = 4
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(position)
    t = scheduler.timesteps[position]
    generator = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(1, 4, 6, 8, generator=generator), torch.randn(1, 4, 6, 8, generator=generator)
    sample = scheduler.scale_model_input(scheduler.add_noise(x0, noise, t.reshape(1)), t)
    alpha, sigma = noise_level(scheduler, t, position)
    assert 0 < alpha < 1 and alpha**2 + sigma**2 == pytest.approx(1)
    assert torch.allclose(predicted_original(noise, sample, alpha, sigma, "epsilon"), x0, atol=1e-4)
    assert torch.allclose(output_for(x0, sample, alpha, sigma, "epsilon"), noise, atol=1e-4)


def test_a_velocity_prediction_is_read_as_diffusers_defines_it(tiny):
    scheduler = make_scheduler("ddim", {**tiny.scheduler_config, "prediction_type": "v_prediction"})
    scheduler.set_timesteps(10)
    t = scheduler.timesteps[3]
    generator = torch.Generator().manual_seed(1)
    x0, noise = torch.randn(1, 4, 6, 8, generator=generator), torch.randn(1, 4, 6, 8, generator=generator)
    sample = scheduler.add_noise(x0, noise, t.reshape(1))
    velocity = scheduler.get_velocity(x0, noise, t.reshape(1))
    alpha, sigma = noise_level(scheduler, t, 3)
    assert torch.allclose(predicted_original(velocity, sample, alpha, sigma, "v_prediction"), x0, atol=1e-4)
    assert torch.allclose(output_for(x0, sample, alpha, sigma, "v_prediction"), velocity, atol=1e-4)


def test_latents_warped_by_a_whole_pixel_shift_move_by_it():
    latents = torch.randn(1, 4, 6, 8, generator=torch.Generator().manual_seed(2))
    flow = torch.zeros(6, 8, 2)
    flow[..., 0] = -1  # each pixel's content was one pixel to the left
    warped = warp_latents(latents, flow)
    assert torch.allclose(warped[..., 1:], latents[..., :-1], atol=1e-5)
    assert torch.allclose(warped[..., 0], latents[..., 0], atol=1e-5)  # the edge repeats
    assert torch.allclose(warp_latents(latents, torch.zeros(6, 8, 2)), latents, atol=1e-6)


@pytest.mark.parametrize("scheduler", ["dpm++2m", "euler", "lcm"])
def test_full_fusion_on_a_still_shot_repeats_the_previous_output(tiny, scheduler):
    # weight 1 at every step on a picture that doesn't move: every estimate of the clean frame is the
    # previous output, and these samplers end on their last estimate, so the frame repeats it
    # although its noise is new; without fusion the new noise gives another frame
    still = pan(1, dx=0, size=(64, 48), seed=4) * 2
    fused = run_frames(tiny, still, noise="per-frame", scheduler=scheduler, fusion=1.0, fusion_end=1.0)
    plain = run_frames(tiny, still, noise="per-frame", scheduler=scheduler)
    assert torch.allclose(fused[1].state.latents, fused[0].state.latents, atol=1e-4)
    assert (plain[1].state.latents - plain[0].state.latents).abs().max() > 1
    assert np.array_equal(fused[0].image, plain[0].image)  # the first frame has nothing to fuse with


def test_fusion_lowers_the_warp_error_on_a_pan_and_more_with_more_weight(tiny):
    frames = pan(5, dx=8, size=(128, 96), seed=9)
    errors = {
        weight: warp_error(frames, [r.image for r in run_frames(tiny, frames, strength=0.9, fusion=weight)])
        for weight in (0.0, 0.5, 1.0)
    }
    assert errors[1.0] < errors[0.5] < errors[0.0]
    assert errors[1.0] < 0.6 * errors[0.0]


def test_fusion_acts_only_on_the_first_share_of_the_steps(tiny, monkeypatch):
    fused_steps = []
    original = FusionHook.fuse
    monkeypatch.setattr(FusionHook, "fuse", lambda self, *a: fused_steps.append(a[3]) or original(self, *a))
    run_frames(tiny, pan(2, dx=4, seed=1), steps=10, strength=0.8, fusion=0.7, fusion_end=0.4)
    # 8 steps on frame 1 (none on frame 0, which has no past): the first 40% of them, 3.2 → 4
    assert len(fused_steps) == 4 and fused_steps == sorted(fused_steps)


def test_a_shift_by_the_shared_motion_is_lossless_where_repeated_resampling_drifts():
    """Sixty quarter-pixel shifts, back and forth, of smooth latents: the Fourier shift comes back to
    where it began (bar the mirrored edges); bicubic resampling, as fusion did every frame, drifts."""
    latents = torch.randn(1, 4, 24, 32, generator=torch.Generator().manual_seed(3))
    smooth = torch.tensor([0.25, 0.5, 0.25])
    kernel = (smooth[:, None] * smooth[None, :]).expand(4, 1, 3, 3)
    latents = torch.nn.functional.conv2d(torch.nn.functional.pad(latents, (1, 1, 1, 1), mode="reflect"), kernel, groups=4)
    latents = latents / latents.std()
    shifted, resampled, flow = latents, latents, torch.zeros(24, 32, 2)
    for step in (0.25, -0.25) * 30:
        shifted = shift_latents(shifted, step, 0.0)
        resampled = warp_latents(resampled, flow + torch.tensor([step, 0.0]))
    inner = (..., slice(4, -4), slice(6, -6))
    shift_error = (shifted - latents)[inner].abs().mean()
    assert shift_error < 0.1 and (resampled - latents)[inner].abs().mean() > 3 * shift_error
    # whole pixels: a roll
    assert torch.allclose(shift_latents(latents, 2.0, -1.0)[inner], torch.roll(latents, (1, -2), (-2, -1))[inner], atol=1e-4)
