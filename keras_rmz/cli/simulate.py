"""``keras-rmz simulate``: write a dataset of simulated OME-TIFF z-stacks.

Example:

```
keras-rmz simulate beads --out data/beads --count 20
keras-rmz simulate nuclei --out data/worms --count 10 --confocal --seed 7
keras-rmz simulate randomized --out data/mixed --count 50 --seed 0   # domain randomization, widefield-v1
```

Stack ``i`` is made with seed ``SEED + i``, so any one file can be remade
with ``keras_rmz.simulate.simulate_stack(..., seed=SEED + i)``. With
``--confocal`` every index gets a wide-field and a confocal file of the same
object (``<sample>_0000_widefield.ome.tif``, ``<sample>_0000_confocal.ome.tif``).
A ``dataset.json`` beside the files lists them with the settings.
"""

import json
import math
import pathlib
import random
import sys


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "simulate",
        help="simulate wide-field (and confocal) z-stacks of beads, nuclei, spots or filaments, or domain-randomized ones",
        description=(
            "Simulate fluorescence z-stacks (63x/1.4 NA oil, Gibson-Lanni PSF, camera noise) "
            "and write them as OME-TIFF with physical sizes."
        ),
    )
    parser.add_argument(
        "sample", choices=("beads", "nuclei", "spots", "filaments", "randomized"),
        help="50 nm beads (615 nm), C. elegans neuron nuclei (GFP), protein spots (Cy3), microtubule asters "
        "(GFP), or 'randomized': microscope, sample and camera drawn per stack from --distribution",
    )
    output = parser.add_argument_group("output")
    output.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    output.add_argument("--count", type=int, default=1, metavar="N", help="number of stacks (default 1)")
    output.add_argument(
        "--confocal", action="store_true", help="also write a confocal stack of each object (paired files)"
    )
    output.add_argument("--overwrite", action="store_true", help="replace existing files")
    grid = parser.add_argument_group("stack")
    grid.add_argument(
        "--shape", type=int, nargs=3, metavar=("Z", "Y", "X"), default=None,
        help="stack shape (default 101 256 256 beads, 91 256 256 nuclei)",
    )
    grid.add_argument(
        "--z-step", type=float, default=None, metavar="UM", dest="z_step",
        help="axial step in µm (default 0.1 beads, 0.2 nuclei)",
    )
    grid.add_argument("--pixel", type=float, default=0.1, metavar="UM", help="lateral pixel size in µm (default 0.1)")
    sample = parser.add_argument_group("sample and noise")
    sample.add_argument(
        "--seed", type=int, default=None, metavar="S",
        help="seed of the first stack; stack i uses S + i (default: random, printed)",
    )
    sample.add_argument(
        "--density", type=float, default=None, metavar="PER_UM3", help="beads per µm³, or nuclei per µm³ of worm"
    )
    sample.add_argument(
        "--no-noise", action="store_true", dest="no_noise", help="write noise-free expected counts (float32)"
    )
    sample.add_argument(
        "--distribution", default="widefield-v1", metavar="NAME",
        help="randomized only: the named distribution of microscopes and samples (default widefield-v1; "
        "keras_rmz.simulate.DISTRIBUTIONS)",
    )
    parser.set_defaults(func=run)
    return parser


def _check(args):
    if args.count < 1:
        raise ValueError(f"--count must be >= 1; got {args.count}")
    if args.shape is not None and min(args.shape) < 1:
        raise ValueError(f"--shape must be three positive integers Z Y X; got {' '.join(map(str, args.shape))}")
    for flag, value in (("--z-step", args.z_step), ("--pixel", args.pixel)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ValueError(f"{flag} must be a number > 0 (µm); got {value}")
    if args.density is not None and not (math.isfinite(args.density) and args.density >= 0):
        raise ValueError(f"--density must be a number >= 0 (per µm³); got {args.density}")
    if args.seed is not None and args.seed < 0:
        raise ValueError(f"--seed must be a non-negative integer; got {args.seed}")
    if args.sample == "randomized" and args.density is not None:
        raise ValueError("--density does not apply to 'randomized' stacks: the distribution draws each stack's density")


def run(args):
    # Imported here so that `keras-rmz --help` stays fast.
    from tqdm import tqdm

    from keras_rmz.io import write_stack
    from keras_rmz.simulate import randomized_stack, simulate_stack
    from keras_rmz.simulate.randomize import draw_parameters
    from keras_rmz.version import __version__

    _check(args)
    randomized = args.sample == "randomized"
    if randomized:
        draw_parameters(args.distribution, 0)  # an unknown name fails here, before any work
    out = pathlib.Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out must be a folder; {out} is a file")
    modalities = ("widefield", "confocal") if args.confocal else ("widefield",)
    names = [[f"{args.sample}_{i:04d}_{modality}.ome.tif" for modality in modalities] for i in range(args.count)]
    if not args.overwrite:
        existing = [name for row in names for name in row if (out / name).exists()]
        if existing:
            raise FileExistsError(
                f"{out / existing[0]} exists ({len(existing)} file(s) in the way); pass --overwrite to replace them"
            )
    seed = args.seed
    if seed is None:
        seed = random.SystemRandom().randrange(2**31)
        print(f"keras-rmz simulate: seed {seed}", file=sys.stderr)
    if randomized:
        common = dict(shape=args.shape or (91, 256, 256), z_step_um=args.z_step or 0.2, pixel_um=args.pixel,
                      noise=not args.no_noise)

        def simulate(modality, seed):
            return randomized_stack(args.distribution, modality, seed=seed, **common)
    else:
        common = dict(shape=args.shape, z_step_um=args.z_step, pixel_um=args.pixel, density_per_um3=args.density,
                      noise=not args.no_noise)
        # Fail on bad settings before making the folder or spending minutes.
        probe = {**common, "shape": (1, 1, 1), "noise": False, "seed": 0, "margin_um": (0.0, 0.0)}
        simulate_stack(args.sample, modalities[-1], **probe)

        def simulate(modality, seed):
            return simulate_stack(args.sample, modality, seed=seed, **common)
    out.mkdir(parents=True, exist_ok=True)

    entries = []
    for i in tqdm(range(args.count), desc=f"simulate {args.sample}", unit="stack", file=sys.stderr):
        entry = {"index": i, "seed": seed + i}
        for modality, name in zip(modalities, names[i]):
            stack = simulate(modality, seed + i)
            write_stack(out / name, stack)
            entry[modality] = name
        entries.append(entry)
    manifest = {
        "simulator": f"keras_rmz {__version__}",
        "sample": args.sample,
        "modalities": list(modalities),
        "count": args.count,
        "shape": list(stack.shape),
        "z_step_um": stack.metadata["z_step_um"],
        "pixel_um": stack.pixel_um,
        "density_per_um3": None if randomized else stack.metadata["density_per_um3"],
        **({"distribution": args.distribution} if randomized else {}),
        "noise": not args.no_noise,
        "first_seed": seed,
        "stacks": entries,
    }
    (out / "dataset.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {args.count * len(modalities)} stack(s) to {out}", file=sys.stderr)
    return 0
