"""anglesim's own networks: :class:`AngleNet` (an ordered stack of named blocks ending in
``head``) and the configurable CNN built from a :class:`CNNConfig` (:func:`build_cnn`).

Blocks are applied one after the other, so fine-tuning strategies address them by name and
the Fisher estimators run the network from or up to any block with
:meth:`AngleNet.run_blocks` (a plain functional composition, safe under ``torch.func``). The
output is read as an orientation (or a scalar) by one of the readouts of
:mod:`anglesim.readouts`.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .. import validation as check
from ..readouts import READOUTS, decode, readout_size

__all__ = ["KINDS", "NONLINEARITIES", "POOLS", "AngleNet", "CNNConfig", "build_cnn"]

NONLINEARITIES = ("relu", "leaky_relu", "gelu", "softplus", "tanh")
POOLS = ("max", "avg", "none")
KINDS = ("cnn", "mlp")


# --------------------------------------------------------------------------------------------
# configuration


def _is_channel_count(value: Any) -> bool:
    try:
        check.integer("channels", value, minimum=1)
    except ValueError:
        return False
    return True


def _nonlinearity(name: str) -> nn.Module:
    check.choice("nonlinearity", name, NONLINEARITIES)
    return {
        "relu": nn.ReLU,
        "leaky_relu": nn.LeakyReLU,
        "gelu": nn.GELU,
        "softplus": nn.Softplus,
        "tanh": nn.Tanh,
    }[name]()


@dataclass(frozen=True)
class CNNConfig:
    """Architecture of the small CNN built by :func:`build_model`.

    One conv block per entry of ``channels`` (``conv1``, ``conv2``, …): Conv2d with odd
    ``kernel_size`` and 'same' padding, the nonlinearity, a 2×2 stride-2 pool (unless
    ``pool="none"``) and dropout (when > 0). Then an optional fully-connected block ``fc``
    (Flatten, Linear to ``fc_units``, nonlinearity, dropout; absent when ``fc_units=0``) and
    the ``head`` (Linear to the readout size, after a Flatten when there is no ``fc``).
    """

    image_size: int = 32
    in_channels: int = 1
    channels: tuple[int, ...] = (8, 16)
    kernel_size: int = 5
    nonlinearity: str = "relu"
    dropout: float = 0.0
    pool: str = "max"
    fc_units: int = 64
    readout: str = "cossin"
    n_bins: int = 36

    def __post_init__(self) -> None:
        check.integer("image_size", self.image_size, minimum=1)
        check.integer("in_channels", self.in_channels, minimum=1)
        channels = self.channels
        if isinstance(channels, list):
            channels = tuple(channels)
            object.__setattr__(self, "channels", channels)
        if (
            not isinstance(channels, tuple)
            or len(channels) == 0
            or not all(_is_channel_count(c) for c in channels)
        ):
            raise ValueError(
                f"channels must be a non-empty tuple of integers >= 1, got {self.channels!r}"
            )
        check.integer("kernel_size", self.kernel_size, minimum=1)
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd for 'same' padding, got {self.kernel_size}")
        check.choice("nonlinearity", self.nonlinearity, NONLINEARITIES)
        dropout = check.real("dropout", self.dropout, minimum=0.0, maximum=1.0, max_open=True)
        check.choice("pool", self.pool, POOLS)
        check.integer("fc_units", self.fc_units, minimum=0)
        check.choice("readout", self.readout, READOUTS)
        check.integer("n_bins", self.n_bins, minimum=2)
        # numpy scalars become Python ones (the config is JSON); Python values stay as given
        object.__setattr__(self, "channels", tuple(int(c) for c in channels))
        for name in ("image_size", "in_channels", "kernel_size", "fc_units", "n_bins"):
            object.__setattr__(self, name, int(getattr(self, name)))
        if type(self.dropout) not in (int, float):
            object.__setattr__(self, "dropout", dropout)
        if self.pool != "none":
            depth = len(channels)
            if self.image_size < 2**depth:
                raise ValueError(
                    f"image_size={self.image_size} is too small for {depth} 2×2 pooling stages "
                    f"(pool={self.pool!r}); it must be at least {2**depth}"
                )

    @classmethod
    def standard(cls, readout: str = "cossin", n_bins: int = 36, **changes: Any) -> CNNConfig:
        """The studies' standard CNN, beside :meth:`GratingSpec.standard`: 32 px input, two 5×5
        conv blocks (8 and 16 channels, ReLU, 2×2 max-pool) and a 64-unit ``fc`` block.
        ``changes`` replace fields (``image_size=64`` scales it)."""
        base: dict[str, Any] = dict(image_size=32, channels=(8, 16), kernel_size=5,
                                    nonlinearity="relu", fc_units=64, readout=readout,
                                    n_bins=n_bins)
        base.update(changes)
        return cls(**base)

    @property
    def final_size(self) -> int:
        """Spatial side length after the conv blocks: P // 2^(number of blocks) when pooling."""
        if self.pool == "none":
            return self.image_size
        return self.image_size // 2 ** len(self.channels)

    def to_config(self) -> dict[str, Any]:
        """JSON-able dict: ``{"kind": "cnn", <fields>}`` with ``channels`` as a list."""
        out: dict[str, Any] = {"kind": "cnn"}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> CNNConfig:
        """Inverse of :meth:`to_config`. ``kind`` (if present) must be "cnn"; a ``heads``
        entry (extra heads, as in ``AngleNet.config``) is not part of the architecture and is
        ignored here; other unknown keys raise ValueError."""
        if not isinstance(cfg, Mapping):
            raise ValueError(f"cfg must be a mapping, got {type(cfg).__name__}")
        cfg = dict(cfg)
        kind = cfg.pop("kind", "cnn")
        if kind != "cnn":
            raise ValueError(f"CNNConfig.from_config needs kind 'cnn', got {kind!r}")
        cfg.pop("heads", None)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(cfg) - names)
        if unknown:
            raise ValueError(f"unknown CNNConfig field(s) {unknown}; known: {sorted(names)}")
        return cls(**cfg)


# --------------------------------------------------------------------------------------------
# the network


class AngleNet(nn.Module):
    """An ordered stack of named blocks ending in ``head``, plus optional extra heads.

    ``blocks`` are applied in order by :meth:`forward`; every block's output is the next
    block's input. ``heads`` holds extra heads (multitask training) that read the output of the
    last trunk block (the block before ``head``). Build one with :func:`build_model` or
    :func:`reference_mlp` rather than directly.
    """

    def __init__(
        self,
        blocks: Mapping[str, nn.Module],
        readout: str,
        n_bins: int,
        config: Mapping[str, Any],
    ) -> None:
        super().__init__()
        names = list(blocks.keys())
        if len(names) < 2 or names[-1] != "head":
            raise ValueError(
                f"blocks must hold at least one trunk block and end with 'head', got {names}"
            )
        check.choice("readout", readout, READOUTS)
        n_bins = check.integer("n_bins", n_bins, minimum=2)
        if not isinstance(config, Mapping) or config.get("kind") not in KINDS:
            raise ValueError(
                f"config must be a mapping with 'kind' in {list(KINDS)}, got {config!r}"
            )
        self.blocks = nn.ModuleDict(dict(blocks))
        self.heads = nn.ModuleDict()
        self.readout = readout
        self.n_bins = n_bins
        self.head_readouts: dict[str, str] = {}
        self.head_n_bins: dict[str, int] = {}
        self._base_config = copy.deepcopy(dict(config))
        self._base_config.pop("heads", None)

    # ---- structure -------------------------------------------------------------------------

    @property
    def config(self) -> dict[str, Any]:
        """JSON-able description: the architecture (with ``kind`` "cnn" or "mlp") and
        ``heads`` ({name: {"readout", "n_bins"}} for the extra heads); a fresh copy."""
        cfg = copy.deepcopy(self._base_config)
        cfg["heads"] = {
            name: {"readout": self.head_readouts[name], "n_bins": self.head_n_bins[name]}
            for name in self.heads
        }
        return cfg

    @property
    def block_names(self) -> list[str]:
        """Names of the blocks in the order forward applies them, e.g. conv1, conv2, fc, head."""
        return list(self.blocks.keys())

    @property
    def trunk_names(self) -> list[str]:
        """All block names except the final ``head``."""
        return self.block_names[:-1]

    def readout_of(self, head: str) -> str:
        """Readout of ``head``: "head" (the main head) or the name of an extra head."""
        if head == "head":
            return self.readout
        if head in self.head_readouts:
            return self.head_readouts[head]
        raise ValueError(f"head must be 'head' or one of {list(self.heads)}, got {head!r}")

    def n_bins_of(self, head: str) -> int:
        """Number of bins configured for ``head`` (meaningful for the "bins" readout)."""
        if head == "head":
            return self.n_bins
        if head in self.head_n_bins:
            return self.head_n_bins[head]
        raise ValueError(f"head must be 'head' or one of {list(self.heads)}, got {head!r}")

    # ---- running ---------------------------------------------------------------------------

    def _index(self, name: str | None, default: int, which: str) -> int:
        if name is None:
            return default
        names = self.block_names
        if name not in names:
            raise ValueError(f"{which} must be one of {names}, got {name!r}")
        return names.index(name)

    def run_blocks(
        self, h: torch.Tensor, start: str | None = None, stop: str | None = None
    ) -> torch.Tensor:
        """Apply blocks ``start`` … ``stop`` (both inclusive; defaults: first and last) to ``h``.

        ``h`` must be what block ``start`` expects (the image for the first block). Purely
        functional — no hooks, no in-place ops on ``h`` — so it works under torch.func
        (jacrev, jvp, vmap); dropout in train mode needs vmap's ``randomness`` setting.
        """
        names = self.block_names
        first = self._index(start, 0, "start")
        last = self._index(stop, len(names) - 1, "stop")
        if first > last:
            raise ValueError(f"start={start!r} comes after stop={stop!r} in {names}")
        for name in names[first : last + 1]:
            h = self.blocks[name](h)
        return h

    def forward(self, x: torch.Tensor, head: str = "head") -> torch.Tensor:
        """Network output [N, out_dim] of ``head`` for images ``x`` [N, C, P, P].

        ``head="head"`` runs every block; another name applies that extra head to the output
        of the last trunk block.
        """
        if head == "head":
            return self.run_blocks(x)
        if head not in self.heads:
            raise ValueError(f"head must be 'head' or one of {list(self.heads)}, got {head!r}")
        return self.heads[head](self.run_blocks(x, stop=self.trunk_names[-1]))

    def activations(
        self, x: torch.Tensor, layers: Sequence[str] | str | None = None
    ) -> dict[str, torch.Tensor]:
        """Output of each requested block (default: all) for images ``x``, in one forward pass.

        Shapes are kept (conv blocks give [N, C, H, W]). Keys follow block order; the pass
        stops after the last requested block.
        """
        names = self.block_names
        if layers is None:
            wanted = set(names)
        else:
            if isinstance(layers, str):
                layers = [layers]
            wanted = set(layers)
            unknown = [n for n in layers if n not in names]
            if unknown or not wanted:
                raise ValueError(f"layers must be a non-empty subset of {names}, got {layers!r}")
        out: dict[str, torch.Tensor] = {}
        h = x
        for name in names:
            h = self.blocks[name](h)
            if name in wanted:
                out[name] = h
                if len(out) == len(wanted):
                    break
        return out

    def decode(self, output: torch.Tensor, readout: str | None = None) -> torch.Tensor:
        """θ̂ [N] in [0, π) from ``output`` (see module-level :func:`decode`).

        ``readout`` defaults to the main head's; with "bins" the bin count is taken from the
        output's width (so extra heads with their own bin counts decode correctly).
        """
        if readout is None:
            return decode(output, self.readout, self.n_bins if self.readout == "bins" else None)
        return decode(output, readout)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Decoded orientation θ̂ [N] of the main head: decode(forward(x))."""
        return self.decode(self.forward(x))

    # ---- multitask -------------------------------------------------------------------------

    def add_head(self, name: str, readout: str, n_bins: int = 36) -> None:
        """Add an extra head ``name``: a Linear map from the trunk output to the readout size.

        The new head takes the same input as ``blocks["head"]`` (with a Flatten when the trunk
        ends in a conv block), lives on the same device/dtype and is initialised by PyTorch's
        default (global torch RNG). Its readout is stored in ``head_readouts[name]``.
        """
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"name must be a non-empty identifier string, got {name!r}")
        if name in self.blocks or name in self.heads:
            taken = self.block_names + list(self.heads)
            raise ValueError(f"name {name!r} clashes with an existing block or head: {taken}")
        n_bins = check.integer("n_bins", n_bins, minimum=2)
        out_dim = readout_size(readout, n_bins)
        main = self.blocks["head"]
        linear = [m for m in main.modules() if isinstance(m, nn.Linear)]
        if len(linear) != 1:
            raise ValueError("blocks['head'] must hold exactly one Linear layer to mirror")
        ref = linear[0]
        layers: list[nn.Module] = []
        if any(isinstance(m, nn.Flatten) for m in main.modules()):
            layers.append(nn.Flatten())
        layers.append(
            nn.Linear(ref.in_features, out_dim, device=ref.weight.device, dtype=ref.weight.dtype)
        )
        self.heads[name] = nn.Sequential(*layers)
        self.head_readouts[name] = readout
        self.head_n_bins[name] = n_bins


# --------------------------------------------------------------------------------------------
# builders


def build_cnn(cfg: CNNConfig) -> AngleNet:
    """The CNN of ``cfg`` (see :class:`CNNConfig`), initialised from torch's global generator."""
    blocks: dict[str, nn.Module] = {}
    c_in = cfg.in_channels
    for i, c_out in enumerate(cfg.channels, start=1):
        layers: list[nn.Module] = [
            nn.Conv2d(c_in, c_out, cfg.kernel_size, padding=cfg.kernel_size // 2),
            _nonlinearity(cfg.nonlinearity),
        ]
        if cfg.pool == "max":
            layers.append(nn.MaxPool2d(2, 2))
        elif cfg.pool == "avg":
            layers.append(nn.AvgPool2d(2, 2))
        if cfg.dropout > 0:
            layers.append(nn.Dropout(cfg.dropout))
        blocks[f"conv{i}"] = nn.Sequential(*layers)
        c_in = c_out
    features = c_in * cfg.final_size**2
    out_dim = readout_size(cfg.readout, cfg.n_bins)
    if cfg.fc_units > 0:
        layers = [nn.Flatten(), nn.Linear(features, cfg.fc_units), _nonlinearity(cfg.nonlinearity)]
        if cfg.dropout > 0:
            layers.append(nn.Dropout(cfg.dropout))
        blocks["fc"] = nn.Sequential(*layers)
        blocks["head"] = nn.Sequential(nn.Linear(cfg.fc_units, out_dim))
    else:
        blocks["head"] = nn.Sequential(nn.Flatten(), nn.Linear(features, out_dim))
    # Convolution weights in channels-last (NHWC) layout: oneDNN then runs the convolutions
    # and max-pooling on NHWC activations, about 1.4× faster per training step than NCHW on
    # CPU (`anglesim bench`, item 2); the images themselves need no conversion.
    return AngleNet(blocks, cfg.readout, cfg.n_bins, cfg.to_config()).to(
        memory_format=torch.channels_last)
