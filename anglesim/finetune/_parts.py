"""A trainable network's parts by name, in forward order: :class:`Parts`.

What ``Phase.trainable`` and the strategies' block parameters name. For anglesim's
``AngleNet`` the names are its block names (``conv1`` … ``fc``, ``head``) and extra heads,
and paths inside them (``conv1.0``); for a :class:`~anglesim.finetune.ReadoutNet` they are
``net``'s dotted ``named_modules()`` paths (``layer1``, ``layer1.0.conv1``, ``features.0``)
and the head names. Glob patterns over the names select several (``"layer1.*"``,
``"conv*"``; :func:`fnmatch.fnmatchcase`, where ``*`` also crosses dots). A name selects the
module and everything inside it.

Every parameter belongs to one *block*: an AngleNet's blocks and heads, or a ReadoutNet's
top-level modules of ``net`` that hold parameters and can reach a head (:attr:`Parts.trunk`)
and its heads. Parameters of ``net`` that no head can reach are in no block: no phase trains
them.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import nn

from .. import validation as check
from ..models import AngleNet
from ._heads import MAIN_HEAD, ReadoutNet

__all__ = ["PATTERN_CHARACTERS", "NamedParam", "Parts", "check_network", "named_pool"]

PATTERN_CHARACTERS = "*?["
"""A name holding one of these is a glob pattern."""


class NamedParam(NamedTuple):
    """One parameter tensor of a phase's pool: its block (an AngleNet block or head, a
    ReadoutNet's top-level module of ``net`` or head), its full name in
    ``model.named_parameters()`` (``"blocks.conv1.0.weight"``, ``"net.layer1.0.conv1.weight"``) and
    the tensor."""

    block: str
    name: str
    param: nn.Parameter


def check_network(model: Any, name: str = "model") -> nn.Module:
    """``model`` if it is an AngleNet or a ReadoutNet, else ValueError saying how to wrap one."""
    return check.instance(name, model, (AngleNet, ReadoutNet),
                          "an AngleNet (build_model(...)) or a ReadoutNet (any nn.Module with a "
                          "head: ReadoutNet(net, input_shape, layer=..., readout=...))")


class Parts:
    """The named parts of ``model`` (an AngleNet or a ReadoutNet); see the module docstring.

    ``names``: every name, in forward order (a block, then the paths inside it); ``blocks``:
    the trunk blocks in forward order, then the heads; ``trunk``; ``heads``; ``chain``: the
    blocks one after the other up to the main head (an AngleNet's ``block_names``);
    ``reach``: the top-level modules before the heads, with or without parameters.
    """

    def __init__(self, model: AngleNet | ReadoutNet) -> None:
        self.model = check_network(model)
        self.native = isinstance(model, AngleNet)
        self.paths: dict[str, str] = {}
        """Each name's full module path in ``model``."""
        if self.native:
            self.trunk = list(model.trunk_names)
            self.reach = list(self.trunk)
            self.heads = [MAIN_HEAD, *model.heads]
            self.chain = list(model.block_names)
            holders = {**{b: f"blocks.{b}" for b in model.block_names},
                       **{h: f"heads.{h}" for h in model.heads}}
            names = []
            for block in [*self.trunk, *self.heads]:
                names += self._add(block, holders[block])
        else:
            net = model.net
            self.heads = list(model.head_readouts)

            def own(path: str) -> str:
                """A module path of net as a name: itself, or ``net.<path>`` where it starts
                with a head's name (a net whose last module is called ``head``)."""
                return f"net.{path}" if path.split(".")[0] in self.heads else path

            owners = {n for n, m in net.named_children() if next(m.parameters(), None) is not None}
            self.reach = [own(n) for n in model.trunk]
            self.trunk = [own(n) for n in model.trunk if n in owners]
            names = [own(n) for n in model.order]
            self.paths.update({own(n): f"net.{n}" for n in model.order})
            if next(net.parameters(recurse=False), None) is not None:
                if "net" in self.paths:
                    raise ValueError("net has parameters of its own and a module named 'net'; "
                                     "rename the module to address its parameters")
                self.trunk.insert(0, "net")  # parameters registered on net itself
                self.reach.insert(0, "net")
                self.paths["net"] = "net"
                names.insert(0, "net")
            self.chain = [*self.trunk, *([MAIN_HEAD] if MAIN_HEAD in model.heads else [])]
            for head in model.heads:
                names += self._add(head, f"heads.{head}")
        self.names = names
        self.blocks = [*self.trunk, *self.heads]

    def _add(self, name: str, path: str) -> list[str]:
        """Name the module at ``path`` and every module inside it; return the names."""
        added = [name]
        self.paths[name] = path
        for sub, _ in self.model.get_submodule(path).named_modules():
            if sub:
                self.paths[f"{name}.{sub}"] = f"{path}.{sub}"
                added.append(f"{name}.{sub}")
        return added

    # ---- names -----------------------------------------------------------------------------

    def is_head(self, block: str) -> bool:
        """Whether ``block`` is a head (``"head"`` or an extra head)."""
        return block in self.heads

    def in_trunk(self, name: str) -> bool:
        """Whether the module ``name`` lies before the heads (in :attr:`reach`)."""
        path = self.paths[name]
        return any(path == self.paths[t] or path.startswith(self.paths[t] + ".")
                   for t in self.reach)

    def resolve(self, names: Sequence[str], what: str = "blocks") -> list[str]:
        """The names ``names`` select (exact names and glob patterns), in forward order.

        ValueError naming ``what`` when a name or pattern selects nothing, listing the valid
        names."""
        names = check.name_list(what, names)
        valid = self.names
        chosen: set[str] = set()
        unknown = []
        for name in names:
            if any(c in name for c in PATTERN_CHARACTERS):
                hits = [n for n in valid if fnmatch.fnmatchcase(n, name)]
            else:
                hits = [name] if name in self.paths else []
            if not hits:
                unknown.append(name)
            chosen.update(hits)
        if unknown:
            raise ValueError(f"{what} names unknown module(s) {unknown}; the valid names (glob "
                             f"patterns over them allowed) are {valid}")
        return [n for n in valid if n in chosen]

    def outermost(self, names: Sequence[str]) -> list[str]:
        """``names`` without those inside another of them (``layer1.0`` inside ``layer1``)."""
        paths = {n: self.paths[n] for n in names}
        return [n for n in names if not any(paths[n].startswith(paths[o] + ".")
                                            for o in names if o != n)]

    def check_in_pool(self, names: Sequence[str], pool: Sequence[NamedParam],
                      owner: str) -> None:
        """ValueError (``"<owner>: block(s) … are outside …"``) unless every parameter inside
        the modules ``names`` select is in the phase's ``pool``."""
        inside = {q.name for q in pool}
        outside = [n for n in names if self.param_names([n], f"{owner}: blocks") - inside]
        if outside:
            raise ValueError(f"{owner}: block(s) {outside} are outside the phase's trainable "
                             f"blocks {sorted({q.block for q in pool})}")

    def param_names(self, names: Sequence[str], what: str = "blocks") -> set[str]:
        """Full names (``model.named_parameters()``) of the parameters inside the modules
        ``names`` select."""
        prefixes = [self.paths[n] + "." for n in self.resolve(names, what)]
        return {p for p, _ in self.model.named_parameters() if p.startswith(tuple(prefixes))}

    def block_of(self, path: str) -> str:
        """The block a parameter's or module's full name (``blocks.conv1.0.weight``,
        ``net.layer1.0.conv1``) belongs to."""
        for block in self.blocks:
            prefix = self.paths.get(block)
            if prefix is not None and (path == prefix or path.startswith(prefix + ".")):
                return block
        raise ValueError(f"{path!r} lies in none of the blocks {self.blocks}")

    # ---- parameters ------------------------------------------------------------------------

    def pool(self, params: Sequence[nn.Parameter] | None = None) -> list[NamedParam]:
        """The parameters ``params`` (default: every parameter of a block) as
        :class:`NamedParam` in block order (within a block, ``named_parameters`` order)."""
        wanted = None if params is None else {id(p) for p in params}
        out = []
        for block in self.blocks:
            holder = self.paths.get(block)
            if holder is None:
                continue  # a head that reads net's own output: no parameters of its own
            module = self.model.get_submodule(holder)
            for pname, p in module.named_parameters(recurse=holder != "net"):
                if wanted is None or id(p) in wanted:
                    out.append(NamedParam(block, f"{holder}.{pname}", p))
        if wanted is not None and len(out) != len(wanted):
            raise ValueError("params holds tensors that are not parameters of the model's "
                             "blocks")
        return out

    # ---- running ---------------------------------------------------------------------------

    def features(self, x: torch.Tensor, heads: Sequence[str]) -> Any:
        """What ``heads`` read, from one forward pass (for :meth:`head_output`)."""
        if self.native:
            return self.model.run_blocks(x, stop=self.trunk[-1])
        return self.model.features(x, heads)

    def head_output(self, head: str, features: Any) -> torch.Tensor:
        """Output of ``head`` from :meth:`features`."""
        if self.native:
            module = self.model.blocks[MAIN_HEAD] if head == MAIN_HEAD else self.model.heads[head]
            return module(features)
        return self.model.apply_head(head, features)

    def activations(self, x: torch.Tensor, names: Sequence[str]) -> dict[str, torch.Tensor]:
        """Outputs of the modules ``names`` (exact names) for input ``x``, one forward pass."""
        names = list(names)
        if self.native and all(n in self.chain for n in names):
            return self.model.activations(x, names)
        if self.native:
            return _hooked(self.model, x, {n: self.paths[n] for n in names})
        inside = {n: self.paths[n].removeprefix("net.") for n in names
                  if self.paths[n].startswith("net.")}
        if len(inside) != len(names):
            raise ValueError(f"activations are taken inside net only, got {names}")
        got = self.model.capture(x, list(inside.values()))
        return {n: got[path] for n, path in inside.items()}


def named_pool(model: AngleNet | ReadoutNet, params: Sequence[nn.Parameter]) -> list[NamedParam]:
    """Name the parameters ``params`` of ``model`` by block, in block order (see
    :meth:`Parts.pool`)."""
    return Parts(model).pool(params)


def _hooked(model: nn.Module, x: torch.Tensor, paths: dict[str, str]) -> dict[str, torch.Tensor]:
    """Outputs (cloned) of the modules at ``paths`` during ``model(x)``."""
    out: dict[str, torch.Tensor] = {}

    def grab(name: str) -> Any:
        def hook(_m: nn.Module, _i: Any, value: Any) -> None:
            out[name] = value.clone()
        return hook

    handles = [model.get_submodule(p).register_forward_hook(grab(n)) for n, p in paths.items()]
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    return {n: out[n] for n in paths}
