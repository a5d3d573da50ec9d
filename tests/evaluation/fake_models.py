"""Numpy stand-ins for a reconstruction model (``reconstruct`` only), with
behaviour simple enough to predict by hand."""

import numpy as np


class InterpolationModel:
    """Linear interpolation in z between the two nearest inputs, clamped to
    the nearest input outside their span. Order- and repetition-invariant."""

    def __init__(self):
        self.calls = []

    def reconstruct(self, images, input_z, output_z, batch_size=8):
        images = np.asarray(images, dtype=np.float64)
        input_z = np.asarray(input_z, dtype=np.float64)
        self.calls.append((images.copy(), input_z.copy(), np.asarray(output_z).copy()))
        order = np.argsort(input_z, kind="stable")
        z_sorted, img_sorted = input_z[order], images[order]
        # Repeated positions hold the same image here; keep one of each.
        z_unique, first = np.unique(z_sorted, return_index=True)
        img_unique = img_sorted[first]
        out = []
        for z in np.asarray(output_z, dtype=np.float64):
            if z <= z_unique[0] or len(z_unique) == 1:
                out.append(img_unique[0] if z <= z_unique[0] else img_unique[-1])
                continue
            if z >= z_unique[-1]:
                out.append(img_unique[-1])
                continue
            k = np.searchsorted(z_unique, z) - 1
            w = (z - z_unique[k]) / (z_unique[k + 1] - z_unique[k])
            out.append((1 - w) * img_unique[k] + w * img_unique[k + 1])
        return np.stack(out)


class OrderDependentModel:
    """Weights input t (in the order fed) by (t + 1) and adds the mean DPM:
    the output changes with the input order and with every input_z."""

    def __init__(self):
        self.calls = []

    def reconstruct(self, images, input_z, output_z, batch_size=8):
        images = np.asarray(images, dtype=np.float64)
        input_z = np.asarray(input_z, dtype=np.float64)
        self.calls.append((images.copy(), input_z.copy(), np.asarray(output_z).copy()))
        weights = np.arange(1, len(images) + 1, dtype=np.float64)
        blend = np.tensordot(weights / weights.sum(), images, axes=1)
        dpm = np.asarray(output_z, dtype=np.float64)[:, None] - input_z[None, :]
        return blend[None] + 0.1 * dpm.mean(axis=1)[:, None, None]


class DPMEchoModel:
    """Returns, for each output plane, a constant image equal to the first
    input's DPM (output_z - input_z[0]) as the model would compute it."""

    def reconstruct(self, images, input_z, output_z, batch_size=8, verbose="auto"):
        assert verbose is False  # robustness tests silence progress bars
        h, w = np.asarray(images).shape[1:]
        dpm = np.asarray(output_z, dtype=np.float64) - float(input_z[0])
        return np.broadcast_to(dpm[:, None, None], (len(dpm), h, w)).copy()


class WrongShapeModel:
    def reconstruct(self, images, input_z, output_z, batch_size=8):
        return np.zeros((1, 2, 2))
