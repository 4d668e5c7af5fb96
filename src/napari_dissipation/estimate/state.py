"""What the training loop carries from step to step, and its checkpoint file.

A checkpoint is a dict of tensors and state dicts plus one JSON string (``"meta"``) and
the fingerprint of the inputs; it loads with ``torch.load(weights_only=True)``, so no
pickled code is executed.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..errors import InputError

__all__ = ["TrainingState", "CHECKPOINT_FORMAT", "read_checkpoint"]

#: Marks a training checkpoint.
CHECKPOINT_FORMAT = "napari-dissipation-checkpoint/1"


@dataclass
class TrainingState:
    """The loop's bookkeeping (everything but the weights and the optimiser).

    Attributes
    ----------
    iteration : int
        Steps done.
    seconds : float
        Training time so far (the warm start's included), s.
    done : bool
        Whether the loop has ended.
    reason : str
        Why it ended (or will): ``"iterations"``, ``"seconds"``, ``"early stopping"``,
        ``"stopped"``.
    best_obj : float or None
        Held-out NEEP objective of the kept weights.
    best_iter : int
        Step whose weights are kept.
    bad_evals : int
        Evaluations since the kept weights last changed.
    val_obj, rate : float or None
        Held-out objective and EP rate (k_B/s) at the last evaluation.
    history : list of dict
        One entry per evaluation.
    best_state : dict of tensors
        The kept weights (not part of :meth:`meta`).
    """

    iteration: int = 0
    seconds: float = 0.0
    done: bool = False
    reason: str = "iterations"
    best_obj: float | None = None
    best_iter: int = 0
    bad_evals: int = 0
    val_obj: float | None = None
    rate: float | None = None
    history: list = field(default_factory=list)
    best_state: dict = field(default_factory=dict, repr=False)

    def meta(self) -> dict:
        """The JSON-ready part of the state."""
        out = asdict(self)
        del out["best_state"]
        return out

    def to_checkpoint(self, *, model, average, optimizer, rng) -> dict:
        """A checkpoint of the loop: tensors on the CPU and one JSON string ``"meta"``.

        Keys ``model``, ``average``, ``best``, ``optimizer`` (state dicts), ``torch_rng``
        (uint8 tensor) and ``meta`` (this state, the numpy generator's state, the format).
        """
        opt_state = optimizer.state_dict()
        opt_state = {"state": {i: _cpu(s) for i, s in opt_state["state"].items()},
                     "param_groups": opt_state["param_groups"]}
        meta = dict(self.meta(), format=CHECKPOINT_FORMAT, rng=rng.bit_generator.state)
        return {"meta": json.dumps(meta), "model": _cpu(model.state_dict()),
                "average": _cpu(average.state_dict()), "best": _cpu(self.best_state),
                "optimizer": opt_state, "torch_rng": torch.get_rng_state()}

    @classmethod
    def from_checkpoint(cls, blob: dict, *, model, average, optimizer, rng,
                        device) -> TrainingState:
        """Load weights, optimiser and generators from ``blob``; return the state."""
        meta = json.loads(blob["meta"])
        model.load_state_dict(blob["model"])
        average.load_state_dict(blob["average"])
        optimizer.load_state_dict(blob["optimizer"])
        rng.bit_generator.state = meta.pop("rng")
        torch.set_rng_state(blob["torch_rng"])
        meta.pop("format", None)
        best = {k: v.to(device) for k, v in blob["best"].items()}
        return cls(**meta, best_state=best)

    def save(self, path: Path, *, fingerprint: dict, model, average, optimizer, rng) -> None:
        """Write the checkpoint to ``path`` atomically, with the inputs' fingerprint."""
        from ..io import atomic_output

        blob = self.to_checkpoint(model=model, average=average, optimizer=optimizer, rng=rng)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(path) as tmp:
            torch.save(dict(blob, fingerprint=json.dumps(fingerprint)), tmp)


def read_checkpoint(path, *, fingerprint: dict) -> dict:
    """A checkpoint written by :meth:`TrainingState.save`, checked against ``fingerprint``.

    Raises
    ------
    InputError
        The file is missing, unreadable, or was made with other inputs or options.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no checkpoint to resume from")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        meta = json.loads(blob["meta"])
        if meta.get("format") != CHECKPOINT_FORMAT:
            raise ValueError("not a napari-dissipation checkpoint")
        saved = json.loads(blob["fingerprint"])
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path}: unreadable checkpoint ({reason[:120]})") from None
    if saved != fingerprint:
        diff = _first_difference(saved, fingerprint)
        raise InputError(f"{path}: the checkpoint was made with other inputs or options "
                         f"({diff}); start a new run instead of resuming")
    return blob


def _cpu(state: dict) -> dict:
    return {k: v.detach().cpu().clone() for k, v in state.items()}


def _first_difference(old, new, where: str = "") -> str:
    """``key: old -> new`` for the first place two JSON-like values differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in list(old) + [k for k in new if k not in old]:
            if old.get(key) != new.get(key):
                return _first_difference(old.get(key), new.get(key),
                                         f"{where}.{key}" if where else str(key))
    text = f"{old!r} -> {new!r}"
    return f"{where}: {text[:160]}" if where else text[:160]
