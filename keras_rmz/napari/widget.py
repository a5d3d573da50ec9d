"""The Recurrent-MZ dock widget (magicgui), declared in ``napari.yaml``.

The user picks an image layer, the input planes (indices; their z comes
from the layer's z scale and translation, or is typed in), a preset (a
built-in name or a folder), the output z range and the precision. The
reconstruction runs in a worker thread with a progress bar in napari's
activity dock, and the volume comes back as a new image layer with the
right physical scale (``compute.reconstruct_layer`` does the work).
"""

import pathlib

import numpy as np
from magicgui import magic_factory
from napari.layers import Image
from napari.qt.threading import FunctionWorker, thread_worker
from napari.types import LayerDataTuple
from napari.utils import progress

from keras_rmz.napari.compute import PRECISIONS, parse_planes, plane_z, reconstruction_steps


def _preset_names(*_):
    from keras_rmz.presets import list_presets

    return sorted(info.name for info in list_presets())


def _prefill(widget):
    """Planes, z and output range from the chosen layer and preset."""

    def update(*_):
        layer = widget.image.value
        if layer is None or np.ndim(layer.data) != 3:
            return
        from keras_rmz.presets import read_preset_metadata

        count = layer.data.shape[0]
        z = plane_z(count, layer.scale[-3], layer.translate[-3])
        try:
            metadata = read_preset_metadata(_preset(widget.preset.value, widget.preset_folder.value))
        except (OSError, ValueError):
            metadata = {}
        m = int(metadata.get("num_inputs") or 2)
        spacing = float(metadata.get("input_spacing_um") or 0.0)
        step = max(1, int(round(spacing / layer.scale[-3]))) if spacing else max(1, (count - 1) // max(m - 1, 1))
        first = max(0, (count - 1 - step * (m - 1)) // 2)
        planes = [min(first + k * step, count - 1) for k in range(m)]
        widget.input_planes.value = ", ".join(str(p) for p in planes)
        widget.output_z_um.value = f"{z[planes[0]]:g}:{z[planes[-1]]:g}:{layer.scale[-3]:g}"

    widget.image.changed.connect(update)
    widget.preset.changed.connect(update)
    widget.preset_folder.changed.connect(update)
    update()


def _preset(name, folder):
    return str(folder) if folder is not None and str(folder) not in ("", ".") else name


@magic_factory(
    call_button="Reconstruct",
    widget_init=_prefill,
    input_planes={"label": "input planes", "tooltip": "indices of the input planes in the layer, e.g. 20, 50, 80"},
    input_z_um={"label": "input z (µm)", "tooltip": "their z; empty: from the layer's z scale and translation"},
    preset={"widget_type": "ComboBox", "choices": _preset_names, "tooltip": "a built-in preset"},
    preset_folder={"label": "or preset folder", "mode": "d", "tooltip": "a preset folder (e.g. keras-rmz finetune's)"},
    output_z_um={"label": "output z (µm)", "tooltip": "START:STOP:STEP, e.g. 2:8:0.2"},
    precision={"choices": PRECISIONS},
)
def reconstruct_widget(
    image: Image,
    input_planes: str = "",
    input_z_um: str = "",
    preset: str = "recurrent_mz_nuclei_m2",
    preset_folder: pathlib.Path = pathlib.Path(""),
    output_z_um: str = "",
    precision: str = "auto",
) -> FunctionWorker[LayerDataTuple]:
    if image is None:
        raise ValueError("choose an image layer: a z-stack or a few planes")
    data = np.asarray(image.data)
    planes = parse_planes(input_planes, data.shape[0])
    input_z = [float(v) for v in input_z_um.replace(",", " ").split()] or None
    steps = reconstruction_steps(data, image.scale, planes, _preset(preset, preset_folder), output_z_um,
                                 translate=image.translate, input_z=input_z, precision=precision,
                                 name=f"{image.name} (Recurrent-MZ)")

    @thread_worker
    def work():
        with progress(total=0, desc="Recurrent-MZ") as bar:
            while True:
                try:
                    done, total = next(steps)
                except StopIteration as finished:
                    return finished.value
                bar.total = total
                bar.n = done
                bar.refresh()

    return work()
