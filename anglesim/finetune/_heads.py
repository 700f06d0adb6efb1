"""Any ``torch.nn.Module`` read out as an orientation: :class:`ReadoutNet`.

A ReadoutNet holds the user's network as ``net`` and its readout heads in ``heads``. The main
head ``"head"`` is a linear map from the flattened output of one of ``net``'s modules, named by
its dotted ``named_modules()`` path (``"layer4"``, ``"features.6"``), to one of anglesim's
readouts (``"angle"``, ``"cossin"``, ``"bins"``; :mod:`anglesim.readouts`), or it is ``net``'s
own output, read with a readout or decoded to θ̂ by the user's ``decode``. Extra heads
(multitask) attach at any named layer with :meth:`ReadoutNet.add_head`. It has the interface
training, the strategies and the measurements use on anglesim's own ``AngleNet`` (``forward(x,
head)``, ``readout_of``, ``n_bins_of``, ``decode``, ``add_head``), so
:func:`anglesim.training.train` trains it like one.

At construction one forward pass of a zero image of ``input_shape`` (eval mode, no gradient,
no random draws) records the forward order of ``net``'s modules (the order of their first
call), how often each is called and its output size. A forward pass afterwards captures the
head layers' outputs with forward hooks (at a module's last call, as in that pass) and stops
once the last one needed is computed, so modules after the deepest head never run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from .. import seeding
from .. import validation as check
from ..readouts import ANGLE_READOUTS, READOUTS, decode, readout_size

__all__ = ["MAIN_HEAD", "ReadoutNet"]

MAIN_HEAD = "head"
"""The name of the main readout head (as in anglesim's AngleNet)."""

OWN_OUTPUT = None
"""The head layer of a head that reads ``net``'s own output."""


class _Captured(Exception):
    """Raised by a capture hook once every layer a forward pass needs has been computed."""


def _shape(value: Any) -> tuple[int, ...]:
    if isinstance(value, int | str) or not isinstance(value, Sequence) or not value:
        raise check.fail("input_shape", "a non-empty sequence of sizes, e.g. (1, 32, 32)", value)
    return tuple(check.integer(f"input_shape[{i}]", v, minimum=1) for i, v in enumerate(value))


class ReadoutNet(nn.Module):
    """``net`` (any ``nn.Module`` taking images ``[N, *input_shape]``) with readout heads.

    * ``layer="layer4", readout="cossin"``: the main head is ``Flatten`` + ``Linear`` from the
      output of ``net``'s module ``layer4`` to the readout's units (``n_bins`` for "bins");
    * ``readout="cossin"`` without ``layer``: ``net``'s own output is the head's output and
      must have the readout's width;
    * ``decode=fn``: ``net``'s own output, mapped by ``fn`` (differentiable) to θ̂ [N], is the
      head's output as the one-unit ``"angle"`` readout, so the angle losses train it.

    New heads' weights are drawn from ``generator`` (a CPU ``torch.Generator``; default torch's
    global one), as ``nn.Linear`` draws them. Layer names are ``net``'s ``named_modules()``
    paths (see :attr:`layers`); an unknown one raises ValueError listing them.
    """

    def __init__(
        self,
        net: nn.Module,
        input_shape: Sequence[int],
        layer: str | None = None,
        readout: str | None = None,
        n_bins: int = 36,
        decode: Callable[[torch.Tensor], torch.Tensor] | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        check.instance("net", net, nn.Module, "a torch.nn.Module")
        if isinstance(net, ReadoutNet):
            raise check.fail("net", "a network without readout heads", net)
        self.input_shape = _shape(input_shape)
        check.function("decode", decode, allow_none=True)
        if decode is not None and (layer is not None or readout is not None):
            raise ValueError(f"give decode or layer/readout, not both; got decode={decode!r}, "
                             f"layer={layer!r}, readout={readout!r}")
        if decode is None:
            check.choice("readout", readout, ANGLE_READOUTS)
        self.net = net
        self.heads = nn.ModuleDict()
        self.head_layers: dict[str, str | None] = {}
        self.head_readouts: dict[str, str] = {}
        self.head_n_bins: dict[str, int] = {}
        self.own_decode = decode
        self.order, self.calls, self.units = self._probe()
        if decode is not None:
            self._register(MAIN_HEAD, "angle", 36, OWN_OUTPUT, None)
        elif layer is None:
            need = readout_size(readout, check.integer("n_bins", n_bins, minimum=2))
            if self.output_units != need:
                raise ValueError(f"net's own output has {self.output_units} units per image; "
                                 f"readout {readout!r} needs {need} (attach a head at a layer "
                                 f"with layer=..., or give decode=...)")
            self._register(MAIN_HEAD, readout, n_bins, OWN_OUTPUT, None)
        else:
            self.add_head(MAIN_HEAD, readout, n_bins, layer, generator)

    # ---- structure -------------------------------------------------------------------------

    @torch.no_grad()
    def _probe(self) -> tuple[list[str], dict[str, int], dict[str, int]]:
        """Forward order (of first entry), call counts and output units of ``net``'s modules
        (one pass)."""
        first: dict[str, int] = {}
        calls: dict[str, int] = {}
        units: dict[str, int] = {}

        def enter(name: str) -> Callable[..., None]:
            def record(_module: nn.Module, _inputs: Any) -> None:
                first.setdefault(name, len(first))
            return record

        def leave(name: str) -> Callable[..., None]:
            def record(_module: nn.Module, _inputs: Any, out: Any) -> None:
                calls[name] = calls.get(name, 0) + 1
                if isinstance(out, torch.Tensor):
                    units[name] = int(out[0].numel())
            return record

        param = next(self.net.parameters(), None)
        x = torch.zeros(1, *self.input_shape, dtype=param.dtype if param is not None else None,
                        device=param.device if param is not None else None)
        modules = [(n, m) for n, m in self.net.named_modules() if n]
        handles = [m.register_forward_pre_hook(enter(n)) for n, m in modules]
        handles += [m.register_forward_hook(leave(n)) for n, m in modules]
        was_training = self.net.training
        self.net.eval()
        try:
            out = self.net(x)
        except Exception as err:
            raise ValueError(f"net could not run on an input of shape {(1, *self.input_shape)} "
                             f"(input_shape={self.input_shape}): {err}") from err
        finally:
            self.net.train(was_training)
            for h in handles:
                h.remove()
        if not isinstance(out, torch.Tensor):
            raise check.fail("net", "a module returning a tensor", type(out).__name__)
        units[""] = int(out[0].numel())
        never = [n for n, _ in self.net.named_modules() if n and n not in first]
        return sorted(first, key=first.__getitem__) + never, calls, units

    @property
    def layers(self) -> list[str]:
        """``net``'s module paths in forward order (modules never called last)."""
        return list(self.order)

    @property
    def output_units(self) -> int:
        """Units per image of ``net``'s own output."""
        return self.units[""]

    @property
    def readout(self) -> str:
        """The main head's readout."""
        return self.head_readouts[MAIN_HEAD]

    @property
    def n_bins(self) -> int:
        """The main head's bin count (meaningful for the "bins" readout)."""
        return self.head_n_bins[MAIN_HEAD]

    def _head(self, head: Any) -> str:
        if head not in self.head_readouts:
            raise check.fail("head", "one of " + ", ".join(map(repr, self.head_readouts)), head)
        return head

    def readout_of(self, head: str) -> str:
        """Readout of ``head`` (``"head"`` or an extra head's name)."""
        return self.head_readouts[self._head(head)]

    def n_bins_of(self, head: str) -> int:
        """Bin count of ``head`` (meaningful for the "bins" readout)."""
        return self.head_n_bins[self._head(head)]

    def layer_of(self, head: str) -> str | None:
        """The ``net`` module ``head`` reads (None: ``net``'s own output)."""
        return self.head_layers[self._head(head)]

    def check_layer(self, layer: Any, name: str = "layer") -> str:
        """``layer`` if it is a module path of ``net`` with a tensor output, else ValueError
        listing the valid paths."""
        if not isinstance(layer, str) or layer not in self.units or layer == "":
            valid = [n for n in self.order if n in self.units]
            raise check.fail(name, "one of net's module paths " + ", ".join(valid), layer)
        return layer

    @property
    def trunk(self) -> list[str]:
        """The top-level modules of ``net`` that can reach a head, in forward order: all of
        them when a head reads ``net``'s own output, else those first called no later than
        the deepest head layer's top-level module."""
        tops = [n for n in self.order if "." not in n]
        layers = list(self.head_layers.values())
        if OWN_OUTPUT in layers:
            return tops
        last = max(self.order.index(layer.split(".")[0]) for layer in layers)
        return [n for n in tops if self.order.index(n) <= last]

    # ---- heads -----------------------------------------------------------------------------

    def _register(self, name: str, readout: str, n_bins: int, layer: str | None,
                  module: nn.Module | None) -> None:
        if module is not None:
            self.heads[name] = module
        self.head_layers[name] = layer
        self.head_readouts[name] = readout
        self.head_n_bins[name] = int(n_bins)

    def add_head(self, name: str, readout: str, n_bins: int = 36, layer: str | None = None,
                 generator: torch.Generator | None = None) -> None:
        """Add head ``name``: ``Flatten`` + ``Linear`` from the output of ``net``'s module
        ``layer`` (default: the main head's layer) to the units of ``readout`` (any of
        "angle", "cossin", "bins", "scalar"). Its weights are drawn from ``generator`` (CPU)
        or, without one, torch's global generator, on ``net``'s device and dtype."""
        if not isinstance(name, str) or not name.isidentifier():
            raise check.fail("name", "an identifier string", name)
        if name in self.head_readouts:
            raise check.fail("name", f"a new head name (taken: {list(self.head_readouts)})",
                             name)
        check.choice("readout", readout, READOUTS)
        n_bins = check.integer("n_bins", n_bins, minimum=2)
        if layer is None:
            layer = self.head_layers.get(MAIN_HEAD)
            if layer is None:
                raise check.fail("layer", "a module path of net (the main head reads net's "
                                 "own output, so there is no default layer)", layer)
        layer = self.check_layer(layer)
        param = next(self.net.parameters(), None)
        kwargs = {} if param is None else {"device": param.device, "dtype": param.dtype}

        def build() -> nn.Module:
            return nn.Sequential(nn.Flatten(),
                                 nn.Linear(self.units[layer], readout_size(readout, n_bins),
                                           **kwargs))

        if generator is not None:
            with seeding.drawing_from(generator):
                module = build()
        else:
            module = build()
        self._register(name, readout, n_bins, layer, module)

    # ---- running ---------------------------------------------------------------------------

    def features(self, x: torch.Tensor, heads: Sequence[str] | None = None
                 ) -> dict[str | None, torch.Tensor]:
        """What ``heads`` (default: all) read, from one forward pass of ``net``: ``{layer:
        output}`` with key None for ``net``'s own output."""
        names = list(self.head_readouts) if heads is None else [self._head(h) for h in heads]
        layers = {self.head_layers[h] for h in names}
        return self.capture(x, [n for n in self.order if n in layers],
                            whole=OWN_OUTPUT in layers)

    def apply_head(self, head: str, features: dict[str | None, torch.Tensor]) -> torch.Tensor:
        """Output [N, units] of ``head`` from :meth:`features`."""
        layer = self.head_layers[self._head(head)]
        if layer is OWN_OUTPUT:
            out = features[None]
            if self.own_decode is not None:
                return self.own_decode(out).reshape(out.shape[0], 1)
            return out.reshape(out.shape[0], -1)
        return self.heads[head](features[layer])

    def capture(self, x: torch.Tensor, layers: Sequence[str], whole: bool = False
                ) -> dict[str | None, torch.Tensor]:
        """Outputs of ``net``'s modules ``layers`` (each at its last call) for input ``x``,
        and with ``whole`` ``net``'s own output (key None); the pass stops after the last
        layer unless ``whole``. Captures that later operations could change in place are
        cloned."""
        wanted = list(dict.fromkeys(self.check_layer(n, "layers") for n in layers))
        out: dict[str | None, torch.Tensor] = {}
        seen: dict[str, int] = {}

        def hook(name: str) -> Callable[..., None]:
            def grab(_module: nn.Module, _inputs: Any, value: Any) -> None:
                seen[name] = seen.get(name, 0) + 1
                if seen[name] != self.calls[name]:
                    return
                if not whole and len(out) == len(wanted) - 1:
                    out[name] = value
                    raise _Captured
                out[name] = value.clone()
            return grab

        handles = [self.net.get_submodule(n).register_forward_hook(hook(n)) for n in wanted]
        try:
            result = self.net(x)
            if whole:
                out[None] = result
        except _Captured:
            pass
        finally:
            for h in handles:
                h.remove()
        missing = [n for n in wanted if n not in out]
        if missing:
            raise RuntimeError(f"layers {missing} gave no output in this forward pass (they "
                               "ran fewer times than when the ReadoutNet was made)")
        return out

    def forward(self, x: torch.Tensor, head: str = MAIN_HEAD) -> torch.Tensor:
        """Output [N, units] of ``head`` for images ``x``."""
        return self.apply_head(head, self.features(x, [head]))

    def decode(self, output: torch.Tensor, readout: str | None = None) -> torch.Tensor:
        """θ̂ [N] in [0, π) from a head's ``output`` (``readout`` default: the main head's)."""
        if readout is None:
            return decode(output, self.readout, self.n_bins if self.readout == "bins" else None)
        return decode(output, readout)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Decoded orientation θ̂ [N] of the main head."""
        return self.decode(self.forward(x))
