"""The napari face of the engine: a dock widget built from small parts.

- ``session``: Qt-free state of one widget (idle / training / stopping / estimating /
  exporting), the current model, the last result, events (psygnal);
- ``jobs``: bodies of the background jobs (train, estimate, export), plain functions that
  a napari thread worker runs; they touch no widget;
- ``options_form``: the estimator's options form, generated from ``options.OPTIONS``;
- ``panels``: the movie picker (magicgui's ``napari.layers.Image`` combo), the run and
  the results panels;
- ``results_view``: result layers over the movie and the docked EP trace;
- ``widget``: :class:`DissipationWidget`, which assembles the panels, wires the session's
  events to them, starts the workers and owns the trace dock;
- ``plots``: matplotlib plots (training curves, EP trace);
- ``window_plot``: the EP rate by window length (frames per input), beside the trace;
- ``layers``: napari- and Qt-free layout helpers (movie selection, dt, map layers);
- ``sample_data``: napari sample movies with their exact truth.

Importing this package imports neither Qt nor napari; ``DissipationWidget`` is loaded on
first access.
"""

from importlib import import_module

__all__ = ["DissipationWidget"]


def __getattr__(name):
    if name == "DissipationWidget":
        return import_module(".widget", __name__).DissipationWidget
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
