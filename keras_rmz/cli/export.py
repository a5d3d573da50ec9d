"""``keras-rmz export``: a preset as an ONNX file for ONNX Runtime, OpenVINO
and other engines (``keras_rmz.export.export_onnx``), or as a BioImage Model
Zoo package (``keras_rmz.bioimageio_export.export_bioimageio``).

```
keras-rmz export recurrent_mz_nuclei_m2 --format onnx -o nuclei.onnx
keras-rmz export recurrent_mz_nuclei_m2 --format bioimageio -o nuclei.zip
```
"""

import argparse
import pathlib

from keras_rmz.cli.arguments import positive_int
from keras_rmz.cli.common import check_output_path

HELP = "export a preset as an ONNX model (ONNX Runtime, OpenVINO) or a bioimage.io model package"

DESCRIPTION = """\
Writes PRESET's network as an ONNX file whose inputs are images (B, M, H, W, 1),
input_z (B, M) and output_z (B,) in µm, all sizes dynamic, and whose output is
(B, H, W, 1). The preset's metadata (pixel size, trained output range, M,
normalization) is stored in the file, so keras_rmz.export.OnnxModel and
`keras-rmz reconstruct --engine onnxruntime` apply the same guards,
normalization and tiling as the Keras model. Needs the onnx extra:
pip install 'keras-rmz[onnx]' (the export runs on TensorFlow, in a subprocess
when another backend is selected).

--format bioimageio writes a BioImage Model Zoo package (model spec 0.5, a
.zip): the same network as ONNX weights with M fixed (default: the preset's),
its three inputs with axes and units, test tensors from a simulated stack, a
cover figure and the model card. Needs the bioimageio extra:
pip install 'keras-rmz[bioimageio]'."""

EPILOG = """\
examples:
  keras-rmz export recurrent_mz_nuclei_m2 --format onnx -o nuclei.onnx
  keras-rmz export recurrent_mz_beads_m3 --num-inputs 3 -o beads_m3.onnx    # for OpenVINO
  keras-rmz export my_preset/ -o my_preset.onnx --overwrite
  keras-rmz export recurrent_mz_nuclei_m2 --format bioimageio -o nuclei.zip"""


FORMATS = ("onnx", "bioimageio")
SUFFIXES = {"onnx": (".onnx",), "bioimageio": (".zip",)}


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "export", help=HELP, description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("preset", metavar="PRESET", help="a built-in name, a preset folder or hf://owner/repo[@rev]")
    parser.add_argument("--format", choices=FORMATS, default="onnx",
                        help="onnx: an ONNX file; bioimageio: a bioimage.io model package (default: onnx)")
    parser.add_argument("-o", "--output", required=True, metavar="FILE",
                        help="the file to write: FILE.onnx, or FILE.zip for --format bioimageio")
    parser.add_argument("--num-inputs", type=positive_int, default=None, metavar="M",
                        help="fix M, the number of input planes: the recurrence is unrolled, which OpenVINO needs "
                        "(default: M dynamic, an ONNX Loop that ONNX Runtime runs; --format bioimageio: the "
                        "preset's M)")
    parser.add_argument("--opset", type=int, default=None, metavar="N", help="ONNX opset (default: tf2onnx's)")
    parser.add_argument("--overwrite", action="store_true", help="replace FILE if it exists")
    parser.add_argument("-q", "--quiet", action="store_true", help="no summary line")
    parser.set_defaults(func=run)
    return parser


def run(args):
    from keras_rmz.presets import read_preset_metadata

    output = check_output_path(args.output, SUFFIXES[args.format], "--output", args.overwrite)
    metadata = read_preset_metadata(args.preset)  # an unknown preset is reported before a backend starts
    if args.format == "bioimageio":
        return _bioimageio(args, output, metadata)
    from keras_rmz.export import export_onnx

    path = export_onnx(args.preset, output, num_inputs=args.num_inputs, opset=args.opset, overwrite=args.overwrite)
    if not args.quiet:
        size = pathlib.Path(path).stat().st_size / 2**20
        m = "M" if args.num_inputs is None else str(args.num_inputs)
        print(f"wrote {path} ({size:.1f} MiB): inputs images (B, {m}, H, W, 1), input_z (B, {m}), output_z (B,) in µm; "
              f"run it with keras_rmz.export.OnnxModel({str(path)!r})")
    return 0


def _bioimageio(args, output, metadata):
    from keras_rmz.bioimageio_export import export_bioimageio, require

    require()  # a missing extra is reported before a backend starts
    path = export_bioimageio(args.preset, output, num_inputs=args.num_inputs, opset=args.opset,
                             overwrite=args.overwrite)
    if not args.quiet:
        size = pathlib.Path(path).stat().st_size / 2**20
        m = args.num_inputs or metadata.get("num_inputs") or "M"
        print(f"wrote {path} ({size:.1f} MiB): a bioimage.io model package (spec 0.5, ONNX weights, M = {m}); "
              f"check it with: bioimageio test {path}")
    return 0
