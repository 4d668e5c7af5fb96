"""Linear diffusion (multivariate Ornstein-Uhlenbeck) with exact entropy production.

The process is ``dx = A x dt + sqrt(2 D) dW`` in ``n`` dimensions with a stable drift
matrix ``A`` (every eigenvalue has a negative real part) and a symmetric positive
semi-definite diffusion matrix ``D``.  Everything here is exact: the stationary law is
Gaussian with the covariance ``C`` solving the Lyapunov equation ``A C + C A^T + 2 D = 0``,
the transition over a time ``dt`` is Gaussian with mean ``F x`` (``F = expm(A dt)``) and
covariance ``Q = C - F C F^T``, and sampling uses that kernel, not Euler-Maruyama.

Units: entropy in k_B (temperatures in energy units, k_B = 1), rates in k_B per unit of
the time in which ``A`` and ``D`` are given.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

__all__ = ["LinearDiffusion"]


def _as_generator(rng) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _matrix_sqrt_factor(Q: np.ndarray) -> np.ndarray:
    """Return ``L`` with ``L @ L.T == Q`` for a symmetric PSD ``Q`` (Cholesky if possible)."""
    try:
        return np.linalg.cholesky(Q)
    except np.linalg.LinAlgError:
        w, U = np.linalg.eigh(0.5 * (Q + Q.T))
        return U * np.sqrt(np.clip(w, 0.0, None))


class LinearDiffusion:
    """Overdamped linear diffusion ``dx = A x dt + sqrt(2 D) dW``.

    Parameters
    ----------
    drift : array_like, shape (n, n)
        Drift matrix ``A`` (1 / time).  Must be stable.
    diffusion : array_like, shape (n, n)
        Diffusion matrix ``D`` (length^2 / time), symmetric positive semi-definite.  The
        entropy-production rates need it positive definite.

    Notes
    -----
    For a bead of friction ``gamma`` in a bath at temperature ``T`` the diffusion
    coefficient is ``T / gamma`` and the entropy production computed here is the heat
    released into each bath divided by that bath's temperature, plus the change of the
    system's Shannon entropy.
    """

    def __init__(self, drift, diffusion):
        A = np.array(drift, dtype=np.float64, ndmin=2)
        D = np.array(diffusion, dtype=np.float64, ndmin=2)
        n = A.shape[0]
        if A.shape != (n, n) or D.shape != (n, n):
            raise ValueError(f"drift and diffusion must be square and alike, got {A.shape}, "
                             f"{D.shape}")
        if not np.allclose(D, D.T, rtol=1e-12, atol=1e-14 * max(np.abs(D).max(), 1.0)):
            raise ValueError("diffusion matrix must be symmetric")
        D = 0.5 * (D + D.T)
        if np.linalg.eigvalsh(D).min() < -1e-12 * max(np.abs(D).max(), 1.0):
            raise ValueError("diffusion matrix must be positive semi-definite")
        if np.linalg.eigvals(A).real.max() >= 0:
            raise ValueError("drift matrix must be stable (all eigenvalues with Re < 0)")
        self.drift = A
        self.diffusion = D
        self._cov = None
        self._kernels: dict[float, tuple[np.ndarray, np.ndarray]] = {}

    @property
    def n_dof(self) -> int:
        """Number of degrees of freedom ``n``."""
        return self.drift.shape[0]

    # ------------------------------------------------------------------ stationary law
    def stationary_covariance(self) -> np.ndarray:
        """Stationary covariance ``C`` (n, n), solving ``A C + C A^T = -2 D``."""
        if self._cov is None:
            C = scipy.linalg.solve_continuous_lyapunov(self.drift, -2.0 * self.diffusion)
            self._cov = 0.5 * (C + C.T)
        return self._cov

    def transition(self, dt: float) -> tuple[np.ndarray, np.ndarray]:
        """Exact kernel over ``dt``: ``x' = F x + N(0, Q)``.

        Returns
        -------
        F : ndarray, shape (n, n)
            ``expm(A dt)``.
        Q : ndarray, shape (n, n)
            ``C - F C F^T``, the covariance of the transition noise.
        """
        dt = float(dt)
        if not dt > 0:
            raise ValueError(f"dt must be positive, got {dt}")
        if dt not in self._kernels:
            C = self.stationary_covariance()
            F = scipy.linalg.expm(self.drift * dt)
            Q = C - F @ C @ F.T
            self._kernels[dt] = (F, 0.5 * (Q + Q.T))
        return self._kernels[dt]

    # ------------------------------------------------------------- continuous-time EP
    def velocity_matrix(self) -> np.ndarray:
        """``W = A + D C^{-1}`` (n, n): the mean local velocity is ``v(x) = W x``."""
        C = self.stationary_covariance()
        return self.drift + np.linalg.solve(C, self.diffusion).T

    def ep_rate(self) -> float:
        """Exact steady-state EP rate ``<v^T D^{-1} v>`` (k_B per unit time).

        Zero (to float precision) exactly when the process obeys detailed balance.
        """
        W = self.velocity_matrix()
        C = self.stationary_covariance()
        D = self._positive_definite_diffusion()
        return float(np.trace(np.linalg.solve(D, W @ C @ W.T)))

    def ep_rate_per_dof(self) -> np.ndarray:
        """EP rate carried by each degree of freedom, ``sigma_i = <v_i^2> / D_ii`` (n,).

        k_B per unit time.  For a diagonal ``D`` (independent baths) these sum to
        :meth:`ep_rate`; otherwise they are only a per-coordinate attribution.
        """
        self._positive_definite_diffusion()
        W = self.velocity_matrix()
        C = self.stationary_covariance()
        return np.diag(W @ C @ W.T) / np.diag(self.diffusion)

    def _positive_definite_diffusion(self) -> np.ndarray:
        D = self.diffusion
        if np.linalg.eigvalsh(D).min() <= 0:
            raise ValueError("the EP rate needs a positive-definite diffusion matrix")
        return D

    # ---------------------------------------------------------------------- sampling
    def sample(self, n_traj: int, n_steps: int, dt: float, rng=None) -> np.ndarray:
        """Sample stationary trajectories with the exact transition kernel.

        Parameters
        ----------
        n_traj : int
            Number of independent trajectories.
        n_steps : int
            Number of time points per trajectory (the first drawn from the stationary law).
        dt : float
            Time between points.
        rng : numpy.random.Generator or int or None
            Source of randomness (a seed is turned into a Generator).

        Returns
        -------
        ndarray, shape (n_traj, n_steps, n), float64
        """
        rng = _as_generator(rng)
        n = self.n_dof
        if n_traj < 1 or n_steps < 1:
            raise ValueError(f"need n_traj >= 1 and n_steps >= 1, got {n_traj}, {n_steps}")
        F, Q = self.transition(dt)
        L0 = _matrix_sqrt_factor(self.stationary_covariance())
        LQ = _matrix_sqrt_factor(Q)
        x = np.empty((n_traj, n_steps, n))
        x[:, 0] = rng.standard_normal((n_traj, n)) @ L0.T
        # Noise first (one big draw), then the recursion in place, one step at a time.
        x[:, 1:] = rng.standard_normal((n_traj, n_steps - 1, n)) @ LQ.T
        Ft = F.T.copy()
        for t in range(1, n_steps):
            x[:, t] += x[:, t - 1] @ Ft
        return x

    # ------------------------------------------------------------ discrete-time EP
    def _step_ep_forms(self, dt: float) -> tuple[np.ndarray, np.ndarray]:
        """Matrices ``G`` (symmetric) and ``H`` (antisymmetric) of the per-step EP.

        ``ln[p(x)K(x->y)] - ln[p(y)K(y->x)] = (x^T G x - y^T G y) / 2 + y^T H x`` with
        ``G = Q^-1 - F^T Q^-1 F - C^-1`` and ``H = Q^-1 F - F^T Q^-1``.
        """
        F, Q = self.transition(dt)
        C = self.stationary_covariance()
        Qi = np.linalg.inv(Q)
        Qi = 0.5 * (Qi + Qi.T)
        Ci = np.linalg.inv(C)
        Ci = 0.5 * (Ci + Ci.T)
        G = Qi - F.T @ Qi @ F - Ci
        G = 0.5 * (G + G.T)
        QiF = Qi @ F
        H = QiF - QiF.T
        return G, H

    def step_ep(self, x, dt: float) -> np.ndarray:
        """Exact EP of every sampled transition (k_B).

        ``ln[p(x_t) K(x_t -> x_t+1)] - ln[p(x_t+1) K(x_t+1 -> x_t)]`` with ``p`` the
        stationary law and ``K`` the exact kernel over ``dt``.  Its mean divided by
        ``dt`` is the discrete-time EP rate (see :meth:`step_ep_mean`), which is at most
        :meth:`ep_rate` and tends to it as ``dt -> 0``.

        Parameters
        ----------
        x : array_like, shape (n_traj, n_steps, n) or (n_steps, n)
            Trajectories sampled every ``dt``.
        dt : float

        Returns
        -------
        ndarray, shape (n_traj, n_steps - 1) or (n_steps - 1,)
        """
        x = np.asarray(x, dtype=np.float64)
        if x.shape[-1] != self.n_dof or x.ndim not in (2, 3):
            raise ValueError(f"x must have shape (n_traj, n_steps, {self.n_dof}), got {x.shape}")
        G, H = self._step_ep_forms(dt)
        q = np.einsum("...i,ij,...j->...", x, G, x)
        a, b = x[..., :-1, :], x[..., 1:, :]
        cross = np.einsum("...i,ij,...j->...", b, H, a)
        return 0.5 * (q[..., :-1] - q[..., 1:]) + cross

    def step_ep_mean(self, dt: float) -> float:
        """Stationary mean of :meth:`step_ep` over one step of ``dt`` (k_B), analytically.

        From the Gaussian moments ``E[x x^T] = E[y y^T] = C`` and ``E[x y^T] = C F^T``,
        the mean is ``tr(H C F^T)``.  It equals the Kullback-Leibler divergence between
        forward and time-reversed pairs, so ``step_ep_mean(dt) / dt`` is the discrete-time
        rate: ``<= ep_rate()`` and ``-> ep_rate()`` as ``dt -> 0``.
        """
        F, _ = self.transition(dt)
        _, H = self._step_ep_forms(dt)
        return float(np.trace(H @ self.stationary_covariance() @ F.T))

    def window_irreversibility(self, k: int, dt: float, *, observed=None,
                               noise_sd=0.0, noise_cov=None) -> float:
        """Exact KL divergence between windows of k observations and their time reversal.

        The window is ``(y_1, ..., y_k)``, ``y_j = P x(t + j dt) + e_j``: the coordinates
        ``observed`` of the state, ``dt`` apart, each with independent Gaussian
        measurement noise ``e_j`` of standard deviation ``noise_sd``.  Its mean EP, the
        divergence ``D(p(y_1..y_k) || p(y_k..y_1))``, is what an estimator that sees only
        such windows can find at best: the per-transition figure ``/ (k − 1)`` divided by
        :meth:`step_ep_mean` is the share of the EP a k-frame estimator can recover from a
        partially observed or noisy movie.  With every coordinate observed, no noise and
        k = 2 it equals :meth:`step_ep_mean`; for one observed coordinate it is 0 (a
        stationary Gaussian scalar process is time-reversible).

        Parameters
        ----------
        k : int
            Observations per window (>= 2).
        dt : float
            Time between observations.
        observed : sequence of int or ndarray of shape (d, n_dof), optional
            Indices of the observed coordinates (default: all), or a matrix whose rows
            are the observed linear combinations of the state (pattern coordinates of
            a linearised movie, say).
        noise_sd : float or array_like
            Measurement noise standard deviation, per observed coordinate or one for all.
        noise_cov : ndarray of shape (d, d), optional
            Measurement noise covariance, added to ``noise_sd``'s.

        Returns
        -------
        float
            k_B per window.
        """
        if int(k) != k or k < 2:
            raise ValueError(f"k must be an integer >= 2, got {k}")
        k = int(k)
        if observed is None:
            P = np.eye(self.n_dof)
        elif np.ndim(observed) == 2:
            P = np.asarray(observed, dtype=float)
        else:
            P = np.eye(self.n_dof)[np.asarray(observed, dtype=int)]
        d = len(P)
        F, _ = self.transition(dt)
        C = self.stationary_covariance()
        # lag[j] = E[y(t + j dt) y(t)^T] = P F^j C P^T for the noise-free observations.
        lag, Fj = [], np.eye(self.n_dof)
        for _ in range(k):
            lag.append(P @ Fj @ C @ P.T)
            Fj = F @ Fj
        S = np.empty((k * d, k * d))
        for i in range(k):
            for j in range(k):
                block = lag[i - j] if i >= j else lag[j - i].T
                S[i * d:(i + 1) * d, j * d:(j + 1) * d] = block
        S += np.diag(np.tile(np.broadcast_to(np.asarray(noise_sd, float) ** 2, (d,)), k))
        if noise_cov is not None:
            S += np.kron(np.eye(k), np.asarray(noise_cov, dtype=float))
        order = np.concatenate([np.arange(j * d, (j + 1) * d) for j in reversed(range(k))])
        S_rev = S[np.ix_(order, order)]
        # Both laws are centred Gaussians with equal determinants.
        return float(0.5 * (np.trace(np.linalg.solve(S_rev, S)) - k * d))

    def __repr__(self) -> str:
        return f"LinearDiffusion(n_dof={self.n_dof})"
