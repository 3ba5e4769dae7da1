"""The page and its API: `vidiff ui` builds this gr.Blocks and serves it.

Every action is also an API endpoint whose parameters are named after the settings:
Client(url).predict(video=handle_file("in.mp4"), prompt="...", api_name="/stylize") returns the
stylised video's path; "/try" returns the grid of looks; "/stop" and "/resume" act on the running job.
"""

from __future__ import annotations

import inspect
import logging
import os
import tempfile
from dataclasses import asdict
from functools import wraps
from pathlib import Path
from typing import Any, Callable

import gradio as gr

from ..errors import Interrupted, VidiffError
from ..settings.config import Config
from ..settings.presets import list_presets, load_preset
from ..tryout import OWN_SETTINGS
from .controls import MAIN, make_controls, to_settings, values_for
from .jobs import Jobs

# The result plays in step with the source beside it: the result's player leads, the source's follows.
# (Media events don't bubble, so they are caught on their way down, at the document.)
SYNC_JS = """
<script>
(() => {
  const follower = () => document.querySelector('#vidiff-source video');
  const leads = (event) => event.target.closest && event.target.closest('#vidiff-result');
  const follow = (event) => {
    const source = follower();
    if (!leads(event) || !source) return;
    const result = event.target;
    if (Math.abs(source.currentTime - result.currentTime) > 0.05) source.currentTime = result.currentTime;
    if (event.type === 'play') { source.muted = true; source.play().catch(() => {}); }
    if (event.type === 'pause') source.pause();
  };
  for (const type of ['play', 'pause', 'seeked', 'ratechange']) document.addEventListener(type, follow, true);
  document.addEventListener('ratechange', (e) => { const s = follower(); if (leads(e) && s) s.playbackRate = e.target.playbackRate; }, true);
})();
</script>
"""

NO_PRESET = "(none)"
# The job endpoints share one queue slot: one job at a time, the others wait their turn.
JOB = dict(concurrency_id="job", concurrency_limit=1)
TRY_FRAMES = 1


def build_app(root: str | Path) -> tuple[gr.Blocks, Jobs]:
    """The page, with the jobs it runs kept under `root`."""
    jobs = Jobs(root)
    presets = list_presets()
    with gr.Blocks(title="vidiff", analytics_enabled=False) as app:
        gr.Markdown("## vidiff: restyle a video with Stable Diffusion")
        with gr.Row():
            with gr.Column(scale=2):
                video = gr.Video(label="video", sources=["upload"], height=260, elem_id="vidiff-input")
                video_path = gr.Textbox(label="video_path", info="Or the path of a video on the machine vidiff runs on.")
                preset = gr.Dropdown(choices=[NO_PRESET] + [p.name for p in presets], value=None, label="preset", elem_id="vidiff-preset",
                                     info="A style; the settings below take its values, and yours go over them.")
                described = gr.Markdown()
                controls = _laid_out_controls()
            with gr.Column(scale=3):
                # the job in progress, Stylize's or Try's
                status = gr.HTML(jobs.status.html(), elem_id="vidiff-status-box")
                with gr.Tabs():
                    with gr.Tab("Stylize"):
                        with gr.Row():
                            run = gr.Button("Stylize", variant="primary", elem_id="vidiff-stylize")
                            stop = gr.Button("Stop", variant="stop", elem_id="vidiff-stop")
                            resume = gr.Button("Resume", elem_id="vidiff-resume")
                        with gr.Row():
                            source_view = gr.Video(label="source", interactive=False, elem_id="vidiff-source")
                            result_view = gr.Video(label="result (plays in step with the source)", interactive=False,
                                                   elem_id="vidiff-result")
                        download = gr.File(label="download", interactive=False, height=60, elem_id="vidiff-download")
                        score = gr.Button("Measure flicker (vidiff score)", elem_id="vidiff-score")
                        figures = gr.Markdown(label="flicker", elem_id="vidiff-figures")
                        plot = gr.Image(label="warp error per frame", show_label=False, interactive=False, height=240)
                    with gr.Tab("Try"):
                        gr.Markdown("A grid of looks on a few frames, before the long render (`vidiff try`): the "
                                    "columns vary one setting (or the preset), the rows another; the other settings "
                                    "are the ones at the left.")
                        axes = ["preset", *(name for name in controls if name not in OWN_SETTINGS)]
                        values_info = "One a line, or comma-separated (quote a value with commas); ranges: 1..8, 0.2..0.8:0.2."
                        with gr.Row():
                            vary_1 = gr.Dropdown(choices=axes, value="strength", label="vary_1", info="The columns.")
                            values_1 = gr.Textbox(label="values_1", lines=3, value="0.3, 0.5, 0.7", info=values_info)
                        with gr.Row():
                            vary_2 = gr.Dropdown(choices=axes, value=None, label="vary_2", info="The rows (optional).")
                            values_2 = gr.Textbox(label="values_2", lines=3, info=values_info)
                        with gr.Row():
                            at = gr.Textbox(label="at", value="0", info="Where in the video: a frame number (48), seconds (1.5s) or a time (00:01.5).")
                            frames = gr.Number(label="frames", value=TRY_FRAMES, precision=0,
                                               info="1 gives a picture; more give a short video grid.")
                        with gr.Row():
                            tried = gr.Button("Try", variant="primary", elem_id="vidiff-try")
                            stop_try = gr.Button("Stop", variant="stop")
                        grid = gr.File(label="grid", interactive=False, height=60)
                        grid_image = gr.Image(label="looks", interactive=False)
                        grid_video = gr.Video(label="looks", interactive=False, visible=False)
                        cells = gr.Dataframe(headers=["row", "col", "settings", "command"], interactive=False)
        seen = gr.State(-1)
        timer = gr.Timer(0.5)

        def _stylize(video, video_path, preset, **settings) -> str:
            return str(jobs.stylize(_input(video, video_path), _config(preset, settings)))

        def _try(video, video_path, preset, vary_1, values_1, vary_2, values_2, at, frames, **settings) -> str:
            vary = [(name, _values(values)) for name, values in ((vary_1, values_1), (vary_2, values_2))
                    if name and values and str(values).strip()]  # fmt: skip
            chosen = preset if preset and preset != NO_PRESET else None
            # the controls hold the preset's values (or the defaults) plus the user's changes: only the changes
            # go over each cell's preset, so that a varied preset shows
            defaults = asdict(Config(**(load_preset(chosen).settings if chosen else {})))
            changes = {name: value for name, value in to_settings(settings).items()
                       if name not in OWN_SETTINGS and value != defaults[name]}  # fmt: skip
            count = int(frames or TRY_FRAMES)
            jobs.last_try = jobs.try_looks(_input(video, video_path), vary, str(at or "0"), count, chosen, **changes)
            return str(jobs.last_try.path)

        def _resume() -> str:
            return str(jobs.resume())

        def _shown() -> tuple:
            job = jobs.finished
            return jobs.source_view(job), jobs.result_view(job)

        def _shown_try():
            result = jobs.last_try
            path = str(result.path)
            is_video = Path(path).suffix.lower() in (".mp4", ".webm", ".mkv", ".mov")
            rows = [[c.row, c.col, _as_text(c.settings), c.command] for c in result.cells]
            return (gr.update(value=None if is_video else path, visible=not is_video),
                    gr.update(value=path if is_video else None, visible=is_video), rows)  # fmt: skip

        def _score() -> tuple:
            report, plot_path = jobs.score()
            return f"```text\n{report.table()}\n```", str(plot_path)

        def _poll(last: int):
            now = jobs.status
            if now.version == last:
                return gr.skip(), last
            return now.html(), now.version

        def _stop() -> None:
            if not jobs.stop():
                gr.Info("no job is running")

        # 1. The settings: filled on load, and from a preset when one is chosen
        app.load(lambda: values_for(asdict(Config()), list(controls)), outputs=list(controls.values()), api_visibility="private")
        preset.change(lambda name: _preset_values(name, list(controls)), inputs=preset,
                      outputs=[described, *controls.values()], api_visibility="private")

        # 2. The jobs: API endpoints named after the action, their parameters after the settings
        settings_in = dict(inputs_kwargs=controls)
        run.click(
            _named(_stylize, ["video", "video_path", "preset"], controls), inputs=[video, video_path, preset],
            outputs=download, api_name="stylize", show_progress="hidden", **settings_in, **JOB,
        ).success(_shown, outputs=[source_view, result_view], api_visibility="private")  # fmt: skip
        resume.click(_errors(_resume), outputs=download, api_name="resume", show_progress="hidden", **JOB).success(
            _shown, outputs=[source_view, result_view], api_visibility="private"
        )
        stop.click(_stop, api_name="stop", queue=False)
        stop_try.click(_stop, queue=False, api_visibility="private")
        tried.click(
            _named(_try, ["video", "video_path", "preset", "vary_1", "values_1", "vary_2", "values_2", "at", "frames"],
                   controls),
            inputs=[video, video_path, preset, vary_1, values_1, vary_2, values_2, at, frames], outputs=grid,
            api_name="try", show_progress="hidden", **settings_in, **JOB,
        ).success(_shown_try, outputs=[grid_image, grid_video, cells], api_visibility="private")  # fmt: skip
        score.click(_errors(_score), outputs=[figures, plot], api_name="score", **JOB)

        # 3. Progress: the running job's frames, rate, time left and latest frame, polled
        timer.tick(_poll, inputs=seen, outputs=[status, seen], queue=False, api_visibility="private",
                   show_progress="hidden")  # fmt: skip
    app.jobs = jobs
    return app, jobs


def _laid_out_controls() -> dict[str, gr.Component]:
    """The main settings in view, the rest folded away; the controls come from Config's declarations."""
    with gr.Column():
        main = make_controls(only=MAIN)
        with gr.Accordion("More settings", open=False, elem_id="vidiff-more"):
            rest = make_controls(leave_out=MAIN)
    return {**main, **rest}


def _preset_values(name: str | None, names: list[str]) -> list[Any]:
    """The preset's description, and what the controls show for it."""
    chosen = load_preset(name) if name and name != NO_PRESET else None
    settings = asdict(Config(**(chosen.settings if chosen else {})))
    return [chosen.description if chosen else "", *values_for(settings, names)]


def _config(preset: str | None, controls: dict[str, Any]) -> Config:
    """The preset's settings (if one is chosen) with the controls' values over them."""
    chosen = load_preset(preset).settings if preset and preset != NO_PRESET else {}
    return Config(**{**chosen, **to_settings(controls)})


def _input(video: str | None, video_path: str | None) -> str:
    """The uploaded video, else the one at the path given (which is read, never served: the page shows a copy
    of what the run read, from the UI's own folder)."""
    if video:
        path = video
    elif video_path and video_path.strip():
        path = os.path.abspath(os.path.expanduser(video_path.strip()))
    else:
        raise VidiffError("no video: upload one, or give the path of one on this machine (video_path)")
    from ..io.reader import probe

    probe(path)  # not a video: one line saying so, before anything else
    return path


def _values(text: str) -> list[str]:
    """An axis's values: one a line, or comma-separated as `vidiff try --vary` takes them (a value with commas
    quoted: "a carving, oak", "a statue"); ranges such as 1..8 or 0.2..0.8:0.2 as there too."""
    from ..tryout import parse_vary

    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines if len(lines) > 1 else parse_vary(f"values={lines[0]}")[1] if lines else []


def _as_text(settings: Any) -> str:
    if isinstance(settings, dict):
        return ", ".join(f"{k}={v}" for k, v in settings.items())
    return str(settings)


def _errors(fn: Callable) -> Callable:
    """A user-fixable error, or a stop, becomes one message in the page (and the API caller's exception)."""

    @wraps(fn)
    def guarded(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except VidiffError as err:
            raise gr.Error(" ".join(str(err).split()), print_exception=False) from None
        except Interrupted:
            raise gr.Error("stopped; the work so far is kept: Resume (or Stylize with the same video and settings) "
                           "continues it", title="Stopped", print_exception=False) from None

    return guarded


def _named(fn: Callable, leading: list[str], controls: dict[str, gr.Component]) -> Callable:
    """`fn` with a signature naming each parameter, all optional, so the API's parameters are the settings
    (and a caller leaves out the ones it doesn't change)."""
    guarded = _errors(fn)
    optional = dict(default=None, annotation=Any)
    guarded.__signature__ = inspect.Signature(
        [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, **optional) for name in leading]
        + [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, **optional) for name in controls]
    )
    return guarded


def serve(host: str = "127.0.0.1", port: int | None = 7860, *, root: str | Path | None = None,
          block: bool = True) -> tuple[gr.Blocks, str]:  # fmt: skip
    """Build the page and serve it at host:port; returns the app and its URL (with `block`, once stopped).
    Serves only the UI's own folder (uploads, outputs); no share link, no analytics."""
    root = Path(root or tempfile.mkdtemp(prefix="vidiff-ui-")).expanduser().resolve()
    (root / "uploads").mkdir(parents=True, exist_ok=True)
    os.environ["GRADIO_TEMP_DIR"] = str(root / "uploads")  # uploads and gradio's copies stay in our folder
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # some of gradio's calls home read only this
    app, _jobs = build_app(root)
    app.queue(default_concurrency_limit=1)
    _, url, _ = app.launch(
        server_name=host, server_port=port, share=False, allowed_paths=[str(root / "jobs"), str(root / "tries")],
        prevent_thread_lock=True, ssr_mode=False, head=SYNC_JS, quiet=True, footer_links=["api"],
        mcp_server=False, pwa=False,
    )  # fmt: skip
    logging.getLogger("vidiff").info(f"serving {url} (Ctrl-C stops it); uploads and results go to {root}")
    if block:
        app.block_thread()
    return app, url
