"""A preset as a BioImage Model Zoo package (bioimage.io, model spec 0.5):
``keras-rmz export PRESET --format bioimageio -o model.zip`` (docs/export.md).

The package holds the network as ONNX weights with M fixed to the preset's
(``keras_rmz.export.export_onnx``, the recurrence unrolled), its three
inputs described with axes and units, test tensors made by ONNX Runtime from
a simulated stack, a cover figure and the preset's model card. It is built
with ``bioimageio.spec``'s own classes and written by its
``save_bioimageio_package``, so the spec's validation runs while it is made;
``bioimageio.core.test_model`` runs it (the tests do).

What the spec cannot say:

- The paper's normalization (shift: the background mean of the inputs'
  extended-depth-of-field image under a triangle threshold; scale: the 99th
  percentile of its foreground) has no bioimage.io preprocessing step, so the
  package takes normalized planes and the card says how to make them.
- Keras weights: the spec's ``keras_v3`` entry exists, but bioimageio.core's
  Keras adapter passes the tensors to ``Model.predict`` by position, which a
  three-input model cannot take; the package carries ONNX weights only.
"""

import json
import pathlib
import tempfile

import numpy as np

from keras_rmz.io.atomic import atomic_write

PAPER_CITATION = ("Huang, L., Chen, H., Luo, Y., Rivenson, Y. & Ozcan, A. Recurrent neural network-based volumetric "
                  "fluorescence microscopy. Light Sci. Appl. 10, 62 (2021)")
PAPER_DOI = "10.1038/s41377-021-00506-9"
# The simulated sample of the test tensors, found in the preset's "sample" text.
_SAMPLES = ("beads", "nuclei", "spots", "filaments")
TEST_SIZE = 128  # pixels of the test tensors' planes


def require():
    """Imports bioimageio.spec and returns it, or raises ImportError naming the extra."""
    try:
        import bioimageio.spec as spec
    except ImportError:
        raise ImportError(
            "exporting a bioimage.io package needs bioimageio.spec, which is not installed; install it with: "
            "pip install 'keras-rmz[bioimageio]'"
        ) from None
    return spec


def _test_sample(metadata):
    text = str(metadata.get("sample", "")).lower()
    return next((sample for sample in _SAMPLES if sample.rstrip("s") in text), "nuclei")


def _test_tensors(metadata, num_inputs, min_plane, seed=0):
    """Normalized input planes of a simulated stack at the preset's pixel
    size and spacing, their z and an output z between the first two."""
    from keras_rmz.data import compute_normalization
    from keras_rmz.simulate import simulate_stack

    pixel_um = float(metadata.get("pixel_um") or 0.1)
    spacing = float(metadata.get("input_spacing_um") or 0.0) or 1.0
    size = max(TEST_SIZE, int(min_plane or 0))
    stack = simulate_stack(_test_sample(metadata), shape=(max(num_inputs, 2), size, size), z_step_um=spacing,
                           pixel_um=pixel_um, seed=seed)
    planes = stack.data[:num_inputs].astype(np.float32)
    normalized = np.asarray(compute_normalization(planes).apply(planes), dtype=np.float32)
    input_z = np.asarray(stack.z[:num_inputs], dtype=np.float32)
    output_z = np.float32(input_z[0] + (spacing / 2 if num_inputs > 1 else 0.0))
    return normalized[None, ..., None], input_z[None], np.asarray([output_z], dtype=np.float32), pixel_um


def _cover(images, output, input_z, output_z, pixel_um, path):
    """Inputs and output side by side, one display range, a colorbar (2:1)."""
    from keras_rmz.plot import _new_figure, save_figure

    panels = [(plane, f"input, z = {z:g} µm") for plane, z in zip(images, input_z)]
    panels.append((output, f"output, z = {output_z:g} µm"))
    low = min(float(p.min()) for p, _ in panels)
    high = max(float(p.max()) for p, _ in panels)
    figure = _new_figure((8, 4))
    axes = figure.subplots(1, len(panels))
    extent = (0, images.shape[-1] * pixel_um, images.shape[-2] * pixel_um, 0)
    for ax, (plane, title) in zip(np.atleast_1d(axes), panels):
        shown = ax.imshow(plane, cmap="magma", vmin=low, vmax=high, extent=extent)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("x (µm)")
    np.atleast_1d(axes)[0].set_ylabel("y (µm)")
    figure.colorbar(shown, ax=axes, shrink=0.7, label="normalized intensity (shared range)")
    save_figure(figure, path, dpi=80)


def _documentation(name, metadata, card, num_inputs, pixel_um, min_size, step):
    sample = _test_sample(metadata)
    metrics = _metrics_table(metadata.get("metrics"))
    spacing = metadata.get("input_spacing_um")
    low, high = metadata.get("output_range_um") or (None, None)
    return f"""# {name} (keras_rmz), as a bioimage.io package

Recurrent-MZ infers a fluorescence image at any depth from M = {num_inputs} wide-field
images at other depths ({PAPER_CITATION}). This package holds the
keras_rmz preset `{name}` as ONNX weights.

## Inputs and output

| tensor | axes | meaning |
| --- | --- | --- |
| `images` | batch, index (M = {num_inputs}), y, x, channel | the M input planes, **normalized** (below), {pixel_um:g} µm pixels |
| `input_z` | batch, index (M) | the input planes' z, µm |
| `output_z` | batch | the z of the plane to infer, µm |
| `plane` | batch, y, x, channel | the inferred plane, in the normalized units of `images` |

The trained output range is {low} to {high} µm from the inputs (input
spacing {spacing} µm); planes further away are extrapolation. y and x
take {min_size} pixels or more, in steps of {step}.

## Validation

The test tensors are a simulated stack ({sample}) at the preset's pixel size
and input spacing; the expected output is ONNX Runtime's own, so
`bioimageio.core`'s `test_model` checks that a consumer runs the network
as keras_rmz exported it. How well the network reconstructs is in the
preset's held-out metrics (the model card below):

{metrics}

## Normalization (not expressible as a bioimage.io preprocessing step)

The network takes the paper's normalized planes. From the M input planes:
their extended-depth-of-field image (each pixel from the plane where the
squared Laplacian of Gaussian, σ = 1 px, averaged over a Gaussian window of
σ = 2 px, is largest), its triangle threshold (foreground above it), then

    shift = mean of the EDF's background pixels
    scale = 99th percentile of the EDF's foreground pixels
    images = (raw - shift) / scale,   result = plane * scale + shift

`keras_rmz.data.compute_normalization` computes it, and keras_rmz's
`reconstruct` (and `keras_rmz.export.OnnxModel` on `weights.onnx`) does all
of this, plus tiling and the preset's guards, for you.

## The preset's model card

{card}
"""


def export_bioimageio(model, path, *, num_inputs=None, opset=None, overwrite=False, seed=0):
    """Writes a preset as a bioimage.io model package (a ``.zip``).

    Args:
        model: a preset name / folder / ``hf://`` handle, or a keras_rmz
            model loaded from a preset.
        path: the ``.zip`` to write (atomically).
        num_inputs: M of the package (fixed, the recurrence unrolled);
            default the preset's trained M.
        opset: ONNX opset of the weights (default: tf2onnx's).
        overwrite: replace an existing file.
        seed: seed of the simulated test stack.

    Returns:
        the path written.

    Raises:
        ImportError: the ``bioimageio`` or ``onnx`` extra is missing.
        FileExistsError: ``path`` exists and ``overwrite`` is False.
    """
    import keras

    from keras_rmz import export

    path = export.check_output_file(path, ".zip", "a bioimage.io package", overwrite)
    require()
    export.require("onnxruntime")
    name, card = _name_and_card(model)
    if not isinstance(model, keras.Model):
        from keras_rmz.presets import load_preset

        model = load_preset(model)
    metadata = dict(getattr(model, "preset_metadata", None) or {})
    if num_inputs is None:
        num_inputs = metadata.get("num_inputs") or getattr(model, "num_inputs", None) or 1
    num_inputs = int(num_inputs)
    model.check_num_inputs(num_inputs)
    with tempfile.TemporaryDirectory(prefix="keras_rmz_bioimageio_") as folder:
        folder = pathlib.Path(folder)
        onnx_path = export.export_onnx(model, folder / "weights.onnx", num_inputs=num_inputs, opset=opset)
        descr = _describe(model, metadata, name, card, num_inputs, onnx_path, folder, seed)
        from bioimageio.spec import save_bioimageio_package

        with atomic_write(path, suffix=".zip") as temporary:
            save_bioimageio_package(descr, output_path=temporary)
    return path


def _describe(model, metadata, name, card, num_inputs, onnx_path, folder, seed):
    import onnx
    import onnxruntime
    import tifffile
    from bioimageio.spec.model import v0_5

    proto = onnx.load(str(onnx_path))
    opset = max(entry.version for entry in proto.opset_import if entry.domain in ("", "ai.onnx"))
    min_plane = int(getattr(model, "min_plane_size", None) or 16)
    images, input_z, output_z, pixel_um = _test_tensors(metadata, num_inputs, min_plane, seed)
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (output,) = session.run(None, {"images": images, "input_z": input_z, "output_z": output_z})
    tensors = {"images": images, "input_z": input_z, "output_z": output_z, "plane": output}
    files, samples = {}, {}
    for key, value in tensors.items():
        files[key] = folder / f"test_{key}.npy"
        np.save(files[key], value)
        # The same values as TIFF, for people and image viewers (FAIR).
        samples[key] = folder / f"sample_{key}.tif"
        tifffile.imwrite(samples[key], np.squeeze(value).reshape(np.squeeze(value).shape or (1,)))
    cover = folder / "cover.png"
    _cover(images[0, ..., 0], output[0, ..., 0], input_z[0], float(output_z[0]), pixel_um, cover)

    if card is None:
        from keras_rmz.presets.preset_io import default_model_card

        card = default_model_card(metadata, name)
    step = 2 ** int(getattr(model, "depth", 0) or 0)
    min_size = max(min_plane, step)
    documentation = folder / "README.md"
    documentation.write_text(_documentation(name, metadata, card, num_inputs, pixel_um, min_size, step),
                             encoding="utf-8")

    um = "micrometer"
    index = v0_5.IndexInputAxis(size=num_inputs, description="the input planes, in acquisition order")

    def space(axis_id):
        return v0_5.SpaceInputAxis(id=v0_5.AxisId(axis_id), size=v0_5.ParameterizedSize(min=min_size, step=step),
                                   scale=pixel_um, unit=um)

    def space_out(axis_id):
        return v0_5.SpaceOutputAxis(id=v0_5.AxisId(axis_id), scale=pixel_um, unit=um,
                                    size=v0_5.SizeReference(tensor_id=v0_5.TensorId("images"),
                                                            axis_id=v0_5.AxisId(axis_id)))

    channel = v0_5.ChannelAxis(channel_names=[v0_5.Identifier("fluorescence")])
    microns = v0_5.IntervalOrRatioDataDescr(type="float32", unit="µm")
    inputs = [
        v0_5.InputTensorDescr(
            id=v0_5.TensorId("images"), description="M wide-field planes, normalized as the documentation says",
            axes=[v0_5.BatchAxis(), index, space("y"), space("x"), channel],
            test_tensor=v0_5.FileDescr(source=files["images"]), sample_tensor=v0_5.FileDescr(source=samples["images"]),
        ),
        v0_5.InputTensorDescr(
            id=v0_5.TensorId("input_z"), description="the z of each input plane (µm)",
            axes=[v0_5.BatchAxis(), v0_5.IndexInputAxis(size=v0_5.SizeReference(
                tensor_id=v0_5.TensorId("images"), axis_id=v0_5.AxisId("index")))],
            data=microns, test_tensor=v0_5.FileDescr(source=files["input_z"]), sample_tensor=v0_5.FileDescr(source=samples["input_z"]),
        ),
        v0_5.InputTensorDescr(
            id=v0_5.TensorId("output_z"), description="the z of the plane to infer (µm)",
            axes=[v0_5.BatchAxis()], data=microns, test_tensor=v0_5.FileDescr(source=files["output_z"]), sample_tensor=v0_5.FileDescr(source=samples["output_z"]),
        ),
    ]
    outputs = [v0_5.OutputTensorDescr(
        id=v0_5.TensorId("plane"), description="the inferred plane at output_z, in the normalized units of images",
        axes=[v0_5.BatchAxis(), space_out("y"), space_out("x"), channel],
        test_tensor=v0_5.FileDescr(source=files["plane"]), sample_tensor=v0_5.FileDescr(source=samples["plane"]),
    )]
    from keras_rmz.version import __version__

    return v0_5.ModelDescr(
        name=_package_name(name),
        description=str(metadata.get("description") or "Recurrent-MZ (keras_rmz)")[:1024],
        authors=[v0_5.Author(name="keras_rmz developers")],
        cite=[v0_5.CiteEntry(text=PAPER_CITATION, doi=v0_5.Doi(PAPER_DOI))],
        license=v0_5.LicenseId(_license(metadata)),
        documentation=v0_5.FileDescr(source=documentation),
        covers=[v0_5.FileDescr(source=cover)],
        tags=["fluorescence-light-microscopy", "widefield", "3d", "volumetric-imaging", "recurrent-mz",
              "keras_rmz"],
        inputs=inputs,
        outputs=outputs,
        weights=v0_5.WeightsDescr(onnx=v0_5.OnnxWeightsDescr(
            source=onnx_path, opset_version=opset,
            comment=f"keras_rmz {__version__}: Keras Model.export (tf2onnx), M fixed to {num_inputs}",
        )),
        config={"keras_rmz": {"preset_metadata": json.loads(json.dumps(metadata, default=str))}},
    )


def _metrics_table(metrics):
    """The held-out PSNR of each method in a preset's metadata, as a table."""
    table = (metrics or {}).get("table") if isinstance(metrics, dict) else None
    if not isinstance(table, dict) or not table:
        return "(the preset records no held-out metrics)"
    rows = ["| method | PSNR between the inputs |", "| --- | ---: |"]
    for method, values in table.items():
        value = values.get("psnr_between_db") if isinstance(values, dict) else None
        if isinstance(value, (int, float)):
            rows.append(f"| {method} | {value:.2f} dB |")
    return "\n".join(rows)


def _name_and_card(model):
    """The preset's name and its model card (README.md) where a folder holds it."""
    from keras_rmz.presets import registry

    handle = getattr(model, "_keras_rmz_preset_handle", None) if not isinstance(model, (str, pathlib.Path)) else model
    if handle is None:
        return getattr(model, "name", "model"), None
    handle = str(handle)
    folder = registry.find_local_copy(handle) if handle in registry.PRESETS else pathlib.Path(handle)
    name = handle.rstrip("/").rsplit("/", 1)[-1].removeprefix("hf:")
    card = pathlib.Path(folder) / "README.md" if folder is not None else None
    return name, card.read_text(encoding="utf-8") if card is not None and card.is_file() else None


def _package_name(name):
    """A bioimage.io name: letters, digits, spaces and ``_-()``, 5-128 characters."""
    cleaned = "".join(c if c.isalnum() or c in " _-()" else " " for c in f"keras_rmz {name}")
    return " ".join(cleaned.split())[:128]


def _license(metadata):
    text = str(metadata.get("license") or "apache-2.0")
    return {"apache-2.0": "Apache-2.0", "mit": "MIT", "cc-by-4.0": "CC-BY-4.0"}.get(text.lower(), text)
