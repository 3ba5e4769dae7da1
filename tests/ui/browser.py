"""Driving the UI's page in Debian's headless Chromium through Playwright (which must not fetch a browser of
its own: there is none to fetch here). Used by test_browser.py and benchmarks/ui_screenshot.py."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = os.environ.get("VIDIFF_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--disable-sync", "--mute-audio",
    "--autoplay-policy=no-user-gesture-required",
]  # fmt: skip


def missing() -> str | None:
    """Why the browser can't run here, or None."""
    if not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is missing (pip install playwright; never `playwright install`)"
    try:
        import gradio  # noqa: F401
    except ImportError:
        return "gradio is missing (pip install vidiff[ui])"
    return None


@contextmanager
def page(url: str, width: int = 1280, height: int = 900):
    """A fresh headless Chromium (a new profile, deleted after) with the page at `url` loaded."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            tab = browser.new_page(viewport={"width": width, "height": height})
            # what the page asks of anything but its own server (it should load nothing from outside)
            tab.outside = []
            tab.on("request", lambda r: None if r.url.startswith((url, "data:", "blob:")) else tab.outside.append(r.url))
            tab.set_default_timeout(30_000)
            tab.goto(url)
            # the settings are filled once the page has loaded
            tab.wait_for_function("() => { const e = document.querySelector('#setting-steps input');"
                                  " return e && e.value !== ''; }")  # fmt: skip
            yield tab
        finally:
            browser.close()


def set_setting(tab, name: str, value) -> None:
    """Type `value` into the control of setting `name`."""
    field = tab.locator(f"#setting-{name} textarea, #setting-{name} input").first
    if not field.is_visible():  # folded away under "More settings"
        tab.locator("#vidiff-more button").first.click()
    field.fill(str(value))
    field.press("Tab")  # gradio takes a value on change/blur


def upload(tab, video: str | Path) -> None:
    """Upload `video`, replacing the one uploaded before."""
    if tab.locator("#vidiff-input video").count():
        tab.click("#vidiff-input button[aria-label='Clear']")
    tab.locator("#vidiff-input input[type=file]").set_input_files(str(video))
    tab.wait_for_selector("#vidiff-input video")


def result_duration(tab, timeout_ms: int = 60_000, src_not: str | None = None) -> float:
    """Wait for the result player to hold a video the browser can play (a new one: not `src_not`);
    returns its duration. A job that fails instead raises with the page's message."""
    tab.wait_for_function(
        """(old) => { const v = document.querySelector('#vidiff-result video');
                      const s = document.querySelector('#vidiff-status');
                      return (s && s.dataset.state === 'failed')
                             || (v && v.src && v.src !== old && v.readyState >= 1 && v.duration > 0); }""",
        arg=src_not or "", timeout=timeout_ms,
    )  # fmt: skip
    if status(tab).get("state") == "failed":
        raise AssertionError(f"the job failed: {tab.inner_text('#vidiff-status')}")
    return tab.evaluate("document.querySelector('#vidiff-result video').duration")


def result_src(tab) -> str | None:
    return tab.evaluate("(() => { const v = document.querySelector('#vidiff-result video'); return v && v.src; })()")


def status(tab) -> dict:
    return tab.evaluate("""(() => { const s = document.querySelector('#vidiff-status');
        return s ? {state: s.dataset.state, done: Number(s.dataset.done)} : {}; })()""")
