"""Recurrent-MZ+: wide-field inputs, confocal output (cross-modality)."""

import keras

from keras_rmz.models.recurrent_mz.recurrent_mz import RecurrentMZ


@keras.saving.register_keras_serializable(package="keras_rmz")
class RecurrentMZPlus(RecurrentMZ):
    """Recurrent-MZ+: M wide-field images -> the confocal image at any plane.

    The same network as ``RecurrentMZ`` (paper, last Results section and
    Fig. 8), trained on paired stacks: wide-field input planes, confocal
    targets of the same sample registered to them. It infers a volume that
    matches confocal optical sectioning from 2-3 wide-field scans, removing
    the elongated wide-field PSF's haze.

    Its own class so that presets, model cards and ``from_preset`` keep the
    two tasks apart (a confocal preset never loads as a wide-field one).
    Outputs are in the *target's* normalized units: targets are normalized
    with their own statistics (``VolumeDataset(..., target_normalization=
    "own")``), so ``reconstruct`` maps its output back with the input's
    normalization only as an approximation of confocal intensities; compare
    confocal volumes after normalizing both (see ``keras_rmz.metrics``).

    Args: the same as ``RecurrentMZ``.

    Example:

    ```python
    model = keras_rmz.RecurrentMZPlus(base_filters=4, depth=2)
    widefield = keras_rmz.simulate.simulate_stack("nuclei", shape=(46, 64, 64), seed=0)
    confocal_like = model.reconstruct(widefield.data[[14, 24, 34]],
                                      widefield.z[[14, 24, 34]], widefield.z)
    ```

    Reference:
        Huang, L., Chen, H., Luo, Y., Rivenson, Y. & Ozcan, A. Recurrent neural
        network-based volumetric fluorescence microscopy. Light Sci Appl 10,
        62 (2021), Fig. 8.
    """

    target_modality = "confocal"
