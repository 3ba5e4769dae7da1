"""Config's settings as Gradio controls, each made from its field's declaration (config.setting), so that a
new setting gets a control, and a parameter of the `stylize` endpoint, without UI code.

Every control starts empty (None): an API caller who leaves a setting out gets the preset's value or
the built-in default, as on the command line. The page fills the controls with those values when it
loads and when a preset is chosen (values_for).
"""

from __future__ import annotations

import typing
from dataclasses import Field, fields
from typing import Any

import gradio as gr

from ..settings.config import Config, Setting
from ..settings.keyframes import NUMBERS, TEXTS, WHOLE_NUMBERS

# Settings the page doesn't offer: the UI chooses where its outputs go, replaces its own results, and
# resumes a stopped run itself (Resume); writing frames into any folder of the machine is not for a web page.
MANAGED = ("overwrite", "restart", "save_frames")
# Shown first; the rest follow under "More settings", in Config's order.
MAIN = ("prompt", "negative_prompt", "strength", "steps", "model", "max_side", "max_frames")


def user_fields(config: type = Config) -> list[Field]:
    """The fields of `config` that the page and the API offer, in declaration order."""
    return [f for f in fields(config) if f.name not in MANAGED and "setting" in f.metadata]


def make_control(field: Field, hint: Any) -> gr.Component:
    """The control for one setting: choices -> Dropdown, bool -> Checkbox, a plain number -> Number, anything
    that may be text (keyframes, 'auto', a frame rate such as 30000/1001, lists) -> Textbox; its help is the
    control's info."""
    declared: Setting = field.metadata["setting"]
    common = dict(label=field.name, info=declared.help.replace("`", ""), value=None, elem_id=f"setting-{field.name}")
    if hint is bool:
        return gr.Checkbox(**common)
    if declared.choices:
        return gr.Dropdown(choices=list(declared.choices), multiselect=declared.repeatable, **common)
    if declared.repeatable:
        return gr.Textbox(lines=2, placeholder="one per line", **common)
    if not _shown_as_text(field, hint):
        return gr.Number(precision=0 if _number_kind(hint) is int else None, **common)
    if declared.keyframes in (NUMBERS, WHOLE_NUMBERS):
        common["info"] += " A number, or keyframes: 0:0.3, 48:0.7 (frames) or 0s:0.3, 2.5s:0.7 (seconds)."
    return gr.Textbox(lines=2 if declared.keyframes == TEXTS else 1, **common)


def make_controls(config: type = Config, *, only: tuple[str, ...] | None = None,
                  leave_out: tuple[str, ...] = ()) -> dict[str, gr.Component]:
    """A control for every setting the page offers (or those `only` names, in their order), by field name;
    to be called inside a gr.Blocks."""
    hints = typing.get_type_hints(config)
    offered = {f.name: f for f in user_fields(config) if f.name not in leave_out}
    names = [name for name in only if name in offered] if only is not None else list(offered)
    return {name: make_control(offered[name], hints[name]) for name in names}


def to_settings(values: dict[str, Any], config: type = Config) -> dict[str, Any]:
    """The controls' values as Config keyword arguments; an empty control (None) is left out, so that the
    preset's value or the default holds. Config checks the values and explains a bad one."""
    hints = typing.get_type_hints(config)
    by_name = {f.name: f for f in user_fields(config)}
    settings = {}
    for name, value in values.items():
        if value is None or name not in by_name:
            continue
        declared: Setting = by_name[name].metadata["setting"]
        hint = hints[name]
        if declared.repeatable:
            lines = value if isinstance(value, (list, tuple)) else str(value).splitlines()
            settings[name] = tuple(line.strip() for line in lines if str(line).strip())
        elif isinstance(value, str) and hint is not str:
            text = value.strip()
            if text == "":
                if type(None) in typing.get_args(hint):
                    settings[name] = None
                continue  # a number or keyframes can't be empty: the preset's or the default holds
            settings[name] = _parse_number(text, hint)
        elif isinstance(value, float) and _number_kind(hint) is int and value.is_integer():
            settings[name] = int(value)  # JSON and the Number control hand whole numbers over as floats
        else:
            settings[name] = value
    return settings


def values_for(settings: dict[str, Any], names: list[str], config: type = Config) -> list[Any]:
    """What the controls of `names` show for `settings` (a full set, as Config or a preset resolves it)."""
    hints = typing.get_type_hints(config)
    by_name = {f.name: f for f in user_fields(config)}
    shown = []
    for name in names:
        value, declared = settings[name], by_name[name].metadata["setting"]
        if declared.repeatable and not declared.choices:
            value = "\n".join(value)
        elif declared.repeatable:
            value = list(value)
        elif value is None and _shown_as_text(by_name[name], hints[name]):
            value = ""
        elif value is not None and not isinstance(value, (str, bool)) and _shown_as_text(by_name[name], hints[name]):
            value = str(value)
        shown.append(value)
    return shown


def _shown_as_text(field: Field, hint: Any) -> bool:
    """A setting that isn't a choice and may hold text: a Textbox."""
    declared = field.metadata["setting"]
    return not declared.choices and hint is not bool and (declared.keyframes is not None or _number_kind(hint) is None)


def _number_kind(hint: Any) -> type | None:
    """int or float when the field holds only a number (or None), else None."""
    kinds = [t for t in typing.get_args(hint) or (hint,) if t is not type(None)]
    return kinds[0] if kinds in ([int], [float]) else None


def _parse_number(text: str, hint: Any) -> Any:
    """'0.6' -> 0.6 and '4' -> 4 where the field may hold a number; keyframes, words and fractions stay text."""
    kinds = typing.get_args(hint) or (hint,)
    for kind in (int, float):
        if kind in kinds:
            try:
                return kind(text)
            except ValueError:
                pass
    return text
