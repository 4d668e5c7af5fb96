"""The training loop, as a generator of progress records.

``train(...)`` yields a :class:`Progress` every few steps and returns a
:class:`TrainOutcome`; nothing here assumes the main thread, and a stop request (a
``threading.Event``) ends training at the next step with the best weights kept.

The same loop runs under ``torchrun`` (see :mod:`.distributed`): each rank takes its share
of every global batch, DDP averages the gradients, rank 0 evaluates and decides, and every
rank keeps the same bookkeeping.  At every evaluation the loop can hand a checkpoint
(:func:`snapshot`) to a callback, and it can start from one (``resume``).
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass, field

import numpy as np
import torch

from .config import EstimatorConfig
from .data import MovieSet, Normalisation
from .distributed import SINGLE, Context
from .model import EPNet
from .objective import neep_objective, safe_exp_neg
from .readout import readout_sd, refit_readout
from .stats import training_units
from .warmstart import warm_start

__all__ = ["Progress", "TrainOutcome", "train", "window_ep", "batch_tensor", "CHECKPOINT_FORMAT"]

#: Steps between progress records (a stop request is seen at every step).
YIELD_EVERY = 10
#: Largest gradient norm of one step; rare transitions with a large |ΔS| otherwise
#: throw the weights far off in one step.
GRAD_CLIP = 1.0
#: The step size decays along a cosine from the learning rate to this fraction of it
#: over the budget: NEEP's gradient is noisy (the mean EP of a transition is small against
#: its spread) and smaller steps late in training average that noise over more batches.
LR_FLOOR = 0.02
#: Per-step decay of the weight average (a memory of about 300 steps).
EMA_DECAY = 0.997
#: Standard errors by which an evaluation must beat the kept weights to replace them.
IMPROVEMENT_SE = 2.0
#: Training windows used for the final Newton refit of the read-out: all of them, up to
#: this many feature values in all (160 MB in float32) and this many pixels read (large
#: frames), but at least READOUT_MIN_WINDOWS.
READOUT_FEATURE_VALUES = 40_000_000
READOUT_PIXELS = 800_000_000
READOUT_MIN_WINDOWS = 100_000
#: Penalties tried for the refit, relative to the mean squared EP of a window.
READOUT_RIDGES = (1e-3, 1e-2, 1e-1, 1.0)
#: Most windows evaluated at once without gradients.
INFER_BATCH = 2048
#: Most pixels (windows x frames x pixels per frame) of one batch evaluated without
#: gradients: the convolutional features of a batch take about 40 bytes per input pixel,
#: so large frames get smaller batches (peak memory stays near 200 MB).
INFER_PIXELS = 1 << 22
#: Marks a training checkpoint (see :func:`train`'s ``checkpoint``).
CHECKPOINT_FORMAT = "napari-dissipation-checkpoint/1"


@dataclass
class Progress:
    """One progress record of a training run.

    Attributes
    ----------
    iteration, max_iterations : int
        Steps done and the step budget.
    seconds : float
        Wall-clock time since training began.
    max_seconds : float or None
        The time budget.
    train_objective : float
        NEEP objective on recent training batches (mean since the last record).
    val_objective : float or None
        NEEP objective on the held-out windows at the last evaluation.
    ep_rate : float or None
        EP rate on the held-out windows at the last evaluation, k_B per second.
    best_iteration : int
        Step whose weights are kept so far.
    evaluated : bool
        Whether this record comes with a fresh evaluation.
    """

    iteration: int
    max_iterations: int
    seconds: float
    max_seconds: float | None
    train_objective: float
    val_objective: float | None
    ep_rate: float | None
    best_iteration: int
    evaluated: bool = False

    @property
    def fraction(self) -> float:
        """Fraction of the budget used, in [0, 1]."""
        f = self.iteration / max(self.max_iterations, 1)
        if self.max_seconds:
            f = max(f, self.seconds / self.max_seconds)
        return min(f, 1.0)


@dataclass
class TrainOutcome:
    """What training leaves behind (the best weights are loaded into the model)."""

    best_iteration: int
    iterations: int
    seconds: float
    stop_reason: str
    history: list = field(default_factory=list)
    #: Standard deviation of the held-out mean EP per window from the read-out's
    #: training noise, k_B (:func:`~napari_dissipation.estimate.readout.readout_sd`).
    readout_sd: float = 0.0


def batch_tensor(data: MovieSet, movie_idx: np.ndarray, starts: np.ndarray,
                 norm: Normalisation, device) -> torch.Tensor:
    """Windows (movie_idx[i], starts[i]) as a normalised float32 tensor (B, k, H, W)."""
    out = np.empty((len(starts), data.k) + data.frame_shape, dtype=np.float32)
    for m in np.unique(movie_idx):
        sel = np.flatnonzero(movie_idx == m)
        out[sel] = data.windows(int(m), starts[sel])
    x = torch.from_numpy(out).to(device)
    return (x - norm.offset) / norm.scale


def infer_batch(data: MovieSet) -> int:
    """Windows per batch evaluated without gradients: :data:`INFER_BATCH` for small frames,
    fewer for large ones (at most :data:`INFER_PIXELS` input pixels)."""
    per_window = data.k * int(np.prod(data.frame_shape))
    return int(max(1, min(INFER_BATCH, INFER_PIXELS // per_window)))


@torch.no_grad()
def window_ep(model: EPNet, data: MovieSet, m: int, starts: np.ndarray, norm: Normalisation,
              device, batch: int | None = None) -> np.ndarray:
    """ΔS of the windows ``starts`` of movie ``m``, shape (len(starts),), k_B."""
    model.eval()
    batch = batch or infer_batch(data)
    out = np.empty(len(starts), dtype=np.float64)
    for a in range(0, len(starts), batch):
        s = starts[a: a + batch]
        x = batch_tensor(data, np.full(len(s), m), s, norm, device)
        out[a: a + len(s)] = model(x).double().cpu().numpy()
    return out


def _evaluate(model, data, units, norm, device) -> tuple[float, float, np.ndarray]:
    """Mean NEEP objective, mean window EP and each window's EP over held-out units."""
    eps = np.concatenate([window_ep(model, data, m, s, norm, device) for m, s in units])
    t = torch.from_numpy(eps)
    return float(neep_objective(t)), float(eps.mean()), eps


def _clearly_better(eps: np.ndarray, best_eps: np.ndarray) -> bool:
    """Whether windows' EP ``eps`` beat ``best_eps`` on the NEEP objective by more than
    :data:`IMPROVEMENT_SE` standard errors of the paired difference.

    The held-out windows that choose the kept weights also measure the rate: taking every
    chance improvement among tens of evaluations would pick noise that favours those very
    windows, and bias the rate up.
    """
    gain = (eps - safe_exp_neg(torch.from_numpy(eps)).numpy()) - \
        (best_eps - safe_exp_neg(torch.from_numpy(best_eps)).numpy())
    return float(gain.mean()) > IMPROVEMENT_SE * float(gain.std()) / len(gain) ** 0.5


def _eval_subset(units, n_max: int, rng: np.random.Generator) -> list:
    """At most ``n_max`` held-out windows, spread evenly over the units."""
    total = sum(len(s) for _, s in units)
    if total <= n_max:
        return units
    keep = n_max / total
    out = []
    for m, s in units:
        n = max(1, int(round(keep * len(s))))
        out.append((m, np.sort(rng.choice(s, size=n, replace=False))))
    return out


def train(model: EPNet, data: MovieSet, split, norm: Normalisation, cfg: EstimatorConfig, *,
          rate_scale: float, device, stop: threading.Event, rng: np.random.Generator,
          ctx: Context = SINGLE, checkpoint=None, resume: dict | None = None,
          mixed_precision: bool = False) -> Generator[Progress, None, TrainOutcome]:
    """Maximise the NEEP objective on the training windows with early stopping.

    Parameters
    ----------
    model : EPNet
    data : MovieSet
    split : Split
        Training windows and held-out units.
    norm : Normalisation
    cfg : EstimatorConfig
    rate_scale : float
        Seconds per window, ``(k − 1) · stride · dt``: window EP / rate_scale is a rate.
    device : torch.device
    stop : threading.Event
        Set from any thread to end training at the next step.
    rng : numpy Generator
        Draws the batches (one process), the held-out subset and the refit's windows.
    ctx : distributed.Context
        This process's place in a ``torchrun`` job; a single process by default.
    checkpoint : callable, optional
        Called on rank 0 after every evaluation with a checkpoint: a dict of tensors,
        state dicts and one JSON string ``"meta"`` (see :func:`snapshot`).
    resume : dict, optional
        A checkpoint to continue from (the same data, split and options).  In one
        process the continuation is exact; under ``torchrun`` each rank's batch stream
        starts afresh from (seed, rank, iteration).
    mixed_precision : bool
        bfloat16 autocast for the training forward pass (CUDA only); the NEEP objective,
        the evaluations and the refit stay in float32/float64.

    Yields
    ------
    Progress

    Returns
    -------
    TrainOutcome
    """
    train_m = np.concatenate([np.full(len(s), m) for m, s in split.train])
    train_s = np.concatenate([s for _, s in split.train])
    eval_units = _eval_subset(split.held_out, cfg.eval_windows, rng)
    warm = None
    if resume is None and ctx.is_main:  # other ranks get rank 0's start when wrapped
        t_warm = time.perf_counter()
        warm = warm_start(model, data, train_m, train_s, eval_units, norm, device, cfg.seed)
        warm["seconds"] = time.perf_counter() - t_warm
    net = ctx.wrap(model, device)  # DistributedDataParallel under torchrun, else the model
    opt = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate,
                           weight_decay=cfg.weight_decay)
    # Evaluation and the kept weights use an exponential moving average of the weights,
    # which smooths the noise that single NEEP steps leave in them.
    average = torch.optim.swa_utils.AveragedModel(
        model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(EMA_DECAY))
    if resume is None:
        # The starting point (the warm start's fit, or ΔS ≡ 0 when no fit beat it on
        # held-out data) is the first candidate: when nothing trained beats ΔS ≡ 0, the
        # estimate is zero rather than an overfitted, confidently wrong rate.
        best_obj, _, best_eps = _evaluate(model, data, eval_units, norm, device) \
            if ctx.is_main else (None, None, None)
        best_iter, best_state = 0, copy.deepcopy(model.state_dict())
        val_obj = rate = None
        bad_evals = 0
        history = []
        if warm is not None:
            history.append({"iteration": 0, "seconds": 0.0, "train_objective": None,
                            "val_objective": warm["val_objective"],
                            "ep_rate": warm["val_mean_ep"] / rate_scale, "warm_start": warm})
        # The warm start's time counts against the budget.
        it, elapsed, done = 0, 0.0 if warm is None else warm["seconds"], False
        reason = "iterations"
    else:
        meta = json.loads(resume["meta"])
        model.load_state_dict(resume["model"])
        average.load_state_dict(resume["average"])
        opt.load_state_dict(resume["optimizer"])
        best_state = {k: v.to(device) for k, v in resume["best"].items()}
        rng.bit_generator.state = meta["rng"]
        torch.set_rng_state(resume["torch_rng"])
        best_obj, best_iter, bad_evals = meta["best_obj"], meta["best_iter"], meta["bad_evals"]
        best_eps = None
        if ctx.is_main:  # the kept weights' held-out EP, for the paired comparison
            current = copy.deepcopy(model.state_dict())
            model.load_state_dict(best_state)
            best_eps = _evaluate(model, data, eval_units, norm, device)[2]
            model.load_state_dict(current)
        val_obj, rate, history = meta["val_obj"], meta["rate"], meta["history"]
        it, elapsed, done, reason = meta["iteration"], meta["seconds"], meta["done"], \
            meta["reason"]
    # One process draws its batches from ``rng``; each rank of a distributed run from its own.
    batch_rng = ctx.batch_rng(cfg.seed, it) if ctx.active else rng
    batch = ctx.share(cfg.batch_size)
    running, n_running = 0.0, 0
    t0 = time.perf_counter() - elapsed
    clock = elapsed  # rank 0's clock, the same on every rank (distributed runs)
    while not done:
        model.train()
        used = it / cfg.max_iterations
        if cfg.max_seconds is not None:
            now = clock if ctx.active else time.perf_counter() - t0
            used = max(used, now / cfg.max_seconds)
        for group in opt.param_groups:
            group["lr"] = cfg.learning_rate * (
                LR_FLOOR + (1 - LR_FLOOR) * 0.5 * (1 + math.cos(math.pi * min(used, 1.0))))
        pick = batch_rng.integers(0, len(train_s), size=batch)
        x = batch_tensor(data, train_m[pick], train_s[pick], norm, device)
        with _forward_precision(device, mixed_precision):
            ep = net(x)
        objective = neep_objective(ep.float())
        opt.zero_grad(set_to_none=True)
        (-objective).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        opt.step()
        average.update_parameters(model)
        it += 1
        running += float(objective.detach())
        n_running += 1
        elapsed = time.perf_counter() - t0
        stop_requested = stop.is_set()
        if ctx.active:  # rank 0's clock and anyone's stop request decide for all ranks
            elapsed, stop_requested = ctx.sync_step(elapsed, stop_requested, device)
            clock = elapsed
        done = it >= cfg.max_iterations
        if cfg.max_seconds is not None and elapsed >= cfg.max_seconds:
            done, reason = True, "seconds"
        if stop_requested:
            done, reason = True, "stopped"
        evaluated = False
        # A stop skips the evaluation unless none was made yet (then nothing trained
        # would be a candidate against ΔS ≡ 0).
        if (it % cfg.eval_every == 0 or done) and (reason != "stopped" or not history):
            if ctx.is_main:
                val_obj, mean_ep, eps = _evaluate(average.module, data, eval_units, norm,
                                                  device)
                improved = _clearly_better(eps, best_eps)
                if improved:
                    best_eps = eps
            if ctx.active:  # rank 0's evaluation, sent to the others
                val_obj, mean_ep, flag = ctx.broadcast_values(
                    [val_obj, mean_ep, improved] if ctx.is_main else [0.0, 0.0, 0.0], device)
                improved = flag > 0
            rate = mean_ep / rate_scale
            evaluated = True
            if improved:
                best_obj, best_iter, bad_evals = val_obj, it, 0
                best_state = copy.deepcopy(average.module.state_dict())
            else:
                bad_evals += 1
                if bad_evals >= cfg.patience:
                    done, reason = True, "early stopping"
            elapsed = time.perf_counter() - t0
        if it % YIELD_EVERY == 0 or evaluated or done:
            train_obj = running / max(n_running, 1)
            running, n_running = 0.0, 0
            record = Progress(it, cfg.max_iterations, elapsed, cfg.max_seconds, train_obj,
                              val_obj, rate, best_iter, evaluated)
            if evaluated:
                history.append({"iteration": it, "seconds": elapsed,
                                "train_objective": train_obj, "val_objective": val_obj,
                                "ep_rate": rate})
                if checkpoint is not None and ctx.is_main:
                    checkpoint(snapshot(
                        model=model, average=average, optimizer=opt, best_state=best_state,
                        rng=rng, iteration=it, seconds=time.perf_counter() - t0, done=done,
                        reason=reason, best_obj=best_obj, best_iter=best_iter,
                        bad_evals=bad_evals, val_obj=val_obj, rate=rate, history=history))
            yield record
    model.load_state_dict(best_state)
    refit = None
    if ctx.is_main:
        refit = _refit(model, data, train_m, train_s, training_units(split), eval_units,
                       best_obj, norm, device, rng)
    if ctx.active:  # rank 0's refit result and final weights on every rank
        refit = ctx.broadcast_object(refit)
        ctx.broadcast_state(model)
    if refit["kept"]:
        history.append({"iteration": it, "seconds": time.perf_counter() - t0,
                        "train_objective": refit["after"], "val_objective": refit["val_after"],
                        "ep_rate": refit["val_mean_ep"] / rate_scale, "readout_refit": True})
    return TrainOutcome(best_iter, it, time.perf_counter() - t0, reason, history,
                        readout_sd=refit["readout_sd"])


def snapshot(*, model, average, optimizer, best_state, rng, iteration: int, seconds: float,
             done: bool, reason: str, best_obj, best_iter: int, bad_evals: int, val_obj, rate,
             history: list) -> dict:
    """A checkpoint of the training loop: tensors on the CPU plus one JSON string.

    Keys ``model``, ``average``, ``best``, ``optimizer`` (state dicts), ``torch_rng``
    (uint8 tensor) and ``meta`` (JSON: iteration, seconds of training so far, the numpy
    generator's state, best-so-far, history, ...).  Loadable with
    ``torch.load(weights_only=True)``: no pickled code.
    """

    def cpu(state):
        return {k: v.detach().cpu().clone() for k, v in state.items()}

    opt_state = optimizer.state_dict()
    opt_state = {"state": {i: cpu(s) for i, s in opt_state["state"].items()},
                 "param_groups": opt_state["param_groups"]}
    meta = {"format": CHECKPOINT_FORMAT, "iteration": int(iteration), "seconds": float(seconds),
            "done": bool(done), "reason": reason, "best_obj": best_obj,
            "best_iter": int(best_iter), "bad_evals": int(bad_evals), "val_obj": val_obj,
            "rate": rate, "history": history, "rng": rng.bit_generator.state}
    return {"meta": json.dumps(meta), "model": cpu(model.state_dict()),
            "average": cpu(average.state_dict()), "best": cpu(best_state),
            "optimizer": opt_state, "torch_rng": torch.get_rng_state()}


def _forward_precision(device, enabled: bool):
    """bfloat16 autocast on CUDA when ``enabled``; otherwise nothing changes."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _refit(model, data, train_m, train_s, train_u, eval_units, val_before: float, norm, device,
           rng) -> dict:
    """Newton refit of the read-out on training windows; kept only if held-out agrees.

    ``val_before`` is the held-out objective of the model as it comes in (the best one
    found during training, on the same ``eval_units``); ``train_u`` the independent unit
    of each training window.  Returns the refit's figures, ``kept``, and ``readout_sd``:
    the training noise of the final read-out, as the standard deviation of the held-out
    mean EP per window (k_B).
    """
    columns = model.readout_columns()
    window_pixels = data.k * int(np.prod(data.frame_shape))
    n_max = max(READOUT_MIN_WINDOWS, min(READOUT_FEATURE_VALUES // max(len(columns), 1),
                                         READOUT_PIXELS // window_pixels))
    pick = np.sort(rng.choice(len(train_s), size=min(n_max, len(train_s)), replace=False))
    model.eval()
    b = infer_batch(data)

    def features(movie_idx, starts):
        # Filled in place: a list of small kept tensors between large freed batches
        # fragments the heap.
        out = torch.empty(len(starts), len(columns))
        with torch.no_grad():
            for a in range(0, len(starts), b):
                x = batch_tensor(data, movie_idx[a: a + b], starts[a: a + b], norm, device)
                out[a: a + len(x)] = model.readout_features(x)[:, columns.to(device)].cpu()
        return out

    feats = features(train_m[pick], train_s[pick])
    start = copy.deepcopy(model.state_dict())
    best = None
    # The penalty keeps the refit from fitting the noise of the training windows; its
    # strength is chosen on the held-out windows, like the stopping point.
    for ridge in READOUT_RIDGES:
        model.load_state_dict(start)
        info = refit_readout(model, feats, ridge=ridge, columns=columns)
        if info.get("skipped"):
            break
        val_after, mean_ep, _ = _evaluate(model, data, eval_units, norm, device)
        if val_after > (val_before if best is None else best["val_after"]):
            best = dict(info, ridge=ridge, val_before=val_before, val_after=val_after,
                        val_mean_ep=mean_ep, state=copy.deepcopy(model.state_dict()))
    model.load_state_dict(start if best is None else best.pop("state"))
    out = {"kept": best is not None, **(best or {})}
    ev_m = np.concatenate([np.full(len(s), m) for m, s in eval_units])
    ev_s = np.concatenate([s for _, s in eval_units])
    direction = features(ev_m, ev_s).double().mean(dim=0)
    lam = out.get("lam", 0.0)
    out["readout_sd"] = readout_sd(feats, train_u[pick], model.readout_params()[columns], lam,
                                   direction)
    return out

