"""What every benchmark writes beside its figures: the machine, the commit, and its section of RESULTS.md."""

from __future__ import annotations

import os
import platform
import re
import subprocess
from pathlib import Path

import torch


def revision() -> str:
    """The commit the benchmark ran on, and whether vidiff/ had changes not yet committed."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "vidiff"], cwd=root, capture_output=True, text=True)
    except OSError:
        return "unknown (no git)"
    if commit.returncode != 0:
        return "unknown (not a git checkout)"
    return commit.stdout.strip() + (" with uncommitted changes in vidiff/" if dirty.stdout.strip() else "")


def machine(device: torch.device) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    threads = torch.get_num_threads()
    where = f"on the CPU, {threads} thread{'s' * (threads != 1)}"
    if device.type == "cuda":
        where = f"on {torch.cuda.get_device_name(device)}"
    elif device.type != "cpu":
        where = f"on {device.type}"
    return f"{cpu}, {os.cpu_count()} cores; torch {torch.__version__} {where}"


def write_section(path: Path, text: str, name: str) -> None:
    """Replace the section between `<!-- name:begin -->` and `<!-- name:end -->` in `path` (or add
    it), keeping the rest of the file."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    old = path.read_text() if path.exists() else "# Benchmark results\n"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end) + r"\n?", re.S)
    new = pattern.sub(lambda _: text, old, count=1) if pattern.search(old) else old.rstrip("\n") + "\n\n" + text
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(new)
    os.replace(temp, path)
