"""The README's screenshot of `vidiff ui` (docs/ui.png), made by the project's own commands: the page is
served, driven in Debian's headless Chromium (as tests/ui/test_browser.py drives it) through a run of the
small trained model on the demo clip and a flicker score, then photographed and reduced to a palette PNG.

    python benchmarks/ui_screenshot.py [--out docs/ui.png]
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "tests" / "ui"), str(HERE.parent)]
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from browser import missing, page, result_duration, set_setting, upload  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(HERE.parent / "docs" / "ui.png"))
    parser.add_argument("--max-bytes", type=int, default=400_000)
    args = parser.parse_args()
    reason = missing()
    if reason:
        sys.exit(f"ui_screenshot: {reason}")

    from PIL import Image

    from vidiff.demo import make_demo_clip
    from vidiff.models.tiny import TRAINED_TINY
    from vidiff.ui.app import serve

    with tempfile.TemporaryDirectory() as scratch:
        clip = Path(scratch) / "hopping-ball.mp4"
        make_demo_clip(clip, seconds=1.0)
        app, url = serve("127.0.0.1", free_port(), root=Path(scratch) / "ui", block=False)
        try:
            with page(url, width=1400, height=1000) as tab:
                upload(tab, clip)
                tab.locator("#vidiff-preset input").click()
                tab.get_by_role("option", name="wooden-carving", exact=True).click()
                # the preset's values fill the controls before ours go over them
                tab.wait_for_function("() => document.querySelector('#setting-prompt textarea').value.includes('wooden')")
                settings = {"model": os.path.relpath(TRAINED_TINY), "steps": 8, "max_side": 192}
                for name, value in settings.items():
                    set_setting(tab, name, value)
                tab.click("#vidiff-stylize")
                result_duration(tab, timeout_ms=600_000)
                tab.click("#vidiff-score")
                tab.wait_for_function("() => document.querySelector('#vidiff-figures').textContent.includes('warp error')",
                                      timeout=120_000)  # fmt: skip
                tab.evaluate("document.querySelector('#vidiff-result video').currentTime = 0.5")
                tab.wait_for_timeout(1000)
                shot = tab.screenshot(full_page=True)
        finally:
            app.close()
    picture = Image.open(io.BytesIO(shot)).convert("RGB")
    for width in (1400, 1200, 1000, 800):
        scaled = picture.resize((width, round(picture.height * width / picture.width)), Image.LANCZOS)
        data = io.BytesIO()
        scaled.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(data, "PNG", optimize=True)
        if data.tell() <= args.max_bytes:
            break
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_bytes(data.getvalue())
    print(f"{args.out}: {scaled.width}x{scaled.height}, {data.tell() // 1000} KB")


if __name__ == "__main__":
    main()
