"""The :class:`Study` declaration: what a study is, checked at construction."""

from __future__ import annotations

import dataclasses
import inspect
import json
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .. import validation as check
from ..claims import Contrast

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["SIZES", "Study"]

SIZES = ("quick", "full")
"""The sizes every study declares."""


def _study_name(name: str, value: Any) -> str:
    text = check.text(name, value)
    if not text.replace("_", "").isalnum() or not text[0].isalpha():
        raise check.fail(name, "letters, digits and '_' starting with a letter", value)
    return text


def _replicate_function(name: str, value: Any) -> Callable:
    """A callable taking one argument, the :class:`~anglesim.study.ReplicateContext`."""
    check.function(name, value)
    try:
        signature = inspect.signature(value)
    except (TypeError, ValueError):  # a builtin without a signature: trust it
        return value
    try:
        signature.bind(object())
    except TypeError:
        raise check.fail(name, "a function of one argument, the replicate context "
                         "(replicate(ctx) -> xr.Dataset)",
                         f"{getattr(value, '__name__', value)}{signature}") from None
    return value


def _sizes(name: str, value: Any) -> Mapping[str, Mapping[str, Any]]:
    if not isinstance(value, Mapping) or set(value) != set(SIZES):
        raise check.fail(name, "a dict with keys 'quick' and 'full'", value)
    for size, entries in value.items():
        if not isinstance(entries, Mapping) or "replicates" not in entries:
            raise check.fail(f"{name}[{size!r}]", "a dict holding 'replicates'", entries)
        check.integer(f"{name}[{size!r}]['replicates']", entries["replicates"], minimum=1)
    return value


def _angles(name: str, value: Any) -> int | tuple[float, ...]:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return check.integer(name, value, minimum=1)
    return tuple(float(a) for a in check.finite_array(name, value, ndim=1))


def _contrasts(name: str, value: Any) -> tuple[Contrast, ...]:
    if isinstance(value, Contrast) or not isinstance(value, Sequence) or isinstance(value, str):
        raise check.fail(name, "a list of anglesim.claims.Contrast", value)
    for i, item in enumerate(value):
        check.instance(f"{name}[{i}]", item, Contrast, "an anglesim.claims.Contrast")
    names = [c.name for c in value]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise check.fail(name, "contrasts with distinct names", f"{repeated} repeated")
    return tuple(value)


FIELDS: dict[str, check.Constraint] = {
    "name": check.Check(_study_name, "letters, digits and '_' starting with a letter"),
    "question": check.Text(),
    "replicate": check.Check(_replicate_function, "a function of the replicate context"),
    "sizes": check.Check(_sizes, "a dict with keys 'quick' and 'full'"),
    "grid": check.AnyOf(check.Instance(Mapping, "a dict"), check.Function()),
    "defaults": check.Instance(Mapping, "a dict"),
    "angles": check.Optional(check.Check(_angles, "a number of angles or a list of angles")),
    "describe": check.Optional(check.Function()),
    "postprocess": check.Optional(check.Function()),
    "figure": check.Optional(check.Function()),
    "summary": check.Optional(check.Function()),
    "pair_axes": check.Names(),
    "allow_nan": check.Names(),
    "version": check.Optional(check.Text()),
    "devices": check.Names(allow_empty=False),
    "module": check.Optional(check.Text()),
    "claims": check.Check(_contrasts, "a list of Contrasts"),
}
"""The constraints on a :class:`Study`'s fields."""


@dataclasses.dataclass(frozen=True)
class Study:
    """One declared study.

    Attributes:
        name: the study's name (letters, digits, ``_``; the Dataset's ``study`` attribute).
        question: one sentence: what the study asks.
        replicate: ``replicate(ctx) -> xr.Dataset``, a module-level function (workers import
            or unpickle it) computing one replicate from its
            :class:`~anglesim.study.ReplicateContext` (condition, seed streams, resolved
            configuration, device, angle grid).
        sizes: ``{"quick": {...}, "full": {...}}``; each holds ``replicates`` (per condition).
        grid: ``{axis: values}``, or ``grid(params) -> {axis: values}`` where the grid follows
            from the configuration.
        defaults: nested configuration shared by both sizes (e.g. ``{"phases": {"finetune":
            {"lr": 1e-3}}}``); together with the size's entries, what overrides may change.
        angles: the evaluation grid ``ctx.angles`` when the configuration has no ``n_angles``:
            a number of evenly spaced angles, or the angles themselves (radians).
        describe: ``describe(params, grid) -> dict`` of further JSON facts to record in the
            Dataset's config (stimulus, model, phases); they are part of the cache key.
        postprocess: ``postprocess(ds) -> ds`` adding derived measures before saving.
        figure: ``figure(ds) -> matplotlib Figure`` drawing the Dataset.
        summary: ``summary(ds) -> str``, a few lines of numbers printed after a run.
        pair_axes: grid axes whose conditions share replicate seeds (one parent, many
            treatments): replicate r of every condition that differs only along these axes
            gets the same seed. Empty: every condition has its own seeds.
        allow_nan: variables allowed to hold NaN in a successful replicate.
        version: an explicit code version; when given it replaces the hash of the module's
            source in the cache key (bump it when results change).
        devices: the torch device types the replicate honours through ``ctx.device``
            (``--device``); another device is refused before anything runs.
        module: the Python module that declared it (set by :func:`~anglesim.study.load`; for
            a study made elsewhere, the replicate function's module).
        claims: the study's planned contrasts (:class:`anglesim.claims.Contrast`), declared
            before its data are seen: :func:`~anglesim.study.run` evaluates them on the
            Dataset (estimate, 95% interval, p, Holm-adjusted p over the family, minimum
            detectable effect, verdict) and stores the records with it (attribute ``claims``).

    Raises:
        ValueError: a field that breaks its constraint (:data:`FIELDS`), naming it.
    """

    name: str
    question: str
    replicate: Callable[..., xr.Dataset]
    sizes: Mapping[str, Mapping[str, Any]]
    grid: Mapping[str, Sequence] | Callable[[dict], Mapping[str, Sequence]]
    defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    angles: int | Sequence[float] | None = None
    describe: Callable[[dict, dict], Mapping[str, Any]] | None = None
    postprocess: Callable[[xr.Dataset], xr.Dataset] | None = None
    figure: Callable[[xr.Dataset], Any] | None = None
    summary: Callable[[xr.Dataset], str] | None = None
    pair_axes: tuple[str, ...] = ()
    allow_nan: tuple[str, ...] = ()
    version: str | None = None
    devices: tuple[str, ...] = ("cpu",)
    module: str | None = None
    claims: Sequence[Contrast] = ()

    def __post_init__(self) -> None:
        given = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        checked = check.validate(given, FIELDS)
        for key in ("pair_axes", "allow_nan", "devices"):
            object.__setattr__(self, key, tuple(checked[key]))
        object.__setattr__(self, "angles", checked["angles"])
        object.__setattr__(self, "claims", checked["claims"])
        if self.claims:  # a claim naming a cell the full grid lacks fails here, not after a run
            grid = self.grid_for(self.configuration("full"))
            for contrast in self.claims:
                contrast.check_grid(grid)
        if self.module is None:  # declared outside a study file: the replicate's module
            object.__setattr__(self, "module", getattr(self.replicate, "__module__", None)
                               or "__main__")

    def configuration(self, size: str) -> dict[str, Any]:
        """The declared configuration of ``size``: its entries merged with ``defaults``."""
        size = check.choice("size", size, SIZES)
        return _merge(json.loads(json.dumps(dict(self.sizes[size]))),
                      json.loads(json.dumps(dict(self.defaults))))

    def grid_for(self, params: Mapping[str, Any]) -> dict[str, list]:
        """The grid of a resolved configuration."""
        grid = self.grid(dict(params)) if callable(self.grid) else self.grid
        return {str(k): list(v) for k, v in grid.items()}


def _merge(base: dict, extra: Mapping) -> dict:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            base[key] = _merge(base[key], value)
        else:
            base[key] = value
    return base
