"""``napari-dissipation fit MOVIE... --dt DT --out RUN``: train and write a run folder.

RUN/ holds ``summary.json`` (rate, interval, dt, counts, time), ``stochastic_ep.csv``
(``movie,frame,ep``: every transition of every input movie), ``model.pt`` (the estimator,
safe to load), ``config.json`` (every option and what was learnt about the data) and
``history.csv`` (one row per evaluation) and ``record.json`` (what produced the run:
versions, options, seeds, inputs with their SHA-256; ``napari-dissipation rerun`` repeats
it).  It prints the rate for a rising window length
(the table ``summary.json`` keeps as ``rate_by_window``) and says when the rate is a lower
bound, and why.  The folder appears only when complete, and an
existing RUN is never touched.

While training, the whole training state is saved at every evaluation to
``RUN.partial/checkpoint.pt``; ``--resume`` continues a killed run from there, and the
folder is removed once RUN is complete.  Under ``torchrun --nproc_per_node=N -m
napari_dissipation fit ...`` the ranks train together (DistributedDataParallel) and rank
0 alone writes RUN.
"""

from __future__ import annotations

import csv
import os
import shutil
import sys
from pathlib import Path

from ..errors import InputError
from ._common import ProgressLine, add_selection_arguments, choose_dt, read_movies
from ._estimator_options import add_estimator_arguments, estimator_options
from .rerun import fit_record, input_checks

MODEL_FILE = "model.pt"
CHECKPOINT_FILE = "checkpoint.pt"


def partial_dir(out: Path) -> Path:
    """Where a run in progress keeps its checkpoint: ``RUN.partial`` beside RUN."""
    return out.with_name(out.name + ".partial")


def register(subparsers) -> None:
    """Add the ``fit`` subcommand."""
    p = subparsers.add_parser(
        "fit", help="train the estimator on movies and write the EP rate, its interval and "
        "the stochastic EP of every transition",
        description="Train the estimator on movies of one system and write a run folder. "
        "Every estimator option can be set; the defaults suit most movies.")
    p.add_argument("movies", nargs="+", metavar="MOVIE",
                   help="movies: TIFF, OME-TIFF, ImageJ, .npy, Zarr; folders or globs of TIFFs")
    p.add_argument("--out", required=True, metavar="RUN", help="run folder to create")
    p.add_argument("--dt", type=float, default=None,
                   help="seconds per frame (default: from the file metadata)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from its checkpoint in RUN.partial/")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    add_selection_arguments(p)
    add_estimator_arguments(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..estimate import EPEstimator, distributed
    from ..io import atomic_output, write_json, write_stochastic_ep_csv
    from ..record import RECORD_FILE, write_record

    out = Path(args.out)
    if out.exists():
        raise InputError(f"{out}: already exists; choose another --out (earlier runs are kept)")
    partial = partial_dir(out)
    checkpoint = partial / CHECKPOINT_FILE
    if partial.exists() and not _is_checkpoint_dir(partial):
        raise InputError(f"{partial}: exists and is not a checkpoint folder of this command; "
                         "choose another --out (it is left as it is)")
    if args.resume and not checkpoint.is_file():
        raise InputError(f"{partial}: no checkpoint of an interrupted run to resume; run "
                         "without --resume")
    if not args.resume and partial.exists() and not checkpoint.exists():
        shutil.rmtree(partial, ignore_errors=True)  # killed before its first checkpoint
    if not args.resume and partial.exists():
        raise InputError(f"{partial}: an interrupted run of {out} left its checkpoint here; "
                         "add --resume to continue it, or delete the folder to start again")
    movies = read_movies(args.movies, args)
    dt, dt_source = choose_dt(args.dt, movies)
    checks = input_checks(movies)  # notes on the inputs, warnings on glued movies
    est = EPEstimator(**estimator_options(args))
    names = [m.name for m in movies]  # "data.npy[3]": movie 3 of a file holding several
    # Under torchrun only rank 0 shows progress and writes; RANK is set before the group.
    main_rank = os.environ.get("RANK", "0") == "0"
    bar = ProgressLine(enabled=not args.quiet and main_rank)
    try:
        result = est.fit([m.data for m in movies], dt=dt, names=names, progress=bar,
                         checkpoint=checkpoint, resume=args.resume,
                         fingerprint=_input_facts(movies))
    finally:
        bar.close()
    if not distributed.current().is_main:
        distributed.shutdown()
        return 0
    with atomic_output(out, directory=True, overwrite=False) as tmp:
        summary = result.summary()
        summary.update(dt_source=dt_source, movies=names, model=MODEL_FILE,
                       selection=movies[0].selection)
        write_json(tmp / "summary.json", summary)
        write_json(tmp / "config.json", est.config_dict())
        write_stochastic_ep_csv(tmp / "stochastic_ep.csv", result.stochastic_ep,
                                movie_names=[Path(n).name for n in names])
        est.save(tmp / MODEL_FILE)
        _write_history(tmp / "history.csv", result.history)
        write_record(tmp / RECORD_FILE, fit_record(args, movies, dt, dt_source, est, checks,
                                                   result))
    if partial.exists() and _is_checkpoint_dir(partial):
        shutil.rmtree(partial, ignore_errors=True)
    distributed.shutdown()
    lo, hi = result.ep_rate_ci
    if not result.learnt:
        print("note: no trained network did better than ΔS = 0 on the held-out data; the rate "
              "0 means nothing was learnt (more data or a longer budget may help), not that "
              "the movie is certainly at equilibrium", file=sys.stderr)
    print(window_table(result, chosen_by="data" if est.config.frames_per_input == "auto"
                       else "option"))
    bound = "≥ " if result.lower_bound else ""
    print(f"EP rate {bound}{result.ep_rate:.4g} k_B/s (95% CI {lo:.4g} to {hi:.4g}) on "
          f"{result.n_held_out} test windows of {result.frames_per_input} frames "
          f"({result.held_out_by}); wrote {out}/")
    print(f"model: {result.model_stage} ({result.iterations} training steps, ended by "
          f"{result.stop_reason})")
    if result.lower_bound:
        print("lower bound: " + "; ".join(result.lower_bound_reasons) + ". The true EP rate "
              "is likely higher.")
    for warning in result.warnings:
        print(f"warning: {warning}")
    return 0


def window_table(result, *, chosen_by: str) -> str:
    """The rate by window length as a few lines of text, the chosen k marked."""
    lines = ["rate by window length (test units; * used, chosen by the "
             f"{'data' if chosen_by == 'data' else '--frames-per-input option'}):",
             "     k   rate k_B/s   95% CI"]
    for e in result.rate_by_window:
        mark = "*" if e["k"] == result.frames_per_input else " "
        lo, hi = e["ci"]
        note = ("   (not used: its fit did worse on held-out windows than none)"
                if e.get("generalises") is False else "")
        lines.append(f"  {mark}{e['k']:3d}   {e['rate']:10.4g}   {lo:.4g} to {hi:.4g}{note}")
    if not result.rate_by_window:
        lines.append("     (no fit of the warm start was significant for any window length)")
    return "\n".join(lines)


def _is_checkpoint_dir(path: Path) -> bool:
    """True for a folder holding nothing but a checkpoint (and its temporary files)."""
    if not path.is_dir() or path.is_symlink():
        return False
    tmp = f".{CHECKPOINT_FILE}."
    return all(e.name == CHECKPOINT_FILE or (e.name.startswith(tmp) and e.name.endswith(".tmp"))
               for e in path.iterdir())


def _input_facts(movies) -> list:
    """What a checkpoint must match besides the options: each file's size and time stamp."""
    facts = []
    for m in movies:
        path = Path(m.path)
        st = path.stat() if path.is_file() else None
        facts.append({"path": str(path.resolve()), "selection": m.selection,
                      "bytes": st.st_size if st else None,
                      "mtime_ns": st.st_mtime_ns if st else None})
    return facts


def _write_history(path: Path, history: list[dict]) -> None:
    fields = ["iteration", "seconds", "train_objective", "val_objective", "ep_rate"]
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for row in history:
            writer.writerow({k: row.get(k) for k in fields})
