"""The training pictures: found and checked, captioned, sorted into aspect-ratio buckets, and served
batch by batch with random crops and flips, in an order that depends only on the seed and the step."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from ..errors import VidiffError

PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
CAPTION_SUFFIX = ".txt"
MAX_ASPECT = 2.5  # the longest bucket's sides; a longer picture is cropped to the nearest bucket


@dataclass(frozen=True)
class Picture:
    path: Path
    size: tuple[int, int]  # width, height
    caption: str
    captioned: bool  # from a NAME.txt beside it, rather than from --token
    bucket: tuple[int, int]  # the width and height it is trained at


@dataclass(frozen=True)
class Batch:
    pixels: np.ndarray  # (n, height, width, 3) float32 in [-1, 1]
    captions: list[str]
    original_sizes: list[tuple[int, int]]  # (height, width) before resizing: SDXL's size conditioning
    crops: list[tuple[int, int]]  # (top, left) of the crop in the resized picture: SDXL's crop conditioning


def bucket_sizes(resolution: int, step: int = 64) -> list[tuple[int, int]]:
    """(width, height) pairs of at most resolution² pixels, sides multiples of `step` (64 for SD: the
    latents must halve cleanly through the UNet), aspect within 1:2.5..2.5:1."""
    area = resolution * resolution
    sizes = set()
    width = step
    while width <= resolution * 2:
        height = min(area // width // step * step, resolution * 2)
        if height >= step and 1 / MAX_ASPECT <= width / height <= MAX_ASPECT:
            sizes.add((width, height))
            sizes.add((height, width))
        width += step
    return sorted(sizes)


def nearest_bucket(size: tuple[int, int], buckets: list[tuple[int, int]]) -> tuple[int, int]:
    """The bucket whose aspect ratio is closest to the picture's (in log ratio), the larger if tied."""
    aspect = math.log(size[0] / size[1])
    return min(buckets, key=lambda b: (round(abs(math.log(b[0] / b[1]) - aspect), 9), -b[0] * b[1]))


def scan_folder(folder: str | Path, token: str | None) -> list[Picture]:
    """Every picture in `folder` (not its subfolders) with its size and caption, before any model loads;
    any problem is one VidiffError. Buckets are set by `bucketed`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise VidiffError(f"IMAGES {folder} is not a folder; give a folder of pictures (.png, .jpg, .webp)")
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    pictures = [p for p in files if p.suffix.lower() in PICTURE_SUFFIXES]
    if not pictures:
        raise VidiffError(
            f"IMAGES {folder} holds no pictures ({', '.join(PICTURE_SUFFIXES)}); put the training pictures there"
        )
    stems = {p.stem for p in pictures}
    captions = {p.stem: p for p in files if p.suffix.lower() == CAPTION_SUFFIX}
    for caption in captions.values():
        if caption.stem not in stems:
            raise VidiffError(
                f"caption {caption} has no picture of the same name beside it; rename it to match its picture or remove it"
            )
    found = []
    for path in pictures:
        size = _picture_size(path)
        caption_file = captions.get(path.stem)
        if caption_file is not None:
            caption, captioned = " ".join(caption_file.read_text(encoding="utf-8", errors="replace").split()), True
        elif token is not None:
            caption, captioned = token, False
        else:
            raise VidiffError(
                f"picture {path} has no caption ({path.stem}.txt); give --token WORD to caption every picture "
                "without one, or write a NAME.txt beside each"
            )
        found.append(Picture(path, size, caption, captioned, (0, 0)))
    return found


def bucketed(pictures: list[Picture], resolution: int, step: int) -> list[Picture]:
    """Each picture with the bucket it trains at; one with fewer pixels than resolution² is an error
    (it would be enlarged, and the LoRA would learn its blur)."""
    buckets = bucket_sizes(resolution, step)
    for picture in pictures:
        width, height = picture.size
        if width * height < resolution * resolution:
            raise VidiffError(
                f"picture {picture.path} is {width}x{height}, smaller than --resolution {resolution} "
                f"({resolution}x{resolution} pixels); give larger pictures or a lower --resolution"
            )
    return [replace(p, bucket=nearest_bucket(p.size, buckets)) for p in pictures]


def _picture_size(path: Path) -> tuple[int, int]:
    image = _read(path)
    return image.shape[1], image.shape[0]


def _read(path: Path) -> np.ndarray:
    """RGB uint8; an unreadable file is an error naming it."""
    data = np.fromfile(str(path), np.uint8)  # imread can't take every file name on every platform
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise VidiffError(f"picture {path} could not be read as an image; remove it or convert it to PNG or JPEG")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class DataSet:
    """The pictures in batches: an epoch is every picture `repeats` times, batched within its bucket,
    the batches shuffled. Batch `step` and its crops and flips depend only on (seed, step), so a run
    resumed at any step sees exactly what an uninterrupted one sees."""

    def __init__(self, pictures: list[Picture], batch_size: int, repeats: int, seed: int, flip: bool):
        self.pictures, self.batch_size, self.repeats, self.seed, self.flip = pictures, batch_size, repeats, seed, flip
        self.by_bucket: dict[tuple[int, int], list[int]] = {}
        for index, picture in enumerate(pictures):
            self.by_bucket.setdefault(picture.bucket, []).append(index)
        self.steps_per_epoch = sum(math.ceil(len(v) * repeats / batch_size) for v in self.by_bucket.values())
        self._epoch: tuple[int, list[list[int]]] | None = None
        # each picture decoded once and kept at the size that covers its bucket (a 12-megapixel photo
        # becomes about resolution² pixels): tens of pictures fit in memory, and no step decodes again
        self._covering: dict[int, np.ndarray] = {}

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        if self._epoch is None or self._epoch[0] != epoch:
            rng = np.random.default_rng([self.seed, 0, epoch])
            batches = []
            for bucket in sorted(self.by_bucket):
                members = np.array(self.by_bucket[bucket] * self.repeats)
                members = members[rng.permutation(len(members))]
                batches += [members[i : i + self.batch_size].tolist() for i in range(0, len(members), self.batch_size)]
            self._epoch = (epoch, [batches[i] for i in rng.permutation(len(batches))])
        return self._epoch[1]

    def batch(self, step: int) -> Batch:
        indices = self.epoch_batches(step // self.steps_per_epoch)[step % self.steps_per_epoch]
        rng = np.random.default_rng([self.seed, 1, step])
        pixels, captions, sizes, crops = [], [], [], []
        for index in indices:
            picture = self.pictures[index]
            if index not in self._covering:
                self._covering[index] = cover(_read(picture.path), picture.bucket)
            image = self._covering[index]
            if self.flip and rng.random() < 0.5:  # before the crop, so that SDXL's crop numbers describe what it sees
                image = image[:, ::-1]
            image, crop = random_crop(image, picture.bucket, rng)
            pixels.append(image.astype(np.float32) / 127.5 - 1.0)
            captions.append(picture.caption)
            sizes.append((picture.size[1], picture.size[0]))
            crops.append(crop)
        return Batch(np.stack(pixels), captions, sizes, crops)

    def summary(self, resolution: int) -> str:
        """What the run will train on, before it starts: pictures, sizes, captions, buckets, steps per epoch."""
        widths = [p.size[0] for p in self.pictures]
        heights = [p.size[1] for p in self.pictures]
        areas = sorted(self.pictures, key=lambda p: p.size[0] * p.size[1])
        small, large = areas[0].size, areas[-1].size
        captioned = sum(p.captioned for p in self.pictures)
        buckets = Counter(p.bucket for p in self.pictures)
        lines = [
            f"pictures   {len(self.pictures)} ({small[0]}x{small[1]} to {large[0]}x{large[1]}; "
            f"widths {min(widths)}-{max(widths)}, heights {min(heights)}-{max(heights)})",
            f"captions   {captioned} from NAME.txt files, {len(self.pictures) - captioned} from --token",
            f"buckets    {len(buckets)} at --resolution {resolution}: "
            + ", ".join(f"{w}x{h} ({n})" for (w, h), n in sorted(buckets.items())),
            f"epoch      {self.steps_per_epoch} steps (each picture {self.repeats}x, batches of {self.batch_size})",
        ]
        return "\n".join(lines)


def cover(image: np.ndarray, bucket: tuple[int, int]) -> np.ndarray:
    """The picture scaled, keeping its aspect ratio, to the smallest size that covers the bucket."""
    width, height = bucket
    scale = max(width / image.shape[1], height / image.shape[0])
    size = (max(width, round(image.shape[1] * scale)), max(height, round(image.shape[0] * scale)))
    if size == image.shape[1::-1]:
        return image
    # area averaging when shrinking (no aliasing), cubic when a picture must grow a little to fill its bucket
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)


def random_crop(image: np.ndarray, bucket: tuple[int, int], rng: np.random.Generator) -> tuple[np.ndarray, tuple[int, int]]:
    """The bucket's size cut from a random place of a picture that covers it; and the cut's (top, left)."""
    width, height = bucket
    top = int(rng.integers(0, image.shape[0] - height + 1))
    left = int(rng.integers(0, image.shape[1] - width + 1))
    return image[top : top + height, left : left + width], (top, left)
