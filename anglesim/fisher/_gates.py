"""The gates of a network's forward pass, recorded once and replayed, so that the network run
in another dtype linearises the same piecewise-linear function.

A ReLU network with max-pooling is linear between its gates: which units are on (ReLU,
leaky ReLU, hardtanh, clamp) and which input wins each pooling window. The propagated
estimator linearises the network at the noiseless image in the model's own dtype (float32),
but its products are more accurate in float64 (a Krylov bracket needs products whose rounding
stays below the tolerance, see :mod:`anglesim.fisher._krylov`). Running a float64 copy of the
network would re-decide every gate: a unit at −1e-8 in float32 and +1e-8 in float64, or a
pooling window whose two largest inputs are within rounding of each other, would switch, and
the float64 products would linearise a different function (on a ResNet-18-shaped network
near-tied pools moved J by 0.3–0.6%). `record_gates` runs the function once in its own dtype
under a ``torch.overrides.TorchFunctionMode`` that notes each gate in call order (masks for
the unit-wise ones, argmax indices for max-pooling); `Gates.replay` runs any copy of it (e.g.
in float64) with every gated call replaced by the linear map of the recorded decision, under
``torch.func`` transforms too (jvp, vjp, vmap, linearize). Calls are matched by order, so the
function must run the same operations every time (no data-dependent control flow); a mismatch
is a `GateMismatch`. Operations not listed here (smooth ones: tanh, GELU, softmax, …) are
computed as they are, in the replaying dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

__all__ = ["GateMismatch", "Gates", "record_gates"]

RELU = frozenset({torch.relu, F.relu, torch.Tensor.relu})
RELU_INPLACE = frozenset({torch.relu_, F.relu_, torch.Tensor.relu_})
LEAKY = frozenset({F.leaky_relu})
CLAMP = frozenset({torch.clamp, torch.clip, torch.Tensor.clamp, torch.Tensor.clip,
                   torch.clamp_min, torch.Tensor.clamp_min, torch.clamp_max,
                   torch.Tensor.clamp_max, F.hardtanh, F.relu6})
POOL = frozenset({F.max_pool1d, F.max_pool2d, F.max_pool3d, torch.max_pool1d,
                  torch.max_pool2d, torch.max_pool3d, F.max_pool1d_with_indices,
                  F.max_pool2d_with_indices, F.max_pool3d_with_indices})
GATED = RELU | RELU_INPLACE | LEAKY | CLAMP | POOL


class GateMismatch(RuntimeError):
    """The replayed function made other gated calls than the recorded one."""


def _arg(args: tuple, kwargs: dict, index: int, name: str, default: Any) -> Any:
    if name in kwargs:
        return kwargs[name]
    return args[index] if len(args) > index else default


def _bounds(func: Any, args: tuple, kwargs: dict) -> tuple[Any, Any]:
    """(lower, upper) of a clamp-like call (None where unbounded)."""
    if func is F.relu6:
        return 0.0, 6.0
    if func is F.hardtanh:
        return _arg(args, kwargs, 1, "min_val", -1.0), _arg(args, kwargs, 2, "max_val", 1.0)
    if func in (torch.clamp_min, torch.Tensor.clamp_min):
        return _arg(args, kwargs, 1, "min", None), None
    if func in (torch.clamp_max, torch.Tensor.clamp_max):
        return None, _arg(args, kwargs, 1, "max", None)
    return _arg(args, kwargs, 1, "min", None), _arg(args, kwargs, 2, "max", None)


def _pool_args(func: Any, args: tuple, kwargs: dict) -> tuple[Any, ...]:
    size = _arg(args, kwargs, 1, "kernel_size", None)
    stride = _arg(args, kwargs, 2, "stride", None)
    return (size, stride if stride not in (None, []) else size,
            _arg(args, kwargs, 3, "padding", 0), _arg(args, kwargs, 4, "dilation", 1),
            _arg(args, kwargs, 5, "ceil_mode", False))


def _wants_indices(func: Any, args: tuple, kwargs: dict) -> bool:
    if func in (F.max_pool1d_with_indices, F.max_pool2d_with_indices,
                F.max_pool3d_with_indices):
        return True
    return bool(_arg(args, kwargs, 6, "return_indices", False))


WITH_INDICES = {1: F.max_pool1d_with_indices, 2: F.max_pool2d_with_indices,
                3: F.max_pool3d_with_indices}
DIMS = {F.max_pool1d: 1, torch.max_pool1d: 1, F.max_pool1d_with_indices: 1,
        F.max_pool2d: 2, torch.max_pool2d: 2, F.max_pool2d_with_indices: 2,
        F.max_pool3d: 3, torch.max_pool3d: 3, F.max_pool3d_with_indices: 3}


class _Record(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.gates: list[tuple[str, Any]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        if func not in GATED:
            return func(*args, **kwargs)
        x = args[0]
        if func in POOL:
            dims = DIMS[func]
            out, idx = WITH_INDICES[dims](x, *_pool_args(func, args, kwargs))
            self.gates.append(("pool", idx.detach()))
            return (out, idx) if _wants_indices(func, args, kwargs) else out
        before = x.detach().clone() if func in RELU_INPLACE or kwargs.get("inplace") else None
        out = func(*args, **kwargs)
        ref = x.detach() if before is None else before
        if func in RELU or func in RELU_INPLACE:
            self.gates.append(("relu", ref > 0))
        elif func in LEAKY:
            slope = _arg(args, kwargs, 1, "negative_slope", 0.01)
            self.gates.append(("leaky", (ref > 0, float(slope))))
        else:
            lo, hi = _bounds(func, args, kwargs)
            inside = torch.ones_like(ref, dtype=torch.bool)
            if lo is not None:
                inside &= ref > lo
            if hi is not None:
                inside &= ref < hi
            self.gates.append(("clamp", (inside, out.detach())))
        return out


class _Replay(TorchFunctionMode):
    def __init__(self, gates: list[tuple[str, Any]]) -> None:
        super().__init__()
        self.gates = gates
        self.k = 0

    def _next(self, kind: str) -> Any:
        if self.k >= len(self.gates) or self.gates[self.k][0] != kind:
            found = self.gates[self.k][0] if self.k < len(self.gates) else "none"
            raise GateMismatch(f"gated call {self.k}: replayed {kind!r}, recorded {found!r}")
        value = self.gates[self.k][1]
        self.k += 1
        return value

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        if func not in GATED:
            return func(*args, **kwargs)
        x = args[0]
        if func in POOL:
            idx = self._next("pool")
            d = DIMS[func]
            out = x.flatten(-d).gather(-1, idx.flatten(-d)).reshape(idx.shape)
            return (out, idx) if _wants_indices(func, args, kwargs) else out
        inplace = func in RELU_INPLACE or bool(kwargs.get("inplace"))
        if func in RELU or func in RELU_INPLACE:
            mask = self._next("relu").to(x.dtype)
            return x.mul_(mask) if inplace else x * mask
        if func in LEAKY:
            on, slope = self._next("leaky")
            factor = torch.where(on, 1.0, slope).to(x.dtype)
            return x.mul_(factor) if inplace else x * factor
        inside, value = self._next("clamp")
        out = torch.where(inside, x, value.to(x.dtype))
        return x.copy_(out) if inplace else out


class Gates:
    """The recorded gates of one function at one input (see the module docstring)."""

    def __init__(self, gates: list[tuple[str, Any]]) -> None:
        self.gates = gates

    def __len__(self) -> int:
        return len(self.gates)

    def replay(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` with every gated call replaced by its recorded decision (each call of the
        result replays the gates from the first)."""
        gates = self.gates

        def gated(*args: Any, **kwargs: Any) -> Any:
            mode = _Replay(gates)
            with mode:
                out = fn(*args, **kwargs)
            if mode.k != len(gates):
                raise GateMismatch(f"replayed {mode.k} gated calls of {len(gates)} recorded")
            return out

        return gated


def record_gates(fn: Callable[..., Any], *args: Any) -> tuple[Any, Gates]:
    """Run ``fn(*args)`` once without gradients; its output and its recorded `Gates`."""
    mode = _Record()
    with torch.no_grad(), mode:
        out = fn(*args)
    return out, Gates(mode.gates)
