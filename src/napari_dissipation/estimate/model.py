"""The network and its antisymmetric output ΔS_θ.

Reversing time maps the k frames (f_1 ... f_k) of an input to (f_k ... f_1).  The
network therefore reads them as *even* channels ``e_j = f_j + f_{k+1−j}``, unchanged by
the reversal, and *odd* channels ``o_j = f_{k+1−j} − f_j``, which change sign, and computes

    ΔS_θ = Σ_j Σ_p o_j[p] · Φ_j(e)[p]

a "force field" Φ over pixels, computed from the even channels, dotted with the change of
intensity.  ΔS_θ(reversed) = −ΔS_θ exactly (ΔS_θ = h_θ(x) − h_θ(x reversed) with
h_θ = ΔS_θ / 2), one pass gives it, and it splits exactly over pixels: the share of
pixel p is ``Σ_j o_j[p] Φ_j[p]`` (:meth:`EPNet.pixel_contributions`).  For a linear
(Ornstein-Uhlenbeck) system seen through its images the exact EP of a transition is, to
leading order, of this form: a force linear in the state dotted with the displacement.

Φ has two parts:

* a convolutional part: strided 5x5 and 3x3 convolutions of the even channels (plus two
  coordinate channels) down to a grid of cells 4 px across, a 3x3 and a 1x1 convolution,
  each cell's value spread over its pixels — local, translation-equivariant structure;
* a global part: the even and odd channels projected on K fixed patterns over the whole
  frame, principal components of blurred frames (:func:`principal_patterns`, chosen by
  ``estimate.warmstart``), and a linear map plus a small network ``g`` of the projected
  state giving the force along each pattern.  It
  lets the force on one bead depend on where the others are, however far, which a
  stack of small convolutions would need many layers and a long training to learn;
  a polynomial branch (degrees 2 and 3 of the window's mean state along the first
  :data:`POLY_COORDS` patterns, off until ``estimate.nonlinear`` fits it) adds the
  force of a non-linear system to the linear map's, still in the read-out's linear form.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import scipy.linalg
import torch
from threadpoolctl import threadpool_limits
from torch import nn

__all__ = ["EPNet", "n_downsamplings", "principal_patterns", "gaussian_blur_matrix",
           "linear_branch_features", "monomial_exponents", "POLY_COORDS", "POLY_DEGREE"]

#: Leading global patterns the polynomial branch reads, and its highest degree.
POLY_COORDS = 4
POLY_DEGREE = 3


def monomial_exponents(n: int, degree: int = POLY_DEGREE) -> np.ndarray:
    """Exponents (n_monomials, n) of the monomials of degree 2 to ``degree`` in n variables.

    Ordered by degree, then as ``itertools.combinations_with_replacement``: the monomials
    of fewer variables or a lower degree are a subset (:mod:`.nonlinear` selects them).
    """
    rows = []
    for d in range(2, degree + 1):
        for combo in itertools.combinations_with_replacement(range(n), d):
            rows.append(np.bincount(combo, minlength=n))
    return np.array(rows, dtype=np.int64).reshape(-1, n)


def n_downsamplings(frame_shape: tuple[int, int], most: int = 2) -> int:
    """Number of 2x down-samplings that keep the feature grid at least 4 cells across."""
    smallest = min(frame_shape)
    return int(max(0, min(most, math.floor(math.log2(max(smallest, 1) / 4)))))


def gaussian_blur_matrix(n: int, sigma: float) -> np.ndarray:
    """Symmetric (n, n) matrix of a 1-D Gaussian blur of ``sigma`` pixels (identity for 0)."""
    if sigma <= 0:
        return np.eye(n)
    d = np.arange(n)[:, None] - np.arange(n)[None, :]
    return np.exp(-0.5 * (d / sigma) ** 2)


def _leading_eigenpairs(gram: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``min(n, size)`` largest eigenvalues of a symmetric matrix, in falling order, and
    their eigenvectors (columns).

    LAPACK's selected-eigenpair driver transforms back only the vectors asked for: on a
    2000 x 2000 Gram matrix and one thread, 0.9 s for 16 of them against 2.9 s for
    ``torch.linalg.eigh`` of all of them, the same to 1e-15 (docs/benchmarks.md).  Its
    BLAS threads are held to torch's count (see :func:`principal_patterns`).
    """
    size = gram.shape[0]
    n = min(int(n), size)
    with threadpool_limits(limits=torch.get_num_threads()):
        ev, vecs = scipy.linalg.eigh(gram.numpy(), subset_by_index=[size - n, size - 1],
                                     driver="evr")
    return torch.from_numpy(ev[::-1].copy()), torch.from_numpy(vecs[:, ::-1].copy())


def principal_patterns(frames: np.ndarray, n: int,
                       smoothing: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Whole-frame patterns whose coordinates are the principal components of blurred frames.

    Blurring first makes the coordinates of a moving spot nearly linear in its position
    even when it moves further than its own width, where the principal components of the
    raw frames are strongly non-linear in it; the pattern of component ``v`` on the raw
    pixel grid is ``B v B`` (B the symmetric blur), since ``<B f B, v> = <f, B v B>``.

    Parameters
    ----------
    frames : ndarray, shape (N, H, W)
    n : int
        Number of patterns.
    smoothing : float
        Gaussian blur scale, pixels.

    Returns
    -------
    patterns : ndarray, shape (n, H, W)
        Scaled so that each coordinate ``<f − mean, pattern>`` has unit variance over the
        frames; patterns beyond the data's rank are zero.
    mean : ndarray, shape (H, W)
        Mean frame.
    """
    # In torch: numpy's BLAS ignores the estimator's thread count, and on a loaded machine
    # its threads spin against each other (a 100 x 512² Gram matrix took 1.5 to 5 s
    # against 0.13 s here; docs/benchmarks.md, frame size).
    x = torch.as_tensor(np.asarray(frames), dtype=torch.float64)
    n_frames, h, w = x.shape
    mean = x.mean(dim=0)
    centred = x - mean

    def blur(t):  # B t B on the last two axes; nothing to do without blur
        if smoothing <= 0:
            return t
        br = torch.as_tensor(gaussian_blur_matrix(h, smoothing))
        bc = torch.as_tensor(gaussian_blur_matrix(w, smoothing))
        return br @ t @ bc

    blurred = blur(centred).reshape(n_frames, -1)
    # Leading right singular vectors from the smaller of the two Gram matrices.
    if blurred.shape[0] >= blurred.shape[1]:
        ev, vecs = _leading_eigenpairs(blurred.T @ blurred, n)
        vt = vecs.T
    else:
        ev, u = _leading_eigenpairs(blurred @ blurred.T, n)
        vt = (u / ev.clamp_min(1e-300).sqrt()).T @ blurred
    del blurred
    k = len(ev)
    # A sign fixed by the data (largest entry positive): eigensolvers differ in it, and the
    # network stage's random start would train differently on flipped coordinates.
    big = vt.abs().argmax(dim=1)
    vt = vt * torch.where(vt[torch.arange(k), big] < 0, -1.0, 1.0).to(vt.dtype)[:, None]
    patterns = torch.zeros(n, h, w, dtype=torch.float64)
    patterns[:k] = blur(vt[:k].reshape(k, h, w))
    coords = centred.reshape(n_frames, -1) @ patterns[:k].reshape(k, -1).T
    std = coords.square().mean(dim=0).sqrt()
    # Components at the numerical noise floor would be blown up to unit variance.
    keep = ev[:k] > 1e-12 * ev[0]
    patterns[:k] = torch.where(keep[:, None, None],
                               patterns[:k] / std.clamp_min(1e-12)[:, None, None], 0.0)
    return patterns.numpy(), mean.numpy()


def linear_branch_features(z: torch.Tensor, dz: torch.Tensor) -> torch.Tensor:
    """Inputs of the linear branch ``dz · (W z + b)`` as one row per window.

    Parameters
    ----------
    z, dz : Tensor, shape (B, n_in) and (B, n_out)
        Even and odd pattern coordinates.

    Returns
    -------
    Tensor, shape (B, n_out · n_in + n_out)
        ``dz ⊗ z`` (row-major, the layout of ``W``) then ``dz`` (that of ``b``).
    """
    return torch.cat([(dz[:, :, None] * z[:, None, :]).flatten(1), dz], dim=1)


class EPNet(nn.Module):
    """Antisymmetric estimator of the stochastic entropy production of k frames.

    Parameters
    ----------
    frames_per_input : int
        k, the number of consecutive frames one input spans (k − 1 transitions).
    frame_shape : (int, int)
        (H, W) of the frames in pixels.
    channels : int
        Width of the convolutional feature maps.
    max_pools : int
        Largest number of 2x down-samplings in the convolutional part.
    n_patterns : int
        K, the number of pattern slots of the global part (at most H · W).
    hidden : int
        Width of the global network ``g``.
    local_slots : int
        How many of the K slots are kept for local (tile) patterns; the warm start puts
        whole-frame patterns in the others.
    """

    @property
    def whole_frame_slots(self) -> int:
        """Pattern slots for whole-frame patterns: the K slots less the local ones."""
        return self.n_patterns - self.local_slots

    def __init__(self, *, frames_per_input: int, frame_shape: tuple[int, int],
                 channels: int = 8, max_pools: int = 2, n_patterns: int = 16, hidden: int = 64,
                 local_slots: int = 0):
        super().__init__()
        k = self.frames_per_input = int(frames_per_input)
        self.frame_shape = (int(frame_shape[0]), int(frame_shape[1]))
        h, w = self.frame_shape
        self.n_even, self.n_odd = (k + 1) // 2, k // 2
        whole = int(n_patterns) - int(local_slots)
        self.n_patterns = n_patterns = int(min(n_patterns, h * w))
        self.local_slots = n_patterns - min(whole, n_patterns)
        c = int(channels)
        self.n_down = n_downsamplings(self.frame_shape, max_pools)

        # The first down-sampling is the 5x5 convolution's own stride: full-resolution
        # feature maps are where a CPU spends its time.
        self.conv = None
        if c:
            first_stride = 2 if self.n_down else 1
            conv = [nn.Conv2d(self.n_even + 2, c, 5, stride=first_stride, padding=2), nn.ReLU()]
            for _ in range(self.n_down - 1):
                conv += [nn.Conv2d(c, c, 3, stride=2, padding=1), nn.ReLU()]
            conv += [nn.Conv2d(c, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, self.n_odd, 1)]
            self.conv = nn.Sequential(*conv)
            nn.init.zeros_(self.conv[-1].weight)
            nn.init.zeros_(self.conv[-1].bias)

        self.register_buffer("patterns", torch.zeros(n_patterns, h, w))
        self.register_buffer("mean_frame", torch.zeros(h, w))
        n_in, n_out = self.n_even * n_patterns, self.n_odd * n_patterns
        self.g_linear = nn.Linear(n_in, n_out)
        # Which entries of the linear map are free: all, or blocks that couple only the
        # patterns of one tile (``estimate.warmstart``'s local patterns).
        self.register_buffer("linear_mask", torch.ones(n_out, n_in))
        self.g_hidden = nn.Sequential(nn.Linear(n_in, hidden), nn.Softplus(),
                                      nn.Linear(hidden, n_out))
        for layer in (self.g_linear, self.g_hidden[-1]):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        # Polynomial branch: row o·n_poly + p of ``g_poly`` holds the coefficients of the
        # force along pattern p (odd channel o) on each monomial of the mean state; the
        # mask says which are fitted (none until ``estimate.nonlinear`` sets them).
        self.n_poly = min(POLY_COORDS, n_patterns)
        exps = monomial_exponents(self.n_poly)
        self.register_buffer("poly_exponents", torch.as_tensor(exps), persistent=False)
        self.g_poly = nn.Parameter(torch.zeros(self.n_odd * self.n_poly, len(exps)))
        self.register_buffer("poly_mask", torch.zeros(self.n_odd * self.n_poly, len(exps)))

        yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
        self.register_buffer("coords", torch.stack([yy, xx])[None], persistent=False)

    @torch.no_grad()
    def set_patterns(self, patterns: np.ndarray, mean: np.ndarray, *,
                     n_active: int | None = None) -> None:
        """Set the global patterns (n_patterns, H, W) and the mean frame (H, W).

        Patterns past ``n_active`` (default: all) are set to zero.
        """
        patterns = np.array(patterns, dtype=np.float64)
        n = self.n_patterns if n_active is None else min(int(n_active), self.n_patterns)
        patterns[n:] = 0.0
        self.patterns.copy_(torch.as_tensor(patterns, dtype=self.patterns.dtype))
        self.mean_frame.copy_(torch.as_tensor(mean, dtype=self.mean_frame.dtype))

    @torch.no_grad()
    def set_pattern_groups(self, groups: np.ndarray | None) -> None:
        """Let the linear map couple only patterns of the same group (None: all of them).

        Parameters
        ----------
        groups : ndarray of int, shape (n_patterns,), optional
            Group label of each pattern, e.g. the tile it lives on.
        """
        if groups is None:
            self.linear_mask.fill_(1.0)
            return
        g = torch.as_tensor(np.asarray(groups), device=self.linear_mask.device)
        same = (g[:, None] == g[None, :]).to(self.linear_mask.dtype)
        self.linear_mask.copy_(same.repeat(self.n_odd, self.n_even))
        self.g_linear.weight.mul_(self.linear_mask)

    @torch.no_grad()
    def set_polynomial(self, coefficients: np.ndarray | None, mask: np.ndarray | None) -> None:
        """Set the polynomial branch (None: switch it off).

        Parameters
        ----------
        coefficients, mask : ndarray, shape (n_odd · n_poly, n_monomials)
            Coefficients (k_B per unit of the coordinates) and which of them are free.
        """
        if coefficients is None:
            self.g_poly.zero_()
            self.poly_mask.zero_()
            return
        self.poly_mask.copy_(torch.as_tensor(mask, dtype=self.poly_mask.dtype))
        self.g_poly.copy_(torch.as_tensor(coefficients, dtype=self.g_poly.dtype) * self.poly_mask)

    def _channels(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k = self.frames_per_input
        even = torch.stack([x[:, j] + x[:, k - 1 - j] for j in range(self.n_even)], dim=1)
        odd = torch.stack([x[:, k - 1 - j] - x[:, j] for j in range(self.n_odd)], dim=1)
        return even, odd

    def force(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Force field Φ and odd channels, both (B, n_odd, H, W), of inputs (B, k, H, W)."""
        even, odd = self._channels(x)
        local = self._conv_on_pixels(even, self.conv) if self._conv_counts() else 0.0
        g = self._global_coefficients(self._state(even))
        global_force = torch.einsum("bok,kpq->bopq", g, self.patterns)
        return local + global_force, odd

    def _global_coefficients(self, z: torch.Tensor) -> torch.Tensor:
        """Force along each global pattern, (B, n_odd, K), from the projected state z."""
        linear = nn.functional.linear(z, self.g_linear.weight * self.linear_mask,
                                      self.g_linear.bias)
        g = (linear + self.g_hidden(z)).view(z.shape[0], self.n_odd, self.n_patterns)
        if not self.n_poly:
            return g
        poly = self._monomials(z) @ (self.g_poly * self.poly_mask).T
        head = g[:, :, :self.n_poly] + poly.view(z.shape[0], self.n_odd, self.n_poly)
        return torch.cat([head, g[:, :, self.n_poly:]], dim=2)

    def _monomials(self, z: torch.Tensor) -> torch.Tensor:
        """Monomials (B, n_monomials) of the window's mean state along the first patterns.

        The mean state is the sum of the even channels over the frames they count, time
        symmetric like them: the branch only multiplies the odd coordinates, so ΔS_θ stays
        exactly antisymmetric and split over pixels.
        """
        u = z.view(z.shape[0], self.n_even, self.n_patterns)[:, :, :self.n_poly]
        u = u.sum(dim=1) / (2 * self.n_even)
        return torch.prod(u[:, None, :] ** self.poly_exponents, dim=2)

    def _conv_counts(self) -> bool:
        """Whether the convolutional part must be computed: it exists, and either its
        read-out (last layer) is not all zero or gradients are wanted through it.

        A kept warm start leaves that read-out at zero, and the part then adds exactly 0:
        skipping it makes inference (rates, traces, maps) about three times faster.
        """
        if self.conv is None:
            return False
        if torch.is_grad_enabled():
            return True
        last = self.conv[-1]
        return bool(last.weight.any() or last.bias.any())

    def _cell_sums(self, odd: torch.Tensor) -> torch.Tensor:
        """Odd channels summed over each cell of the convolutional grid, (B, n_odd, h, w).

        The convolutional force is constant over a cell, so its dot product with the odd
        channels needs only these sums: no full-resolution force map is built.
        """
        if not self.n_down:
            return odd
        s = 2 ** self.n_down
        h, w = self.frame_shape
        odd = nn.functional.pad(odd, (0, (-w) % s, 0, (-h) % s))
        b, c = odd.shape[:2]
        return odd.view(b, c, odd.shape[2] // s, s, odd.shape[3] // s, s).sum(dim=(3, 5))

    def _state(self, even: torch.Tensor) -> torch.Tensor:
        """Projection of the even channels on the global patterns, (B, n_even · K)."""
        return torch.einsum("bepq,kpq->bek", even - 2.0 * self.mean_frame, self.patterns).flatten(1)

    def _conv_cells(self, even: torch.Tensor, layers: nn.Module) -> torch.Tensor:
        """``layers`` of the convolutional part on the even channels (and the coordinate
        channels), on the grid of feature cells."""
        coords = self.coords.expand(even.shape[0], -1, -1, -1)
        return layers(torch.cat([even, coords], dim=1))

    def _conv_on_pixels(self, even: torch.Tensor, layers: nn.Module) -> torch.Tensor:
        """``layers`` of the convolutional part on the even channels, back on the pixel grid.

        Each feature cell's value is spread evenly over the pixels it stands for.
        """
        f = self._conv_cells(even, layers)
        if self.n_down:
            scale = 2 ** self.n_down
            f = f.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
            f = f[:, :, : self.frame_shape[0], : self.frame_shape[1]]
        return f

    def pixel_contributions(self, x: torch.Tensor) -> torch.Tensor:
        """Share of ΔS_θ carried by each pixel, shape (B, H, W), k_B; sums to ``forward(x)``."""
        phi, odd = self.force(x)
        return (phi * odd).sum(dim=1)

    def transition_contributions(self, x: torch.Tensor, *, pixels: bool = False) -> torch.Tensor:
        """Share of ΔS_θ carried by each of the window's k − 1 transitions, k_B.

        Odd channel j is the sum of the frame differences ``d_t = f_{t+1} − f_t`` for
        ``j ≤ t ≤ k − 2 − j``, and ΔS_θ is linear in the odd channels, so transition t
        carries ``Σ_j Φ_j · d_t`` over the channels whose span holds it: each transition's
        own displacement times the force, where spreading ΔS evenly over the transitions
        would blur a window's EP over all of them.  The shares add up to ``forward(x)``
        (to rounding), as the pixels' do.

        Parameters
        ----------
        x : Tensor, shape (B, k, H, W)
        pixels : bool
            Also split each share over pixels.

        Returns
        -------
        Tensor, shape (B, k − 1), or (B, k − 1, H, W) with ``pixels``
        """
        phi, _ = self.force(x)
        k = self.frames_per_input
        j = torch.arange(self.n_odd, device=x.device)[:, None]
        t = torch.arange(k - 1, device=x.device)[None, :]
        spans = ((t >= j) & (t <= k - 2 - j)).to(phi.dtype)  # (n_odd, k − 1)
        shares = torch.einsum("jt,bjhw->bthw", spans, phi) * (x[:, 1:] - x[:, :-1])
        return shares if pixels else shares.sum(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ΔS_θ of each input (B, k, H, W), shape (B,), k_B; exactly antisymmetric in time.

        Equal to ``pixel_contributions(x).sum((1, 2))`` (to rounding), computed without the
        force map: the global part is ``Σ g · dz`` in pattern coordinates and the
        convolutional part a sum over cells (:meth:`_cell_sums`): 1.2-1.4 times faster on
        one CPU thread.
        """
        even, odd = self._channels(x)
        dz = torch.einsum("bopq,kpq->bok", odd, self.patterns)
        total = (self._global_coefficients(self._state(even)) * dz).sum(dim=(1, 2))
        if self._conv_counts():
            local = self._conv_cells(even, self.conv)
            total = total + (local * self._cell_sums(odd)).sum(dim=(1, 2, 3))
        return total

    # ----------------------------------------------------------------- linear read-out
    # ΔS_θ is linear in the parameters of the last layers (the global part's linear map,
    # a per-output scale of its hidden branch, the convolutional part's 1x1 read-out), so
    # the NEEP objective is concave in them and Newton's method finds their optimum in a
    # few steps (``estimate.readout``).

    def readout_features(self, x: torch.Tensor) -> torch.Tensor:
        """Features F (B, P) with ΔS_θ = F @ readout_params(): the linear read-out's inputs."""
        even, odd = self._channels(x)
        z = self._state(even)
        dz = torch.einsum("bopq,kpq->bok", odd, self.patterns).flatten(1)
        parts = [linear_branch_features(z, dz), self.g_hidden(z) * dz]
        if self.n_poly:
            head = dz.view(len(dz), self.n_odd, self.n_patterns)[:, :, :self.n_poly]
            parts.append((head[:, :, :, None] * self._monomials(z)[:, None, None, :]).flatten(1))
        if self.conv is not None:
            f = self._conv_cells(even, self.conv[:-1])
            f = torch.cat([f, torch.ones_like(f[:, :1])], dim=1)
            parts.append(torch.einsum("bohw,bchw->boc", self._cell_sums(odd), f).flatten(1))
        return torch.cat(parts, dim=1)

    def readout_params(self) -> torch.Tensor:
        """Current read-out parameters θ (P,), in the order of :meth:`readout_features`."""
        parts = [(self.g_linear.weight * self.linear_mask).flatten(), self.g_linear.bias,
                 torch.ones(self.g_linear.bias.shape, dtype=self.g_linear.bias.dtype),
                 (self.g_poly * self.poly_mask).flatten()]
        if self.conv is not None:
            last = self.conv[-1]
            parts.append(torch.cat([last.weight[:, :, 0, 0], last.bias[:, None]], dim=1).flatten())
        return torch.cat([p.detach() for p in parts])

    def readout_columns(self) -> torch.Tensor:
        """Indices of the read-out parameters that can matter: those of unused (zero)
        global patterns have features that are zero on every input."""
        active = self.patterns.flatten(1).abs().amax(dim=1) > 0
        odd, even = active.repeat(self.n_odd), active.repeat(self.n_even)
        parts = [(odd[:, None] & even[None, :] & (self.linear_mask > 0)).flatten(), odd, odd,
                 (self.poly_mask > 0).flatten()]
        if self.conv is not None:
            last = self.conv[-1]
            parts.append(torch.ones(last.weight.shape[0] * (last.weight.shape[1] + 1),
                                    dtype=torch.bool, device=active.device))
        return torch.nonzero(torch.cat(parts)).flatten().cpu()

    @torch.no_grad()
    def set_readout_params(self, theta: torch.Tensor) -> None:
        """Write read-out parameters θ (P,) back into the layers."""
        theta = theta.to(self.g_linear.weight.dtype)
        n_out, n_in = self.g_linear.weight.shape
        i = 0
        self.g_linear.weight.copy_(theta[i: i + n_out * n_in].view(n_out, n_in) * self.linear_mask)
        i += n_out * n_in
        self.g_linear.bias.copy_(theta[i: i + n_out])
        i += n_out
        scale = theta[i: i + n_out]
        i += n_out
        last_hidden = self.g_hidden[-1]
        last_hidden.weight.mul_(scale[:, None])
        last_hidden.bias.mul_(scale)
        n_poly = self.g_poly.numel()
        self.g_poly.copy_(theta[i: i + n_poly].view(self.g_poly.shape) * self.poly_mask)
        i += n_poly
        if self.conv is not None:
            last = self.conv[-1]
            wb = theta[i:].view(self.n_odd, -1)
            last.weight.copy_(wb[:, :-1, None, None])
            last.bias.copy_(wb[:, -1])

