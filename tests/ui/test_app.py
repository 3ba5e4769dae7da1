"""The UI's API through gradio_client, its controls made from the settings' declarations, and the Try action."""

from __future__ import annotations

from dataclasses import dataclass, make_dataclass

import pytest

gr = pytest.importorskip("gradio", reason="the UI needs gradio: pip install vidiff[ui]")
from gradio_client import Client, handle_file  # noqa: E402

from helpers import read_frames  # noqa: E402
from vidiff.settings.config import SETTINGS, Config, setting  # noqa: E402
from vidiff.ui import controls  # noqa: E402


def test_stylize_endpoint_returns_the_stylised_video(served, short_clip):
    _app, url = served
    client = Client(url, verbose=False)
    result = client.predict(video=handle_file(str(short_clip)), prompt="a wooden carving", model="tiny",
                            strength=0.5, steps=4, max_side=64, api_name="/stylize")  # fmt: skip
    frames = read_frames(result)
    assert len(frames) == 8
    assert frames[0].shape == (48, 64, 3)


def test_a_preset_holds_where_the_caller_leaves_a_setting_out(served, short_clip):
    app, url = served
    client = Client(url, verbose=False)
    client.predict(video=handle_file(str(short_clip)), preset="watercolour", model="tiny", steps=2, max_side=64,
                   api_name="/stylize")  # fmt: skip
    from vidiff.settings.presets import load_preset

    used = app.jobs.finished.config
    assert used.prompt == load_preset("watercolour").settings["prompt"]
    assert (used.model, used.steps) == ("tiny", 2)


def test_an_upload_that_is_not_a_video_is_one_clear_message(served, tmp_path):
    _app, url = served
    note = tmp_path / "notes.txt"
    note.write_text("not a video\n")
    with pytest.raises(Exception) as raised:
        Client(url, verbose=False).predict(video=handle_file(str(note)), model="tiny", api_name="/stylize")
    message = str(raised.value)
    assert "could not be opened as a video" in message
    assert "\n" not in message.strip()


def test_a_bad_setting_is_named(served, short_clip):
    _app, url = served
    with pytest.raises(Exception, match="strength 1.5"):
        Client(url, verbose=False).predict(video=handle_file(str(short_clip)), model="tiny", strength=1.5,
                                           api_name="/stylize")  # fmt: skip


def test_every_setting_has_a_control_and_an_api_parameter(served):
    app, _url = served
    parameters = {p["parameter_name"] for p in app.get_api_info()["named_endpoints"]["/stylize"]["parameters"]}
    offered = set(SETTINGS) - set(controls.MANAGED)
    assert offered <= parameters
    assert {"video", "video_path", "preset"} <= parameters


def test_a_new_setting_gets_a_control_without_ui_code():
    extended = make_dataclass("Extended", [
        ("sparkle", float, setting(0.25, "How much it sparkles.", preset=True)),
        ("glaze", str, setting("matte", "The finish.", choices=("matte", "gloss"))),
    ], bases=(Config,))  # fmt: skip
    with gr.Blocks():
        made = controls.make_controls(extended)
    assert isinstance(made["sparkle"], gr.Number) and made["sparkle"].info == "How much it sparkles."
    assert isinstance(made["glaze"], gr.Dropdown)
    assert controls.to_settings({"sparkle": 0.5, "glaze": "gloss"}, extended) == {"sparkle": 0.5, "glaze": "gloss"}


def test_control_kinds_follow_the_declarations():
    with gr.Blocks():
        made = controls.make_controls()
    assert isinstance(made["color_match"], gr.Checkbox)
    assert isinstance(made["scheduler"], gr.Dropdown) and made["scheduler"].choices
    assert isinstance(made["control"], gr.Dropdown) and made["control"].multiselect
    assert isinstance(made["steps"], gr.Number)
    assert isinstance(made["strength"], gr.Textbox)  # a number, or keyframes


def test_control_values_become_settings():
    settings = controls.to_settings({
        "strength": "0.6", "seed": "0:1234, 311:99", "cadence": "auto", "steps": 4.0, "fps": "30000/1001",
        "lora": "a.safetensors:0.5\n\nb.safetensors", "control": ["canny"], "duration": "", "model_config": "",
        "prompt": "", "max_frames": None,
    })  # fmt: skip
    assert settings == {
        "strength": 0.6, "seed": "0:1234, 311:99", "cadence": "auto", "steps": 4, "fps": "30000/1001",
        "lora": ("a.safetensors:0.5", "b.safetensors"), "control": ("canny",), "duration": None,
        "model_config": None, "prompt": "",
    }  # fmt: skip
    Config(**settings).validate()


def test_what_the_controls_show_gives_back_the_same_settings():
    """The page fills the controls with a preset's settings; a run from them has exactly those settings."""
    from dataclasses import asdict

    from vidiff.settings.presets import load_preset

    names = [f.name for f in controls.user_fields()]
    for settings in (Config(), Config(**load_preset("wood-to-marble").settings), Config(fps="30000/1001", cadence="auto")):
        shown = dict(zip(names, controls.values_for(asdict(settings), names)))
        assert Config(**controls.to_settings(shown)) == settings


@dataclass
class _Cell:
    row: int
    col: int
    settings: dict
    command: str


def test_try_hands_try_looks_the_grid_and_only_the_changed_settings(monkeypatch, tmp_path, short_clip):
    """The Try handler hands vidiff.tryout.try_looks the video, the axes, the preset and the settings the
    user changed from it (not the preset's own values, which would hide a varied preset)."""
    import types

    seen = {}

    def fake_try_looks(input, output, config=None, *, vary=(), at="0", frames=1, parts=None, on_progress=None,
                       cancel=None, **settings):  # fmt: skip
        seen.update(input=input, output=output, config=config, vary=vary, at=at, frames=frames, cancel=cancel,
                    settings=settings)  # fmt: skip
        return types.SimpleNamespace(path=output, cells=[_Cell("", "strength=0.3", {"strength": 0.3}, "vidiff ...")])

    monkeypatch.setattr("vidiff.tryout.try_looks", fake_try_looks)
    from vidiff.settings.presets import load_preset
    from vidiff.ui.app import build_app

    app, jobs = build_app(tmp_path)
    monkeypatch.setattr(jobs, "_parts_for", lambda config: None)
    fn = next(f.fn for f in app.fns.values() if f.api_name == "try")
    watercolour = load_preset("watercolour").settings
    path = fn(str(short_clip), None, "watercolour", "strength", "0.3\n0.5\n", "seed", "1, 2", "12", 1.0,
              model="tiny", steps="4", prompt=watercolour["prompt"], guidance=str(watercolour["guidance"]),
              start=0.0, max_side=None)  # fmt: skip
    assert seen["input"] == str(short_clip)
    assert seen["vary"] == [("strength", ["0.3", "0.5"]), ("seed", ["1", "2"])]
    assert (seen["at"], seen["frames"]) == ("12", 1)
    assert seen["settings"] == {"preset": "watercolour", "model": "tiny", "steps": 4}
    assert path == seen["output"] and path.endswith(".png")
    assert seen["cancel"] is not None


def test_try_endpoint_returns_the_grid(served, short_clip):
    """/try through gradio_client: a real grid of two looks from the tiny model."""
    import cv2

    app, url = served
    grid = Client(url, verbose=False).predict(video=handle_file(str(short_clip)), prompt="a frog", model="tiny",
                                              steps=2, max_side=64, vary_1="seed", values_1="1, 2", at="3",
                                              api_name="/try")  # fmt: skip
    assert cv2.imread(grid) is not None
    cells = app.jobs.last_try.cells
    assert [c.settings for c in cells] == [{"seed": 1}, {"seed": 2}]
    assert [c.command.split("--seed ")[1].split()[0] for c in cells] == ["1", "2"]
    assert all("--start" in c.command for c in cells)  # the moment `at` picked, as a stylize command takes it


def test_jobs_wait_their_turn_and_the_last_one_is_scored(served, short_clip):
    """Two jobs at once: the second waits in the queue (Jobs refuses a second one that runs alongside)."""
    app, url = served
    client = Client(url, verbose=False)
    submitted = [client.submit(video=handle_file(str(short_clip)), prompt="a frog", model="tiny", steps=2,
                               max_side=64, seed=seed, api_name="/stylize") for seed in (1, 2)]  # fmt: skip
    outputs = [job.result(timeout=120) for job in submitted]
    assert all(len(read_frames(path)) == 8 for path in outputs)
    assert app.jobs.status.state == "done" and app.jobs.status.done == 8

    figures, plot = client.predict(api_name="/score")
    assert "warp error" in figures and "8 frames at 64x48" in figures
    assert plot.endswith(".png")


def test_it_serves_its_own_outputs_and_nothing_else(served, short_clip, tmp_path):
    import urllib.error
    import urllib.request

    app, url = served
    output = app.jobs.output_for(str(short_clip), Config(prompt="x", model="tiny"))
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(b"made by the UI")
    elsewhere = tmp_path / "private.mp4"
    elsewhere.write_bytes(b"not the UI's")

    def status(path) -> int:
        try:
            return urllib.request.urlopen(f"{url}gradio_api/file={path}").status
        except urllib.error.HTTPError as err:
            return err.code

    assert status(output) == 200
    assert status(elsewhere) == 403
    assert status(short_clip) == 403
    assert status("/etc/passwd") == 403


def test_the_status_shows_frames_rate_time_left_and_the_latest_frame():
    import numpy as np

    from vidiff.ui.jobs import Status

    shown = Status("running", done=30, total=90, fps=2.0, frame=np.zeros((512, 256, 3), np.uint8)).html()
    assert '<progress value="30" max="90"' in shown
    assert "30 / 90 frames" in shown and "2.00 frames/s" in shown and "about 0:30 left" in shown
    assert 'src="data:image/jpeg;base64,' in shown
    assert Status("stopped", done=30, total=90, fps=2.0).eta is None


def test_a_try_shares_the_loaded_parts_unless_an_axis_changes_them():
    from vidiff.ui.jobs import _shares_parts

    common = Config(model="tiny", lora=("a.safetensors",))
    assert _shares_parts(common, [("strength", ["0.3", "0.5"]), ("prompt", ["a frog", "a toad"])])
    assert _shares_parts(common, [("model", ["tiny"])])
    assert not _shares_parts(common, [("model", ["tiny", "tiny-sdxl"])])
    assert not _shares_parts(common, [("lora", ["b.safetensors"])])
    assert not _shares_parts(common, [("vae", ["tiny"])])
    assert not _shares_parts(common, [("preset", ["watercolour"])])


def test_a_result_the_browser_may_not_play_is_shown_as_h264(tmp_path, short_clip, tiny):
    """HEVC (or ProRes) is what the user asked to download; the page plays an H.264 copy beside the source."""
    import subprocess

    from vidiff.io.ffmpeg import ffmpeg_exe
    from vidiff.ui.jobs import Jobs

    def codec(path) -> str:
        probe = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr
        return probe.split("Video: ")[1].split()[0]

    jobs = Jobs(tmp_path)
    jobs._parts_for = lambda config: tiny
    output = jobs.stylize(str(short_clip), Config(prompt="a frog", model="tiny", steps=2, max_side=64, codec="h265"))
    shown = jobs.result_view(jobs.finished)
    assert (codec(output), codec(shown)) == ("hevc", "h264")
    assert len(read_frames(shown)) == len(read_frames(output)) == 8
    assert codec(jobs.source_view(jobs.finished)) == "h264"
