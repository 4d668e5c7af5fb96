"""The estimator's options form, generated from :data:`napari_dissipation.options.OPTIONS`.

One editor per option, chosen from the option's schema entry alone:

=======================  ===============================================================
int                      spin box from ``minimum``
float, or a nullable     line edit for a number (scientific notation allowed); a
int, or a number that    nullable option may be left empty, which means None
also takes words         (``none_means`` is its placeholder, e.g. "no limit"); words
                         (e.g. "auto") are typed in
str with ``choices``     combo box
str                      line edit, or a combo box when the form is given the choices
                         that this machine offers (``runtime_choices``, e.g. devices)
=======================  ===============================================================

Labels, tooltips (help, unit, what None means) and the split between the first screen and
"Advanced" come from the schema too; adding an option to ``OPTIONS`` adds it here.  The
editors are magicgui widgets; the form's ``native`` is the Qt widget to place.

A typed value is checked by the schema (``options.validate``) when the field is left and
before training: a refusal is shown under the form in words, with the option's label
(e.g. "Frames per input must be at least 2, got 1").
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping

from magicgui.widgets import ComboBox, LineEdit, SpinBox
from qtpy.QtCore import QLocale
from qtpy.QtGui import QDoubleValidator, QIntValidator
from qtpy.QtWidgets import QFormLayout, QLabel, QVBoxLayout, QWidget
from superqt import QCollapsible

from ..errors import InputError
from ..options import OPTIONS, Option, option, validate

__all__ = ["OptionsForm", "Rows", "NumberEdit", "editor_for",
           "WIDGET_DEFAULTS", "default_threads", "device_choices"]

INT_MAX = 2**31 - 1
PROBLEM_STYLE = "color: #e05d44"


def default_threads() -> int:
    """torch CPU threads for training in the viewer: leave one core to it, at most 8."""
    return max(1, min(8, (os.cpu_count() or 2) - 1))


#: Where the widget's defaults differ from the library's, and why:
#: ``max_seconds``: one click on Train gives a result in two minutes;
#: ``threads``: one core stays with the viewer so that it stays responsive.
WIDGET_DEFAULTS: dict[str, Callable[[], object]] = {
    "max_seconds": lambda: 120.0,
    "threads": default_threads,
}


def device_choices() -> list[tuple[str, str]]:
    """(label, device) pairs for the ``device`` option: the GPU first when torch sees one."""
    import torch

    out = []
    if torch.cuda.is_available():
        out.append((f"GPU ({torch.cuda.get_device_name(0)})", "cuda"))
    out.append(("CPU", "cpu"))
    return out


class Rows:
    """magicgui widgets as the rows of a Qt form: each widget's label on the left.

    A ``QFormLayout`` sizes the label column from the labels as napari's style draws
    them (magicgui's own ``Container`` measures them in the default font, and its
    columns then do not line up under napari's larger one).  Iterating gives the
    widgets; ``native`` is the Qt widget to place.
    """

    def __init__(self, widgets):
        self.widgets = list(widgets)
        self.native = QWidget()
        self.layout = QFormLayout(self.native)
        self.layout.setContentsMargins(0, 0, 0, 0)
        self.labels: dict[str, QLabel] = {}
        for w in self.widgets:
            label = QLabel(w.label)
            label.setToolTip(w.tooltip or "")
            self.layout.addRow(label, w.native)
            self.labels[w.name] = label

    def __iter__(self):
        return iter(self.widgets)

    def __len__(self) -> int:
        return len(self.widgets)

    def set_row_visible(self, name: str, visible: bool) -> None:
        """Show or hide one row (label and widget)."""
        self.labels[name].setVisible(visible)
        next(w for w in self.widgets if w.name == name).native.setVisible(visible)


def _validator(parent, number_type: type, minimum: float | None):
    if number_type is int:
        validator = QIntValidator(parent)
        if minimum is not None:
            validator.setBottom(int(minimum))
        return validator
    validator = QDoubleValidator(parent)
    validator.setLocale(QLocale.c())  # numbers as Python writes them
    validator.setNotation(QDoubleValidator.Notation.ScientificNotation)
    if minimum is not None:
        validator.setBottom(float(minimum))
    return validator


class NumberEdit(LineEdit):
    """A line edit for one number, or one of a few words.

    Its value is a number of ``number_type``, a word of ``words``, None when empty, or the
    text itself when it is none of these (the options' check then names the problem).
    """

    def __init__(self, *, number_type: type = float, words=(), placeholder: str = "",
                 minimum: float | None = None, **kwargs):
        value = kwargs.pop("value", None)
        super().__init__(**kwargs)
        self.number_type, self.words = number_type, tuple(words)
        if not self.words:
            self.native.setValidator(_validator(self.native, number_type, minimum))
        self.native.setPlaceholderText(placeholder)
        self.set_value(value)

    def get_value(self):
        text = self.native.text().strip()
        if not text:
            return None
        if text.lower() in self.words:
            return text.lower()
        try:
            number = float(text)
        except ValueError:
            return text
        if self.number_type is int and number.is_integer():
            return int(number)
        return number

    def set_value(self, value) -> None:
        if value is None:
            text = ""
        elif isinstance(value, float) and math.isfinite(value):
            text = f"{value:.9g}"
        else:
            text = str(value)
        self.native.setText(text)


def _tooltip(o: Option) -> str:
    tip = o.help
    if o.unit:
        tip += f" Unit: {o.unit}."
    if o.nullable and o.none_means:
        tip += f" Empty: {o.none_means}."
    return tip


def _step(default) -> int:
    """A spin-box step of about a tenth of the default's order of magnitude."""
    if not isinstance(default, int) or default <= 0:
        return 1
    return max(1, 10 ** (len(str(default)) - 2))


def _number_editor(o: Option, value, common: dict):
    if o.type is int and not o.nullable and not o.words:
        minimum = int(o.minimum) if o.minimum is not None else 0
        return SpinBox(value=int(value), min=minimum, max=INT_MAX, step=_step(o.default),
                       **common)
    placeholder = " or ".join(([o.none_means] if o.nullable and o.none_means else [])
                              + list(o.words))
    return NumberEdit(number_type=o.type, words=o.words, value=value, minimum=o.minimum,
                      placeholder=placeholder, **common)


def editor_for(o: Option, value, choices: list | None = None):
    """A magicgui editor for option ``o``, showing ``value`` (see the module docstring)."""
    common = {"name": o.name, "label": o.label[:1].upper() + o.label[1:],
              "tooltip": _tooltip(o)}
    if o.type in (int, float):
        return _number_editor(o, value, common)
    if choices is None and o.choices:
        choices = list(o.choices)
    if choices is not None:
        combo = ComboBox(choices=choices, **common)
        if value in combo.choices:
            combo.value = value
        return combo
    return LineEdit(value="" if value is None else str(value), **common)


class OptionsForm:
    """Editors for every estimator option: first-screen ones, then "Advanced".

    Parameters
    ----------
    widget_defaults : mapping of name to callable, optional
        Defaults of the form that differ from the schema's (:data:`WIDGET_DEFAULTS`).
    runtime_choices : mapping of name to callable, optional
        For a str option whose values depend on the machine: a callable giving
        ``(label, value)`` pairs (default: the devices torch sees).

    Attributes
    ----------
    editors : dict of str to magicgui ValueWidget
        One per option, by name.
    first, advanced : Rows
        The first screen's editors and the others.
    collapsible : superqt.QCollapsible
        The "Advanced" section (collapsed at first).
    problem : QLabel
        Under the form: why a typed value is refused (hidden when all are fine).
    native : QWidget
    """

    def __init__(self, *, widget_defaults: Mapping[str, Callable] | None = None,
                 runtime_choices: Mapping[str, Callable] | None = None):
        widget_defaults = WIDGET_DEFAULTS if widget_defaults is None else widget_defaults
        runtime_choices = ({"device": device_choices} if runtime_choices is None
                           else runtime_choices)
        self.editors = {}
        for o in OPTIONS:
            value = widget_defaults[o.name]() if o.name in widget_defaults else o.default
            choices = runtime_choices[o.name]() if o.name in runtime_choices else None
            self.editors[o.name] = editor_for(o, value, choices)
        self.first = Rows(self.editors[o.name] for o in OPTIONS if o.first_screen)
        self.advanced = Rows(self.editors[o.name] for o in OPTIONS if not o.first_screen)
        self.collapsible = QCollapsible("Advanced")
        self.collapsible.addWidget(self.advanced.native)
        self.problem = QLabel()
        self.problem.setWordWrap(True)
        self.problem.setStyleSheet(PROBLEM_STYLE)
        self.problem.setVisible(False)
        self.native = QWidget()
        layout = QVBoxLayout(self.native)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.first.native)
        layout.addWidget(self.problem)
        layout.addWidget(self.collapsible)
        for editor in self.editors.values():
            if isinstance(editor, LineEdit):
                editor.native.editingFinished.connect(self.check)

    def values(self) -> dict:
        """Every option's value as the editors show it (keywords for ``EPEstimator``)."""
        return {name: editor.value for name, editor in self.editors.items()}

    def set_values(self, **values) -> None:
        """Set editors by option name (old names accepted).

        Raises
        ------
        KeyError
            For a name that is no option.
        InputError
            For a value a choice list does not offer.
        """
        for name, value in values.items():
            editor = self.editors[option(name).name]
            if isinstance(editor, ComboBox) and value not in editor.choices:
                if option(name).choices:
                    raise InputError(f"{name} must be one of {', '.join(option(name).choices)}"
                                     f", got {value!r}")
                editor.set_choice(str(value), value)  # e.g. a device this list left out
            try:
                editor.value = value
            except ValueError as exc:
                raise InputError(f"{name}: {exc}") from None

    def check(self) -> str | None:
        """Check every field with the schema; show the first problem under the form.

        Returns the problem in words (None when every value is accepted).
        """
        try:
            validate(self.values())
        except InputError as exc:
            text = self.explain(exc)
        else:
            text = None
        self.problem.setText(text or "")
        self.problem.setVisible(text is not None)
        return text

    def explain(self, exc: InputError) -> str:
        """``exc``'s message with the option's label for its name (as the form shows it)."""
        text = str(exc)
        name = getattr(exc, "option", None)
        editor = self.editors.get(name) if isinstance(name, str) else None
        if editor is not None:
            label = editor.label
            text = label + text[len(name):] if text.startswith(name) else f"{label}: {text}"
        return text

    def set_enabled(self, enabled: bool) -> None:
        """Enable or disable every editor (disabled while a job runs)."""
        for editor in self.editors.values():
            editor.enabled = enabled
