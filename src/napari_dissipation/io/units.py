"""Units of time and length as file metadata spell them, converted to seconds and µm."""

from __future__ import annotations

__all__ = ["TIME_UNITS", "LENGTH_UNITS_UM", "unit_factor"]

#: Unit name -> seconds.
TIME_UNITS = {"s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0, "ms": 1e-3,
              "msec": 1e-3, "millisecond": 1e-3, "milliseconds": 1e-3, "microsecond": 1e-6,
              "microseconds": 1e-6, "nanosecond": 1e-9, "nanoseconds": 1e-9, "µs": 1e-6,
              "us": 1e-6, "\u03bcs": 1e-6, "ns": 1e-9,
              "min": 60.0, "minute": 60.0, "minutes": 60.0, "h": 3600.0, "hour": 3600.0,
              "hours": 3600.0}
#: Unit name -> micrometres (both µ code points: micro sign and Greek mu).
LENGTH_UNITS_UM = {"µm": 1.0, "\u03bcm": 1.0, "um": 1.0, "micron": 1.0, "microns": 1.0,
                   "micrometer": 1.0, "micrometre": 1.0, "nm": 1e-3, "nanometer": 1e-3,
                   "mm": 1e3, "millimeter": 1e3, "cm": 1e4, "centimeter": 1e4, "m": 1e6,
                   "meter": 1e6, "å": 1e-4, "angstrom": 1e-4, "pm": 1e-6}


def unit_factor(unit, table: dict, default):
    """The factor of ``unit`` in ``table`` (exact spelling first, then lower case).

    ``default`` when no unit is given; None for a unit the table does not know.
    """
    if unit is None or unit == "":
        return default
    key = str(unit).strip()
    return table.get(key, table.get(key.lower()))
