"""Digital propagation matrix (DPM) channel."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_rmz")
class DPM(keras.layers.Layer):
    """Append each input's DPM to it as one more channel.

    The DPM of input `m` is the constant plane `output_z − input_z[m]` (µm):
    the axial distance the network must propagate that scan.

    Call arguments:
        images: `(B, M, H, W, C)` scans (C = 1 in Recurrent-MZ).
        input_z: `(B, M)` axial positions of the scans, µm.
        output_z: `(B,)` (or `(B, 1)`) axial position of the wanted plane, µm.

    Returns:
        `(B, M, H, W, C + 1)`: the images, then the DPM as the last channel.

    Example:

    ```python
    dpm = DPM()
    x = dpm(np.zeros((1, 2, 4, 4, 1), "float32"),
            np.array([[0.0, 3.0]]), np.array([1.5]))
    # x[0, 0, ..., 1] == 1.5, x[0, 1, ..., 1] == -1.5
    ```

    Reference:
        Huang et al., "Recurrent neural network-based volumetric fluorescence
        microscopy", Light Sci. Appl. 10, 62 (2021), Fig. 1 and Methods.
    """

    @property
    def input_dtype(self):
        # Inputs arrive as float32 under mixed precision too (Keras casts
        # them to this dtype before call()): the positions must not be
        # rounded to bfloat16 before the distance is taken.
        return "float32"

    def _check_shapes(self, images_shape, input_z_shape, output_z_shape):
        images_shape = tuple(images_shape)
        input_z_shape = tuple(input_z_shape)
        output_z_shape = tuple(output_z_shape)
        accepted = (
            "DPM expects images (B, M, H, W, C), input_z (B, M) and output_z "
            "(B,) or (B, 1)"
        )
        got = (
            f"got images {images_shape}, input_z {input_z_shape}, "
            f"output_z {output_z_shape}"
        )
        if (
            len(images_shape) != 5
            or len(input_z_shape) != 2
            or len(output_z_shape) not in (1, 2)
            or (len(output_z_shape) == 2 and output_z_shape[1] not in (1, None))
        ):
            raise ValueError(f"{accepted}; {got}")
        batch_sizes = {images_shape[0], input_z_shape[0], output_z_shape[0]}
        if len(batch_sizes - {None}) > 1:
            raise ValueError(f"{accepted} with one batch size B; {got}")
        if (
            None not in (images_shape[1], input_z_shape[1])
            and images_shape[1] != input_z_shape[1]
        ):
            raise ValueError(
                f"{accepted}: one input_z per image (same M); {got}"
            )

    def call(self, images, input_z, output_z):
        self._check_shapes(images.shape, input_z.shape, output_z.shape)
        dtype = self.compute_dtype
        images = ops.cast(images, dtype)
        # The distance in float32, then cast: stage positions of hundreds
        # of µm rounded to bfloat16 first (8 bits of mantissa: steps of
        # 0.5-2 µm there) would lose the distance itself.
        dz = ops.reshape(ops.cast(output_z, "float32"), (-1, 1)) - ops.cast(
            input_z, "float32"
        )
        dz = ops.cast(dz, dtype)
        # Broadcast each (b, m) distance over one (H, W, 1) plane.
        dpm = ops.ones_like(images[..., :1]) * dz[:, :, None, None, None]
        return ops.concatenate([images, dpm], axis=-1)

    def compute_output_shape(self, images_shape, input_z_shape, output_z_shape):
        self._check_shapes(images_shape, input_z_shape, output_z_shape)
        images_shape = tuple(images_shape)
        channels = None if images_shape[-1] is None else images_shape[-1] + 1
        return images_shape[:4] + (channels,)
