"""The napari plugin in a real viewer: opens the plugin's sample stack
(simulated beads), docks the Recurrent-MZ widget, reconstructs the planes
between the prefilled inputs with the bead preset, and saves a screenshot
of the window (docs/images/napari_widget.png).

    KERAS_BACKEND=jax xvfb-run -a python examples/napari_screenshot.py     # on a machine without a screen

(Under Mesa's software OpenGL, as with Xvfb, TensorFlow and napari's canvas
crash together in one process: use the JAX or PyTorch backend there.)

Prints one JSON line: the layers and the new layer's scale (µm).
"""

import argparse
import json
import os
import pathlib

import numpy as np

REPOSITORY = pathlib.Path(__file__).resolve().parents[1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default=str(REPOSITORY / "docs" / "images" / "napari_widget.png"))
    parser.add_argument("--preset", default="recurrent_mz_beads_m3")
    args = parser.parse_args(argv)

    import napari
    from qtpy.QtWidgets import QApplication

    from keras_rmz.io.atomic import atomic_write

    viewer = napari.Viewer(title="keras_rmz: Recurrent-MZ in napari")
    viewer.window.resize(1400, 800)
    (stack,) = viewer.open_sample("keras-rmz", "beads")
    _, widget = viewer.window.add_plugin_dock_widget("keras-rmz", "Recurrent-MZ reconstruction")
    widget.preset.value = args.preset
    widget.image.value = stack
    worker = widget()  # a napari FunctionWorker; run here, in this thread
    worker.run()  # napari adds the returned layer itself, as it does for the Reconstruct button
    QApplication.processEvents()
    volume = viewer.layers[-1]
    volume.colormap, stack.colormap = "magma", "gray"
    viewer.grid.enabled = True  # the stack and the reconstruction side by side
    middle = volume.data.shape[0] // 2
    viewer.dims.set_point(0, volume.translate[0] + volume.scale[0] * middle)
    for layer, plane in ((volume, volume.data[middle]), (stack, stack.data[stack.data.shape[0] // 2])):
        layer.contrast_limits = [float(np.percentile(plane, 1)), float(np.percentile(plane, 99.9))]
    viewer.scale_bar.visible = True
    QApplication.processEvents()
    picture = viewer.screenshot(canvas_only=False, flash=False)
    from PIL import Image

    with atomic_write(args.output, suffix=".png") as temporary:
        Image.fromarray(picture).save(temporary, format="png")
    print(json.dumps({"layers": [layer.name for layer in viewer.layers], "scale": [float(s) for s in volume.scale],
                      "planes": int(volume.data.shape[0]), "output": args.output}), flush=True)
    # Qt and vispy can crash while tearing down an offscreen GL context at
    # interpreter exit; the work is done and written, so leave at once.
    os._exit(0)


if __name__ == "__main__":
    main()
