"""The page in a real browser (Debian's headless Chromium): upload, run a tiny-model job, the result plays;
Stop leaves a resumable run and Resume finishes it. Skipped where there is no browser, except under CI."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from browser import missing
from helpers import make_clip, read_frames


@pytest.fixture(scope="module")
def browser_ready():
    reason = missing()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"the browser test must run in CI: {reason}")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory):
    """Long enough (48 frames, one at a time with blend) to press Stop in the middle."""
    return make_clip(tmp_path_factory.mktemp("ui-long") / "long.mp4", size="96x64", rate="24", seconds=2)


def test_a_run_in_the_page_plays_and_stop_leaves_it_resumable(browser_ready, served, short_clip, long_clip,
                                                              monkeypatch):  # fmt: skip
    from browser import page, result_duration, result_src, set_setting, status, upload

    app, url = served
    with page(url) as tab:
        # 1. a short tiny-model job: the result plays in the page
        upload(tab, short_clip)
        for name, value in {"prompt": "a wooden carving", "model": "tiny", "steps": 4, "max_side": 64}.items():
            set_setting(tab, name, value)
        tab.click("#vidiff-stylize")
        assert result_duration(tab) == pytest.approx(8 / 24, abs=0.05)
        assert tab.evaluate("document.querySelector('#vidiff-source video').duration") > 0  # beside it
        assert tab.locator("#vidiff-download a").count() >= 1
        first = result_src(tab)
        # playing the result plays the source beside it, in step
        tab.evaluate("document.querySelector('#vidiff-result video').play()")
        tab.wait_for_function("() => !document.querySelector('#vidiff-source video').paused")
        tab.evaluate("document.querySelector('#vidiff-result video').pause()")
        tab.wait_for_function("() => document.querySelector('#vidiff-source video').paused")

        # 2. a longer one, stopped in the middle: its work folder stays; Resume finishes it
        upload(tab, long_clip)
        for name, value in {"steps": 20, "strength": 0.8, "blend": 0.2, "max_side": 96}.items():
            set_setting(tab, name, value)
        # each frame held back a little until Stop, so that Stop lands mid-run however fast the machine is
        progressed = app.jobs._progressed

        def slowly(progress):
            progressed(progress)
            if not app.jobs._cancel.is_set():
                time.sleep(0.2)

        monkeypatch.setattr(app.jobs, "_progressed", slowly)
        tab.click("#vidiff-stylize")
        tab.wait_for_function("""() => { const s = document.querySelector('#vidiff-status');
                                        return s && s.dataset.state === 'running' && Number(s.dataset.done) >= 3; }""")
        tab.click("#vidiff-stop")
        tab.wait_for_function("() => document.querySelector('#vidiff-status')?.dataset.state === 'stopped'")
        stopped = app.jobs.stopped
        assert stopped is not None and Path(stopped.input).name == long_clip.name
        work = Path(f"{stopped.output}.vidiff")
        assert work.is_dir() and not stopped.output.exists()
        done_at_stop = status(tab)["done"]
        assert 3 <= done_at_stop < 48

        monkeypatch.setattr(app.jobs, "_progressed", progressed)
        tab.click("#vidiff-resume")
        assert result_duration(tab, src_not=first) == pytest.approx(2, abs=0.1)
        assert not work.exists()
        assert len(read_frames(stopped.output)) == 48
        assert tab.evaluate("document.querySelector('#vidiff-status img#vidiff-latest').naturalWidth") == 96
        assert tab.outside == []  # nothing loaded from outside the machine
