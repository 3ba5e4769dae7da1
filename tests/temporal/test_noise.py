"""Warped noise at sub-pixel precision: it follows any motion and stays i.i.d. unit Gaussian."""

from __future__ import annotations

import math

import pytest
import torch

from vidiff.temporal.noise import downsample_noise, fourier_shift, global_shift, upsample_noise, warp_noise_bandlimited

FACTOR, SIZE = 8, 24  # 24×24 latent pixels, 8×8 samples each


def grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij")


def motion(kind: str, amount: float) -> torch.Tensor:
    """A backward flow, in pixels: where each pixel's content was a frame before."""
    ys, xs = grid(SIZE)
    centre = (SIZE - 1) / 2
    if kind == "pan":  # `amount` pixels a frame, diagonally
        return torch.stack([torch.full_like(xs, -amount), torch.full_like(ys, -0.5 * amount)], -1)
    if kind == "zoom":  # magnified by 1 + amount a frame (negative: zoom out)
        return torch.stack([(xs - centre) * (1 / (1 + amount) - 1), (ys - centre) * (1 / (1 + amount) - 1)], -1)
    angle = math.radians(amount)  # a rotation by `amount` degrees a frame
    dx, dy = xs - centre, ys - centre
    back_x = math.cos(angle) * dx + math.sin(angle) * dy
    back_y = -math.sin(angle) * dx + math.cos(angle) * dy
    return torch.stack([back_x - dx, back_y - dy], -1)


def run(kind: str, amount: float, frames: int, seed: int = 0) -> list[torch.Tensor]:
    """Each frame's noise, warped along `motion(kind, amount)`, trusted everywhere the flow stays inside."""
    generator = torch.Generator().manual_seed(seed)
    flow = motion(kind, amount)
    ys, xs = grid(SIZE)
    side = SIZE - 1
    src_x, src_y = xs + flow[..., 0], ys + flow[..., 1]
    inside = (src_x >= 0) & (src_x <= side) & (src_y >= 0) & (src_y <= side)
    noise = torch.randn(1, 4, SIZE, SIZE, generator=generator)
    out = [noise]
    for _ in range(frames):
        white, fresh = torch.randn(2, 1, 4, FACTOR * SIZE, FACTOR * SIZE, generator=generator)
        noise = warp_noise_bandlimited(noise, flow, inside, white, fresh, FACTOR)
        out.append(noise)
    return out


def test_conditional_upsampling_sums_back_to_the_noise_and_is_white():
    generator = torch.Generator().manual_seed(1)
    noise = torch.randn(1, 4, SIZE, SIZE, generator=generator)
    field = upsample_noise(noise, FACTOR, torch.randn(1, 4, FACTOR * SIZE, FACTOR * SIZE, generator=generator))
    assert torch.allclose(downsample_noise(field, FACTOR), noise, atol=1e-5)
    assert field.mean().item() == pytest.approx(0, abs=0.01) and field.std().item() == pytest.approx(1, abs=0.01)
    # samples within a block are not tied to each other by the condition (1/63 expected, not more)
    flat = field[0, :, :FACTOR, :FACTOR].reshape(4, -1)
    pairs = torch.stack([field[..., 0::2, :], field[..., 1::2, :]]).flatten(1)
    assert torch.corrcoef(pairs)[0, 1].abs() < 0.03 and flat.numel() == 256


MOTIONS = [("pan", 0.125), ("pan", 0.3), ("pan", 0.75), ("pan", 1.5), ("zoom", 0.03), ("zoom", -0.03), ("rotate", 2.0)]


@pytest.mark.parametrize("kind,amount", MOTIONS)
def test_warped_noise_stays_unit_gaussian_and_white_over_many_frames(kind, amount):
    """Frames of one chain are alike (that is the point), so the samples are the last frames of 16
    independent chains, and each chain's frames on the way are checked for the same looser bounds."""
    chains = [run(kind, amount, 12, seed) for seed in range(16)]
    noise = torch.stack([frames[-1] for frames in chains])  # 16 × 4 × 24 × 24: 36,864 samples
    error = 4 / math.sqrt(noise.numel())  # four standard errors
    assert noise.mean().item() == pytest.approx(0, abs=error)
    assert noise.var().item() == pytest.approx(1, abs=4 * math.sqrt(2 / noise.numel()))
    for shifted, base in ((noise[..., 1:], noise[..., :-1]), (noise[..., 1:, :], noise[..., :-1, :])):
        correlation = (shifted * base).mean() / (shifted.std() * base.std())
        assert correlation.abs().item() < error  # neighbours independent: the noise stays spatially white
    for frame in chains[0]:
        assert frame.var().item() == pytest.approx(1, abs=0.15) and frame.mean().abs() < 0.1


INNER = (slice(None), slice(None), slice(6, None), slice(6, None))  # away from the edges the content enters through


@pytest.mark.parametrize("speed", [0.125, 0.25, 0.375, 0.625])
def test_slow_pans_move_the_noise_a_little_every_frame_instead_of_holding_and_jumping(speed):
    """Whole-pixel transport held the noise for frames, then jumped a pixel (correlations of 1, 1, 1,
    then about 0 between consecutive frames at a quarter pixel a frame); a box integral over the
    moved footprint keeps only the share that stayed ((1 − speed)(1 − speed/2) on this diagonal). Band-limited, consecutive frames
    keep sinc(speed) of each other, and every frame is the starting noise moved exactly with the content."""
    frames = run("pan", speed, 8, seed=2)
    for before, after in zip(frames[1:], frames[2:]):
        held = torch.corrcoef(torch.stack([before[INNER].flatten(), after[INNER].flatten()]))[0, 1]
        expected = math.sin(math.pi * speed) / (math.pi * speed) * math.sin(math.pi * speed / 2) / (math.pi * speed / 2)
        assert held.item() == pytest.approx(expected, abs=0.05) and held > (1 - speed) * (1 - speed / 2) + 0.05
    # after eight frames: the starting noise moved with the content, but for its Nyquist row and
    # column, which can only move by whole pixels (a few % of the variance)
    moved = fourier_shift(frames[0], -8 * speed, -4 * speed)  # the content moved by (8, 4) × speed pixels
    assert torch.corrcoef(torch.stack([frames[-1][INNER].flatten(), moved[INNER].flatten()]))[0, 1] > 0.9


def test_a_fourier_shift_by_whole_pixels_rolls_the_noise_and_any_shift_keeps_it_white():
    noise = torch.randn(1, 4, 32, 32, generator=torch.Generator().manual_seed(4))
    assert torch.allclose(fourier_shift(noise, 3.0, -2.0), torch.roll(noise, (2, -3), (-2, -1)), atol=1e-5)
    assert torch.allclose(fourier_shift(fourier_shift(noise, 0.3, 0.1), -0.3, -0.1), noise, atol=1e-5)
    many = torch.randn(64, 4, 32, 32, generator=torch.Generator().manual_seed(5))
    shifted = fourier_shift(many, 0.5, 0.25)  # half a pixel: where bilinear would halve the variance
    assert shifted.var().item() == pytest.approx(1, abs=0.02)
    assert (shifted[..., 1:] * shifted[..., :-1]).mean().abs() < 0.01


def test_untrusted_pixels_draw_fresh_noise_and_whole_pixel_pans_move_the_noise_exactly():
    generator = torch.Generator().manual_seed(3)
    noise = torch.randn(1, 4, SIZE, SIZE, generator=generator)
    white, fresh = torch.randn(2, 1, 4, FACTOR * SIZE, FACTOR * SIZE, generator=generator)
    flow = torch.zeros(SIZE, SIZE, 2)
    flow[..., 0] = -1  # one pixel to the right
    trusted = torch.ones(SIZE, SIZE, dtype=torch.bool)
    trusted[:, 0] = False  # the column the content enters through
    out = warp_noise_bandlimited(noise, flow, trusted, white, fresh, FACTOR)
    assert torch.allclose(out[..., 1:], noise[..., :-1], atol=1e-5)
    assert torch.allclose(out[..., 0], downsample_noise(fresh, FACTOR)[..., 0], atol=1e-5)
    nothing = torch.zeros_like(trusted)
    assert torch.allclose(warp_noise_bandlimited(noise, flow, nothing, white, fresh, FACTOR), downsample_noise(fresh, FACTOR))


def test_an_object_moving_on_a_still_background_carries_its_own_noise():
    """The background stands still (the median motion); an object moves 1.5 pixels a frame and its
    noise with it, sample by sample: where its pixels' footprints came whole from the frame before,
    their noise is that footprint's."""
    generator = torch.Generator().manual_seed(6)
    noise = torch.randn(1, 4, SIZE, SIZE, generator=generator)
    white, fresh = torch.randn(2, 1, 4, FACTOR * SIZE, FACTOR * SIZE, generator=generator)
    flow = torch.zeros(SIZE, SIZE, 2)
    flow[8:16, 8:16, 0] = -1.5
    trusted = torch.ones(SIZE, SIZE, dtype=torch.bool)
    out = warp_noise_bandlimited(noise, flow, trusted, white, fresh, FACTOR)
    assert torch.allclose(out[..., :8, :], noise[..., :8, :], atol=1e-5)  # the background, above the object
    field = upsample_noise(noise, FACTOR, white)
    expected = downsample_noise(torch.roll(field, 12, -1), FACTOR)  # 1.5 pixels: 12 samples
    assert torch.allclose(out[..., 8:16, 10:16], expected[..., 8:16, 10:16], atol=1e-5)
    assert not torch.allclose(out[..., 8:16, 10:16], noise[..., 8:16, 10:16], atol=0.1)


def test_local_motion_slower_than_least_leaves_the_noise_where_the_shared_motion_puts_it():
    generator = torch.Generator().manual_seed(7)
    noise = torch.randn(1, 4, SIZE, SIZE, generator=generator)
    white, fresh = torch.randn(2, 1, 4, FACTOR * SIZE, FACTOR * SIZE, generator=generator)
    flow = motion("zoom", 0.03)  # at most 0.35 pixels a frame, at the corners
    trusted = torch.ones(SIZE, SIZE, dtype=torch.bool)
    shared = fourier_shift(noise, *global_shift(flow, trusted))  # the median: a hundredth of a pixel
    assert torch.allclose(warp_noise_bandlimited(noise, flow, trusted, white, fresh, FACTOR, least=0.5), shared, atol=1e-5)
    assert not torch.allclose(warp_noise_bandlimited(noise, flow, trusted, white, fresh, FACTOR), shared, atol=1e-2)
