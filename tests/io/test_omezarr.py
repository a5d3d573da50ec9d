"""OME-Zarr stacks: ``read_stack`` / ``write_stack`` with ``.zarr`` paths
(keras_rmz.io.omezarr). Stores made by ome-zarr itself check the reader
against what other software writes; the NGFF metadata of our stores is read
back with zarr alone (no keras_rmz code) to check what viewers see."""

import pathlib

import numpy as np
import pytest

pytest.importorskip("ome_zarr")
import dask.array as da  # noqa: E402
import zarr  # noqa: E402
from ome_zarr.writer import write_image  # noqa: E402

from keras_rmz.io import Stack, read_stack, write_stack  # noqa: E402
from keras_rmz.io import omezarr  # noqa: E402


def _ngff(path):
    """The image's NGFF ``multiscales[0]`` and our attributes, read with zarr alone."""
    attributes = zarr.open_group(str(path), mode="r").attrs.asdict()
    ngff = attributes.get("ome", attributes)
    return ngff["multiscales"][0], attributes.get("keras_rmz")


def _foreign_store(path, data, axes, scale, units, translation=None):
    """An image written by ome-zarr alone, as another program would."""
    root = zarr.open_group(str(path), mode="w")
    write_image(data, root, scale_factors=(), axes=axes, scale=scale, axes_units=units)
    if translation is not None:
        attributes = root.attrs.asdict()
        ngff = attributes["ome"]
        ngff["multiscales"][0]["datasets"][0]["coordinateTransformations"].append(
            {"type": "translation", "translation": translation})
        root.attrs["ome"] = ngff
    return path


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_round_trip_keeps_data_irregular_z_pixel_size_and_metadata(tmp_path, dtype):
    rng = np.random.default_rng(0)
    data = (rng.random((4, 150, 96)) * 1000).astype(dtype)
    z = np.array([3.0, 0.5, 2.25, 7.0])  # neither sorted nor evenly spaced
    metadata = {"modality": "widefield", "optics": {"na": 1.4}, "values": [1, 2]}
    path = write_stack(tmp_path / "stack.ome.zarr", Stack(data, z, 0.065, metadata))

    stack = read_stack(path)
    assert isinstance(stack.data, da.Array)  # lazy
    assert stack.data.dtype == dtype
    np.testing.assert_array_equal(np.asarray(stack.data), data)
    np.testing.assert_array_equal(stack.z, z)
    assert stack.pixel_um == 0.065
    assert stack.metadata == metadata


def test_ngff_metadata_and_pyramid_seen_by_a_viewer(tmp_path):
    data = np.random.default_rng(1).random((3, 300, 520)).astype(np.float32)
    z = 1.5 + 0.2 * np.arange(3)
    write_stack(tmp_path / "v.ome.zarr", data, z_um=z, pixel_um=0.1)
    multiscale, ours = _ngff(tmp_path / "v.ome.zarr")
    assert [(a["name"], a.get("unit")) for a in multiscale["axes"]] == [
        ("z", "micrometer"), ("y", "micrometer"), ("x", "micrometer")]
    group = zarr.open_group(str(tmp_path / "v.ome.zarr"), mode="r")
    shapes, previous_scale = [], None
    for dataset in multiscale["datasets"]:
        transforms = {t["type"]: t for t in dataset["coordinateTransformations"]}
        scale, translation = transforms["scale"]["scale"], transforms["translation"]["translation"]
        shape = group[dataset["path"]].shape
        shapes.append(shape)
        assert scale[0] == pytest.approx(0.2) and translation[0] == pytest.approx(1.5)
        # Each level covers the same field: pixel size × pixels is the full level's.
        assert scale[1] * shape[1] == pytest.approx(0.1 * 300, rel=0.02)
        assert scale[2] * shape[2] == pytest.approx(0.1 * 520, rel=0.02)
        assert previous_scale is None or scale[1] == pytest.approx(2 * previous_scale)
        previous_scale = scale[1]
    # Halved while the smaller side stays >= 64 pixels: 300 -> 150 -> 75.
    assert shapes == [(3, 300, 520), (3, 150, 260), (3, 75, 130)]
    # Chunks of one plane: a reader of one plane reads one plane's chunks.
    assert group[multiscale["datasets"][0]["path"]].chunks[0] == 1
    np.testing.assert_allclose(ours["z_um"], z)


def test_reads_an_image_another_program_wrote_with_time_and_channels(tmp_path):
    data = np.arange(2 * 3 * 5 * 16 * 20, dtype=np.uint16).reshape(2, 3, 5, 16, 20)
    path = _foreign_store(tmp_path / "tl.zarr", data, "tczyx", {"z": 500.0, "y": 65.0, "x": 65.0},
                          {"t": "second", "z": "nanometer", "y": "nanometer", "x": "nanometer"},
                          translation=[0.0, 0.0, 1000.0, 0.0, 0.0])
    stack = read_stack(path, time=1, channel=2)
    np.testing.assert_array_equal(np.asarray(stack.data), data[1, 2])
    np.testing.assert_allclose(stack.z, 1.0 + 0.5 * np.arange(5))  # nm -> µm, the translation's offset
    assert stack.pixel_um == pytest.approx(0.065)
    with pytest.raises(ValueError, match=r"2 time points .* pass time= \(an int in 0..1\)"):
        read_stack(path, channel=0)
    with pytest.raises(ValueError, match=r"3 channels .* pass channel="):
        read_stack(path, time=0)
    with pytest.raises(ValueError, match=r"time must be an int in 0..1; got 2"):
        read_stack(path, time=2, channel=0)


def test_sizes_without_units_are_not_trusted(tmp_path):
    path = _foreign_store(tmp_path / "plain.zarr", np.zeros((3, 8, 8), np.float32), "zyx", None, None)
    with pytest.raises(ValueError, match="does not record the pixel size .* pixel_um="):
        read_stack(path)
    with pytest.raises(ValueError, match="does not record the z step .* z_step_um="):
        read_stack(path, pixel_um=0.1)
    stack = read_stack(path, pixel_um=0.1, z_step_um=0.3)
    np.testing.assert_allclose(stack.z, [0, 0.3, 0.6])


def test_not_an_image(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such OME-Zarr store"):
        read_stack(tmp_path / "missing.zarr")
    zarr.open_group(str(tmp_path / "empty.zarr"), mode="w")
    with pytest.raises(ValueError, match="holds no OME-Zarr image"):
        read_stack(tmp_path / "empty.zarr")


def test_taking_planes_reads_only_their_chunks(tmp_path):
    """A lazy stack: taking two planes touches only their chunks in the store."""
    data = np.random.default_rng(2).random((6, 40, 40)).astype(np.float32)
    path = write_stack(tmp_path / "s.ome.zarr", data, z_um=np.arange(6) * 0.5, pixel_um=0.1)
    stack = read_stack(path)
    full = pathlib.Path(path) / _ngff(path)[0]["datasets"][0]["path"]
    chunk_files = sorted(p for p in full.rglob("*") if p.is_file() and p.name != "zarr.json")
    assert len(chunk_files) == 6
    for chunk in chunk_files:  # plane i lives in chunk c/i/0/0
        if chunk.relative_to(full).parts[1] not in ("1", "4"):
            chunk.write_bytes(b"damaged")
    np.testing.assert_array_equal(np.asarray(stack.select([1, 4]).data), data[[1, 4]])
    with pytest.raises(Exception):
        np.asarray(stack.data)  # the other planes' chunks were damaged: reading them fails


def test_overwrite_is_atomic_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "out.ome.zarr"
    first = np.ones((2, 16, 16), np.float32)
    write_stack(path, first, z_um=[0, 1], pixel_um=0.1)

    def fail(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("ome_zarr.writer.write_image", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        write_stack(path, 2 * first, z_um=[0, 1], pixel_um=0.1)
    monkeypatch.undo()
    np.testing.assert_array_equal(np.asarray(read_stack(path).data), first)  # the old store is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.ome.zarr"]
    write_stack(path, 3 * first, z_um=[0, 1], pixel_um=0.1)
    np.testing.assert_array_equal(np.asarray(read_stack(path).data), 3 * first)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.ome.zarr"]


def test_a_lazy_stack_is_written_from_its_chunks(tmp_path):
    data = da.from_array(np.random.default_rng(3).random((4, 64, 64)).astype(np.float32), chunks=(1, 32, 32))
    write_stack(tmp_path / "lazy.ome.zarr", Stack(data, np.arange(4.0), 0.2))
    np.testing.assert_array_equal(np.asarray(read_stack(tmp_path / "lazy.ome.zarr").data), data.compute())
    # and to TIFF
    write_stack(tmp_path / "lazy.ome.tif", Stack(data, np.arange(4.0), 0.2))
    np.testing.assert_array_equal(np.asarray(read_stack(tmp_path / "lazy.ome.tif").data), data.compute())


def test_metadata_must_be_json(tmp_path):
    with pytest.raises(ValueError, match="JSON-serialisable"):
        write_stack(tmp_path / "m.ome.zarr", np.zeros((1, 4, 4)), z_um=[0], pixel_um=0.1, metadata={"f": object()})
    assert not list(tmp_path.iterdir())  # checked before anything was written


def test_missing_extra_names_it(monkeypatch, tmp_path):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ome_zarr" else real(name, *a))
    with pytest.raises(ImportError, match=r"pip install 'keras-rmz\[zarr\]'"):
        omezarr.read_zarr(tmp_path / "x.zarr")
