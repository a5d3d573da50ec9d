"""Resampling planes to another pixel size (scikit-image)."""

import numpy as np


def resample_planes(planes, shape):
    """``planes`` (N, H, W) resampled to (N, h, w) by scikit-image
    (``skimage.transform.resize``): bilinear, with a Gaussian anti-aliasing
    filter along each axis that is downsampled, edges reflected. float32."""
    from skimage.transform import resize

    planes = np.asarray(planes, dtype=np.float32)
    shape = tuple(int(n) for n in shape)
    if planes.shape[1:] == shape:
        return planes
    downsampling = shape[0] < planes.shape[1] or shape[1] < planes.shape[2]
    out = resize(
        planes,
        (planes.shape[0], *shape),
        order=1,
        mode="reflect",
        anti_aliasing=downsampling,
        preserve_range=True,
    )
    return out.astype(np.float32)
