import json
import os
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import tifffile

from keras_rmz.io import Stack, read_stack, write_stack

OME_NS = "{http://www.openmicroscopy.org/Schemas/OME/2016-06}"


def write_imagej(path, data, unit, spacing, pixels_per_unit, extra=b""):
    """An ImageJ z-stack with a hand-written description, as ImageJ writes it
    (tifffile's own ImageJ writer cannot spell every unit, e.g. a UTF-8 µ)."""
    description = (
        b"ImageJ=1.53f\nimages=%d\nslices=%d\nunit=" % (len(data), len(data))
        + unit
        + b"\nspacing=%r\n" % spacing
        + extra
        + b"loop=false\n"
    )
    tifffile.imwrite(
        path,
        data,
        description=description,
        metadata=None,
        photometric="minisblack",
        resolution=(pixels_per_unit, pixels_per_unit),
        resolutionunit="none",
    )


# --- real files -----------------------------------------------------------------


def test_reads_real_imagej_confocal_stack(shared_data):
    stack = read_stack(shared_data / "beads_confocal_imagej.tif")
    assert stack.shape == (41, 150, 150)
    assert stack.data.dtype == np.uint8
    # XResolution 44460534/1000000 pixels per µm, ImageJ unit "\u00B5m".
    assert stack.pixel_um == pytest.approx(1e6 / 44460534, rel=1e-12)
    assert stack.pixel_um == pytest.approx(0.0225, abs=1e-4)
    np.testing.assert_allclose(stack.z, np.arange(41) * 0.125, rtol=0, atol=1e-12)
    assert stack.z_step_um == pytest.approx(0.125)
    np.testing.assert_array_equal(stack.data, tifffile.imread(shared_data / "beads_confocal_imagej.tif"))
    assert stack.metadata == {}


def test_real_stack_without_physical_sizes_needs_them(shared_data):
    path = shared_data / "bead_widefield_25pct.tif"
    with pytest.raises(ValueError) as info:
        read_stack(path)
    message = str(info.value)
    assert "z_step_um=" in message and "z_um=" in message and "pixel_um=" in message
    # Only the pixel size given: the z spacing is still missing.
    with pytest.raises(ValueError, match="z_step_um="):
        read_stack(path, pixel_um=0.1)
    stack = read_stack(path, z_step_um=0.2, pixel_um=0.1)
    assert stack.shape == (64, 64, 64) and stack.data.dtype == np.float32
    np.testing.assert_array_equal(stack.data, tifffile.imread(path))
    np.testing.assert_array_equal(stack.z, np.arange(64) * 0.2)
    assert stack.pixel_um == 0.1


def test_explicit_arguments_override_the_file(shared_data):
    path = shared_data / "beads_confocal_imagej.tif"
    stack = read_stack(path, z_step_um=0.5, pixel_um=0.3)
    np.testing.assert_array_equal(stack.z, np.arange(41) * 0.5)
    assert stack.pixel_um == 0.3
    z = np.sort(np.random.default_rng(0).uniform(0, 10, 41))
    np.testing.assert_array_equal(read_stack(path, z_um=z).z, z)


def test_argument_errors(shared_data):
    path = shared_data / "beads_confocal_imagej.tif"
    with pytest.raises(ValueError, match="either z_um= .* or z_step_um="):
        read_stack(path, z_um=np.arange(41), z_step_um=0.1)
    with pytest.raises(ValueError, match=r"z_um must have one position per plane, shape \(41,\)"):
        read_stack(path, z_um=[0.0, 1.0])
    with pytest.raises(ValueError, match="z_step_um must be a finite number > 0"):
        read_stack(path, z_step_um=0)
    with pytest.raises(ValueError, match="pixel_um must be a finite number > 0"):
        read_stack(path, pixel_um=-1)


def test_missing_and_non_tiff_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_stack(tmp_path / "nope.tif")
    (tmp_path / "text.tif").write_text("not a tiff")
    with pytest.raises(ValueError, match="not a readable TIFF"):
        read_stack(tmp_path / "text.tif")


# --- ImageJ hyperstacks ---------------------------------------------------------


@pytest.mark.parametrize(
    "unit, um_per_unit",
    [
        (b"micron", 1.0),
        ("µm".encode("utf-8"), 1.0),
        ("µm".encode("latin-1"), 1.0),
        ("μm".encode("utf-8"), 1.0),  # Greek mu
        (b"um", 1.0),
        (b"\\u00B5m", 1.0),
        (b"nm", 1e-3),
        (b"mm", 1e3),
    ],
)
def test_imagej_units(tmp_path, unit, um_per_unit):
    path = tmp_path / "ij.tif"
    data = np.arange(5 * 8 * 6, dtype=np.uint16).reshape(5, 8, 6)
    # pixel 0.05 µm and z step 0.3 µm, expressed in the file's unit
    write_imagej(path, data, unit, spacing=0.3 / um_per_unit, pixels_per_unit=um_per_unit / 0.05)
    stack = read_stack(path)
    np.testing.assert_array_equal(stack.data, data)
    assert stack.pixel_um == pytest.approx(0.05, rel=1e-6)
    np.testing.assert_allclose(stack.z, np.arange(5) * 0.3, rtol=1e-9)


def test_imagej_zunit_differs(tmp_path):
    path = tmp_path / "ij.tif"
    write_imagej(path, np.zeros((3, 4, 4), np.uint8), b"um", spacing=200.0, pixels_per_unit=10, extra=b"zunit=nm\n")
    stack = read_stack(path)
    assert stack.pixel_um == pytest.approx(0.1)
    np.testing.assert_allclose(stack.z, [0.0, 0.2, 0.4])


def test_imagej_uncalibrated_needs_sizes(tmp_path):
    path = tmp_path / "ij.tif"
    write_imagej(path, np.zeros((3, 4, 4), np.uint8), b"pixel", spacing=1.0, pixels_per_unit=1)
    with pytest.raises(ValueError, match="pixel_um=") as info:
        read_stack(path)
    assert "z_step_um=" in str(info.value)
    assert read_stack(path, z_step_um=0.1, pixel_um=0.2).pixel_um == 0.2


def test_imagej_singleton_axes_are_squeezed(tmp_path):
    path = tmp_path / "ij.tif"
    data = np.random.default_rng(0).integers(0, 255, (1, 4, 1, 6, 7), dtype=np.uint8)
    tifffile.imwrite(path, data, imagej=True, resolution=(10, 10),
                     metadata={"axes": "TZCYX", "spacing": 0.4, "unit": "micron"})
    stack = read_stack(path)
    np.testing.assert_array_equal(stack.data, data[0, :, 0])
    assert stack.pixel_um == pytest.approx(0.1)
    np.testing.assert_allclose(stack.z, np.arange(4) * 0.4)


def test_imagej_multichannel_needs_channel(tmp_path):
    path = tmp_path / "ij.tif"
    data = np.random.default_rng(0).integers(0, 255, (4, 2, 6, 7), dtype=np.uint8)
    tifffile.imwrite(path, data, imagej=True, resolution=(10, 10),
                     metadata={"axes": "ZCYX", "spacing": 0.4, "unit": "um"})
    with pytest.raises(ValueError, match=r"2 channels.*channel="):
        read_stack(path)
    for channel in (0, 1, -1):
        np.testing.assert_array_equal(read_stack(path, channel=channel).data, data[:, channel])
    with pytest.raises(ValueError, match=r"channel must be an int in 0\.\.1"):
        read_stack(path, channel=2)


def test_imagej_time_series_is_refused(tmp_path):
    path = tmp_path / "ij.tif"
    tifffile.imwrite(path, np.zeros((3, 6, 7), np.uint8), imagej=True, metadata={"axes": "TYX"})
    with pytest.raises(ValueError, match="time series"):
        read_stack(path, z_step_um=0.1, pixel_um=0.1)


# --- plain TIFF -----------------------------------------------------------------


def test_plain_tiff_resolution_tags(tmp_path):
    path = tmp_path / "plain.tif"
    data = np.zeros((4, 5, 6), np.float32)
    tifffile.imwrite(path, data, photometric="minisblack", resolution=(1e4 / 0.5, 1e4 / 0.5),
                     resolutionunit="centimeter")
    stack = read_stack(path, z_step_um=1.0)
    assert stack.pixel_um == pytest.approx(0.5)
    assert stack.shape == (4, 5, 6)


def test_plain_tiff_screen_dpi_is_not_a_pixel_size(tmp_path):
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, np.zeros((4, 5, 6), np.uint8), photometric="minisblack",
                     resolution=(72, 72), resolutionunit="inch")
    with pytest.raises(ValueError, match="pixel_um="):
        read_stack(path, z_step_um=1.0)


def test_plain_page_sequence(tmp_path):
    path = tmp_path / "pages.tif"
    data = np.random.default_rng(1).random((5, 4, 3)).astype(np.float32)
    tifffile.imwrite(path, data, shaped=False, photometric="minisblack")
    stack = read_stack(path, z_step_um=0.25, pixel_um=0.1)
    np.testing.assert_array_equal(stack.data, data)


def test_2d_file_needs_z_um(tmp_path):
    path = tmp_path / "image.tif"
    image = np.arange(20, dtype=np.uint16).reshape(4, 5)
    tifffile.imwrite(path, image)
    with pytest.raises(ValueError, match=r"2D image.*z_um="):
        read_stack(path, pixel_um=0.1)
    with pytest.raises(ValueError, match=r"2D image.*z_um="):
        read_stack(path, pixel_um=0.1, z_step_um=0.5)
    stack = read_stack(path, pixel_um=0.1, z_um=[1.5])
    assert stack.shape == (1, 4, 5)
    np.testing.assert_array_equal(stack.data[0], image)
    np.testing.assert_array_equal(stack.z, [1.5])


# --- OME-TIFF from other writers ------------------------------------------------


def test_ome_physical_sizes_in_other_units(tmp_path):
    path = tmp_path / "x.ome.tif"
    data = np.zeros((3, 4, 5), np.uint16)
    tifffile.imwrite(path, data, ome=True, photometric="minisblack", metadata={
        "axes": "ZYX", "PhysicalSizeX": 65.0, "PhysicalSizeXUnit": "nm",
        "PhysicalSizeY": 65.0, "PhysicalSizeYUnit": "nm",
        "PhysicalSizeZ": 0.0002, "PhysicalSizeZUnit": "mm"})
    stack = read_stack(path)
    assert stack.pixel_um == pytest.approx(0.065)
    np.testing.assert_allclose(stack.z, [0.0, 0.2, 0.4])
    assert stack.metadata == {}


def test_ome_plane_positions_win_over_physical_size_z(tmp_path):
    path = tmp_path / "x.ome.tif"
    tifffile.imwrite(path, np.zeros((3, 4, 5), np.uint8), ome=True, photometric="minisblack", metadata={
        "axes": "ZYX", "PhysicalSizeX": 0.1, "PhysicalSizeZ": 1.0,
        "Plane": {"PositionZ": [1000.0, 1500.0, 3000.0], "PositionZUnit": ["nm"] * 3}})
    np.testing.assert_allclose(read_stack(path).z, [1.0, 1.5, 3.0])


def test_ome_multichannel(tmp_path):
    path = tmp_path / "x.ome.tif"
    data = np.random.default_rng(2).integers(0, 1000, (2, 3, 4, 5), dtype=np.uint16)
    tifffile.imwrite(path, data, ome=True, photometric="minisblack",
                     metadata={"axes": "CZYX", "PhysicalSizeX": 0.1, "PhysicalSizeZ": 0.5})
    with pytest.raises(ValueError, match="channel="):
        read_stack(path)
    stack = read_stack(path, channel=1)
    np.testing.assert_array_equal(stack.data, data[1])
    np.testing.assert_allclose(stack.z, [0.0, 0.5, 1.0])


# --- write_stack ----------------------------------------------------------------

Z_NONUNIFORM = np.array([0.0, 0.1, 0.30000000000000004, 1 / 3, 2.7, -1.25])
METADATA = {
    "modality": "widefield",
    "wavelength_um": 0.615,
    "normalization": {"shift": 101.53125, "scale": 0.1 + 0.2},
    "notes": 'quotes " <tags> & µ',
    "inputs": [1, 2, None, True],
}


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "uint32", "int8", "int16", "int32", "float32", "float64", "bool"])
def test_round_trip_keeps_everything(tmp_path, dtype):
    rng = np.random.default_rng(3)
    data = (rng.random((6, 7, 9)) * 100).astype(dtype)
    stack = Stack(data, Z_NONUNIFORM, pixel_um=0.1 / 3, metadata=METADATA)
    path = write_stack(tmp_path / "s.ome.tif", stack)
    assert path == tmp_path / "s.ome.tif"
    back = read_stack(path)
    assert back.data.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(back.data, data)
    assert back.z.dtype == np.float64
    np.testing.assert_array_equal(back.z, Z_NONUNIFORM)  # exactly
    assert back.pixel_um == 0.1 / 3  # exactly
    assert back.metadata == METADATA
    assert sorted(os.listdir(tmp_path)) == ["s.ome.tif"]  # no temporary file left


def test_written_file_is_standard_ome(tmp_path):
    z = np.array([0.0, 0.2, 0.5])
    path = write_stack(tmp_path / "s.ome.tif", np.zeros((3, 4, 5), np.uint16), z_um=z, pixel_um=0.065)
    with tifffile.TiffFile(path) as tif:
        assert tif.is_ome and tif.series[0].axes == "ZYX"
        pixels = ET.fromstring(tif.ome_metadata).find(f"{OME_NS}Image/{OME_NS}Pixels")
    assert float(pixels.get("PhysicalSizeX")) == 0.065 and pixels.get("PhysicalSizeXUnit") == "µm"
    assert float(pixels.get("PhysicalSizeY")) == 0.065 and pixels.get("PhysicalSizeYUnit") == "µm"
    assert float(pixels.get("PhysicalSizeZ")) == pytest.approx(np.median(np.diff(z)))
    assert pixels.get("PhysicalSizeZUnit") == "µm"
    planes = pixels.findall(f"{OME_NS}Plane")
    assert [int(p.get("TheZ")) for p in planes] == [0, 1, 2]
    assert [float(p.get("PositionZ")) for p in planes] == z.tolist()
    assert {p.get("PositionZUnit") for p in planes} == {"µm"}


def test_three_and_four_plane_stacks_are_not_taken_for_rgb(tmp_path):
    for num_planes in (3, 4):
        data = np.random.default_rng(num_planes).integers(0, 255, (num_planes, 5, 6), dtype=np.uint8)
        path = write_stack(tmp_path / f"{num_planes}.ome.tif", data, z_um=np.arange(num_planes), pixel_um=1)
        np.testing.assert_array_equal(read_stack(path).data, data)


def test_single_plane_round_trip(tmp_path):
    image = np.arange(20, dtype=np.float32).reshape(4, 5)
    path = write_stack(tmp_path / "one.ome.tif", image, z_um=[2.5], pixel_um=0.1)
    back = read_stack(path)
    assert back.shape == (1, 4, 5)
    np.testing.assert_array_equal(back.data[0], image)
    np.testing.assert_array_equal(back.z, [2.5])


def test_array_needs_z_and_pixel_size(tmp_path):
    with pytest.raises(ValueError, match="z_um=.*pixel_um="):
        write_stack(tmp_path / "a.ome.tif", np.zeros((2, 3, 3)), pixel_um=0.1)
    with pytest.raises(ValueError, match="z_um=.*pixel_um="):
        write_stack(tmp_path / "a.ome.tif", np.zeros((2, 3, 3)), z_um=[0, 1])
    assert not (tmp_path / "a.ome.tif").exists()


def test_arguments_override_a_stack(tmp_path):
    stack = Stack(np.zeros((2, 3, 3), np.uint8), [0.0, 1.0], 0.1, {"a": 1, "b": 2})
    path = write_stack(tmp_path / "s.ome.tif", stack, z_um=[5.0, 7.0], pixel_um=0.2, metadata={"b": 3})
    back = read_stack(path)
    np.testing.assert_array_equal(back.z, [5.0, 7.0])
    assert back.pixel_um == 0.2
    assert back.metadata == {"a": 1, "b": 3}
    assert stack.metadata == {"a": 1, "b": 2}


def test_numpy_values_in_metadata_become_json(tmp_path):
    stack = Stack(np.zeros((1, 2, 2)), [0.0], 0.1, {"scale": np.float32(0.5), "z": np.array([1.0, 2.0])})
    assert read_stack(write_stack(tmp_path / "s.ome.tif", stack)).metadata == {"scale": 0.5, "z": [1.0, 2.0]}


@pytest.mark.parametrize("metadata", [{"f": object()}, {"x": float("nan")}])
def test_non_json_metadata_is_refused(tmp_path, metadata):
    with pytest.raises(ValueError, match="JSON-serialisable"):
        write_stack(tmp_path / "s.ome.tif", np.zeros((1, 2, 2)), z_um=[0], pixel_um=1, metadata=metadata)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("dtype", ["int64", "uint64", "float16"])
def test_dtypes_ome_cannot_hold_are_refused(tmp_path, dtype):
    with pytest.raises(ValueError, match="cannot hold dtype.*astype"):
        write_stack(tmp_path / "s.ome.tif", np.zeros((1, 2, 2), dtype), z_um=[0], pixel_um=1)
    assert os.listdir(tmp_path) == []


def test_creates_parent_folders_and_overwrites(tmp_path):
    path = tmp_path / "a" / "b" / "s.ome.tif"
    write_stack(path, np.zeros((1, 2, 2), np.uint8), z_um=[0], pixel_um=1)
    write_stack(path, np.ones((2, 2, 2), np.uint8), z_um=[0, 1], pixel_um=1)
    np.testing.assert_array_equal(read_stack(path).data, np.ones((2, 2, 2), np.uint8))
    assert os.listdir(path.parent) == ["s.ome.tif"]


def _failing_imwrite(calls):
    def imwrite(file, *args, **kwargs):
        # Half a file, then a failure (a full disk, a killed process, ...).
        with open(file, "wb") as f:
            f.write(b"II*\x00partial")
        calls.append(str(file))
        raise OSError("disk full")

    return imwrite


def test_failed_write_leaves_existing_file_untouched(tmp_path, monkeypatch):
    path = tmp_path / "s.ome.tif"
    original = np.arange(12, dtype=np.uint16).reshape(3, 2, 2)
    write_stack(path, original, z_um=[0, 1, 2], pixel_um=0.1)
    before = path.read_bytes()
    calls = []
    monkeypatch.setattr(tifffile, "imwrite", _failing_imwrite(calls))
    with pytest.raises(OSError, match="disk full"):
        write_stack(path, np.zeros((1, 2, 2), np.uint16), z_um=[0], pixel_um=0.1)
    assert len(calls) == 1 and calls[0] != str(path)
    assert os.path.dirname(calls[0]) == str(tmp_path)  # the temp file was in the same folder
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["s.ome.tif"]
    monkeypatch.undo()
    np.testing.assert_array_equal(read_stack(path).data, original)


def test_failed_write_creates_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(tifffile, "imwrite", _failing_imwrite([]))
    with pytest.raises(OSError):
        write_stack(tmp_path / "s.ome.tif", np.zeros((1, 2, 2)), z_um=[0], pixel_um=0.1)
    assert os.listdir(tmp_path) == []


def test_metadata_is_stored_as_json_in_ome(tmp_path):
    """Other OME readers see the metadata as a JSON CommentAnnotation."""
    path = write_stack(tmp_path / "s.ome.tif", np.zeros((1, 2, 2)), z_um=[0], pixel_um=1,
                       metadata={"normalization": {"shift": 1.0, "scale": 2.0}})
    with tifffile.TiffFile(path) as tif:
        root = ET.fromstring(tif.ome_metadata)
    values = [el.find(f"{OME_NS}Value").text for el in root.iter(f"{OME_NS}CommentAnnotation")]
    assert [json.loads(v) for v in values] == [{"normalization": {"shift": 1.0, "scale": 2.0}}]


def test_ome_position_z_without_unit_is_read_as_um(tmp_path):
    path = tmp_path / "x.ome.tif"
    tifffile.imwrite(path, np.zeros((2, 4, 5), np.uint8), ome=True, photometric="minisblack",
                     metadata={"axes": "ZYX", "PhysicalSizeX": 0.1, "Plane": {"PositionZ": [3.0, 3.5]}})
    np.testing.assert_array_equal(read_stack(path).z, [3.0, 3.5])


def test_non_square_pixels_warn_and_use_x(tmp_path):
    path = tmp_path / "x.ome.tif"
    tifffile.imwrite(path, np.zeros((2, 4, 5), np.uint8), ome=True, photometric="minisblack",
                     metadata={"axes": "ZYX", "PhysicalSizeX": 0.1, "PhysicalSizeY": 0.2, "PhysicalSizeZ": 1.0})
    with pytest.warns(UserWarning, match="non-square pixels"):
        assert read_stack(path).pixel_um == 0.1


def test_ome_acquisition_record_fills_modality_wavelength_and_na(tmp_path):
    """Channel@AcquisitionMode, Channel@EmissionWavelength (nm by default)
    and the image's Objective@LensNA reach Stack.metadata, which
    reconstruct compares with a preset's (keras_rmz.out_of_distribution)."""
    path = tmp_path / "acquired.ome.tif"
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06">'
        '<Instrument ID="Instrument:0"><Objective ID="Objective:0" LensNA="1.3" NominalMagnification="60"/>'
        '<Objective ID="Objective:1" LensNA="0.8"/></Instrument>'
        '<Image ID="Image:0"><InstrumentRef ID="Instrument:0"/><ObjectiveSettings ID="Objective:0"/>'
        '<Pixels ID="Pixels:0" DimensionOrder="XYZCT" Type="uint16" SizeX="8" SizeY="8" SizeZ="3" SizeC="1" '
        'SizeT="1" PhysicalSizeX="0.065" PhysicalSizeZ="0.2">'
        '<Channel ID="Channel:0:0" SamplesPerPixel="1" AcquisitionMode="SpinningDiskConfocal" '
        'EmissionWavelength="0.52" EmissionWavelengthUnit="um"/>'
        '<TiffData IFD="0" PlaneCount="3"/></Pixels></Image></OME>'
    )
    tifffile.imwrite(path, np.zeros((3, 8, 8), np.uint16), description=xml, metadata=None)
    stack = read_stack(path)
    assert stack.pixel_um == pytest.approx(0.065)
    assert stack.metadata == {"modality": "SpinningDiskConfocal",
                              "optics": {"emission_wavelength_um": pytest.approx(0.52), "na": pytest.approx(1.3)}}


def test_ome_acquisition_record_does_not_override_keras_rmz_metadata(tmp_path):
    path = tmp_path / "both.ome.tif"
    tifffile.imwrite(path, np.zeros((3, 8, 8), np.uint16), ome=True, metadata={
        "axes": "ZYX", "PhysicalSizeX": 0.1, "PhysicalSizeZ": 0.5,
        "Channel": {"EmissionWavelength": 600, "AcquisitionMode": "WideField"},
    })
    assert read_stack(path).metadata == {"modality": "WideField", "optics": {"emission_wavelength_um": 0.6}}
    written = tmp_path / "written.ome.tif"
    write_stack(written, np.zeros((2, 8, 8), np.uint16), z_um=[0, 1], pixel_um=0.1,
                metadata={"modality": "widefield", "optics": {"na": 1.4}})
    assert read_stack(written).metadata == {"modality": "widefield", "optics": {"na": 1.4}}
