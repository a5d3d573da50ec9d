"""napari sample data: a simulated wide-field bead stack (keras_rmz.simulate)."""


def simulated_beads(seed=0):
    """A wide-field stack of 50 nm beads, 101 × 128 × 128 voxels of 0.1 µm
    × 0.1 µm × 0.2 µm (the bead preset's microscope), as napari layer data
    with its physical scale in µm."""
    from keras_rmz.simulate import simulate_stack

    stack = simulate_stack("beads", "widefield", shape=(101, 128, 128), z_step_um=0.2, seed=seed)
    scale = (float(stack.z_step_um), float(stack.pixel_um), float(stack.pixel_um))
    return [(stack.data, {"name": "simulated beads (wide-field)", "scale": scale,
                          "translate": (float(stack.z[0]), 0.0, 0.0), "units": "micrometer"}, "image")]
