"""Every option of the estimator, defined once.

Each :class:`Option` carries its default, type, unit, label, help text, command-line flag
and whether the widget shows it on its first screen.  The estimator's configuration
(:class:`~napari_dissipation.estimate.EstimatorConfig`), the ``fit`` command's arguments
and the widget's options form are all generated from :data:`OPTIONS`, so adding an
option means adding one entry here.  This module imports neither torch nor Qt.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import InputError

__all__ = ["Option", "OPTIONS", "GROUPS", "option", "defaults", "validate"]

#: Groups in the order the command line's help and the widget's form show them.
GROUPS = {
    "window": "what one input is",
    "budget": "training budget",
    "network": "network",
    "training": "training",
    "data": "data preparation",
    "compute": "computation",
}


@dataclass(frozen=True)
class Option:
    """One estimator option.

    Attributes
    ----------
    name : str
        Keyword of :class:`~napari_dissipation.EPEstimator` and field of its config.
    default : int, float, str or None
    type : type
        ``int``, ``float`` or ``str`` (the type of a value other than None).
    label : str
        Short label for the widget's form (units in the label where they help).
    help : str
        One or two sentences for tooltips and ``--help``.
    group : str
        Key of :data:`GROUPS`.
    unit : str
        Unit of the value ("" for a count or a name).
    minimum : float, optional
        Smallest allowed value (numbers).
    below_one : bool
        Values must lie strictly below 1 (fractions).
    choices : tuple of str, optional
        The allowed values (strings).
    words : tuple of str
        Words a number option also takes (``"auto"`` for the window length).
    nullable : bool
        None is allowed (and means what ``none_means`` says).
    none_means : str
        What None stands for, in words (shown by the form and ``--help``).
    first_screen : bool
        Shown on the widget's first screen; the others are under "Advanced".
    flag : str
        Long command-line flag; ``--`` + the name with dashes by default.
    short : str, optional
        Short command-line flag.
    metavar : str
        Placeholder of the value in ``--help`` (by default from the type).
    """

    name: str
    default: object
    type: type
    label: str
    help: str
    group: str
    unit: str = ""
    minimum: float | None = None
    below_one: bool = False
    choices: tuple[str, ...] | None = None
    words: tuple[str, ...] = ()
    nullable: bool = False
    none_means: str = ""
    first_screen: bool = False
    flag: str = ""
    short: str | None = None
    metavar: str = ""

    @property
    def cli_flag(self) -> str:
        """The long command-line flag, e.g. ``--frames-per-input``."""
        return self.flag or "--" + self.name.replace("_", "-")

    @property
    def cli_metavar(self) -> str:
        """Placeholder of the value on the command line, e.g. ``N`` or ``SECONDS``."""
        if self.metavar:
            return self.metavar
        if self.unit == "s":
            return "SECONDS"
        return {int: "N", float: "X"}.get(self.type, "NAME")

    def check(self, value):
        """``value`` converted to the option's type; :class:`InputError` when it is refused."""
        if value is None:
            if self.nullable:
                return None
            raise self._refuse("must be given", value)
        if self.type is str:
            value = str(value)
            if self.choices and value not in self.choices:
                raise self._refuse(f"must be one of {', '.join(self.choices)}", value)
            return value
        if isinstance(value, str) and value.strip().lower() in self.words:
            return value.strip().lower()
        if isinstance(value, bool):
            raise self._refuse("must be a number", value)
        try:
            number = self.type(value)
        except (TypeError, ValueError):
            words = "".join(f" or {w!r}" for w in self.words)
            raise self._refuse(f"must be {_a(self.type)}{words}", value) from None
        if self.type is int and number != float(value):
            raise self._refuse("must be a whole number", value)
        if not math.isfinite(number):
            raise self._refuse("must be a finite number", value)
        if self.minimum is not None and number < self.minimum:
            raise self._refuse(f"must be at least {self.minimum:g}", value)
        if self.below_one and number >= 1:
            raise self._refuse("must be below 1", value)
        return number

    def _refuse(self, what: str, value) -> InputError:
        return InputError(f"{self.name} {what}, got {value!r}", option=self.name)


def _a(t: type) -> str:
    return {int: "a whole number", float: "a number"}.get(t, t.__name__)


OPTIONS: tuple[Option, ...] = (
    Option("frames_per_input", "auto", int, "frames per input",
           "Consecutive frames in one input window (k - 1 transitions). auto: the shortest "
           "window beyond which the held-out rate stops rising; longer windows recover EP "
           "that camera noise hides in two frames.",
           "window", minimum=2, words=("auto",), first_screen=True, short="-k", metavar="K"),
    Option("max_iterations", 20000, int, "max. iterations",
           "Training budget in steps.", "budget", minimum=1, first_screen=True),
    Option("max_seconds", None, float, "time budget (s)",
           "Budget of the whole fit in wall-clock seconds (checks, window-length scan, warm "
           "start and training; the final measurement comes after it).",
           "budget", unit="s", minimum=0.001, nullable=True, none_means="no limit",
           first_screen=True),
    Option("patience", 20, int, "patience (evaluations)",
           "Evaluations without improvement on the held-out windows before training stops.",
           "budget", minimum=1),
    Option("channels", 8, int, "network channels",
           "Width of the convolutional feature maps (0: no convolutional part).", "network",
           minimum=0),
    Option("max_pools", 2, int, "down-samplings (max)",
           "Largest number of 2x down-samplings in the convolutional part.", "network",
           minimum=0),
    Option("n_patterns", 16, int, "whole-frame patterns",
           "Whole-frame patterns of the global part (started from principal components of "
           "the frames).", "network", minimum=1),
    Option("hidden", 64, int, "hidden units",
           "Width of the global part's hidden layer.", "network", minimum=1),
    Option("batch_size", 256, int, "batch size (windows)",
           "Windows per training step (under torchrun: over all processes together).",
           "training", minimum=1),
    Option("learning_rate", 2e-3, float, "learning rate",
           "Adam's step size at the start of the cosine schedule.", "training",
           minimum=1e-12),
    Option("weight_decay", 0.0, float, "weight decay",
           "Adam's L2 penalty on the weights.", "training", minimum=0.0),
    Option("eval_every", 200, int, "evaluate every (steps)",
           "Steps between evaluations on the held-out windows (and checkpoints).",
           "training", minimum=1),
    Option("eval_seconds", 10.0, float, "evaluate every (s)",
           "Seconds between evaluations when they come before eval_every steps (large "
           "frames); none: by steps only, for runs that repeat exactly on any machine.",
           "training", unit="s", minimum=0.001, nullable=True, none_means="by steps only"),
    Option("eval_windows", 20000, int, "evaluation windows",
           "Held-out windows used for early stopping (all of them measure the final rate).",
           "training", minimum=1),
    Option("validation_fraction", 0.2, float, "validation fraction",
           "Fraction of the movies (or of the time blocks, for fewer than 4 movies) held out "
           "for every choice: window length, patterns, kept weights.", "training",
           minimum=1e-6, below_one=True),
    Option("test_fraction", 0.25, float, "test fraction",
           "Fraction of the movies (or time blocks) held out to measure the rate and its "
           "interval, and for nothing else.", "training", minimum=1e-6, below_one=True),
    Option("stride", 1, int, "stride (frames)",
           "Keep every stride-th frame (time step stride x dt).", "data", minimum=1),
    Option("bin", 1, int, "bin (pixels)",
           "Sum bin x bin pixel blocks before anything else.", "data", minimum=1),
    Option("nonstationarity", "correct", str, "non-stationarity",
           "Every movie is checked for bleaching, illumination drift and stage drift, with a "
           "warning when found. correct: also remove slow intensity and background trends "
           "and a clear rigid drift before training and inference; check: only warn.",
           "data", choices=("correct", "check")),
    Option("seed", 0, int, "seed",
           "Seeds the split, the initial weights and the batches: a CPU run is reproducible.",
           "compute", minimum=0, first_screen=True),
    Option("device", "auto", str, "device",
           "Where to train: auto (a CUDA GPU when there is one), cpu, cuda or cuda:N.",
           "compute", first_screen=True),
    Option("precision", "auto", str, "precision",
           "Arithmetic of the training forward pass: auto is bfloat16 on CUDA and float32 on "
           "the CPU; objectives, evaluations and outputs are always float32 or better.",
           "compute", choices=("auto", "float32", "bfloat16")),
    Option("threads", None, int, "CPU threads",
           "torch CPU threads.", "compute", minimum=1, nullable=True,
           none_means="torch's default"),
)

_BY_NAME = {o.name: o for o in OPTIONS}
#: Names that older model files and scripts used for an option.
ALIASES = {"n_modes": "n_patterns"}


def option(name: str) -> Option:
    """The :class:`Option` called ``name`` (:class:`KeyError` for an unknown name)."""
    return _BY_NAME[ALIASES.get(name, name)]


def defaults() -> dict:
    """Every option's default, by name."""
    return {o.name: o.default for o in OPTIONS}


def validate(values: dict) -> dict:
    """Every option, checked and converted: ``values`` over the defaults.

    Old names (:data:`ALIASES`) are accepted; an unknown name is an :class:`InputError`
    that lists the known ones.
    """
    out = defaults()
    for name, value in values.items():
        key = ALIASES.get(name, name)
        if key not in _BY_NAME:
            raise InputError(f"unknown option {name!r}; options are: "
                             f"{', '.join(o.name for o in OPTIONS)}")
        out[key] = _BY_NAME[key].check(value)
    return out
