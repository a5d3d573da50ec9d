"""The baselines every reconstruction is compared with: linear interpolation
between the input planes and the nearest input plane."""

import numpy as np


def linear_interpolation(images, input_z, output_z):
    """Each output plane linearly interpolated between the two input planes
    around it (the nearest input plane outside their range).

    Args:
        images: (M, H, W) input planes.
        input_z: (M,) their z (µm), any order.
        output_z: (K,) output z (µm).

    Returns:
        float32 (K, H, W).

    Example:

    ```python
    linear_interpolation(np.stack([np.zeros((4, 4)), np.ones((4, 4))]), [0.0, 2.0], [0.5])  # 0.25 everywhere
    ```
    """
    images = np.asarray(images, np.float32)
    input_z = np.asarray(input_z, np.float64)
    order = np.argsort(input_z)
    images, input_z = images[order], input_z[order]
    output = np.empty((len(output_z), *images.shape[1:]), np.float32)
    for k, z in enumerate(np.asarray(output_z, np.float64)):
        if z <= input_z[0]:
            output[k] = images[0]
        elif z >= input_z[-1]:
            output[k] = images[-1]
        else:
            right = int(np.searchsorted(input_z, z, side="right"))
            left = right - 1
            weight = (z - input_z[left]) / (input_z[right] - input_z[left])
            output[k] = (1.0 - weight) * images[left] + weight * images[right]
    return output


def nearest_plane(images, input_z, output_z):
    """Each output plane is the input plane nearest to it in z (ties: the
    first input in the given order).

    Args:
        images: (M, H, W) input planes.
        input_z: (M,) their z (µm).
        output_z: (K,) output z (µm).

    Returns:
        (K, H, W): the input's dtype when it is a float type, else float32.
    """
    images = np.asarray(images)
    if not np.issubdtype(images.dtype, np.floating):
        images = images.astype(np.float32)
    output_z = np.asarray(output_z, np.float64).reshape(-1)
    input_z = np.asarray(input_z, np.float64).reshape(-1)
    index = np.argmin(np.abs(output_z[:, None] - input_z[None, :]), axis=1)
    return images[index]
