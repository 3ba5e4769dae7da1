"""What OUTPUT's form asks for: a video (its codec and audio), an animated GIF, one picture, or a numbered
PNG sequence; and the ffmpeg arguments each codec is encoded with.

Videos and GIFs take only what the ffmpeg that imageio-ffmpeg ships has: libx264, libx265, prores_ks, ffv1,
libvpx-vp9, libopus and aac, the gif encoder with palettegen/paletteuse. Pictures are OpenCV's (PNG, JPEG, WebP).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from ..errors import VidiffError
from ..settings.config import CODECS
from .reader import _printf_number  # the same %d rule as an image-sequence INPUT's

VIDEO, GIF, PICTURE, SEQUENCE = "video", "gif", "picture", "sequence"

# The codecs a video container takes (the first when --codec isn't given). ProRes and FFV1 are for
# editors and archives, whose containers are .mov and .mkv; browsers play H.264 and H.265 in .mp4.
CONTAINERS = {
    ".mp4": ("h264", "h265"),
    ".m4v": ("h264", "h265"),
    ".mov": CODECS,
    ".mkv": CODECS,
    ".webm": ("vp9",),
}
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")

# Each codec's segment container in the work folder: one that holds it and that the concat demuxer joins.
SEGMENT_SUFFIXES = {"h264": ".mp4", "h265": ".mp4", "prores": ".mov", "ffv1": ".mkv", "vp9": ".webm"}

# Audio codecs copied as they are into .mp4/.m4v/.mov; others (PCM, Vorbis, ...) are encoded to AAC.
MP4_AUDIO = ("aac", "mp3", "alac", "ac3", "eac3", "opus", "flac")
WEBM_AUDIO = ("opus", "vorbis")
AAC = ["-c:a", "aac", "-b:a", "192k"]
OPUS = ["-c:a", "libopus", "-b:a", "160k"]

# The names people know the codecs by, for messages and --dry-run.
NAMES = {"h264": "H.264", "h265": "H.265", "prores": "ProRes 422 HQ", "ffv1": "FFV1 (lossless)", "vp9": "VP9",
         "gif": "GIF", "png": "PNG", "jpeg": "JPEG", "webp": "WebP"}  # fmt: skip

_SEQUENCE_EXAMPLE = "out_%05d.png"


@dataclass(frozen=True)
class OutputForm:
    """What OUTPUT is written as."""

    kind: str  # VIDEO, GIF, PICTURE or SEQUENCE
    codec: str  # what the frames end as: a key of NAMES
    suffix: str  # OUTPUT's, lower case
    bit_depth: int = 8  # per channel, for PNG pictures and sequences

    @property
    def segment_codec(self) -> str:
        """The codec of the work folder's segments: a video's own, so nothing is encoded twice; lossless
        FFV1 for the forms made from the whole clip at the end (a GIF's palette) or picture by picture."""
        return self.codec if self.kind == VIDEO else "ffv1"

    @property
    def segment_suffix(self) -> str:
        return SEGMENT_SUFFIXES[self.segment_codec]

    def describe(self) -> str:
        """For --dry-run: 'VP9 video, any audio as Opus'."""
        if self.kind == SEQUENCE:
            return f"numbered {self.bit_depth}-bit PNG pictures, no audio"
        if self.kind == PICTURE:
            depth = f"{self.bit_depth}-bit " if self.codec == "png" else ""
            return f"one {depth}{NAMES[self.codec]} picture"
        if self.kind == GIF:
            return "looping GIF, its palette made for the clip, no audio"
        audio = "as Opus" if self.suffix == ".webm" else "copied, or as AAC"
        return f"{NAMES[self.codec]} video, any audio {audio}"


def is_sequence(path: str | os.PathLike) -> bool:
    """A printf pattern (out_%05d.png): one file per frame."""
    return _printf_number(os.path.basename(os.fspath(path))) is not None


def output_form(path: str | os.PathLike, codec: str | None = None, bit_depth: int = 8) -> OutputForm:
    """The form OUTPUT's name asks for, or a one-line VidiffError for one that can't be written or a
    --codec or --bit-depth that doesn't fit it."""
    path = os.fspath(path)
    suffix = os.path.splitext(path)[1].lower()
    if is_sequence(path):
        number = _printf_number(os.path.basename(path))
        if number.group(2) and not number.group(1):  # %5d pads with spaces: names no one wants, nor matches
            raise VidiffError(f"output {path}: pad the number with zeros ({number.group().replace('%', '%0')}) or "
                              "leave it unpadded (%d)")  # fmt: skip
        if suffix != ".png":
            raise VidiffError(f"output {path}: a numbered sequence is written as PNG; name it like {_SEQUENCE_EXAMPLE}")
        form = OutputForm(SEQUENCE, "png", suffix, bit_depth)
    elif suffix in PICTURE_SUFFIXES:
        form = OutputForm(PICTURE, {".jpg": "jpeg", ".jpeg": "jpeg"}.get(suffix, suffix[1:]), suffix, bit_depth)
    elif suffix == ".gif":
        form = OutputForm(GIF, "gif", suffix, bit_depth)
    elif suffix in CONTAINERS:
        allowed = CONTAINERS[suffix]
        if codec is not None and suffix == ".webm":
            raise VidiffError(f"--codec {codec}: .webm holds VP9 video; leave --codec out, or write .mkv or .mov")
        if codec is not None and codec not in allowed:
            fits = [name for name, codecs in CONTAINERS.items() if codec in codecs]
            raise VidiffError(f"--codec {codec}: {NAMES[codec]} doesn't go in {suffix}, which holds "
                              f"{' or '.join(NAMES[c] for c in allowed)}; write {' or '.join(fits)} instead")  # fmt: skip
        form = OutputForm(VIDEO, codec or allowed[0], suffix, bit_depth)
    else:
        raise VidiffError(
            f"output {path}: can't write {suffix or 'a file without an extension'}; use a video "
            f"({', '.join(CONTAINERS)}), .gif, a picture ({', '.join(PICTURE_SUFFIXES)}) or a numbered sequence "
            f"such as {_SEQUENCE_EXAMPLE}"
        )
    if codec is not None and form.kind != VIDEO:
        raise VidiffError(f"--codec {codec} is for a video (.mov, .mkv, .mp4); {suffix} output has its own, "
                          "leave --codec out")  # fmt: skip
    if bit_depth != 8 and form.codec != "png":
        raise VidiffError(f"--bit-depth {bit_depth} is for PNG output (a .png picture or a sequence such as "
                          f"{_SEQUENCE_EXAMPLE}); {suffix} is written with 8 bits")  # fmt: skip
    return form


def video_args(codec: str, crf: int) -> list[str]:
    """ffmpeg's output arguments that encode RGB frames with `codec`."""
    if codec == "h264":
        return ["-c:v", "libx264", "-preset", "medium", "-crf", str(crf), "-pix_fmt", "yuv420p"]
    if codec == "h265":
        # hvc1: the tag Apple's players need to open H.265 in .mp4/.mov (the join copies it)
        return ["-c:v", "libx265", "-preset", "medium", "-crf", str(crf), "-pix_fmt", "yuv420p", "-tag:v", "hvc1",
                "-x265-params", "log-level=error"]  # fmt: skip
    if codec == "prores":
        # profile 3 is 422 HQ, what editors ask for; the vendor tag makes Final Cut take it as Apple's own
        return ["-c:v", "prores_ks", "-profile:v", "3", "-vendor", "apl0", "-pix_fmt", "yuv422p10le"]
    if codec == "ffv1":
        # RGB, so that the frames come back bit for bit (no conversion to YUV)
        return ["-c:v", "ffv1", "-level", "3", "-pix_fmt", "bgr0"]
    if codec == "vp9":
        # constant quality (-b:v 0); VP9's own scale is 0-63, on which --crf's default 18 is high quality too
        return ["-c:v", "libvpx-vp9", "-crf", str(crf), "-b:v", "0", "-row-mt", "1", "-pix_fmt", "yuv420p"]
    raise ValueError(f"not a video codec: {codec}")


def container_args(suffix: str) -> list[str]:
    # the index up front, so players and browsers can start before the whole file arrives
    return ["-movflags", "+faststart"] if suffix in (".mp4", ".m4v", ".mov") else []


def audio_attempts(suffix: str, source_codecs: list[str]) -> list[list[str]]:
    """The audio arguments to try in turn for a video of `suffix` from a source with these audio codecs:
    copied where the container takes them as they are, else encoded (AAC, or Opus in WebM)."""
    if not source_codecs:
        return [[]]
    if suffix == ".webm":
        return [["-c:a", "copy"], OPUS] if all(codec in WEBM_AUDIO for codec in source_codecs) else [OPUS]
    copyable = suffix == ".mkv" or all(codec in MP4_AUDIO for codec in source_codecs)
    return [["-c:a", "copy"], AAC] if copyable else [AAC]


def stream_codecs(descriptions: list[str]) -> list[str]:
    """'aac (LC), 44100 Hz, ...' -> 'aac'."""
    return [re.split(r"[\s,]", text, maxsplit=1)[0] for text in descriptions]
