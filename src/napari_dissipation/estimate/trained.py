"""A trained model: inference only (stochastic EP, rates, dissipation maps, save and load).

:class:`TrainedModel` holds what inference needs and nothing of training: the network, the
frame size, the intensity normalisation, dt and the options the windows depend on
(frames per input, stride, binning).  :meth:`EPEstimator.fit
<napari_dissipation.estimate.EPEstimator.fit>` makes one, :func:`load_model` reads one
from a file.

Dissipation maps: the network's output is ``ΔS_θ = Σ_p o[p] · Φ[p]``, a force field
dotted with the change of intensity, so the share of pixel p, ``o[p] · Φ[p]``, sums over
the frame to ΔS_θ exactly.  Maps are on the pixel grid of the (binned) frames the network
reads; with ``bin > 1`` each map pixel is spread evenly over the ``bin x bin`` movie
pixels it stands for, which keeps the sum.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..errors import InputError
from .config import EstimatorConfig
from .data import MovieSet, Normalisation
from .stats import TransitionMean, per_transition

__all__ = ["TrainedModel", "load_model", "MODEL_FORMAT", "check_dt", "resolve_device"]

#: Marks a model file.
MODEL_FORMAT = "napari-dissipation-model/1"


class TrainedModel:
    """A network trained to give the stochastic EP of each transition of a movie.

    Parameters
    ----------
    network : EPNet
        The trained network (put in evaluation mode).
    norm : Normalisation
        Intensity offset and scale the network's inputs were normalised with.
    frame_shape : (int, int)
        (H, W) of the frames the network reads (after binning), pixels.
    raw_frame_shape : (int, int)
        (H, W) of the movies it applies to (before binning), pixels.
    dt : float or None
        Seconds per frame of the training movies.
    config : EstimatorConfig
        The options it was trained with (frames per input, stride and bin shape the
        windows; the rest are a record).
    """

    def __init__(self, network, *, norm: Normalisation, frame_shape, raw_frame_shape,
                 dt: float | None, config: EstimatorConfig):
        self.network = network.eval()
        self.norm = norm
        self.frame_shape = tuple(int(n) for n in frame_shape)
        self.raw_frame_shape = tuple(int(n) for n in raw_frame_shape)
        self.dt = None if dt is None else float(dt)
        self.config = config

    # ------------------------------------------------------------------ properties
    @property
    def frames_per_input(self) -> int:
        """k, frames per input window."""
        return self.config.frames_per_input

    @property
    def stride(self) -> int:
        return self.config.stride

    @property
    def bin(self) -> int:
        return self.config.bin

    @property
    def options(self) -> dict:
        """Every option the model was trained with."""
        return self.config.to_dict()

    @property
    def is_fitted(self) -> bool:
        """Always True (kept so that code written for the estimator also takes a model)."""
        return True

    @property
    def device(self):
        """The torch device the network is on."""
        return next(self.network.parameters()).device

    def rate_scale(self, dt: float | None = None) -> float:
        """Seconds spanned by one window, ``(k − 1) · stride · dt``: window EP / this is a
        rate in k_B/s.  ``dt`` defaults to the training movies' dt."""
        return (self.frames_per_input - 1) * self.stride * check_dt(
            self.dt if dt is None else dt)

    # ------------------------------------------------------------------ inference
    def _windows_of(self, movie, name: str) -> MovieSet:
        data = MovieSet([movie], names=[name], frames_per_input=self.frames_per_input,
                        stride=self.stride, bin=self.bin)
        if data.raw_frame_shape != self.raw_frame_shape:
            raise InputError(f"{name}: frame size {data.raw_frame_shape} differs from the "
                             f"{self.raw_frame_shape} the model was trained on")
        if getattr(self.config, "nonstationarity", "check") == "correct":
            # The transform training applied (deterministic, per movie).
            from .correction import correct_movie

            data = MovieSet([correct_movie(data.movies[0])], names=[name],
                            frames_per_input=self.frames_per_input, stride=self.stride,
                            bin=self.bin)
        return data

    def check_movie(self, movie, *, name: str = "movie") -> None:
        """Raise :class:`InputError` when the model cannot read ``movie`` (frame size,
        too few frames, not a (T, H, W) array)."""
        self._windows_of(movie, name)

    def window_ep(self, movie, *, name: str = "movie") -> np.ndarray:
        """ΔS_θ of every window of k frames of one (T, H, W) movie, (T − k + 1,), k_B."""
        from .windows import window_ep

        data = self._windows_of(movie, name)
        return window_ep(self.network, data, 0, np.arange(data.n_windows[0]), self.norm,
                         self.device)

    def transition_ep(self, movie, *, name: str = "movie") -> np.ndarray:
        """ΔS_θ of every window of a (T, H, W) movie split over its k − 1 transitions,
        (T − k + 1, k − 1), k_B (:meth:`~.model.EPNet.transition_contributions`); each row
        sums to that window's :meth:`window_ep` (to rounding)."""
        if self.frames_per_input == 2:
            return self.window_ep(movie, name=name)[:, None]
        from .windows import transition_ep

        data = self._windows_of(movie, name)
        return transition_ep(self.network, data, 0, np.arange(data.n_windows[0]), self.norm,
                             self.device)

    def stochastic_ep(self, movie, *, name: str = "movie") -> np.ndarray:
        """Stochastic EP of each transition t -> t+1 of a (T, H, W) movie, (T − 1,), k_B.

        With k > 2 frames per input, each transition gets the mean of its share
        (:meth:`transition_ep`) over the windows that contain it.
        """
        return per_transition(self.transition_ep(movie, name=name))

    def ep_rate(self, movie, *, dt: float | None = None, name: str = "movie") -> float:
        """Mean EP rate of one movie over all its windows, k_B/s (no interval: the
        interval of a fit comes from held-out data, see ``EPEstimator.fit``)."""
        return float(np.mean(self.window_ep(movie, name=name)) / self.rate_scale(dt))

    def ep_rate_ci(self, movie, *, dt: float | None = None, name: str = "movie",
                   n_blocks: int | None = None, seed: int = 0) -> tuple[float, tuple]:
        """EP rate of one movie over all its windows, k_B/s, with a 95% interval.

        The windows are cut into contiguous time blocks (``stats.N_TIME_BLOCKS`` unless
        ``n_blocks`` is given), taken as independent units by
        :func:`~.stats.bootstrap_rate_ci`: the interval covers the scatter of a finite
        movie, not a bias of the model.  A movie the model was trained on gives a rate
        flattered by that training; ``EPEstimator.fit`` measures on held-out blocks.

        Returns
        -------
        rate : float
            The same number as :meth:`ep_rate`.
        (lo, hi) : tuple of float
            Infinite when the movie has too few windows to tell.
        """
        return self.rate_ci_of_windows(self.window_ep(movie, name=name), dt=dt,
                                       n_blocks=n_blocks, seed=seed)

    def rate_ci_of_windows(self, eps: np.ndarray, *, dt: float | None = None,
                           n_blocks: int | None = None, seed: int = 0) -> tuple[float, tuple]:
        """:meth:`ep_rate_ci` from the movie's :meth:`window_ep` (T − k + 1,), k_B, when
        the caller has it already (the widget's Estimate also shows the trace)."""
        from .stats import N_TIME_BLOCKS, bootstrap_rate_ci

        blocks = np.array_split(eps, max(1, min(n_blocks or N_TIME_BLOCKS, len(eps))))
        rate, ci, _ = bootstrap_rate_ci(blocks, self.rate_scale(dt),
                                        rng=np.random.default_rng(seed),
                                        window_seconds=self.rate_scale(dt)
                                        / (self.frames_per_input - 1))
        return rate, ci

    def iter_window_maps(self, movie, *, name: str = "movie", batch: int = 512,
                         transitions: bool = False) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (start, maps) for consecutive batches of windows of one movie.

        ``maps`` has shape (n, H, W) on the movie's pixel grid: the share of each pixel in
        ΔS_θ of the windows ``start ... start + n − 1``, k_B.  With ``transitions`` it has
        shape (n, k − 1, H, W): each pixel's share split over the window's transitions
        (:meth:`~.model.EPNet.transition_contributions`), in batches k − 1 times smaller.
        """
        import torch

        from .windows import batch_tensor

        data = self._windows_of(movie, name)
        n_windows = int(data.n_windows[0])
        if transitions:
            batch = max(1, batch // (self.frames_per_input - 1))
        for a in range(0, n_windows, batch):
            starts = np.arange(a, min(a + batch, n_windows))
            x = batch_tensor(data, np.zeros(len(starts), dtype=int), starts, self.norm,
                             self.device)
            # No yield inside no_grad: grad mode is per thread, and a generator left
            # suspended (a stopped job) or closed from another thread would leave its
            # worker thread with gradients off for the next job.
            with torch.no_grad():
                maps = (self.network.transition_contributions(x, pixels=True) if transitions
                        else self.network.pixel_contributions(x)).cpu().numpy()
            yield a, _to_movie_grid(maps, self.bin, data.raw_frame_shape)

    def dissipation_map(self, movie, *, name: str = "movie") -> np.ndarray:
        """Per-transition dissipation maps of a (T, H, W) movie, (T − 1, H, W), k_B.

        Map t belongs to the transition t -> t+1 and sums over pixels to
        ``stochastic_ep(movie)[t]`` (float tolerance).  With k > 2 frames per input a
        transition gets the mean of its per-pixel share over the windows that contain it.
        """
        mean = TransitionMean(np.shape(movie)[0] - 1)
        for start, shares in self.iter_window_maps(movie, name=name, transitions=True):
            mean.add(start, shares.astype(np.float32, copy=False))
        return mean.result()

    def ep_rate_density(self, movie, *, dt: float | None = None,
                        name: str = "movie") -> np.ndarray:
        """Time-averaged map as an EP-rate density, (H, W), k_B/s per pixel.

        Streams over the movie (one batch of maps in memory).  The sum over a region is
        that region's EP rate; the sum over the frame is the movie's EP rate.
        """
        scale = self.rate_scale(dt)
        total, n = None, 0
        for _, maps in self.iter_window_maps(movie, name=name):
            s = maps.sum(axis=0, dtype=np.float64)
            total = s if total is None else total + s
            n += len(maps)
        return total / n / scale

    # ------------------------------------------------------------------ persistence
    def config_dict(self) -> dict:
        """Options plus what was learnt about the data (frame size, normalisation, dt)."""
        return {"options": self.options, "frame_shape": list(self.frame_shape),
                "raw_frame_shape": list(self.raw_frame_shape),
                "normalisation": {"offset": self.norm.offset, "scale": self.norm.scale},
                "dt": self.dt}

    def save(self, path) -> Path:
        """Save weights and configuration to one file that loads without pickled code."""
        import torch

        from ..io import atomic_output

        path = Path(path)
        state = {k: v.detach().cpu() for k, v in self.network.state_dict().items()}
        with atomic_output(path) as tmp:
            torch.save({"format": MODEL_FORMAT, "config": json.dumps(self.config_dict()),
                        "state_dict": state}, tmp)
        return path


def build_network(config: EstimatorConfig, frame_shape, n_local: int | None = None):
    """An untrained :class:`~.model.EPNet` for ``config`` and (H, W) frames.

    Beyond ``config.n_patterns`` whole-frame patterns it holds ``n_local`` pattern slots for
    the warm start's local (tile) patterns; default: :func:`~.tiles.local_pattern_slots`
    of the frame's shape (0 for small frames), so a saved model is rebuilt alike.
    """
    from .model import EPNet
    from .tiles import local_pattern_slots

    n_local = local_pattern_slots(tuple(frame_shape)) if n_local is None else int(n_local)
    network = EPNet(frames_per_input=config.frames_per_input, frame_shape=frame_shape,
                    channels=config.channels, max_pools=config.max_pools,
                    n_patterns=config.n_patterns + n_local, hidden=config.hidden,
                    local_slots=n_local)
    return network


def _load_failure(path: Path, exc: Exception) -> str:
    """Why ``torch.load`` refused a file, in words (torch's own message suggests
    ``weights_only=False``, exactly what must not be done, and its codes mean nothing to a
    user)."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return "not a saved PyTorch file: truncated, or another kind of file"
    if "weights only" in str(exc).lower():
        return "it holds Python objects, which are not loaded because they could run code"
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return reason[:120]


def load_model(path, *, device: str = "auto") -> TrainedModel:
    """Load a model saved by :meth:`TrainedModel.save` (or ``EPEstimator.save``).

    The file is read with ``torch.load(weights_only=True)``: tensors and plain containers
    only, no pickled code is executed.

    Raises
    ------
    InputError
        No such file, not a model file, or weights that do not fit its configuration.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such model file")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(blob, dict) or blob.get("format") != MODEL_FORMAT:
            raise ValueError("not a napari-dissipation model")
        cfg = json.loads(blob["config"])
        # Files from before the non-stationarity correction were trained on raw movies.
        config = EstimatorConfig.from_dict({"nonstationarity": "check", **cfg["options"],
                                            "device": device})
    except InputError as exc:
        raise InputError(f"{path}: not a usable model file ({exc})") from None
    except Exception as exc:
        raise InputError(f"{path}: not a napari-dissipation model file "
                         f"({_load_failure(path, exc)})") from None
    stored = blob["state_dict"].get("patterns", blob["state_dict"].get("modes"))
    # Files from before the local pattern slots hold only the whole-frame patterns.
    n_local = None if stored is None else max(0, len(stored) - config.n_patterns)
    network = build_network(config, tuple(cfg["frame_shape"]), n_local)
    try:
        network.load_state_dict(_current_keys(dict(blob["state_dict"]), network.state_dict()))
    except (RuntimeError, KeyError) as exc:
        raise InputError(f"{path}: weights do not match the stored configuration ({exc})") from None
    return TrainedModel(network.to(resolve_device(device)),
                        norm=Normalisation(**cfg["normalisation"]),
                        frame_shape=cfg["frame_shape"], raw_frame_shape=cfg["raw_frame_shape"],
                        dt=cfg.get("dt"), config=config)


def _current_keys(state: dict, fresh: dict) -> dict:
    """A state dict of an older model file under today's names; parts it lacks (the
    polynomial branch) take their values from ``fresh``, an untrained network's (off)."""
    import torch

    for key in ("g_poly", "poly_mask"):
        if key not in state and key in fresh:
            state[key] = fresh[key]

    if "modes" in state and "patterns" not in state:
        state["patterns"] = state.pop("modes")
    if "linear_mask" not in state and "g_linear.weight" in state:  # before local patterns
        state["linear_mask"] = torch.ones_like(state["g_linear.weight"])
    return state


def _to_movie_grid(maps: np.ndarray, b: int, raw_shape: tuple[int, int]) -> np.ndarray:
    if b == 1:
        return maps
    spread = np.repeat(np.repeat(maps, b, axis=-2), b, axis=-1) / (b * b)
    out = np.zeros(maps.shape[:-2] + tuple(raw_shape), dtype=maps.dtype)
    out[..., : spread.shape[-2], : spread.shape[-1]] = spread
    return out


def resolve_device(want: str):
    """The torch device for an option value ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``."""
    import torch

    if want == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if want.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device {want!r} requested but no CUDA GPU is available",
                         option="device")
    try:
        return torch.device(want)
    except RuntimeError:
        raise InputError(f"device must be auto, cpu, cuda or cuda:N, got {want!r}",
                         option="device") from None


def check_dt(dt) -> float:
    """``dt`` as a positive float, seconds per frame; :class:`InputError` otherwise."""
    try:
        value = float(dt)
    except (TypeError, ValueError):
        raise InputError(f"dt must be a number of seconds per frame, got {dt!r}",
                         option="dt") from None
    if not math.isfinite(value) or value <= 0:
        raise InputError(f"dt must be a positive number of seconds per frame, got {dt!r}",
                         option="dt")
    return value
