"""Makes the figure of docs/inference.md: what tiling does to a reconstruction.

A wide-field bead stack is simulated (keras_rmz.simulate), and a volume is
inferred from two of its planes with ``keras_rmz.inference.reconstruct_volume``
three ways: whole planes, 160-pixel tiles that only touch (no overlap), and
160-pixel tiles overlapping by 48 pixels and blended with raised-cosine
weights (the default overlap). The "model" is a stand-in with a known answer, not a
trained network: it blurs the nearest input plane with a Gaussian whose
width grows with the distance to the output plane, zero-padded at the edges
as a convolutional network is. Like a network, it sees a few pixels beyond
each output pixel, which is what makes naive tiles show seams. The figure
shows the difference of each tiled result from the whole-plane one.

Run (from the repository root; about a minute on a laptop CPU, no GPU, no
network, no Keras backend needed):

    python examples/reconstruct_figure.py          # writes docs/images/inference_tiling.png
    python examples/reconstruct_figure.py --out /tmp/inference_tiling.png
"""

import argparse
import pathlib

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from scipy import ndimage

from keras_rmz import plot
from keras_rmz.inference import reconstruct_volume
from keras_rmz.simulate import simulate_stack


class DefocusModel:
    """Stand-in generator: the nearest input plane, blurred by a Gaussian of
    σ = 1 + 3·|Δz| pixels (Δz in µm), zero-padded at the tile's edges."""

    normalization = "paper"

    def check_num_inputs(self, num_inputs):
        pass

    def predict_on_batch(self, batch):
        images = np.asarray(batch["images"], np.float64)[..., 0]  # (B, M, H, W)
        input_z = np.asarray(batch["input_z"], np.float64)
        output_z = np.asarray(batch["output_z"], np.float64)
        out = []
        for planes, z_in, z_out in zip(images, input_z, output_z):
            nearest = int(np.argmin(np.abs(z_in - z_out)))
            sigma = 1.0 + 3.0 * abs(z_in[nearest] - z_out)
            out.append(ndimage.gaussian_filter(planes[nearest], sigma, mode="constant"))
        return np.stack(out)[..., None].astype(np.float32)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = pathlib.Path(__file__).resolve().parents[1]
    parser.add_argument("--out", default=root / "docs" / "images" / "inference_tiling.png", type=pathlib.Path)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()

    # 31 planes over 3 µm, 320 x 320 pixels of 0.1 µm: dense enough for a
    # field full of beads.
    stack = simulate_stack("beads", "widefield", shape=(31, 320, 320), density_per_um3=0.02, seed=args.seed)
    inputs = [10, 20]
    images, input_z = stack.data[inputs], stack.z[inputs]
    output_z = np.array([1.5])  # 0.5 µm from both inputs
    model = DefocusModel()

    whole = reconstruct_volume(model, images, input_z, output_z, verbose=False)[0]
    touching = reconstruct_volume(model, images, input_z, output_z, tile_size=160, tile_overlap=0, verbose=False)[0]
    blended = reconstruct_volume(model, images, input_z, output_z, tile_size=160, tile_overlap=48, verbose=False)[0]

    signal = float(np.percentile(whole, 99.9) - np.median(whole))
    error_touching = np.abs(touching - whole)
    error_blended = np.abs(blended - whole)
    print(f"99.9th percentile - median of the whole-plane output: {signal:.1f} counts")
    print(f"max |tiled - whole|, tiles touching:          {error_touching.max():.2f} counts "
          f"({100 * error_touching.max() / signal:.2f} % of the signal)")
    print(f"max |tiled - whole|, 48 px overlap, blended:  {error_blended.max():.4f} counts "
          f"({100 * error_blended.max() / signal:.4f} % of the signal)")

    figure = Figure(figsize=(11.0, 3.6), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 4)
    extent = (0, whole.shape[1] * stack.pixel_um, whole.shape[0] * stack.pixel_um, 0)
    for ax, image, title in (
        (axes[0], images[0], f"input plane, z = {input_z[0]:.1f} µm"),
        (axes[1], whole, f"output, z = {output_z[0]:.1f} µm\n(whole plane)"),
    ):
        low, high = np.percentile(image, [1, 99.8])
        ax.imshow(image, cmap="gray", vmin=low, vmax=high, extent=extent)
        ax.set_title(title, fontsize="medium")
    # Errors in % of the signal on a log scale: seams of touching tiles and
    # the small residual of blended tiles are both visible.
    norm = LogNorm(vmin=1e-3, vmax=100)
    for ax, error, title in (
        (axes[2], error_touching, "2 x 2 tiles,\ntouching"),
        (axes[3], error_blended, "3 x 3 tiles,\n48 px overlap, blended"),
    ):
        percent = np.maximum(100 * error / signal, 1e-4)
        mappable = ax.imshow(percent, cmap="magma", norm=norm, extent=extent)
        ax.set_title(f"|tiled - whole|: {title}\n(max {percent.max():.2g} % of the signal)", fontsize="medium")
    for ax in axes:
        ax.set_xlabel("x (µm)")
    axes[0].set_ylabel("y (µm)")
    figure.colorbar(mappable, ax=axes[2:], shrink=0.85, label="% of the signal")
    plot.save_figure(figure, args.out, dpi=90)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
