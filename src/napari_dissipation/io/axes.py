"""Which axis of a stored array is time, and which channel, z-plane and series to keep.

Files hold arrays with named axes (tifffile letters: T time, C channel, S colour sample,
Z z-plane, Y and X the frame, M independent movies, I and Q unnamed stacks).
:func:`resolve_axes` decides the letters (the user's, the file's names, or the rule for
arrays without names); :func:`plan` turns the axes, the shape and the user's choices into
one index that picks a (T, H, W) movie out of the array, or refuses with a message that
lists what the file holds; :func:`movie_indices` gives one such index per movie when the
array holds several (an M axis).

Arrays without axis names (``.npy``, a TIFF written by ``tifffile.imwrite`` without axes,
a Zarr array without dimension names) follow one rule: axes of length 1 are ignored;
what remains is (T, H, W), one movie, or (M, T, H, W), M independent movies of T frames
each (the layout of :func:`napari_dissipation.simulate` and of many data sets).  Other
layouts, e.g. (T, C, H, W), need their axes named (``axes="TCYX"``).
"""

from __future__ import annotations

from ..errors import InputError

__all__ = ["AXIS_WORDS", "MOVIE_AXIS", "plan", "movie_indices", "resolve_axes",
           "check_movie_shape", "refuse_unused"]

#: The letter of an axis of independent movies (M, T, H, W).
MOVIE_AXIS = "M"
#: tifffile's letters for axes without a name: Q (other) and I (sequence of images).
_UNNAMED = "QI"
#: Letters understood in axes given by the user.
_KNOWN = "TCSZYXMQI"
#: A second axis this short in an unnamed 4-D array may be channels, not frames.
_FEW_FRAMES = 4

#: Axis -> (one, many) in words, for messages.
AXIS_WORDS = {"C": ("channel", "channels"), "S": ("colour sample", "colour samples"),
              "Z": ("z-plane", "z-planes"), "series": ("series", "series")}
#: Selection -> the word for one of it, for messages.
_CHOICE_WORDS = {"channel": "channel", "z": "z-plane", "series": "series"}


def check_movie_shape(path, shape, axes=None) -> None:
    """Refuse anything but a (T, H, W) shape: a single image, or more dimensions."""
    if len(shape) == 2:
        raise InputError(f"{path}: a single 2-D image {tuple(shape)}, not a movie; expected "
                         "a stack of frames (T, H, W)")
    if len(shape) != 3:
        what = f"axes {axes!r}, " if axes else ""
        raise InputError(
            f"{path}: expected a single-channel movie of shape (T, H, W), got {what}shape "
            f"{tuple(shape)}"
        )


def refuse_unused(path, given: dict, held) -> None:
    """Refuse a channel, z or series choice above 0 on a file that does not have that axis.

    ``given`` maps "channel", "z" and "series" to the user's choice (None for none);
    ``held`` holds the selections the file has.  Index 0 of an axis that is not there is
    accepted, so one choice can be applied to a mixed set of files.
    """
    for name, value in given.items():
        if value is not None and name not in held and value > 0:
            word = _CHOICE_WORDS[name]
            raise InputError(f"{path}: {word} {value} chosen but the file has only one "
                             f"{word}", option=name)


def plan(path, axes: str, shape, *, channel, z, n_series: int = 1, series=None):
    """Decide which axis is time and which index of every other axis to use.

    Parameters
    ----------
    path : str or Path
        Named in messages.
    axes : str
        One tifffile letter per axis of the stored array.
    shape : tuple of int
        The stored array's shape.
    channel, z, series : int or None
        The user's choices (None: none made).
    n_series : int
        How many series the file holds (the series itself is chosen by the reader).

    Returns
    -------
    index : list
        One entry per axis: an int for a fixed axis, ``slice(None)`` for T, Y and X; the
        kept axes are, in order, T, Y, X.
    t_axis : str
        The letter of the axis read as time.
    selection : dict
        ``series``, ``channel`` and ``z`` as chosen (None where the file has one).

    Raises
    ------
    InputError
        No frames, no time axis, an axis that is not understood, or a choice missing or
        out of range (``option`` names it).
    """
    axes = axes.upper()
    shape = tuple(int(s) for s in shape)
    if "Y" not in axes or "X" not in axes:
        raise InputError(f"{path}: axes {axes!r} have no Y and X; cannot find the frames")
    big = {a: n for a, n in zip(axes, shape, strict=True)
           if n > 1 and a not in "YX" and a != MOVIE_AXIS}
    chan_axis = "C" if "C" in big else ("S" if "S" in big else None)
    if "C" in big and "S" in big:
        raise InputError(f"{path}: {big['C']} channels of {big['S']}-sample colour images "
                         "are not supported; save one channel per plane")
    t_axis = _time_axis(path, axes, shape, big)
    other = [a for a in big if a not in (t_axis, "Z") and a != chan_axis]
    if other:
        names = ", ".join(f"{a!r} of {big[a]}" for a in other)
        raise InputError(f"{path}: axes {axes!r} {shape} also hold {names}; only time, "
                         "channel, z and series are understood")
    selection = _choose(path, big, chan_axis, n_series, channel=channel, z=z, series=series)
    index = []
    for a in axes:
        if a in (t_axis, "Y", "X"):
            index.append(slice(None))
        elif a == MOVIE_AXIS:
            index.append(0)  # one movie; movie_indices gives the others
        elif a == chan_axis:
            index.append(selection["channel"])
        elif a == "Z" and "Z" in big:
            index.append(selection["z"])
        else:
            index.append(0)
    kept = [a for a, i in zip(axes, index, strict=True) if isinstance(i, slice)]
    if kept != [t_axis, "Y", "X"]:
        raise InputError(f"{path}: axes {axes!r}: time, Y and X are not in that order")
    if shape[axes.index(t_axis)] < 2:
        raise InputError(f"{path}: a single frame, not a movie")
    return index, t_axis, selection


def movie_indices(axes: str, shape, index) -> list:
    """One index per movie: ``index`` with the M axis set to 0, 1, ... (itself without M)."""
    axes = axes.upper()
    if MOVIE_AXIS not in axes:
        return [list(index)]
    i = axes.index(MOVIE_AXIS)
    return [[m if j == i else ix for j, ix in enumerate(index)] for m in range(int(shape[i]))]


def resolve_axes(path, file_axes, shape, given=None) -> str:
    """The axes of a stored array: the user's, else the file's names, else the rule.

    Parameters
    ----------
    path : str or Path
        Named in messages.
    file_axes : str or None
        The file's own letters (tifffile's series axes, Zarr dimension names); None or only
        unnamed letters (Q, I) besides Y and X when the file does not name them.
    shape : tuple of int
        The stored array's shape.
    given : str, optional
        The user's letters, e.g. ``"MTYX"`` or ``"TCYX"``: one per axis, or one per axis
        longer than 1 (axes of length 1 are then filled in).

    Returns
    -------
    str
        One letter per axis of ``shape``.

    Raises
    ------
    InputError
        Letters that do not fit the shape, or an unnamed array that the rule (module
        docstring) cannot read (``option="axes"``).
    """
    shape = tuple(int(n) for n in shape)
    if given:
        return _given_axes(path, str(given).upper(), shape)
    if file_axes and any(a not in _UNNAMED + "YX" for a in file_axes.upper()):
        return file_axes.upper()
    return _unnamed_axes(path, shape)


def _given_axes(path, given: str, shape) -> str:
    """The user's letters checked against the shape; axes of length 1 filled in with Q."""
    bad = sorted(set(given) - set(_KNOWN))
    if bad or len(set(given)) != len(given) or not {"Y", "X"} <= set(given):
        raise InputError(f"axes {given!r}: use each letter once, Y and X for the frame and "
                         "T (time), M (movies), C (channel), Z (z-plane), Q (ignored)",
                         option="axes")
    if len(given) == len(shape):
        return given
    long = [i for i, n in enumerate(shape) if n > 1]
    if len(given) != len(long):
        raise InputError(f"{path}: axes {given!r} name {len(given)} axes but the array "
                         f"{shape} has {len(shape)} ({len(long)} longer than 1)",
                         option="axes")
    letters = iter(given)
    return "".join(next(letters) if n > 1 else "Q" for n in shape)


def _unnamed_axes(path, shape) -> str:
    """The rule for arrays without axis names: (T, H, W) or (M, T, H, W), singletons ignored."""
    if len(shape) < 3:
        check_movie_shape(path, shape)
    lead = [i for i, n in enumerate(shape[:-2]) if n > 1]
    letters = ["Q"] * (len(shape) - 2) + ["Y", "X"]
    if len(lead) > 2:
        raise InputError(f"{path}: an array of shape {shape} without axis names; expected "
                         "(T, H, W) or (M, T, H, W) (axes of length 1 are ignored); name its "
                         "axes, e.g. MTCYX", option="axes")
    if len(lead) == 2:
        m, t = (shape[i] for i in lead)
        if t <= _FEW_FRAMES or min(shape[-2:]) <= _FEW_FRAMES:
            raise InputError(
                f"{path}: an array of shape {shape} without axis names: {m} movies of {t} "
                f"frames of {shape[-2]} x {shape[-1]} px, or one movie with channels, "
                "z-planes or colour? Name its axes, e.g. MTYX, TCYX or TYXS", option="axes")
        letters[lead[0]], letters[lead[1]] = MOVIE_AXIS, "T"
    elif len(lead) == 1:
        letters[lead[0]] = "T"
    return "".join(letters)


def _time_axis(path, axes: str, shape, big: dict) -> str:
    """The letter of the time axis: T, else a lone unnamed stack (I or Q) of frames."""
    if "T" in big:
        return "T"
    stack = [a for a in big if a not in "CSZ"]
    if len(stack) == 1 and stack[0] in "IQ":
        return stack[0]
    if not stack and not big:
        raise InputError(f"{path}: a single 2-D image {shape}, not a movie; expected a "
                         "stack of frames (T, H, W)")
    if not stack and set(big) <= set("CS") and "S" in big and big["S"] in (3, 4):
        raise InputError(f"{path}: a single {'RGBA' if big['S'] == 4 else 'RGB'} colour "
                         f"image {shape}, not a movie; expected a stack of frames (T, H, W)")
    if not stack:
        raise InputError(f"{path}: axes {axes!r} {shape} hold no time axis (a single "
                         "image or a z-stack, not a movie); if the planes are time points, "
                         "re-save the file with them as frames (ImageJ: Image > Properties)")
    raise InputError(f"{path}: axes {axes!r} {shape}: cannot tell which axis is time")


def _choose(path, big: dict, chan_axis, n_series: int, *, channel, z, series) -> dict:
    """The channel, z-plane and series to keep; refused when one is needed and missing."""
    selection = {"series": series if n_series > 1 else None, "channel": None, "z": None}
    choices = {"channel": (chan_axis, channel), "z": ("Z" if "Z" in big else None, z)}
    if n_series > 1:
        choices = {"series": ("series", series), **choices}
    missing, names = [], []
    for name, (axis, value) in choices.items():
        if axis is None:
            continue
        n = n_series if axis == "series" else big[axis]
        one, many = AXIS_WORDS[axis]
        if value is None:
            missing.append(f"{n} {many} (0-{n - 1})")
            names.append(name)
        elif value >= n:
            raise InputError(f"{path}: {one} {value} is out of range: the file has {many} "
                             f"0-{n - 1}", option=name)
        else:
            selection[name] = int(value)
    if missing:
        which = "one" if len(names) == 1 else "one of each"
        raise InputError(f"{path}: {' and '.join(missing)}; choose {which}",
                         option=names[0] if len(names) == 1 else tuple(names))
    refuse_unused(path, {"channel": channel, "z": z, "series": series},
                  {k for k, (a, _) in choices.items() if a is not None})
    return selection
