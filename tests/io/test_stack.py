import numpy as np
import pytest

from keras_rmz.io import Stack


def make(num_planes=4, dtype=np.uint16, **kwargs):
    data = np.arange(num_planes * 6 * 5, dtype=dtype).reshape(num_planes, 6, 5)
    kwargs.setdefault("z", np.arange(num_planes) * 0.25)
    kwargs.setdefault("pixel_um", 0.1)
    return Stack(data, **kwargs)


def test_fields_are_normalized_and_kept():
    data = np.ones((3, 4, 5), np.uint8)
    metadata = {"modality": "widefield"}
    stack = Stack(data, z=[0, 1, 2], pixel_um=np.float32(0.5), metadata=metadata)
    assert stack.data is data  # not copied
    assert stack.data.dtype == np.uint8
    assert stack.z.dtype == np.float64
    np.testing.assert_array_equal(stack.z, [0.0, 1.0, 2.0])
    assert type(stack.pixel_um) is float and stack.pixel_um == 0.5
    assert stack.metadata == metadata and stack.metadata is not metadata
    assert stack.shape == (3, 4, 5)
    assert Stack(data, z=[0, 1, 2], pixel_um=1).metadata == {}


@pytest.mark.parametrize("shape", [(4, 5), (2, 3, 4, 5), (0, 4, 5), (3, 0, 5), ()])
def test_data_must_be_zyx(shape):
    z = np.arange(shape[0]) if len(shape) else [0.0]
    with pytest.raises(ValueError, match=r"\(Z, Y, X\)"):
        Stack(np.zeros(shape), z=z, pixel_um=0.1)


def test_data_must_be_numeric():
    with pytest.raises(ValueError, match="numeric"):
        Stack(np.full((1, 2, 2), "a"), z=[0.0], pixel_um=0.1)


def test_nan_and_inf_data_are_stored():
    data = np.zeros((2, 3, 3), np.float32)
    data[0, 0, 0] = np.nan
    data[1, 1, 1] = np.inf
    stack = Stack(data, z=[0.0, 1.0], pixel_um=0.1)
    assert np.isnan(stack.data[0, 0, 0]) and np.isinf(stack.data[1, 1, 1])


@pytest.mark.parametrize(
    "z, match",
    [
        ([0.0, 1.0], r"shape \(Z,\) = \(3,\)"),
        ([[0.0], [1.0], [2.0]], r"shape \(Z,\)"),
        ([0.0, np.nan, 2.0], "finite"),
        ([0.0, np.inf, 2.0], "finite"),
        ([0.0, 1.0, 1.0], r"unique.*\[1\.0\]"),
        (["a", "b", "c"], "numbers"),
    ],
)
def test_z_validation(z, match):
    with pytest.raises(ValueError, match=match):
        Stack(np.zeros((3, 2, 2)), z=z, pixel_um=0.1)


def test_scalar_z_for_one_plane():
    stack = Stack(np.zeros((1, 2, 2)), z=1.5, pixel_um=0.1)
    np.testing.assert_array_equal(stack.z, [1.5])
    with pytest.raises(ValueError, match=r"shape \(Z,\)"):
        Stack(np.zeros((2, 2, 2)), z=1.5, pixel_um=0.1)


@pytest.mark.parametrize("pixel_um", [0, -0.1, np.nan, np.inf])
def test_pixel_um_must_be_finite_positive(pixel_um):
    with pytest.raises(ValueError, match="pixel_um must be finite and > 0"):
        make(pixel_um=pixel_um)


@pytest.mark.parametrize("pixel_um", [True, "0.1", None])
def test_pixel_um_must_be_a_number(pixel_um):
    with pytest.raises(TypeError, match="pixel_um must be a number"):
        make(pixel_um=pixel_um)


def test_metadata_must_be_a_dict():
    with pytest.raises(TypeError, match="dict"):
        make(metadata=[("a", 1)])


def test_z_step_um():
    assert make(z=np.arange(4) * 0.25).z_step_um == 0.25
    z = np.array([0.0, 0.1, 0.5, 0.6, 2.0])
    # Median of the sorted spacings, also for z given in any order.
    expected = float(np.median([0.1, 0.4, 0.1, 1.4]))
    assert make(num_planes=5, z=z).z_step_um == pytest.approx(expected, abs=1e-15)
    assert make(num_planes=5, z=z[[3, 0, 4, 1, 2]]).z_step_um == pytest.approx(expected, abs=1e-15)
    assert make(num_planes=1, z=[3.0]).z_step_um is None


@pytest.mark.parametrize(
    "indices, planes",
    [
        ([2, 0], [2, 0]),
        (1, [1]),
        (np.int64(3), [3]),
        (slice(1, 4, 2), [1, 3]),
        (np.array([True, False, False, True]), [0, 3]),
        (np.array([3, 1]), [3, 1]),
    ],
)
def test_select(indices, planes):
    stack = make(metadata={"normalization": {"shift": 1.0, "scale": 2.0}})
    sub = stack.select(indices)
    np.testing.assert_array_equal(sub.data, stack.data[planes])
    np.testing.assert_array_equal(sub.z, np.asarray(planes) * 0.25)
    assert sub.pixel_um == stack.pixel_um
    assert sub.metadata == stack.metadata
    sub.metadata["normalization"]["shift"] = 5.0  # deep copy: the source is unchanged
    assert stack.metadata["normalization"]["shift"] == 1.0


def test_select_rejects_empty_and_repeats():
    stack = make()
    with pytest.raises(ValueError, match="non-empty"):
        stack.select([])
    with pytest.raises(ValueError, match="unique"):
        stack.select([1, 1])


def test_repr_is_a_summary():
    text = repr(make(num_planes=40))
    assert "shape=(40, 6, 5)" in text and "uint16" in text and "40 planes" in text
    assert len(text) < 200

