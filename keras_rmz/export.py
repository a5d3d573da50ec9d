"""Models outside Keras: ONNX export, and ONNX Runtime / OpenVINO as engines
of ``reconstruct`` (``keras-rmz export``; docs/export.md).

- ``export_onnx(model_or_preset, "model.onnx")`` writes an ONNX model with
  dynamic batch, M, H and W: Keras's own ``Model.export(format="onnx")`` on
  the TensorFlow backend (tf2onnx). Keras cannot export dynamic shapes from
  PyTorch, and its JAX route goes through TensorFlow as well, so on the JAX
  and PyTorch backends the model's weights are handed to a TensorFlow
  subprocess that exports the same network. The preset's metadata (pixel
  size, trained output range, M, normalization) travels inside the file
  (ONNX ``metadata_props``), so the guards of ``reconstruct`` hold there too.
- ``OnnxModel("model.onnx", engine="onnxruntime" | "openvino")`` runs such a
  file with ``reconstruct``'s own tiling, batching, normalization,
  resampling and guards: ``OnnxModel(...).reconstruct(...)``, or
  ``model.reconstruct(..., engine="onnxruntime")`` on a Keras model (exported
  once per model and weights, in a temporary folder).

The engines are optional extras: ``pip install 'keras-rmz[onnx]'`` (onnx,
onnxruntime, tf2onnx, TensorFlow) and ``'keras-rmz[openvino]'``.
"""

import hashlib
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import weakref

import numpy as np

from keras_rmz.io.atomic import atomic_write

ENGINES = ("keras", "onnxruntime", "openvino")
METADATA_KEY = "keras_rmz"
INPUT_NAMES = ("images", "input_z", "output_z")
# What each engine needs, and the extra that installs it.
_REQUIREMENTS = {
    "export": (("onnx", "tf2onnx", "tensorflow"), "onnx"),
    "onnxruntime": (("onnx", "onnxruntime"), "onnx"),
    "openvino": (("onnx", "openvino"), "openvino"),
}


def require(what):
    """``what`` is "export", "onnxruntime" or "openvino". Imports the packages it needs, or raises ImportError naming the
    extra that installs them."""
    import importlib

    packages, extra = _REQUIREMENTS[what]
    missing = []
    for package in packages:
        try:
            importlib.import_module(package)
        except ImportError:
            missing.append(package)
    if missing:
        doing = "exporting to ONNX" if what == "export" else f"engine={what!r}"
        raise ImportError(
            f"{doing} needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not installed; "
            f"install it with: pip install 'keras-rmz[{extra}]'"
        )


def check_output_file(path, suffix, what, overwrite):
    """``path`` as a Path, checked before any work: its suffix, and no
    existing file unless ``overwrite``."""
    path = pathlib.Path(path)
    if path.suffix != suffix:
        raise ValueError(f"{what} must end in {suffix}; got {str(path)!r}")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True (--overwrite) to replace it")
    return path


def check_engine(engine):
    if not isinstance(engine, str) or engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(repr(e) for e in ENGINES)}; got {engine!r}")
    return engine


# --------------------------------------------------------------------------
# Export.
# --------------------------------------------------------------------------


def _describe(model):
    """What an OnnxModel needs to know of the model, stored in the file."""
    if type(model).__name__ == "UNet3D":
        num_inputs = {"exactly": int(model.num_inputs)}
    elif type(model).__name__ == "DeepZ":
        num_inputs = {"exactly": 1}
    else:
        num_inputs = {"at_least": 1}
    return {
        "format_version": 1,
        "class_name": type(model).__name__,
        "config": model.get_config(),
        "normalization": getattr(model, "normalization", "paper"),
        "min_plane_size": getattr(model, "min_plane_size", None),
        "num_inputs": num_inputs,
        "preset_metadata": getattr(model, "preset_metadata", None),
    }


def _input_signature(num_inputs=None):
    import keras

    return [{
        "images": keras.InputSpec(shape=(None, num_inputs, None, None, 1), dtype="float32", name="images"),
        "input_z": keras.InputSpec(shape=(None, num_inputs), dtype="float32", name="input_z"),
        "output_z": keras.InputSpec(shape=(None,), dtype="float32", name="output_z"),
    }]


def _export_here(model, path, opset, num_inputs=None):
    """Model.export on the TensorFlow backend, then the description added."""
    import contextlib
    import io

    import onnx

    with contextlib.redirect_stdout(io.StringIO()):  # tf2onnx prints its progress
        model.export(str(path), format="onnx", input_signature=_input_signature(num_inputs), opset_version=opset,
                     verbose=False)
    proto = onnx.load(str(path))
    description = _describe(model)
    if num_inputs is not None:
        description["num_inputs"] = {"exactly": int(num_inputs)}
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(description, default=str)
    onnx.save(proto, str(path))


def export_onnx(model, path, *, num_inputs=None, opset=None, overwrite=False):
    """Writes ``model`` (a keras_rmz model, or a preset handle) as an ONNX
    file with dynamic batch, H and W, and a dynamic or fixed M.

    Args:
        model: a keras_rmz generator, or a preset name / folder / ``hf://``.
        path: the ``.onnx`` file to write (atomically: a failed export leaves
            nothing behind).
        num_inputs: None (M dynamic: the recurrence over the inputs becomes
            an ONNX ``Loop``, which ONNX Runtime runs and OpenVINO 2026.4
            cannot read), or M (fixed: the recurrence is unrolled, every
            engine reads it).
        opset: ONNX opset (default: tf2onnx's).
        overwrite: replace an existing file.

    Returns:
        the path written.

    Raises:
        ImportError: the ``onnx`` extra is missing (named in the message).
        FileExistsError: ``path`` exists and ``overwrite`` is False.
    """
    import keras

    path = check_output_file(path, ".onnx", "the ONNX file", overwrite)
    require("export")
    if not isinstance(model, keras.Model):
        from keras_rmz.presets import load_preset

        model = load_preset(model)
    if num_inputs is not None:
        num_inputs = int(num_inputs)
        model.check_num_inputs(num_inputs)
    if model.dtype_policy.name != "float32":
        from keras_rmz.precision import with_precision

        model = with_precision(model, "float32")
    with atomic_write(path, suffix=".onnx") as temporary:
        if keras.backend.backend() == "tensorflow":
            _export_here(model, temporary, opset, num_inputs)
        else:
            _export_in_tensorflow(model, temporary, opset, num_inputs)
    return path


def _export_in_tensorflow(model, path, opset, num_inputs=None):
    """Exports through a TensorFlow subprocess: the model goes over as a
    preset folder (config, weights, metadata)."""
    from keras_rmz.presets import save_preset
    from keras_rmz.presets.preset_io import COMPUTED_FIELDS

    metadata = {k: v for k, v in (getattr(model, "preset_metadata", None) or {}).items() if k not in COMPUTED_FIELDS}
    with tempfile.TemporaryDirectory(prefix="keras_rmz_export_") as folder:
        preset = pathlib.Path(folder) / "model"
        save_preset(model, preset, metadata=metadata)
        environment = {**os.environ, "KERAS_BACKEND": "tensorflow"}
        command = [sys.executable, "-m", "keras_rmz.export", str(preset), str(path)]
        if opset is not None:
            command += ["--opset", str(opset)]
        if num_inputs is not None:
            command += ["--num-inputs", str(num_inputs)]
        done = subprocess.run(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if done.returncode != 0:
            tail = "\n".join(done.stderr.strip().splitlines()[-5:])
            raise RuntimeError(f"exporting to ONNX through TensorFlow failed:\n{tail}")


# --------------------------------------------------------------------------
# Running an exported model.
# --------------------------------------------------------------------------


class OnnxModel:
    """An exported model run by ONNX Runtime or OpenVINO, with the contract
    ``reconstruct_volume`` needs (``predict_on_batch``, ``check_num_inputs``,
    the normalization and the preset's metadata).

    Args:
        path: an ``.onnx`` file written by ``export_onnx``.
        engine: ``"onnxruntime"`` or ``"openvino"``.
        threads: intra-op threads (default: the engine's, all cores).

    Example:

    ```python
    keras_rmz.export.export_onnx("recurrent_mz_nuclei_m2", "nuclei.onnx")
    model = keras_rmz.export.OnnxModel("nuclei.onnx")
    volume = model.reconstruct(images, input_z=[6, 12], output_z=z, pixel_um=0.1)
    ```
    """

    jit_compile = False

    def __init__(self, path, engine="onnxruntime", threads=None):
        if check_engine(engine) == "keras":
            raise ValueError("OnnxModel runs an ONNX file with engine='onnxruntime' or 'openvino'")
        require(engine)
        self.path = pathlib.Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"no ONNX file at {self.path}")
        self.engine = engine
        self.description = self._read_description()
        self.normalization = self.description.get("normalization", "paper")
        self.min_plane_size = self.description.get("min_plane_size")
        self.preset_metadata = self.description.get("preset_metadata")
        if engine == "onnxruntime":
            import onnxruntime

            options = onnxruntime.SessionOptions()
            if threads:
                options.intra_op_num_threads = int(threads)
            self._session = onnxruntime.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
            self._names = [i.name for i in self._session.get_inputs()]
        else:
            import openvino

            core = openvino.Core()
            config = {"INFERENCE_NUM_THREADS": int(threads)} if threads else {}
            # float32 inference: OpenVINO would otherwise pick bfloat16 on a
            # CPU with AMX, silently.
            config["INFERENCE_PRECISION_HINT"] = "f32"
            try:
                self._compiled = core.compile_model(str(self.path), "CPU", config)
            except RuntimeError as error:
                if "Loop" not in str(error):
                    raise
                raise ValueError(
                    f"OpenVINO cannot read {self.path}: its recurrence over a dynamic M is an ONNX Loop that "
                    "OpenVINO's ONNX reader refuses. Export with a fixed M for OpenVINO: "
                    "export_onnx(..., num_inputs=M) or keras-rmz export --num-inputs M"
                ) from None
            self._names = [port.get_any_name() for port in self._compiled.inputs]

    def _read_description(self):
        import onnx

        try:
            proto = onnx.load(str(self.path), load_external_data=False)
        except Exception as error:  # noqa: BLE001 - a damaged or foreign file
            raise ValueError(f"{self.path} is not a readable ONNX file ({error})") from None
        description = {entry.key: entry.value for entry in proto.metadata_props}.get(METADATA_KEY)
        if description is None:
            raise ValueError(f"{self.path} was not written by keras_rmz.export.export_onnx (no {METADATA_KEY!r} "
                             "metadata); export it with `keras-rmz export`")
        return json.loads(description)

    def check_num_inputs(self, num_inputs):
        rule = self.description.get("num_inputs", {"at_least": 1})
        name = self.description.get("class_name", "the model")
        if "exactly" in rule and num_inputs != rule["exactly"]:
            raise ValueError(f"{name} takes exactly {rule['exactly']} input image(s); got M = {num_inputs}")
        if num_inputs < rule.get("at_least", 1):
            raise ValueError(f"{name} needs at least one input image (M >= 1); got M = {num_inputs}")

    def _input_name(self, name):
        # tf2onnx names the inputs after the signature's keys (sometimes with
        # a ":0" suffix).
        for candidate in self._names:
            if candidate.split(":")[0] == name:
                return candidate
        raise ValueError(f"{self.path} has no input {name!r}; it has {self._names}")

    def predict_on_batch(self, batch):
        feeds = {self._input_name(k): np.ascontiguousarray(batch[k], dtype=np.float32) for k in INPUT_NAMES}
        if self.engine == "onnxruntime":
            return self._session.run(None, feeds)[0]
        return next(iter(self._compiled(feeds).values()))

    def reconstruct(self, images, input_z=None, output_z=None, **kwargs):
        """``keras_rmz.inference.reconstruct_volume`` with this engine (same
        arguments; the file computes in float32, so ``precision`` must stay
        "auto" or "float32")."""
        from keras_rmz.inference import reconstruct_volume

        check_engine_precision(self.engine, kwargs.get("precision", "auto"))
        return reconstruct_volume(self, images, input_z, output_z, **kwargs)


def check_engine_precision(engine, precision):
    """An exported model computes in float32: a reduced precision asked of
    another engine is an error, not a silent float32."""
    if engine != "keras" and precision not in ("auto", "float32"):
        raise ValueError(f"engine={engine!r} runs the exported float32 model; precision={precision!r} is for "
                         "engine='keras' (use precision='auto' or 'float32')")


# A Keras model -> (weights digest, engine) -> OnnxModel, so that
# ``reconstruct(engine=...)`` exports a model once per set of weights.
_EXPORTED = weakref.WeakKeyDictionary()


def _weights_digest(model):
    digest = hashlib.sha256()
    for weight in model.get_weights():
        digest.update(np.ascontiguousarray(weight).tobytes())
    return digest.hexdigest()


def engine_model(model, engine, num_inputs=None):
    """``model`` itself for ``engine="keras"``; else an ``OnnxModel`` of it
    (exported on first use, again when its weights change). ONNX Runtime
    gets one export with a dynamic M; OpenVINO one per M (``num_inputs``,
    required for it), the recurrence unrolled."""
    import keras

    if check_engine(engine) == "keras" or not isinstance(model, keras.Model):
        return model
    require(engine)
    fixed = None
    if engine == "openvino" and type(model).__name__ not in ("DeepZ", "UNet3D"):
        if num_inputs is None:
            raise ValueError("engine='openvino' exports the model for one M at a time: pass num_inputs")
        fixed = int(num_inputs)
    cache = _EXPORTED.setdefault(model, {})
    digest = _weights_digest(model)
    found = cache.get((engine, fixed))
    if found is not None and found[0] == digest:
        return found[1]
    folder = tempfile.mkdtemp(prefix="keras_rmz_onnx_")
    path = pathlib.Path(folder) / "model.onnx"
    try:
        export_onnx(model, path, num_inputs=fixed)
        exported = OnnxModel(path, engine=engine)
    except BaseException:
        _remove_folder(folder)
        raise
    weakref.finalize(exported, _remove_folder, folder)
    cache[(engine, fixed)] = (digest, exported)
    return exported


def _remove_folder(folder):
    import shutil

    shutil.rmtree(folder, ignore_errors=True)


def _main(argv=None):
    """``python -m keras_rmz.export PRESET_FOLDER OUT.onnx``: the TensorFlow
    side of ``export_onnx`` on the other backends."""
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("preset")
    parser.add_argument("output")
    parser.add_argument("--opset", type=int)
    parser.add_argument("--num-inputs", type=int)
    args = parser.parse_args(argv)
    from keras_rmz.presets import load_preset

    _export_here(load_preset(args.preset), pathlib.Path(args.output), args.opset, args.num_inputs)
    return 0


if __name__ == "__main__":
    sys.exit(_main())
