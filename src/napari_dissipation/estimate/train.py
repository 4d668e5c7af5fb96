"""The training loop, as a generator of progress records.

``train(...)`` yields a :class:`Progress` every few steps and returns a
:class:`TrainOutcome`; nothing here assumes the main thread, and a stop request (a
``threading.Event``) ends training at the next step with the best weights kept.

The same loop runs under ``torchrun`` (see :mod:`.distributed`): each rank takes its share
of every global batch, DDP averages the gradients, rank 0 evaluates and decides, and every
rank keeps the same bookkeeping.  At every evaluation the loop can write a checkpoint
(:class:`~.state.TrainingState`), and it can start from one (``resume``).
"""

from __future__ import annotations

import contextlib
import copy
import math
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .config import EstimatorConfig
from .data import MovieSet, Normalisation
from .distributed import SINGLE, Context
from .model import EPNet
from .objective import neep_objective, safe_exp_neg
from .readout import readout_sd, refit_readout
from .state import TrainingState
from .stats import flat_windows, training_units
from .warmstart import warm_start
from .windows import batch_tensor, infer_batch, window_ep

__all__ = ["Progress", "TrainOutcome", "train"]

#: Steps, or seconds, between progress records, whichever comes first (a stop request is
#: seen at every step; on large frames ten steps take tens of seconds).
YIELD_EVERY = 10
YIELD_SECONDS = 0.5
#: Evaluations the network stage gets to beat the warm start's fit on held-out windows.
#: On every linear system benchmarked it never did (issue 15), and the steps after the
#: warm start were spent for nothing (on l1000, five evaluations were 23 of 64 s); the
#: data sets where it once won, at older commits, keep the warm start with five as with
#: two (docs/benchmarks.md).  Once it has beaten it, ``patience`` applies.
PROBE_EVALS = 2
#: Share of a time budget (``max_seconds``, counted from the fit's start) after which the
#: warm start tries no further candidate: on large frames it alone can outlast the budget
#: (a 512 x 512 frame: tens of seconds per blur scale and tile stage).
WARM_BUDGET = 0.6
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
#: Training (and held-out) windows the read-out's noise is measured on after a user's Stop.
#: Subsampling windows within the independent units leaves the sandwich's expectation
#: nearly unchanged (each unit's gradient sum and the window count shrink together) and
#: only adds a little noise of its own, so the interval stays honest, slightly wider.
STOP_NOISE_WINDOWS = 4000


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
          ctx: Context = SINGLE, checkpoint: Path | None = None, fingerprint: dict | None = None,
          resume: dict | None = None, mixed_precision: bool = False,
          preferred_smoothing: float | None = None,
          spent: float = 0.0) -> Generator[Progress, None, TrainOutcome]:
    """Maximise the NEEP objective on the training windows with early stopping.

    Parameters
    ----------
    model : EPNet
    data : MovieSet
    split : Split
        Training, validation and test frame ranges (only the first two are used here).
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
    checkpoint : Path, optional
        Rewritten by rank 0 after every evaluation with the whole training state
        (:meth:`TrainingState.save`, with ``fingerprint``).
    resume : dict, optional
        A checkpoint to continue from (:func:`~.state.read_checkpoint`; the same data,
        split and options).  In one process the continuation is exact; under ``torchrun``
        each rank's batch stream starts afresh from (seed, rank, iteration).
    mixed_precision : bool
        bfloat16 autocast for the training forward pass (CUDA only); the NEEP objective,
        the evaluations and the refit stay in float32/float64.
    preferred_smoothing : float, optional
        The blur the window-length scan chose: the warm start keeps it unless another
        scale fits clearly better.
    spent : float
        Seconds already spent on this fit (checks, the window-length scan): they count
        against ``cfg.max_seconds``, like the warm start's.

    Yields
    ------
    Progress

    Returns
    -------
    TrainOutcome
    """
    loop = _Loop(model, data, split, norm, cfg, rate_scale=rate_scale, device=device,
                 rng=rng, ctx=ctx, mixed_precision=mixed_precision,
                 warm=resume is None and ctx.is_main,
                 preferred_smoothing=preferred_smoothing, spent=spent, stop=stop)
    state = loop.resume(resume) if resume is not None else loop.start()
    state = yield from loop.run(state, stop, checkpoint=checkpoint, fingerprint=fingerprint)
    return loop.finish(state)


class _Loop:
    """One training run: the model, its optimiser and weight average, and the windows."""

    def __init__(self, model, data, split, norm, cfg, *, rate_scale, device, rng, ctx,
                 mixed_precision, warm: bool, preferred_smoothing: float | None = None,
                 spent: float = 0.0, stop: threading.Event | None = None):
        self.model, self.data, self.norm, self.cfg = model, data, norm, cfg
        self.rate_scale, self.device, self.rng, self.ctx = rate_scale, device, rng, ctx
        self.mixed_precision = mixed_precision
        train_windows = split.windows("train", data.k)
        self.train_m, self.train_s, _ = flat_windows(train_windows)
        self.train_units = training_units(train_windows)
        # Every choice (kept weights, the warm start's fits, the refit's penalty) is made
        # on the validation units; the test units measure the rate and nothing else.
        self.eval_units = _eval_subset(split.windows("validation", data.k), cfg.eval_windows,
                                       rng)
        # Other ranks get rank 0's start when the model is wrapped.
        self.preferred_smoothing, self.spent = preferred_smoothing, spent
        self.warm = self._warm_start(stop) if warm else None
        # Whether the weights kept at the start are a warm-start fit (not ΔS ≡ 0 or a
        # resumed run): only then is the network stage a challenger on probation.
        self.warm_kept = self.warm is not None and self.warm["family"] != "none"
        if ctx.active:  # only rank 0 made the warm start; the probation ends on every rank
            self.warm_kept = ctx.broadcast_object(self.warm_kept)
        self.net = ctx.wrap(model, device)  # DistributedDataParallel under torchrun
        self.opt = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate,
                                    weight_decay=cfg.weight_decay)
        # Evaluation and the kept weights use an exponential moving average of the weights,
        # which smooths the noise that single NEEP steps leave in them.
        self.average = torch.optim.swa_utils.AveragedModel(
            model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(EMA_DECAY))
        self.best_eps = None  # held-out EP of the kept weights, windows (rank 0)

    def _warm_start(self, stop: threading.Event | None) -> dict:
        t = time.perf_counter()
        limit = None if self.cfg.max_seconds is None else \
            WARM_BUDGET * self.cfg.max_seconds - self.spent

        def halt():  # a user's Stop, or the warm start's share of the budget spent
            return (stop is not None and stop.is_set()) or \
                (limit is not None and time.perf_counter() - t > limit)

        warm = warm_start(self.model, self.data, self.train_m, self.train_s, self.eval_units,
                          self.norm, self.device, self.cfg.seed,
                          preferred_smoothing=self.preferred_smoothing, halt=halt)
        warm["seconds"] = time.perf_counter() - t
        return warm

    def _evaluate(self, model) -> tuple[float, float, np.ndarray]:
        return _evaluate(model, self.data, self.eval_units, self.norm, self.device)

    def start(self) -> TrainingState:
        """The state before the first step.

        The starting point (the warm start's fit, or ΔS ≡ 0 when no fit beat it on
        held-out data) is the first candidate: when nothing trained beats ΔS ≡ 0, the
        estimate is zero rather than an overfitted, confidently wrong rate.
        """
        state = TrainingState(best_state=copy.deepcopy(self.model.state_dict()),
                              seconds=self.spent)
        if self.ctx.is_main:
            state.best_obj, _, self.best_eps = self._evaluate(self.model)
        if self.warm is not None:
            state.history.append({
                "iteration": 0, "seconds": 0.0, "train_objective": None,
                "val_objective": self.warm["val_objective"],
                "ep_rate": self.warm["val_mean_ep"] / self.rate_scale, "warm_start": self.warm})
            state.seconds += self.warm["seconds"]  # counts against the budget
        return state

    def resume(self, blob: dict) -> TrainingState:
        """The state of a checkpoint, with weights, optimiser and generators restored."""
        state = TrainingState.from_checkpoint(blob, model=self.model, average=self.average,
                                              optimizer=self.opt, rng=self.rng,
                                              device=self.device)
        if self.ctx.is_main:  # the kept weights' held-out EP, for the paired comparison
            current = copy.deepcopy(self.model.state_dict())
            self.model.load_state_dict(state.best_state)
            self.best_eps = self._evaluate(self.model)[2]
            self.model.load_state_dict(current)
        return state

    def _budget_used(self, state: TrainingState, now: float) -> float:
        used = state.iteration / self.cfg.max_iterations
        if self.cfg.max_seconds is not None:
            used = max(used, now / self.cfg.max_seconds)
        return min(used, 1.0)

    def _step(self, batch_rng, batch: int, used: float) -> float:
        """One optimiser step on a random batch; returns its NEEP objective."""
        self.model.train()
        for group in self.opt.param_groups:
            group["lr"] = self.cfg.learning_rate * (
                LR_FLOOR + (1 - LR_FLOOR) * 0.5 * (1 + math.cos(math.pi * used)))
        pick = batch_rng.integers(0, len(self.train_s), size=batch)
        x = batch_tensor(self.data, self.train_m[pick], self.train_s[pick], self.norm,
                         self.device)
        # Gradients on whatever the calling thread's (thread-local) grad mode: a pooled
        # worker thread may come from a job that left it off.
        with torch.enable_grad():
            with _forward_precision(self.device, self.mixed_precision):
                ep = self.net(x)
            objective = neep_objective(ep.float())
            self.opt.zero_grad(set_to_none=True)
            (-objective).backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), GRAD_CLIP)
        self.opt.step()
        self.average.update_parameters(self.model)
        return float(objective.detach())

    def _evaluate_and_keep(self, state: TrainingState) -> None:
        """Evaluate the averaged weights; keep them when clearly better, else count."""
        ctx = self.ctx
        improved, mean_ep = False, 0.0
        if ctx.is_main:
            state.val_obj, mean_ep, eps = self._evaluate(self.average.module)
            improved = _clearly_better(eps, self.best_eps)
            if improved:
                self.best_eps = eps
        if ctx.active:  # rank 0's evaluation, sent to the others
            state.val_obj, mean_ep, flag = ctx.broadcast_values(
                [state.val_obj, mean_ep, improved] if ctx.is_main else [0.0, 0.0, 0.0],
                self.device)
            improved = flag > 0
        state.rate = mean_ep / self.rate_scale
        if improved:
            state.best_obj, state.best_iter, state.bad_evals = state.val_obj, state.iteration, 0
            state.best_state = copy.deepcopy(self.average.module.state_dict())
        else:
            state.bad_evals += 1
            if state.bad_evals >= self.cfg.patience:
                state.done, state.reason = True, "early stopping"
            elif state.best_iter == 0 and self.warm_kept and state.bad_evals >= PROBE_EVALS:
                state.done, state.reason = True, "warm start unbeaten"

    def run(self, state: TrainingState, stop: threading.Event, *, checkpoint=None,
            fingerprint=None) -> Generator[Progress, None, TrainingState]:
        """Step until the budget, early stopping or a stop request; yield progress."""
        ctx, cfg = self.ctx, self.cfg
        # One process draws its batches from ``rng``; each rank of a distributed run from
        # its own.
        batch_rng = ctx.batch_rng(cfg.seed, state.iteration) if ctx.active else self.rng
        batch = ctx.share(cfg.batch_size)
        running, n_running = 0.0, 0
        t0 = time.perf_counter() - state.seconds
        clock = state.seconds  # rank 0's clock, the same on every rank (distributed runs)
        last_eval, last_yield = state.seconds, time.perf_counter()
        while not state.done:
            now = clock if ctx.active else time.perf_counter() - t0
            running += self._step(batch_rng, batch, self._budget_used(state, now))
            n_running += 1
            state.iteration += 1
            state.seconds = time.perf_counter() - t0
            stop_requested = stop.is_set()
            if ctx.active:  # rank 0's clock and anyone's stop request decide for all ranks
                state.seconds, stop_requested = ctx.sync_step(state.seconds, stop_requested,
                                                              self.device)
                clock = state.seconds
            state.done = state.iteration >= cfg.max_iterations
            if cfg.max_seconds is not None and state.seconds >= cfg.max_seconds:
                state.done, state.reason = True, "seconds"
            if stop_requested:
                state.done, state.reason = True, "stopped"
            evaluated = False
            # A stop skips the evaluation unless none was made yet (then nothing trained
            # would be a candidate against ΔS ≡ 0).
            # Steps or seconds, whichever come first: on large frames a few hundred steps
            # can take many minutes.  ``state.seconds`` is the same on every rank.
            due = (state.iteration % cfg.eval_every == 0
                   or (cfg.eval_seconds is not None
                       and state.seconds - last_eval >= cfg.eval_seconds))
            if (due or state.done) and (state.reason != "stopped" or not state.history):
                last_eval = state.seconds  # rank 0's clock: the same decision on every rank
                self._evaluate_and_keep(state)
                evaluated = True
                state.seconds = time.perf_counter() - t0
            if (state.iteration % YIELD_EVERY == 0 or evaluated or state.done
                    or time.perf_counter() - last_yield >= YIELD_SECONDS):
                last_yield = time.perf_counter()
                train_obj = running / max(n_running, 1)
                running, n_running = 0.0, 0
                if evaluated:
                    state.history.append({
                        "iteration": state.iteration, "seconds": state.seconds,
                        "train_objective": train_obj, "val_objective": state.val_obj,
                        "ep_rate": state.rate})
                    if checkpoint is not None and ctx.is_main:
                        state.save(checkpoint, fingerprint=fingerprint or {}, model=self.model,
                                   average=self.average, optimizer=self.opt, rng=self.rng)
                yield Progress(state.iteration, cfg.max_iterations, state.seconds,
                               cfg.max_seconds, train_obj, state.val_obj, state.rate,
                               state.best_iter, evaluated)
        state.seconds = time.perf_counter() - t0
        return state

    def finish(self, state: TrainingState) -> TrainOutcome:
        """Load the kept weights, refit the read-out, and sum up."""
        ctx = self.ctx
        t0 = time.perf_counter() - state.seconds
        self.model.load_state_dict(state.best_state)
        refit = None
        if ctx.is_main:
            stopped = state.reason == "stopped"
            # The warm start's read-out is itself a Newton fit on the training windows: no
            # refit after it was ever kept (none of 95 benchmark records whose warm start
            # was unbeaten), and on the filament network the refit took 35 of 176 s.
            unbeaten = self.warm_kept and state.best_iter == 0
            warm = state.history[0].get("warm_start") if state.history else None
            blend = (warm or {}).get("blend") if unbeaten else None
            refit = _refit(self.model, self.data, self.train_m, self.train_s,
                           self.train_units, self.eval_units, self.best_eps,
                           self.norm, self.device, self.rng,
                           refit=not (stopped or unbeaten), quick=stopped,
                           members=None if blend is None else [m for _, m in blend])
        if ctx.active:  # rank 0's refit result and final weights on every rank
            refit = ctx.broadcast_object(refit)
            ctx.broadcast_state(self.model)
        history = state.history
        if refit["kept"]:
            history.append({"iteration": state.iteration,
                            "seconds": time.perf_counter() - t0,
                            "train_objective": refit["after"],
                            "val_objective": refit["val_after"],
                            "ep_rate": refit["val_mean_ep"] / self.rate_scale,
                            "readout_refit": True})
        return TrainOutcome(state.best_iter, state.iteration, time.perf_counter() - t0,
                            state.reason, history, readout_sd=refit["readout_sd"])


def _forward_precision(device, enabled: bool):
    """bfloat16 autocast on CUDA when ``enabled``; otherwise nothing changes."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _refit(model, data, train_m, train_s, train_u, eval_units, before_eps: np.ndarray,
           norm, device, rng, *, refit: bool = True, quick: bool = False,
           members: list | None = None) -> dict:
    """Newton refit of the read-out on training windows; kept only if clearly better.

    ``before_eps`` is the held-out EP of each window of ``eval_units`` under the model as
    it comes in (the kept weights); the refit replaces them only when it beats them as an
    evaluation must during training (:func:`_clearly_better`): its parameters include the
    read-out of features the network never learnt when the warm start was kept, and a
    chance gain on the validation windows would fit their noise.  ``refit=False`` only
    measures the read-out's training noise; ``quick`` on fewer windows (after a user's
    Stop, who waits for the result).
    ``train_u`` is the independent unit of each training window.  ``members``: the
    pattern counts of a kept blend of read-outs (:func:`~.warmstart._blend`), whose noise
    is that of its members' fits (:func:`~.readout.readout_sd`).  Returns the refit's
    figures, ``kept``, and ``readout_sd``: the training noise of the final read-out, as
    the standard deviation of the held-out mean EP per window (k_B).
    """
    columns = model.readout_columns()
    window_pixels = data.k * int(np.prod(data.frame_shape))
    n_max = max(READOUT_MIN_WINDOWS, min(READOUT_FEATURE_VALUES // max(len(columns), 1),
                                         READOUT_PIXELS // window_pixels))
    if quick:  # a user's Stop: the noise only, from fewer windows, without delay
        n_max = STOP_NOISE_WINDOWS
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
    for ridge in READOUT_RIDGES if refit else ():
        model.load_state_dict(start)
        info = refit_readout(model, feats, ridge=ridge, columns=columns)
        if info.get("skipped"):
            break
        val_after, mean_ep, eps = _evaluate(model, data, eval_units, norm, device)
        if _clearly_better(eps, before_eps) and (best is None
                                                 or val_after > best["val_after"]):
            best = dict(info, ridge=ridge, val_after=val_after, val_mean_ep=mean_ep,
                        state=copy.deepcopy(model.state_dict()))
    model.load_state_dict(start if best is None else best.pop("state"))
    out = {"kept": best is not None, **(best or {})}
    ev_m, ev_s, _ = flat_windows(eval_units)
    if len(ev_s) > n_max:
        some = np.sort(rng.choice(len(ev_s), size=n_max, replace=False))
        ev_m, ev_s = ev_m[some], ev_s[some]
    direction = features(ev_m, ev_s).double().mean(dim=0)
    lam = out.get("lam", 0.0)
    blocks = None if members is None or out["kept"] else _member_columns(model, members)
    out["readout_sd"] = readout_sd(feats, train_u[pick], model.readout_params()[columns], lam,
                                   direction, blocks)
    return out


def _member_columns(model, counts: list) -> list:
    """Positions in ``model.readout_columns()`` of each blend member's read-out: the
    linear branch's weights and biases of its patterns (members hold consecutive patterns,
    ``counts`` of them, from the first)."""
    columns = model.readout_columns().numpy()
    k = model.n_patterns
    row = np.arange(model.n_odd * k) % k
    col = np.arange(model.n_even * k) % k
    out, first = [], 0
    for m in counts:
        mine_r, mine_c = (row >= first) & (row < first + m), (col >= first) & (col < first + m)
        # readout_params starts with the weights (row-major) and then the biases.
        params = np.flatnonzero(np.concatenate([(mine_r[:, None] & mine_c).ravel(), mine_r]))
        out.append(np.searchsorted(columns, params))
        first += m
    return out

