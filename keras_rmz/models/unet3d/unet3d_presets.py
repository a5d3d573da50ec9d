"""The built-in presets of UNet3D, registered by this folder's ``__init__.py``
(entries: see ``keras_rmz.presets.registry``)."""

presets = {
    "unet3d_beads": {
        "class_name": "keras_rmz>UNet3D",
        "description": "3D U-Net baseline (M = 3, Δz = 3 µm) for wide-field stacks of sub-resolution beads, 63x/1.4 NA oil, 0.1 µm pixels; trained on simulated stacks on a CPU",
        "hub": None,
        "revision": None,
        "sha256": {
            "config.json": "541388289880c109671fddf0279f467d6df65ac5008bdc79cd5f69392116de04",
            "model.weights.h5": "6ebf9110273b5add1db6e3e38e12a78c27103a5337c879524f3de7d2bbf5bfbb",
            "metadata.json": "699c7017e80c3520ec994dc145318ee926e498ff64ea9577702975f06ad86024",
            "README.md": "f893f95b388f1c9e75305d73a404d75ef3e8ac98a78af0f4b2710b7646ad345c",
        },
        "metadata": {
            "modality": "widefield -> widefield (noise-free)",
            "sample": "50 nm fluorescent beads (simulated)",
            "pixel_um": 0.1,
            "z_step_um": 0.09999999999999998,
            "num_inputs": 3,
            "input_spacing_um": 3.0,
            "output_range_um": [-7.5, 7.5],
            "license": "apache-2.0",
        },
    },
}
