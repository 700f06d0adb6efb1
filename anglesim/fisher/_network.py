"""Any ``torch.nn.Module`` as a stack of named layers for the Fisher estimators.

Layers are named by their dotted ``named_modules()`` paths (``"features.6"``,
``"layer4.1.conv2"``), plus ``"input"`` (the pixels) and ``"output"``. anglesim's own models
(AngleNet-like: ``block_names``, ``run_blocks``, ``blocks``, ``decode``) keep their block names
(``conv1`` … ``head``) and are run block by block exactly as before. Any other module is run
whole with forward hooks that capture the requested layers' outputs (cloned, so later in-place
operations such as a ResNet's ``out += identity`` cannot change them) and stop the forward pass
once the last requested layer has been computed; the hooks are plain Python, so the same
function runs under ``torch.func`` (jvp, vjp, vmap).

``"output"`` is the decoded angle θ̂ (one unit) when the model has a ``decode`` method or the
caller passes ``decode=`` (a callable from the model's outputs to θ̂ [N]); otherwise the raw
output vector. A module called more than once in one forward pass (a shared ReLU) is captured
at its last call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from .. import validation as check
from ._base import INPUT, OUTPUT

__all__ = ["Network", "list_layers"]

Decode = Callable[[torch.Tensor], torch.Tensor]


def is_native(model: torch.nn.Module) -> bool:
    """Whether ``model`` is one of anglesim's block-structured models."""
    return all(hasattr(model, a) for a in ("block_names", "run_blocks", "blocks", "decode"))


def list_layers(model: torch.nn.Module) -> list[str]:
    """Every layer name the estimators accept: "input", the modules, "output".

    anglesim's models: "input", their blocks in order, "output". Any other module: "input",
    every dotted ``named_modules()`` path in registration order (containers included), "output".
    """
    check.instance("model", model, torch.nn.Module, "a torch.nn.Module")
    if is_native(model):
        return [INPUT, *list(model.block_names), OUTPUT]
    return [INPUT, *[n for n, _ in model.named_modules() if n], OUTPUT]


class _Stop(Exception):
    """Raised by a hook once every requested layer has been captured."""


class Network:
    """A model seen as named layers: which exist, how many units, and their activations.

    ``decode`` (optional) maps the model's outputs to θ̂ [N]; default ``model.decode`` when
    the model has one. Call :meth:`probe` once on an image batch before :meth:`outputs`.
    """

    def __init__(self, model: torch.nn.Module, decode: Decode | None = None) -> None:
        check.instance("model", model, torch.nn.Module, "a torch.nn.Module")
        check.function("decode", decode, allow_none=True)
        self.model = model
        self.native = is_native(model)
        self._user_decode = decode
        self.decode = decode if decode is not None else getattr(model, "decode", None)
        self.layers = list_layers(model)
        self.modules = dict(model.named_modules())
        self.units: dict[str, int] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}  # one image's activations, per layer
        self.calls: dict[str, int] = {}
        self.rank: dict[str, int] = {}  # order of each layer's last call in a forward pass
        self._first: dict[str, int] = {}  # order of each layer's first call

    def with_model(self, model: torch.nn.Module) -> Network:
        """The same layers (probe results shared) on another copy of the model."""
        other = Network(model, self._user_decode)
        other.units, other.calls, other.rank = self.units, self.calls, self.rank
        other.shapes = self.shapes
        other._first = self._first
        return other

    # -- names -----------------------------------------------------------------------------

    @property
    def blocks(self) -> list[str]:
        """The layers between "input" and "output"."""
        return self.layers[1:-1]

    @property
    def default_layers(self) -> list[str]:
        """"input", the blocks (anglesim models) or top-level children (others), "output"."""
        if self.native:
            return list(self.layers)
        return [INPUT, *[n for n, _ in self.model.named_children()], OUTPUT]

    @property
    def decoded(self) -> bool:
        """Whether "output" is the one-unit decoded angle (else the raw output vector)."""
        return self.decode is not None

    def resolve(
        self, layers: Sequence[str] | str | None, allowed: Sequence[str] | None = None,
        default: Sequence[str] | None = None, name: str = "layers",
    ) -> list[str]:
        """The requested layer names in network order; ValueError listing the valid ones."""
        valid = list(self.layers if allowed is None else allowed)
        if layers is None:
            chosen = list(self.default_layers if default is None else default)
            return [n for n in self.order(valid) if n in set(chosen)]
        names = [layers] if isinstance(layers, str) else list(layers)
        bad = [n for n in names if not isinstance(n, str) or n not in valid]
        if bad or not names:
            raise ValueError(f"{name} must be a non-empty list of layer names among {valid}, "
                             f"got {names!r} (unknown: {bad!r})")
        return [n for n in self.order(valid) if n in set(names)]

    def order(self, names: Sequence[str]) -> list[str]:
        """``names`` in forward order: "input", layers by their last call, "output"."""
        if self.native or not self.rank:
            pos = {n: i for i, n in enumerate(self.layers)}
        else:
            pos = {INPUT: -1, OUTPUT: len(self.rank) + 1, **self.rank}
        return sorted(names, key=lambda n: pos.get(n, len(pos)))

    def downstream(self, site: str) -> list[str]:
        """The layers that can depend on noise at ``site`` (computed after it), and "output"."""
        if site == INPUT:
            return list(self.layers)
        if self.native:
            return self.layers[self.layers.index(site):]
        first = self.rank[site]
        return [site, *[n for n in self.order(self.rank) if self._first[n] > first and
                        n != site], OUTPUT]

    # -- running ----------------------------------------------------------------------------

    def probe(self, x: torch.Tensor) -> dict[str, int]:
        """Units per image of every layer (one forward pass on ``x``); records call order."""
        n = x.shape[0]
        if self.native:
            h = x
            for name in self.model.block_names:
                h = self.model.run_blocks(h, start=name, stop=name)
                self.units[name] = int(h[0].numel())
                self.shapes[name] = tuple(h[0].shape)
        else:
            counter = [0]
            first: dict[str, int] = {}

            def make(name: str) -> Callable[..., None]:
                def hook(_m: torch.nn.Module, _i: Any, out: Any) -> None:
                    counter[0] += 1
                    self.calls[name] = self.calls.get(name, 0) + 1
                    first.setdefault(name, counter[0])
                    self.rank[name] = counter[0]
                    if isinstance(out, torch.Tensor):
                        self.units[name] = int(out[0].numel())
                        self.shapes[name] = tuple(out[0].shape)
                return hook

            self.calls.clear()
            self.rank.clear()
            handles = [m.register_forward_hook(make(k)) for k, m in self.modules.items() if k]
            try:
                out = self.model(x)
            finally:
                for h in handles:
                    h.remove()
            self._first = first
            if not isinstance(out, torch.Tensor):
                raise ValueError(f"model must return a tensor, got {type(out).__name__}")
        self.units[INPUT] = int(x[0].numel())
        self.shapes[INPUT] = tuple(x[0].shape)
        self.units[OUTPUT] = 1 if self.decoded else int(self._final(x).reshape(n, -1).shape[1])
        return dict(self.units)

    def _final(self, out_or_x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.model(out_or_x)

    def check_measurable(self, names: Sequence[str]) -> None:
        """ValueError for a requested layer whose output is not a tensor."""
        missing = [n for n in names if n not in self.units]
        if missing:
            raise ValueError(f"layers {missing!r} give no tensor output in a forward pass "
                             f"(never called, or a tuple/dict output); valid layers with "
                             f"tensors: {[n for n in self.layers if n in self.units]}")

    def readout(self, out: torch.Tensor) -> torch.Tensor:
        """"output" from the model's output tensor: θ̂ [N, 1], or the raw vector [N, D]."""
        n = out.shape[0]
        if self.decoded:
            return self.decode(out).reshape(n, 1)
        return out.reshape(n, -1)

    def outputs(
        self, x: torch.Tensor, names: Sequence[str], site: str = INPUT,
        z: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, ...]:
        """Flattened activations [N, units] of ``names`` (in the order given).

        ``x`` is the image batch. With ``site`` a layer and ``z`` its activations, ``z``
        replaces that layer's output (the noise enters there; other paths see the clean
        image), and the result is a function of ``z``. anglesim models run from ``site`` on
        with ``x`` unused.
        """
        n = (x if z is None else z).shape[0]
        wanted = [m for m in names if m not in (INPUT, OUTPUT)]
        if self.native:
            blocks = list(self.model.block_names)
            h = x if site == INPUT else z
            todo = blocks if site == INPUT else blocks[blocks.index(site) + 1:]
            got: dict[str, torch.Tensor] = {INPUT: x.reshape(n, -1)} if site == INPUT else {}
            if site != INPUT:
                got[site] = z.reshape(n, -1)
            last = len(todo) if OUTPUT in names else max(
                [todo.index(m) + 1 for m in wanted if m in todo], default=0)
            for name in todo[:last]:
                h = self.model.blocks[name](h)
                if name in names:
                    got[name] = h.reshape(n, -1)
            if OUTPUT in names:
                got[OUTPUT] = self.readout(h)
            return tuple(got[m] for m in names)
        captured: dict[str, torch.Tensor] = {}
        seen: dict[str, int] = {}
        need_out = OUTPUT in names
        if site != INPUT and self.calls.get(site, 0) != 1:
            raise ValueError(f"noise_at must be a layer called once per forward pass, got "
                             f"{site!r} (called {self.calls.get(site, 0)} times)")

        def make(name: str) -> Callable[..., Any]:
            def hook(_m: torch.nn.Module, _i: Any, out: Any) -> Any:
                seen[name] = seen.get(name, 0) + 1
                if name == site:
                    out = z.reshape(out.shape) + 0  # a fresh tensor: in-place ops downstream
                if name in wanted and seen[name] == self.calls.get(name, 1):
                    captured[name] = out.reshape(out.shape[0], -1).clone()
                    if not need_out and len(captured) == len(wanted):
                        raise _Stop
                return out if name == site else None
            return hook

        hooked = set(wanted) | ({site} if site != INPUT else set())
        handles = [self.modules[k].register_forward_hook(make(k)) for k in hooked]
        final = None
        try:
            final = self.model(x)
        except _Stop:
            pass
        finally:
            for h in handles:
                h.remove()
        if INPUT in names:
            captured[INPUT] = x.reshape(n, -1)
        if need_out:
            captured[OUTPUT] = self.readout(final)
        return tuple(captured[m] for m in names)

    def site_activations(self, x: torch.Tensor, site: str) -> torch.Tensor:
        """Layer ``site``'s activations (its own shape) for images ``x``."""
        if site == INPUT:
            return x
        if self.native:
            return self.model.run_blocks(x, stop=site)
        box: dict[str, torch.Tensor] = {}

        def hook(_m: torch.nn.Module, _i: Any, out: Any) -> None:
            box["out"] = out.clone()
            raise _Stop

        handle = self.modules[site].register_forward_hook(hook)
        try:
            self.model(x)
        except _Stop:
            pass
        finally:
            handle.remove()
        return box["out"]
