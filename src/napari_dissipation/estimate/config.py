"""The estimator's configuration: one field per option of :mod:`napari_dissipation.options`."""

from __future__ import annotations

from dataclasses import asdict, field, fields, make_dataclass

from ..options import ALIASES, OPTIONS, validate

__all__ = ["EstimatorConfig"]


class _ConfigMethods:
    def __post_init__(self):
        # Checked and converted by the schema: an InputError names the option.
        for name, value in validate(asdict(self)).items():
            setattr(self, name, value)

    def to_dict(self) -> dict:
        """Every option by name (JSON-ready)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        """A config from a dict such as :meth:`to_dict` wrote; old option names are
        accepted and names this version does not know are ignored."""
        known = {f.name for f in fields(cls)}
        values = {ALIASES.get(k, k): v for k, v in d.items()}
        return cls(**{k: v for k, v in values.items() if k in known})


def _annotation(o) -> str:
    name = o.type.__name__
    return f"{name} | None" if o.nullable else name


def _doc() -> str:
    lines = ["Options of :class:`~napari_dissipation.estimate.EPEstimator`.", "",
             "Generated from :data:`napari_dissipation.options.OPTIONS`, where each option's",
             "default, unit, label and help are defined.", "", "Attributes", "----------"]
    for o in OPTIONS:
        unit = f", {o.unit}" if o.unit else ""
        lines += [f"{o.name} : {_annotation(o)}{unit}", f"    {o.help} Default {o.default!r}."]
    return "\n".join(lines)


EstimatorConfig = make_dataclass(
    "EstimatorConfig",
    [(o.name, _annotation(o), field(default=o.default)) for o in OPTIONS],
    bases=(_ConfigMethods,),
    kw_only=True,
    namespace={"__doc__": _doc(), "__module__": __name__},
)
