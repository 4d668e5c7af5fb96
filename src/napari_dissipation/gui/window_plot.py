"""The EP rate by window length: the curve that chose k, beside the EP trace.

A training run measures the rate for a rising number of frames per input window
(``FitResult.rate_by_window``: k, rate, 95% interval, all on test data that took no part
in any choice) and keeps the shortest window beyond which the rate stops rising.  This
plot shows that curve with its intervals, marks the k used and the rate reported (the
network's, after training at that k), and the exact rate of a simulated movie.
"""

from __future__ import annotations

import numpy as np
from matplotlib.ticker import NullLocator
from qtpy.QtWidgets import QWidget

from .plots import EXACT_COLOR, MARKER_COLOR, SUM_COLOR, _Canvas

__all__ = ["WindowPlot", "curve_arrays"]

CURVE_COLOR = "#8fb8ff"


def curve_arrays(curve) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(k, rate, lower, upper) of the finite points of ``rate_by_window``, sorted by k;
    entries whose fit did not generalise are left out.

    An entry without an interval gets ``lower = upper = rate``.
    """
    rows = []
    for entry in curve or ():
        if isinstance(entry, dict) and entry.get("generalises") is False:  # not chosen from
            continue
        try:
            k, rate = float(entry["k"]), float(entry["rate"])
        except (KeyError, TypeError, ValueError):
            continue
        ci = entry.get("ci")
        try:
            lo, hi = (float(ci[0]), float(ci[1])) if ci is not None else (rate, rate)
        except (TypeError, ValueError, IndexError):
            lo, hi = rate, rate
        if not (np.isfinite(lo) and np.isfinite(hi)):
            lo, hi = rate, rate
        if np.isfinite(k) and np.isfinite(rate) and k > 0:
            rows.append((k, rate, lo, hi))
    rows.sort()
    if not rows:
        empty = np.zeros(0)
        return empty, empty, empty, empty
    table = np.asarray(rows, dtype=float)
    return table[:, 0], table[:, 1], table[:, 2], table[:, 3]


class WindowPlot(_Canvas):
    """EP rate (with its 95% interval) against frames per input window, k (log scale).

    Attributes
    ----------
    k, rate, lower, upper : ndarray
        The curve as drawn.
    chosen : int or None
        The k used (marked by a pale vertical band).
    reported : float or None
        The rate reported for the run (drawn as a star at ``chosen``).
    exact : float or None
        The exact rate of a simulated movie (a dashed horizontal line).
    """

    def __init__(self, parent: QWidget | None = None):
        super().__init__(height=2.6, min_pixels=180, parent=parent, redraw_delay_ms=360)
        self.canvas.setMinimumWidth(260)
        self.ax = self.figure.add_subplot(1, 1, 1)
        self.set_curve([])

    @property
    def has_curve(self) -> bool:
        return len(self.k) > 0

    def set_curve(self, curve, *, chosen: int | None = None, chosen_from_data: bool = True,
                  reported: float | None = None, exact: float | None = None) -> None:
        """Show a new curve (``rate_by_window`` entries; an empty one clears the plot).

        Parameters
        ----------
        curve : list of dict
            ``k``, ``rate`` and ``ci`` (k_B/s) per window length tried.
        chosen : int, optional
            The k used for the result.
        chosen_from_data : bool
            Whether ``chosen`` was chosen from the data (else it was set).
        reported : float, optional
            The rate reported for the result, drawn at ``chosen``.
        exact : float, optional
            Exact EP rate of a simulated movie, k_B/s.
        """
        self.k, self.rate, self.lower, self.upper = curve_arrays(curve)
        self.chosen = None if chosen is None else int(chosen)
        self.reported = None if reported is None or not np.isfinite(reported) else float(
            reported)
        self.exact = None if exact is None or not np.isfinite(exact) else float(exact)
        ax = self.ax
        ax.clear()
        self._chosen_line = None
        if self.has_curve:
            self._draw_curve(chosen_from_data)
        ax.set_xlabel("frames per input, k", fontsize=8)
        ax.set_ylabel("EP rate (k_B/s)", fontsize=8)
        ax.set_title("rate by window length (test data)", fontsize=9)
        self._restyle()
        self.canvas.draw_idle()

    def clear(self) -> None:
        """No curve (e.g. a result of a loaded estimator)."""
        self.set_curve([])

    def _draw_curve(self, chosen_from_data: bool) -> None:
        ax, k = self.ax, self.k
        err = np.clip(np.vstack([self.rate - self.lower, self.upper - self.rate]), 0.0, None)
        ax.errorbar(k, self.rate, yerr=err, fmt="o-", color=CURVE_COLOR, ms=3, lw=1,
                    elinewidth=1, capsize=2, label="rate, 95% CI")
        if self.exact is not None:
            ax.axhline(self.exact, color=EXACT_COLOR, lw=1, ls="--", label="exact (simulation)")
        if self.chosen is not None:
            words = "chosen" if chosen_from_data else "set"
            # a wide, pale band behind the points: it marks k without hiding its error bar
            self._chosen_line = ax.axvline(self.chosen, color=MARKER_COLOR, lw=7, alpha=0.3,
                                           zorder=0, label=f"k = {self.chosen} ({words})")
            if self.reported is not None:
                ax.plot([self.chosen], [self.reported], marker="*", ms=9, ls="none",
                        color=SUM_COLOR, label="reported rate")
        ks = sorted(set(int(round(x)) for x in k) | ({self.chosen} if self.chosen else set()))
        ax.set_xscale("log", base=2)
        ax.set_xticks(ks, [str(x) for x in ks])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlim(min(ks) / 1.25, max(ks) * 1.25)
        ax.legend(loc="best", fontsize=7)

    def chosen_x(self) -> float | None:
        """Where the chosen k is marked (x of the vertical line), or None."""
        if self._chosen_line is None:
            return None
        return float(self._chosen_line.get_xdata()[0])
