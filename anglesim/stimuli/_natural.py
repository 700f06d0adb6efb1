"""Natural-image patches and their orientation energy.

Patches are cut from the photographs that scikit-image ships inside its installed package
(``skimage/data``: camera, astronaut, coffee, chelsea, brick, grass, gravel, rocket, the left
view of motorcycle, moon, coins); the files are read from that directory with Pillow and nothing
is ever downloaded. :class:`NaturalPatches` draws batches of P × P patches (grey or colour) at
uniformly drawn positions of uniformly drawn photographs, rotated by any angle and seen through
a circular aperture, as Henderson & Serences (2021, J Vision 21(8):10) showed their networks
rotated images, so that the corners, which a rotation fills differently, carry nothing.
:meth:`NaturalPatches.split` splits by photograph. :func:`orientation_energy` measures the
orientation energy spectrum of any image batch (the ground truth the Fisher information of a
network trained on the patches is compared with) and :func:`orientation_harmonic` the
amplitude and phase of its cos 2θ or cos 4θ component.

Orientation follows the gratings' convention (:mod:`anglesim.stimuli`): a patch rotated by φ
turns a grating of orientation θ into the grating of orientation θ + φ, and the energy at θ is
the energy of the Fourier components a grating of orientation θ has.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from .. import validation as check
from ._grating import GratingSpec

__all__ = ["PHOTOGRAPHS", "NaturalPatches", "PatchBatch", "load_photograph",
           "orientation_energy", "orientation_harmonic", "photograph_directory", "rotate"]

PHOTOGRAPHS = {
    "astronaut": "astronaut.png", "brick": "brick.png", "camera": "camera.png",
    "chelsea": "chelsea.png", "coffee": "coffee.png", "coins": "coins.png",
    "grass": "grass.png", "gravel": "gravel.png", "moon": "moon.png",
    "motorcycle": "motorcycle_left.png", "rocket": "rocket.jpg",
}
"""The photographs of scenes and objects inside scikit-image's package: name → file in
``skimage/data`` (motorcycle is the left view of the stereo pair)."""

LUMINANCE = (0.2125, 0.7154, 0.0721)
"""Weights of R, G, B in the grey value (ITU-R BT.709, as skimage.color.rgb2gray)."""

INTERPOLATIONS = ("bilinear", "bicubic")


def photograph_directory() -> Path:
    """The ``data`` directory of the installed scikit-image (found without importing it)."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("natural patches need scikit-image, whose package holds the "
                                  "photographs: pip install scikit-image")
    return Path(spec.origin).parent / "data"


@functools.cache
def _read(name: str) -> np.ndarray:
    from PIL import Image

    path = photograph_directory() / PHOTOGRAPHS[name]
    if not path.is_file():
        raise FileNotFoundError(f"scikit-image's package has no {path.name} in {path.parent}; "
                                "natural patches read only files inside the package")
    with Image.open(path) as image:
        rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    rgb = np.ascontiguousarray(rgb.transpose(2, 0, 1))
    rgb.setflags(write=False)
    return rgb


def load_photograph(name: str, colour: bool = False) -> np.ndarray:
    """Photograph ``name`` (a key of :data:`PHOTOGRAPHS`) as float32 [C, H, W] in [0, 1]:
    RGB (C = 3; grey photographs repeated) or its luminance Y = 0.2125 R + 0.7154 G +
    0.0721 B (C = 1)."""
    check.choice("name", name, sorted(PHOTOGRAPHS))
    rgb = _read(name)
    if check.boolean("colour", colour):
        return rgb.copy()
    return np.tensordot(np.asarray(LUMINANCE, np.float32), rgb, axes=1)[None]


class PatchBatch(NamedTuple):
    """A batch of patches: ``images`` [N, C, P, P], ``labels`` [N] (index of the source
    photograph in ``NaturalPatches.photographs``), ``rotations`` [N] (radians)."""

    images: torch.Tensor
    labels: torch.Tensor
    rotations: torch.Tensor


def _names(value: Any) -> tuple[str, ...]:
    names = tuple(check.name_list("photographs", value, allow_empty=False))
    unknown = [n for n in names if n not in PHOTOGRAPHS]
    if unknown or len(set(names)) != len(names):
        raise check.fail("photographs", f"distinct names among {sorted(PHOTOGRAPHS)}", value)
    return names


@dataclass(frozen=True)
class NaturalPatches:
    """P × P patches of photographs, rotated behind a circular aperture.

    Attributes:
        size: P, the patch side in pixels; int >= 8.
        photographs: the source photographs (names of :data:`PHOTOGRAPHS`; default all, in
            sorted order); labels index this tuple.
        colour: False: grey (1 channel, luminance); True: RGB (3 channels).
        scale: each photograph is first resized by this factor (antialiased), in (0, 1]: at
            0.5 a 32 px patch covers 64 pixels of the photograph.
        aperture, aperture_edge: the circular aperture, exactly as in
            :class:`~anglesim.stimuli.GratingSpec` (outer radius as a fraction of the half-width,
            raised-cosine edge); aperture None leaves the square patch.
        standardise: True: each patch minus its mean, divided by its standard deviation, both
            weighted by the aperture over all channels (so every patch has contrast 1 and no
            photograph is told by its brightness); False: pixel values in [0, 1]. The aperture
            multiplies the result either way.
        interpolation: "bilinear" or "bicubic", how rotated patches are sampled (a rotation by
            0 copies pixels exactly either way).

    :meth:`draw` picks a photograph uniformly for each patch, then a position uniformly among
    those where the rotated patch lies inside it.
    """

    size: int = 32
    photographs: tuple[str, ...] = tuple(sorted(PHOTOGRAPHS))
    colour: bool = False
    scale: float = 0.5
    aperture: float | None = 1.0
    aperture_edge: float = 0.1
    standardise: bool = True
    interpolation: str = "bilinear"
    _store: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        put = functools.partial(object.__setattr__, self)
        put("size", check.integer("size", self.size, minimum=8))
        put("photographs", _names(self.photographs))
        put("colour", check.boolean("colour", self.colour))
        put("scale", check.real("scale", self.scale, minimum=0.0, maximum=1.0, min_open=True))
        put("standardise", check.boolean("standardise", self.standardise))
        check.choice("interpolation", self.interpolation, INTERPOLATIONS)
        # the aperture is a grating's: its checks and its mask
        geometry = GratingSpec(size=self.size, aperture=self.aperture,
                               aperture_edge=self.aperture_edge)
        put("aperture", geometry.aperture)
        put("aperture_edge", geometry.aperture_edge)
        for name in self.photographs:
            _, h, w = self._photo(name).shape
            if min(h, w) < self.crop:
                raise check.fail("size", f"at most what {name} ({h} × {w} px at scale "
                                 f"{self.scale:g}) can hold rotated ({self.crop} px)", self.size)

    # ---- geometry --------------------------------------------------------------------------

    @property
    def channels(self) -> int:
        """C: 3 in colour, 1 in grey."""
        return 3 if self.colour else 1

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, P, P), the shape of one patch."""
        return (self.channels, self.size, self.size)

    @property
    def crop(self) -> int:
        """Side S of the square cut around each patch centre before rotating: it holds every
        rotated pixel the aperture lets through (radius min(aperture, √2)·(P − 1)/2) and the
        interpolation's reach (1 pixel bilinear, 2 bicubic); S − P is even, so a rotation by 0
        samples pixel centres. Pixels the aperture hides may be sampled from outside it."""
        radius = min(self.aperture or math.sqrt(2), math.sqrt(2)) * (self.size - 1) / 2
        reach = 1 if self.interpolation == "bilinear" else 2
        side = max(math.ceil(2 * (radius + reach)) + 1, self.size)
        return side + (side - self.size) % 2

    def aperture_mask(self, device: Any = None, dtype: torch.dtype = torch.float32
                      ) -> torch.Tensor:
        """The aperture [P, P] (all ones when aperture is None)."""
        return GratingSpec(size=self.size, aperture=self.aperture,
                           aperture_edge=self.aperture_edge).aperture_mask(device, dtype)

    # ---- photographs -----------------------------------------------------------------------

    def _photo(self, name: str) -> torch.Tensor:
        key = ("photo", name)
        if key not in self._store:
            image = torch.from_numpy(load_photograph(name, self.colour))
            if self.scale != 1.0:
                image = F.interpolate(image[None], scale_factor=self.scale, mode="bilinear",
                                      antialias=True, align_corners=False)[0]
            self._store[key] = image
        return self._store[key]

    def _atlas(self, device: torch.device, dtype: torch.dtype) -> tuple[Any, ...]:
        """Every photograph side by side in one atlas [C, H_max, ΣW] on the device (zeros
        below the shorter ones), the atlas column of each photograph's left edge [K] and
        the photographs' sizes [K, 2] (both on the CPU), the index grid of a P × P patch in the
        flattened atlas [P, P] (on the device) and the aperture [P, P]; cached per device and
        dtype."""
        key = ("atlas", str(device), dtype)
        if key not in self._store:
            photos = [self._photo(n) for n in self.photographs]
            sizes = torch.tensor([p.shape[1:] for p in photos], dtype=torch.int64)
            height, width = int(sizes[:, 0].max()), int(sizes[:, 1].sum())
            atlas = torch.zeros(self.channels, height, width, dtype=dtype)
            column = torch.cumsum(sizes[:, 1], 0) - sizes[:, 1]
            for photo, left in zip(photos, column.tolist(), strict=True):
                atlas[:, :photo.shape[1], left:left + photo.shape[2]] = photo
            steps = torch.arange(self.size)
            grid = steps[:, None] * width + steps[None, :]
            self._store[key] = (atlas.to(device), column, sizes, grid.to(device),
                                self.aperture_mask(device, dtype))
        return self._store[key]

    # ---- drawing ---------------------------------------------------------------------------

    def draw(self, n: int, generator: torch.Generator | None = None, rotation: Any = 0.0,
             device: Any = None, dtype: torch.dtype = torch.float32) -> PatchBatch:
        """``n`` patches: images [n, C, P, P] on ``device``, their photographs' labels and
        rotations.

        ``rotation``: one angle or one per patch (radians, any value); a patch rotated by φ is
        the photograph turned by φ about the patch centre (gratings of orientation θ become
        θ + φ), sampled with one ``grid_sample`` over all the photographs at once (at float
        positions good to ~10⁻⁴ pixel); with every angle 0 the pixels are copied. The
        photographs and positions are drawn from ``generator`` (torch's global CPU generator
        when None), in that order, on the generator's device, so the same CPU generator state
        gives the same patches on every device, whatever the rotation (a CUDA generator draws
        CUDA's own numbers). The rotation is applied after the labels are drawn and does not
        touch them: labels never depend on the rotation.
        """
        n = check.integer("n", n, minimum=1)
        generator = check.generator("generator", generator)
        device = check.device("device", device) or torch.device("cpu")
        if dtype not in (torch.float32, torch.float64):
            raise check.fail("dtype", "torch.float32 or torch.float64", dtype)
        phi = torch.as_tensor(rotation, dtype=torch.float64).reshape(-1)
        if phi.numel() not in (1, n) or not torch.isfinite(phi).all():
            raise check.fail("rotation", f"one finite angle or {n} of them", rotation)
        phi = phi.expand(n).clone()
        drawn_on = generator.device if generator is not None else torch.device("cpu")
        labels = torch.randint(len(self.photographs), (n,), generator=generator,
                               device=drawn_on).cpu()
        where = torch.rand(n, 2, generator=generator, dtype=torch.float64, device=drawn_on).cpu()

        atlas, column, sizes, grid, mask = self._atlas(device, dtype)
        side, size = self.crop, self.size
        corner = (where * (sizes[labels] - side + 1)).long()  # top, left inside the photograph
        corner[:, 1] += column[labels]  # left inside the atlas
        channels, height, width = atlas.shape
        if bool((phi == 0).all()):
            margin = (side - size) // 2
            start = (corner[:, 0] + margin) * width + corner[:, 1] + margin
            index = grid + start.to(device)[:, None, None]  # [n, P, P]
            if channels == 1:
                images = atlas.reshape(-1).take(index)[:, None]
            else:
                images = atlas.reshape(channels, -1)[:, index].transpose(0, 1)
        else:
            centre = corner.to(torch.float64) + (side - 1) / 2  # row, column of the centre
            images = _sample_at(atlas, centre, phi, size, self.interpolation, dtype)
        if self.standardise:
            weight = float(mask.sum()) * channels
            m = mask.reshape(size * size, 1)
            mean = (images.reshape(n, channels, -1) @ m).sum(dim=(1, 2)) / weight
            centred = images - mean[:, None, None, None]
            var = ((centred * centred).reshape(n, channels, -1) @ m).sum(dim=(1, 2)) / weight
            images = centred * (mask * torch.rsqrt(var + 1e-12)[:, None, None, None])
        else:
            images = images * mask
        return PatchBatch(images.contiguous(), labels.to(device), phi.to(device))

    def split(self, test: Sequence[str] | int, generator: np.random.Generator | None = None
              ) -> tuple[NaturalPatches, NaturalPatches]:
        """(train, test): the same patches from disjoint sets of photographs.

        ``test``: the test photographs' names, or how many to draw (uniformly, without
        replacement, from ``generator``, a ``numpy.random.Generator``); at least one photograph
        stays on each side.
        """
        if isinstance(test, int | np.integer) and not isinstance(test, bool):
            count = check.integer("test", test, minimum=1, maximum=len(self.photographs) - 1)
            generator = check.generator("generator", generator, kind="numpy", allow_none=False)
            chosen = generator.choice(len(self.photographs), size=count, replace=False)
            names = {self.photographs[i] for i in chosen}
        else:
            names = set(_names(test))
            if not names < set(self.photographs):
                raise check.fail("test", f"a proper subset of {list(self.photographs)}", test)
        train = tuple(n for n in self.photographs if n not in names)
        held = tuple(n for n in self.photographs if n in names)
        return self.replace(photographs=train), self.replace(photographs=held)

    def replace(self, **changes: Any) -> NaturalPatches:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_config(self) -> dict[str, Any]:
        """JSON-able fields (``photographs`` as a list); ``NaturalPatches(**config)`` inverts."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}
        out["photographs"] = list(self.photographs)
        return out


def _sample_at(atlas: torch.Tensor, centre: torch.Tensor, phi: torch.Tensor, size: int,
               interpolation: str, dtype: torch.dtype) -> torch.Tensor:
    """P × P patches of ``atlas`` [C, H, W] centred at ``centre`` [n, 2] (row, column; CPU,
    float64) and turned by φ [n]: output pixel (row v, column u) from the centre samples
    column c_x + u cos φ − v sin φ, row c_y + u sin φ + v cos φ. One grid_sample over the
    atlas, its output the n patches stacked into one tall image."""
    n, (channels, height, width) = centre.shape[0], atlas.shape
    device = atlas.device
    to_x, to_y = 2.0 / (width - 1), 2.0 / (height - 1)  # align_corners: ±1 at the edge pixels
    cx = (centre[:, 1] * to_x - 1).to(device=device, dtype=dtype)[:, None, None]
    cy = (centre[:, 0] * to_y - 1).to(device=device, dtype=dtype)[:, None, None]
    offsets = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    v, u = offsets[:, None], offsets[None, :]
    cos = torch.cos(phi).to(device=device, dtype=dtype)[:, None, None]
    sin = torch.sin(phi).to(device=device, dtype=dtype)[:, None, None]
    grid = torch.empty(1, n * size, size, 2, device=device, dtype=dtype)
    grid[0, ..., 0] = (cx + (u * cos - v * sin) * to_x).reshape(n * size, size)
    grid[0, ..., 1] = (cy + (u * sin + v * cos) * to_y).reshape(n * size, size)
    out = F.grid_sample(atlas[None], grid, mode=interpolation, padding_mode="border",
                        align_corners=True)  # [1, C, n·P, P]
    return out.reshape(channels, n, size, size).transpose(0, 1)


def _sample_rotated(images: torch.Tensor, phi: torch.Tensor, size: int,
                    interpolation: str) -> torch.Tensor:
    """The central ``size`` × ``size`` grid of each image [N, C, S, S] turned by φ [N] about
    its centre: output pixel (row v, column u) from the centre samples the input at column
    c + u cos φ − v sin φ, row c + u sin φ + v cos φ, c = (S − 1)/2."""
    n, side = images.shape[0], images.shape[-1]
    # grid_sample's coordinates (align_corners: ±1 at the outer pixel centres): the input point
    # is (c + …)·2/(S − 1) − 1
    offsets = (torch.arange(size, device=images.device, dtype=images.dtype)
               - (size - 1) / 2) * (2.0 / (side - 1))
    v, u = offsets[:, None], offsets[None, :]
    same = bool((phi == phi[0]).all())
    angle = phi[:1] if same else phi
    cos, sin = torch.cos(angle)[:, None, None], torch.sin(angle)[:, None, None]
    grid = torch.empty(angle.shape[0], size, size, 2, device=images.device, dtype=images.dtype)
    grid[..., 0] = u * cos - v * sin
    grid[..., 1] = u * sin + v * cos
    return F.grid_sample(images, grid.expand(n, -1, -1, -1) if same else grid,
                         mode=interpolation, padding_mode="border", align_corners=True)


def rotate(images: torch.Tensor, angles: Any, interpolation: str = "bilinear") -> torch.Tensor:
    """``images`` [N, C, P, P] turned by ``angles`` (one or N, radians) about their centres,
    sampled as :meth:`NaturalPatches.draw` samples; what comes from outside the image is the
    nearest border pixel. A grating of orientation θ turned by φ is the grating of
    orientation θ + φ."""
    check.choice("interpolation", interpolation, INTERPOLATIONS)
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or \
            images.shape[-1] != images.shape[-2] or not images.is_floating_point():
        raise check.fail("images", "a float tensor [N, C, P, P]", images)
    n = images.shape[0]
    phi = torch.as_tensor(angles, dtype=images.dtype, device=images.device).reshape(-1)
    if phi.numel() not in (1, n) or not torch.isfinite(phi).all():
        raise check.fail("angles", f"one finite angle or {n} of them", angles)
    return _sample_rotated(images, phi.expand(n), images.shape[-1], interpolation)


# ---- orientation energy ----------------------------------------------------------------------


def orientation_energy(images: torch.Tensor, *, mask: torch.Tensor | None = None,
                       n_angles: int = 36, band: tuple[float, float] = (0.0625, 0.375),
                       smoothing: float | None = None, whiten: bool = True) -> Any:
    """Orientation energy density of an image batch, as an ``xarray.DataArray`` over
    ``angle`` θ_j = jπ/J (J = ``n_angles``), in rad⁻¹ (it integrates to 1 over [0, π)).

    The power spectrum P(f) = mean over images and channels of |FFT2(x)|² is read in a band of
    spatial frequencies, f_lo ≤ |f| ≤ f_hi (``band``, cycles per pixel, below Nyquist 0.5),
    by orientation: each frequency f = (f_x, f_y) carries the orientation θ_f = atan2(f_x, f_y)
    mod π of the grating it belongs to, and

        E(θ_j) = Σ_f |f|^w P(f) K(θ_f − θ_j) / Σ_f K(θ_f − θ_j),
        K(Δ) = exp(κ (cos 2Δ − 1)),  κ = 1 / (4 σ²),

    a kernel average on the doubled angle with width σ = ``smoothing`` (default π/J), so that
    the uneven number of frequencies per orientation of a square grid cancels; w = 2 when
    ``whiten`` (each frequency weighted by |f|², flattening the 1/|f|² power of natural images
    so that the band's frequencies count alike), else 0. The density is E / (Σ_j E(θ_j) π/J).
    This is the Fourier measurement of orientation content of natural scenes (Switkes, Mayer &
    Sloan 1978, Vision Res 18:1393; Hansen & Essock 2004, J Vision 4(12):5). With ``mask``
    [P, P] (an aperture), each image minus its mask-weighted mean is multiplied by it first;
    patches from :class:`NaturalPatches` already carry their aperture and need none.
    """
    import xarray as xr

    if not isinstance(images, torch.Tensor) or images.ndim != 4 or \
            images.shape[-1] != images.shape[-2]:
        raise check.fail("images", "a tensor [N, C, P, P]", images)
    n_angles = check.integer("n_angles", n_angles, minimum=4)
    if not isinstance(band, Sequence) or len(band) != 2:
        raise check.fail("band", "a pair (f_lo, f_hi) of cycles per pixel", band)
    lo = check.real("band[0]", band[0], minimum=0.0)
    hi = check.real("band[1]", band[1], maximum=0.5)
    if not lo < hi:
        raise check.fail("band", "f_lo < f_hi", band)
    sigma = math.pi / n_angles if smoothing is None else check.real(
        "smoothing", smoothing, minimum=0.0, min_open=True)
    whiten = check.boolean("whiten", whiten)
    x = images.detach().to(torch.float64)
    side = x.shape[-1]
    if mask is not None:
        if not isinstance(mask, torch.Tensor) or tuple(mask.shape) != (side, side):
            raise check.fail("mask", f"None or a tensor [{side}, {side}]", mask)
        m = mask.to(device=x.device, dtype=torch.float64)
        mean = (x * m).sum(dim=(-2, -1), keepdim=True) / m.sum()
        x = (x - mean) * m
    power = torch.fft.fft2(x).abs().square().mean(dim=(0, 1))
    freq = torch.fft.fftfreq(side, dtype=torch.float64, device=x.device)
    fy, fx = freq[:, None].expand(side, side), freq[None, :].expand(side, side)
    radius = torch.sqrt(fx * fx + fy * fy)
    inside = (radius >= lo) & (radius <= hi) & (radius > 0)
    if not bool(inside.any()):
        raise check.fail("band", f"a band holding some frequency of a {side} px image", band)
    theta_f = torch.remainder(torch.atan2(fx[inside], fy[inside]), math.pi)
    value = power[inside] * (radius[inside] ** 2 if whiten else 1.0)
    centres = torch.arange(n_angles, dtype=torch.float64, device=x.device) * (math.pi / n_angles)
    kernel = torch.exp((torch.cos(2 * (theta_f[None, :] - centres[:, None])) - 1)
                       / (4 * sigma**2))
    energy = (kernel * value).sum(1) / kernel.sum(1)
    density = (energy / (energy.sum() * math.pi / n_angles)).cpu().numpy()
    return xr.DataArray(
        density, dims=("angle",),
        coords={"angle": ("angle", centres.cpu().numpy(),
                          {"units": "rad", "long_name": "orientation"})},
        name="orientation_energy",
        attrs={"units": "rad^-1", "long_name": "orientation energy density",
               "band_cycles_per_pixel": [lo, hi], "smoothing_rad": sigma,
               "whitened": int(whiten), "n_images": int(images.shape[0]),
               "method": "Fourier power by orientation in a frequency band (Switkes et al. "
                         "1978; Hansen & Essock 2004)"})


def orientation_harmonic(energy: Any, order: int) -> tuple[float, float]:
    """(amplitude a, preferred angle μ) of the cos(order · θ) component of an orientation
    density e(θ) on a uniform grid over [0, π): with c = Σ_j e(θ_j) exp(i·order·θ_j) / Σ_j
    e(θ_j), a = 2|c| and μ = arg(c)/order mod 2π/order, so e(θ) ≈ ē (1 + a cos(order (θ − μ))
    + …). ``order`` 2 (the cos 2θ component, one preferred orientation) or 4 (cos 4θ: μ = 0
    for cardinal peaks, π/4 for oblique ones); rotating the images by φ moves μ by φ."""
    order = check.integer("order", order, minimum=1)
    if order % 2:
        raise check.fail("order", "an even integer (orientation has period π)", order)
    values = np.asarray(getattr(energy, "values", energy), dtype=np.float64)
    angles = np.asarray(energy["angle"].values if hasattr(energy, "coords") else
                        np.arange(values.size) * math.pi / values.size, dtype=np.float64)
    if values.ndim != 1 or values.size < 2 * order or not np.isfinite(values).all() or \
            values.sum() <= 0:
        raise check.fail("energy", f"a positive density over at least {2 * order} angles",
                         energy)
    c = np.sum(values * np.exp(1j * order * angles)) / values.sum()
    return float(2 * abs(c)), float(np.angle(c) / order % (2 * math.pi / order))
