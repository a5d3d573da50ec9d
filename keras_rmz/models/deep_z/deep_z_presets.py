"""The built-in presets of DeepZ, registered by this folder's ``__init__.py``
(entries: see ``keras_rmz.presets.registry``)."""

presets = {
    "deep_z_beads": {
        "class_name": "keras_rmz>DeepZ",
        "description": "Deep-Z baseline (one plane + DPM, outputs within ±1.5 µm) for wide-field stacks of sub-resolution beads, 63x/1.4 NA oil, 0.1 µm pixels; trained on simulated stacks on a CPU",
        "hub": None,
        "revision": None,
        "sha256": {
            "config.json": "6fc5b5e304ea5e8e3cabe1962351f0d7af250c441df45273b846f83e1cd23a12",
            "model.weights.h5": "9b2b97bf69dad21216301cd4eb23ee3057b21f561695063d8629bd69fb7dd9cd",
            "metadata.json": "3247a8d787aed9b28aa74e78b98a27df98f4de30155217c3d874c31589c3ba74",
            "README.md": "ed43d353c8e38ef212008ea6430e40b31b61cef42715de96e0ec81b064a8880f",
        },
        "metadata": {
            "modality": "widefield -> widefield (noise-free)",
            "sample": "50 nm fluorescent beads (simulated)",
            "pixel_um": 0.1,
            "z_step_um": 0.09999999999999998,
            "num_inputs": 1,
            "output_range_um": [-1.5, 1.5],
            "license": "apache-2.0",
        },
    },
}
