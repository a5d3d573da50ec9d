"""The built-in presets of RecurrentMZ and RecurrentMZPlus, registered by this folder's ``__init__.py``
(entries: see ``keras_rmz.presets.registry``)."""

presets = {
    "recurrent_mz_beads_m3": {
        "class_name": "keras_rmz>RecurrentMZ",
        "description": "Recurrent-MZ (M = 3, Δz = 3 µm) for wide-field stacks of sub-resolution beads, 63x/1.4 NA oil, 615 nm, 0.1 µm pixels; trained on simulated stacks on a CPU, fine-tuned with the paper's adversarial loss",
        "hub": None,
        "revision": None,
        "sha256": {
            "config.json": "ca04591855d2865a64b143495b1fb85b445feef40348cdb0ab1edc0d4d109b0d",
            "model.weights.h5": "eac7e3ad1e8d1db9f7e527a23ff256f5d8ac1a3443e0e9a2bec254bf9d741900",
            "metadata.json": "37174e5438c2cd0fd9665cc97dc0eaf03d66c9c19f930715958004f864508a18",
            "README.md": "055c601d99784124ed502d7fc0d0b1d46a3d19a548025a16c93b6a79c4f06c16",
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
    "recurrent_mz_nuclei_m2": {
        "class_name": "keras_rmz>RecurrentMZ",
        "description": "Recurrent-MZ (M = 2, Δz = 6 µm) for wide-field stacks of neuron nuclei (GFP), 63x/1.4 NA oil, 0.1 µm pixels, 0.2 µm z steps; trained on simulated stacks on a CPU",
        "hub": None,
        "revision": None,
        "sha256": {
            "config.json": "ca04591855d2865a64b143495b1fb85b445feef40348cdb0ab1edc0d4d109b0d",
            "model.weights.h5": "a39824f44a16126d8576a2655541431eb31399375a51fbcb5d7a9792a0f9fada",
            "metadata.json": "44d6c75a7fbd943a1e3dcabfa78b11ba1e1a633cfb7e15b352aa636e870ef211",
            "README.md": "6ba18352ab8126fde2ce0ae35e4b07e4f1fb7c0da4f543d91e0aa6efa980a13f",
        },
        "metadata": {
            "modality": "widefield -> widefield (noise-free)",
            "sample": "C. elegans neuron nuclei (simulated)",
            "pixel_um": 0.1,
            "z_step_um": 0.19999999999999996,
            "num_inputs": 2,
            "input_spacing_um": 6.0,
            "output_range_um": [-9.0, 9.0],
            "license": "apache-2.0",
        },
    },
    "recurrent_mz_plus_nuclei_m3": {
        "class_name": "keras_rmz>RecurrentMZPlus",
        "description": "Recurrent-MZ+ (M = 3, Δz = 2 µm) from wide-field planes to the confocal stack, neuron nuclei (GFP), 63x/1.4 NA oil, 0.1 µm pixels; trained on simulated pairs on a CPU",
        "hub": None,
        "revision": None,
        "sha256": {
            "config.json": "243a7449da1de55ae6de8fbaffa4b9b4b4bbd63d33bff582adbea0cb8b37c1f4",
            "model.weights.h5": "320e6427ee211a2577a9ece34c234e0cae534c9a25dc950b006651164541023d",
            "metadata.json": "e5bdcf99a3780875df1aea1efde17b12f4176dc5ee60644bd5f75f6d9161381a",
            "README.md": "66b75fdc9d1483561fe7a5682f53f83351dbb1ae5b1be8ac81d48a8318c9a129",
        },
        "metadata": {
            "modality": "widefield -> confocal",
            "sample": "C. elegans neuron nuclei (simulated)",
            "pixel_um": 0.1,
            "z_step_um": 0.19999999999999996,
            "num_inputs": 3,
            "input_spacing_um": 2.0,
            "output_range_um": [-5.0, 5.0],
            "license": "apache-2.0",
        },
    },
}
