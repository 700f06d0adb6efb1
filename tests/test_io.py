"""anglesim.io: canonical JSON, provenance, and netCDF round trips."""

import dataclasses
import datetime as dt
import errno
import hashlib
import json
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from markers import needs_h5py

import anglesim
from anglesim import io
from anglesim.io._encoding import decode_attrs, encode_attrs
from anglesim.io._provenance import git_revision


@dataclasses.dataclass
class _Inner:
    width: int
    where: Path


@dataclasses.dataclass
class _Outer:
    name: str
    inner: _Inner
    shape: tuple


# ---------------------------------------------------------------------------------------------
# JSON and hashes


def test_to_json_is_canonical_and_encodes_common_types():
    obj = {"b": np.float32(0.5), "a": (1, np.int64(2)), "c": np.arange(3),
           "d": _Outer("net", _Inner(4, Path("/x/y")), (2, 3)), "e": {3, 1, 2}, "f": None}
    text = io.to_json(obj)
    assert text == ('{"a":[1,2],"b":0.5,"c":[0,1,2],"d":{"inner":{"where":"/x/y","width":4},'
                    '"name":"net","shape":[2,3]},"e":[1,2,3],"f":null}')
    assert io.to_json(dict(reversed(list(obj.items())))) == text
    assert io.to_json({"θ": "ü"}) == '{"θ":"ü"}'


def test_to_json_rejects_unknown_types_with_value_error():
    with pytest.raises(ValueError, match="object"):
        io.to_json({"x": object()})


def test_config_hash_is_short_stable_and_order_independent():
    h = io.config_hash({"b": [1, 2], "a": 1})
    assert h == hashlib.sha256(b'{"a":1,"b":[1,2]}').hexdigest()[:16]
    assert h == io.config_hash({"a": 1, "b": (1, 2)})
    assert h != io.config_hash({"a": 1, "b": [2, 1]})
    assert io.config_hash({"a": 1}) != io.config_hash({"a": 1.0})
    with pytest.raises(ValueError, match="config must be a dict"):
        io.config_hash([1, 2])


# ---------------------------------------------------------------------------------------------
# provenance


def test_provenance_records_versions_config_and_seed():
    prov = io.provenance({"lr": 0.1, "arch": "cnn"}, seed=7)
    assert prov["anglesim_version"] == anglesim.__version__
    assert prov["config"] == '{"arch":"cnn","lr":0.1}'
    assert prov["seed"] == 7
    assert prov["numpy"] == np.__version__ and prov["xarray"] == xr.__version__
    assert prov["torch"] and prov["python"] and prov["platform"]
    assert isinstance(prov["cpu"], str) and prov["cpu"]
    assert isinstance(prov["cpu_count"], int) and prov["cpu_count"] >= 1
    created = dt.datetime.fromisoformat(prov["created"])
    assert created.utcoffset() == dt.timedelta(0)
    assert abs(dt.datetime.now(dt.timezone.utc) - created) < dt.timedelta(minutes=5)
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?|unknown", prov["git_rev"])
    assert all(isinstance(v, (str, int)) for v in prov.values())
    assert set(prov) <= set(io.PROVENANCE_KEYS)


def test_cpu_model_reads_the_model_name(tmp_path, monkeypatch):
    import importlib

    prov_module = importlib.import_module("anglesim.io._provenance")  # the module, not the function
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\n"
                    "model name\t: Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz\n")
    real_open = open

    def fake_open(path, *args, **kwargs):
        return real_open(info if path == "/proc/cpuinfo" else path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", fake_open)
    assert prov_module.cpu_model() == "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz"
    info.write_text("processor\t: 0\nBogoMIPS\t: 50.00\n")  # an ARM board names no model
    monkeypatch.setattr(prov_module.platform, "processor", lambda: "")
    monkeypatch.setattr(prov_module.platform, "machine", lambda: "aarch64")
    monkeypatch.setattr(prov_module.sys, "platform", "linux")
    assert prov_module.cpu_model() == "aarch64"


def test_provenance_without_config_or_seed():
    prov = io.provenance()
    assert prov["config"] == "null" and "seed" not in prov
    with pytest.raises(ValueError, match="seed"):
        io.provenance(seed=1.5)


def test_git_revision_is_unknown_outside_a_checkout(tmp_path, monkeypatch):
    pkg = tmp_path / "anglesim"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    assert git_revision(pkg) == "unknown"
    assert git_revision(tmp_path / "missing") == "unknown"
    monkeypatch.setenv("PATH", str(tmp_path))  # no git executable at all
    assert git_revision(Path(anglesim.__file__).parent) == "unknown"


def test_git_revision_of_this_checkout():
    pkg = Path(anglesim.__file__).resolve().parent
    if not (pkg.parent / ".git").exists():
        pytest.skip("anglesim is not running from a git checkout")
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", git_revision(pkg))


# ---------------------------------------------------------------------------------------------
# attribute encoding (no file needed)


def test_attribute_encoding_inverts():
    attrs = {"d": {"a": [1, 2]}, "l": [1, "x"], "n": None, "b": True, "nb": np.bool_(False),
             "s": "ü", "e": "", "i": 3, "f": 0.25, "arr": np.array([1.5, 2.5]),
             "t": (1, 2), "big": 2**70}
    encoded = encode_attrs(attrs, "test")
    for value in encoded.values():
        assert isinstance(value, (str, int, float, np.ndarray))
    assert json.loads(encoded[io.JSON_ATTRS_KEY]) == ["d", "l", "n", "b", "nb", "e", "t", "big"]
    decoded = decode_attrs(encoded, "test")
    assert decoded.keys() == attrs.keys()
    for key in ("d", "l", "n", "b", "nb", "s", "e", "i", "f", "big"):
        assert decoded[key] == attrs[key]
    assert decoded["t"] == [1, 2]
    np.testing.assert_array_equal(decoded["arr"], attrs["arr"])
    with pytest.raises(ValueError, match="'bad'"):
        encode_attrs({"bad": object()}, "test")


# ---------------------------------------------------------------------------------------------
# files


def _sample() -> xr.Dataset:
    ds = xr.Dataset(
        {
            "flag": ("angle", np.array([True, False, True])),
            "label": ("angle", np.array(["ok", "βγ", ""])),
            "fi": (("layer", "angle"), np.array([[1.0, np.nan, 2.0], [3.0, 4.0, 5.0]])),
            "f32": ("angle", np.arange(3, dtype=np.float32)),
            "count": ("layer", np.array([2**40, -3], dtype=np.int64)),
            "scalar": ((), 1.5),
        },
        coords={"angle": [0.0, 1.0, 2.0], "layer": ["conv1", "fc"],
                "active": ("layer", np.array([True, False]))},
        attrs={"spec": {"size": 32, "noise": None}, "names": ["a", "b"], "done": True,
               "missing": None, "units": "rad⁻²", "n": 4},
    )
    ds["fi"].attrs = {"units": "1/rad^2", "meta": {"method": "propagated"}}
    return ds


def _without_provenance(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` without what save_dataset adds: provenance, the default title, and the units and
    long names of the coordinates anglesim knows (they are checked in their own tests)."""
    out = ds.copy()
    out.attrs = {k: v for k, v in ds.attrs.items()
                 if k not in io.PROVENANCE_KEYS and (k, v) != ("title", io.DEFAULT_TITLE)}
    for name in out.coords:
        known = io.KNOWN_COORDS.get(str(name), {})
        out.coords[name].attrs = {k: v for k, v in out.coords[name].attrs.items()
                                  if known.get(k) != v}
    return out


@needs_h5py
def test_round_trip_keeps_types_values_and_attrs(tmp_path):
    ds = _sample()
    before = ds.copy(deep=True)
    path = io.save_dataset(ds, tmp_path / "sub" / "dir" / "data.nc", config={"k": 1}, seed=3)
    assert path == tmp_path / "sub" / "dir" / "data.nc" and path.is_file()
    xr.testing.assert_identical(ds, before)  # the input is untouched
    loaded = io.load_dataset(path)
    xr.testing.assert_identical(_without_provenance(loaded), ds)
    for name, var in ds.variables.items():
        assert loaded[name].dtype.kind == var.dtype.kind, name
    assert loaded["f32"].dtype == np.float32 and loaded["count"].dtype == np.int64
    assert loaded.attrs["spec"] == {"size": 32, "noise": None}
    assert loaded["fi"].attrs["meta"] == {"method": "propagated"}
    assert loaded.attrs["config"] == '{"k":1}' and loaded.attrs["seed"] == 3
    assert loaded.attrs["anglesim_version"] == anglesim.__version__
    assert set(io.PROVENANCE_KEYS) - {"code_version", "code_origin"} <= set(loaded.attrs)
    assert list(tmp_path.glob("sub/dir/*")) == [path]  # no temporary file left behind


@needs_h5py
def test_resave_keeps_config_and_overwrites_atomically(tmp_path):
    path = io.save_dataset(_sample(), tmp_path / "a.nc", config={"k": 1}, seed=3)
    first = io.load_dataset(path)
    first["fi"] = first["fi"] * 2
    io.save_dataset(first, path)  # no config or seed given: the recorded ones stay
    second = io.load_dataset(path)
    assert second.attrs["config"] == '{"k":1}' and second.attrs["seed"] == 3
    xr.testing.assert_identical(_without_provenance(second), _without_provenance(first))


@needs_h5py
def test_failed_write_leaves_existing_file_and_no_temp(tmp_path):
    path = io.save_dataset(_sample(), tmp_path / "a.nc")
    bad = xr.Dataset({"mixed": ("x", np.array([1, "a", None], dtype=object))})
    with pytest.raises(Exception):  # noqa: B017 - whatever xarray raises for an unwritable var
        io.save_dataset(bad, path)
    assert sorted(tmp_path.iterdir()) == [path]
    xr.testing.assert_identical(_without_provenance(io.load_dataset(path)), _sample())


@needs_h5py
def test_load_rejects_plain_netcdf(tmp_path):
    path = tmp_path / "plain.nc"
    xr.Dataset({"x": ("t", [1.0, 2.0])}).to_netcdf(path, engine="h5netcdf")
    with pytest.raises(ValueError, match="not an anglesim Dataset .no anglesim_version"):
        io.load_dataset(path)


@needs_h5py
def test_load_rejects_corrupt_file(tmp_path):
    path = io.save_dataset(_sample(), tmp_path / "a.nc")
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match=re.escape(str(path))):
        io.load_dataset(path)
    junk = tmp_path / "junk.nc"
    junk.write_text("not a netCDF file")
    with pytest.raises(ValueError, match=re.escape(str(junk))):
        io.load_dataset(junk)


def test_load_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nope.nc"
    with pytest.raises(FileNotFoundError, match=re.escape(str(path))):
        io.load_dataset(path)


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="directory"):
        io.load_dataset(tmp_path)
    with pytest.raises(ValueError, match="directory"):
        io.save_dataset(_sample(), tmp_path)
    with pytest.raises(ValueError, match="ds must be an xarray.Dataset, got DataArray"):
        io.save_dataset(xr.DataArray([1.0]), tmp_path / "x.nc")


# ---------------------------------------------------------------------------------------------
# checksum


def test_data_checksum_is_stable_and_sensitive():
    ds = _sample()
    digest = io.data_checksum(ds)
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert io.data_checksum(ds.copy(deep=True)) == digest
    # attributes are metadata, not part of the digest
    relabelled = ds.copy()
    relabelled.attrs = {"other": 1}
    assert io.data_checksum(relabelled) == digest
    # object-dtype strings hash like the unicode array netCDF gives back
    as_object = ds.assign(label=("angle", np.array(["ok", "βγ", ""], dtype=object)))
    assert io.data_checksum(as_object) == digest
    changed = [
        ds.assign(f32=ds["f32"] + np.float32(1e-6)),             # one value, last bits
        ds.assign(f32=ds["f32"].astype(np.float64)),             # dtype
        ds.assign(label=("angle", np.array(["ok", "βγ", " "]))),  # one character
        ds.rename({"fi": "fj"}),                                   # a name
        ds.assign(flag=("angle", np.array([True, False, False]))),
        ds.assign_coords(angle=[0.0, 1.0, 2.5]),                   # a coordinate
    ]
    digests = {io.data_checksum(c) for c in changed}
    assert digest not in digests and len(digests) == len(changed)
    with pytest.raises(ValueError, match="ds must be an xarray.Dataset"):
        io.data_checksum(xr.DataArray([1.0]))


@needs_h5py
def test_saved_file_carries_checksum_that_load_verifies(tmp_path):
    import h5py

    ds = _sample()
    path = io.save_dataset(ds, tmp_path / "a.nc")
    loaded, version = io.load_checked(path)
    assert version == io.CHECKSUM_VERSION == 2
    with h5py.File(path, "r") as f:
        assert f.attrs[io.CHECKSUM_ATTR] == "v2:" + io.dataset_checksum(loaded)
    assert io.CHECKSUM_ATTR not in loaded.attrs
    assert io.data_checksum(loaded) == io.data_checksum(ds)
    # change one stored value in place, leaving the file a valid netCDF4 file
    with h5py.File(path, "r+") as f:
        f["f32"][1] = np.float32(7.0)
    with pytest.raises(ValueError, match=re.escape(f"{path} is corrupted")):
        io.load_dataset(path)


@needs_h5py
def test_flipped_byte_in_the_data_is_detected(tmp_path):
    values = np.arange(1000, dtype=np.float64) * np.pi
    path = io.save_dataset(xr.Dataset({"v": ("i", values)}), tmp_path / "a.nc")
    raw = bytearray(path.read_bytes())
    where = raw.find(values[500:502].tobytes())
    assert where > 0  # the values are stored uncompressed and contiguous
    raw[where + 3] ^= 0x10
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="is corrupted"):
        io.load_dataset(path)


def test_dataset_checksum_covers_attributes_and_coordinates():
    ds = _sample()
    ds["fi"].attrs["long_name"] = "Fisher information"
    ds["angle"].attrs["units"] = "rad"
    digest = io.dataset_checksum(ds)
    assert io.dataset_checksum(ds.copy(deep=True)) == digest
    changed = []
    for change in (
        lambda d: d.attrs.update(extra=1),                         # a Dataset attribute
        lambda d: d["fi"].attrs.update(long_name="Fisher informatioN"),  # one character
        lambda d: d["angle"].attrs.update(units="deg"),             # a coordinate's attribute
        lambda d: d.attrs.update(spec={"size": 33, "noise": None}),  # inside a JSON attribute
        lambda d: d["f32"].attrs.update(scale=np.float32(1.5)),     # a new numeric attribute
    ):
        other = ds.copy(deep=True)
        change(other)
        changed.append(io.dataset_checksum(other))
    as_coord = ds.set_coords("count")  # the same variables, one of them now a coordinate
    changed.append(io.dataset_checksum(as_coord))
    assert digest not in changed and len(set(changed)) == len(changed)


@needs_h5py
@pytest.mark.parametrize("where", ["variable", "coordinate", "dataset"])
def test_one_byte_of_an_attribute_changed_in_the_file_is_detected(tmp_path, where):
    import h5py

    ds = _sample()
    ds["fi"].attrs["long_name"] = "Fisher information"
    path = io.save_dataset(ds, tmp_path / "a.nc")
    with h5py.File(path, "r+") as f:
        if where == "variable":
            f["fi"].attrs["long_name"] = "Fisher informatioN"
        elif where == "coordinate":
            f["angle"].attrs["units"] = "raD"
        else:
            f.attrs["title"] = io.DEFAULT_TITLE[:-1] + "T"
    with pytest.raises(ValueError, match="is corrupted: its checksum \\(data, coordinates and "
                                         "attributes\\)"):
        io.load_dataset(path)


@needs_h5py
def test_an_old_format_file_still_has_its_data_verified(tmp_path):
    import h5py

    ds = _sample()
    path = io.save_dataset(ds, tmp_path / "old.nc")
    with h5py.File(path, "r+") as f:  # what version 1 wrote: the data-only digest, bare
        f.attrs[io.CHECKSUM_ATTR] = io.data_checksum(ds)
        f["fi"].attrs["long_name"] = "not covered by version 1"
    loaded, version = io.load_checked(path)
    assert version == 1 and loaded["fi"].attrs["long_name"] == "not covered by version 1"
    with h5py.File(path, "r+") as f:
        f["f32"][1] = np.float32(7.0)
    with pytest.raises(ValueError, match="its data's checksum"):
        io.load_dataset(path)
    with h5py.File(path, "r+") as f:
        del f.attrs[io.CHECKSUM_ATTR]
    assert io.load_checked(path)[1] == 0


# ---------------------------------------------------------------------------------------------
# self-description


@needs_h5py
def test_saved_files_describe_their_coordinates_and_themselves(tmp_path, monkeypatch):
    ds = _sample().expand_dims(replicate=[0]).assign_coords(epoch=[0, 1], kappa=[1.0, 4.0])
    ds["kappa"].attrs["long_name"] = "my own name"  # a coordinate's own attributes win
    ds.attrs["study"] = "demo"
    loaded = io.load_dataset(io.save_dataset(ds, tmp_path / "a.nc"))
    assert loaded["angle"].attrs["units"] == "rad"
    assert loaded["angle"].attrs["long_name"] == "grating orientation θ"
    for name in ("layer", "replicate", "epoch"):
        assert loaded[name].attrs["long_name"] == io.KNOWN_COORDS[name]["long_name"]
    assert loaded["replicate"].attrs["units"] == "1"
    assert loaded["kappa"].attrs == {"long_name": "my own name"}
    assert loaded.attrs["Conventions"] == "CF-1.10"
    assert loaded.attrs["title"] == "anglesim study demo"
    created, command = loaded.attrs["history"].split(" ", 1)
    assert created == loaded.attrs["created"] and command
    # the same command saving again replaces its line; another adds a line on top
    again = io.load_dataset(io.save_dataset(loaded, tmp_path / "b.nc"))
    assert again.attrs["history"].count("\n") == 0 and again.attrs["history"] != ""
    monkeypatch.setattr(sys, "argv", ["/somewhere/bin/anglesim", "figures"])
    third = io.load_dataset(io.save_dataset(again, tmp_path / "c.nc"))
    lines = third.attrs["history"].splitlines()
    assert lines[0].endswith(" anglesim figures") and lines[1:] == [again.attrs["history"]]
    described = io.describe(_sample(), {"angle": {"units": "deg"}})
    assert described["angle"].attrs == {"units": "deg", "long_name": "grating orientation θ"}
    assert _sample()["angle"].attrs == {}  # describe copies


def test_command_line_has_no_machine_paths():
    line = io.command_line(["/home/me/venv/bin/anglesim", "run", "quickstart", "--results",
                            "/home/me/data/results", "--cache=/scratch/x/cache", "kappa=8"])
    assert line == "anglesim run quickstart --results …/results --cache=…/cache kappa=8"
    assert io.command_line(["/usr/lib/python3/site-packages/anglesim/__main__.py", "list"]) \
        == "python -m anglesim list"
    assert io.command_line(["-c"]) == "python -c"
    assert "/" not in io.command_line(["/opt/x/run_me.py", "/a/b/c.nc"]).replace("…/", "")


@needs_h5py
def test_no_absolute_path_in_the_provenance(tmp_path):
    loaded = io.load_dataset(io.save_dataset(_sample(), tmp_path / "a.nc"))
    for key in io.PROVENANCE_KEYS:
        value = str(loaded.attrs.get(key, ""))
        assert str(tmp_path) not in value and not re.search(r"(^|\s)/\w", value), (key, value)


@needs_h5py
def test_a_dimension_named_like_a_sel_keyword_warns(tmp_path):
    ds = xr.Dataset({"x": ("method", [1.0, 2.0])}, coords={"method": ["a", "b"]})
    with pytest.warns(UserWarning, match="dimension 'method' has the name of a keyword of "
                                         "Dataset.sel"):
        io.save_dataset(ds, tmp_path / "a.nc")
    assert io.check_dim_names(_sample()) == []


@needs_h5py
@pytest.mark.parametrize("code", [errno.ENOSPC, None])
def test_a_failed_write_is_one_os_error_naming_the_path(tmp_path, monkeypatch, code):
    def full(self, path, *args, **kwargs):
        Path(path).write_bytes(b"partial")
        if code is None:  # as HDF5 reports it: no errno, the number inside the message
            raise OSError("Can't write data (file write failed: time = x, filename = y, "
                          "errno = 28, error message = 'No space left on device')")
        raise OSError(code, os.strerror(code))

    first = io.save_dataset(_sample(), tmp_path / "a.nc")
    monkeypatch.setattr(xr.Dataset, "to_netcdf", full)
    with pytest.raises(OSError) as info:
        io.save_dataset(_sample(), first)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(first)
    assert info.value.strerror == "No space left on device"
    assert str(info.value) == f"[Errno 28] No space left on device: '{first}'"
    monkeypatch.undo()
    io.load_dataset(first)  # the earlier file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["a.nc"]  # no temporary left


def test_write_text_atomic_replaces_whole_or_not_at_all(tmp_path):
    target = tmp_path / "sub" / "code.json"
    assert io.write_text_atomic(target, '{"a": "ü"}') == target  # parent folders created
    assert target.read_text(encoding="utf-8") == '{"a": "ü"}'

    def half_then_fail(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(OSError) as info:
        io.atomic_write(target, half_then_fail)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert target.read_text(encoding="utf-8") == '{"a": "ü"}'  # the old file, whole
    assert [p.name for p in target.parent.iterdir()] == ["code.json"]  # no temporary left
    io.write_text_atomic(target, "new")
    assert target.read_text() == "new"
    with pytest.raises(ValueError, match="text must be a str, got bytes"):
        io.write_text_atomic(target, b"x")


def test_unlabelled_names_each_missing_units_or_long_name():
    ds = xr.Dataset({"a": ("x", [1.0], {"units": "rad", "long_name": "an angle"}),
                     "b": ("x", [2.0], {"units": " "})}, coords={"x": [0]})
    assert io.unlabelled(ds) == ["b: units", "b: long_name", "x: units", "x: long_name"]
    assert io.unlabelled(io.describe(ds, {"x": {"units": "1", "long_name": "index"}})) == [
        "b: units", "b: long_name"]
