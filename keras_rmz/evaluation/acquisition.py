"""The paper's adaptive acquisition (Discussion): add input planes one at a
time and stop scanning once the reconstructed volume stops changing."""

import dataclasses
import warnings

import numpy as np

from keras_rmz.out_of_distribution import OutOfDistributionWarning


@dataclasses.dataclass(frozen=True)
class AcquisitionStep:
    """One step of ``adaptive_acquisition``: the volume from the first
    ``num_inputs`` planes and its change from the previous step."""

    num_inputs: int
    input_z: tuple
    relative_change: float  # ||V_M - V_{M-1}||_F / ||V_M||_F (nan for M = 1)
    volume: np.ndarray


def adaptive_acquisition(model, images, input_z, output_z, *, epsilon=None, keep_volumes=True, **kwargs):
    """Reconstructs the volume as planes are added one at a time (paper,
    Discussion): after each new plane M it reports
    ``||V_M - V_{M-1}||_F / ||V_M||_F``, so scanning can stop once the
    change falls below a threshold ``epsilon``.

    Args:
        model: a generator that accepts any M (``RecurrentMZ``).
        images: (N, H, W) planes in acquisition order, or a
            ``keras_rmz.io.Stack`` of them.
        input_z: (N,) their z (µm); may be None for a Stack (its z).
        output_z: (K,) planes of the volume to reconstruct.
        epsilon: optional threshold: stop at the first M >= 2 whose relative
            change is below it.
        keep_volumes: keep each step's volume (else only the last one).
        **kwargs: passed to ``reconstruct_volume`` (``batch_size``,
            ``tile_size``, ``normalize``, ``pixel_um``, ``extrapolate``,
            ...). With normalize="auto" the normalization is computed once,
            from all N planes, so that volumes of different M are in the
            same units. A preset model's request is checked once, with all
            N planes (one ``OutOfDistributionWarning`` at most).

    Returns:
        list of ``AcquisitionStep``; the last one is where scanning stopped.

    Example:

    ```python
    steps = adaptive_acquisition(model, planes, z, np.arange(0, 10, 0.1), epsilon=0.05)
    print([round(s.relative_change, 3) for s in steps])
    ```
    """
    # keras_rmz.inference imports Keras: not when keras_rmz.evaluation is imported.
    from keras_rmz.inference import check_pixel_um, check_preset_request, reconstruct_volume, resolve_normalization
    from keras_rmz.inference import unpack_stack, validate_reconstruct_arguments

    images, input_z, pixel_um, stack_metadata = unpack_stack(images, input_z, kwargs.pop("pixel_um", None))
    pixel_um = check_pixel_um(pixel_um)
    images, input_z, output_z = validate_reconstruct_arguments(images, input_z, output_z)
    check_preset_request(
        model, images, input_z, output_z, pixel_um=pixel_um, stack_metadata=stack_metadata,
        extrapolate=kwargs.get("extrapolate", False),
    )
    normalize = kwargs.pop("normalize", "auto")
    if normalize == "auto":
        normalize = resolve_normalization(model, images, "auto")
    kwargs.setdefault("verbose", False)
    steps = []
    previous = None
    for m in range(1, images.shape[0] + 1):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OutOfDistributionWarning)  # warned above, once
            volume = reconstruct_volume(
                model, images[:m], input_z[:m], output_z, normalize=normalize, pixel_um=pixel_um, **kwargs
            )
        if previous is None:
            change = float("nan")
        else:
            norm = float(np.linalg.norm(volume))
            change = float(np.linalg.norm(volume - previous) / norm) if norm > 0 else float("inf")
        if steps and not keep_volumes:
            steps[-1] = dataclasses.replace(steps[-1], volume=None)
        steps.append(AcquisitionStep(m, tuple(float(z) for z in input_z[:m]), change, volume))
        previous = volume
        if epsilon is not None and m >= 2 and change < epsilon:
            break
    return steps
