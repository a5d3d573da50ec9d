"""``keras-rmz reconstruct --time START:STOP`` or ``--scheduler``: every time
point of a time-lapse, chunk by chunk, into an OME-Zarr store
(`keras_rmz.distributed.reconstruct_timelapse`). The parser is
``keras_rmz.cli.reconstruct``'s; this module checks the options that only
this path takes and calls the library."""

from keras_rmz.cli.arguments import parse_output_z, select_input_planes
from keras_rmz.cli.common import STACK_SUFFIXES, check_output_path, check_preset_request, read_input_stack


def run_timelapse(args, output_path):
    """--time START:STOP or --scheduler: every time point, chunk by chunk,
    into an OME-Zarr store (keras_rmz.distributed)."""
    from keras_rmz.distributed import PROGRESS_FOLDER, _scheduler
    from keras_rmz.io.omezarr import is_zarr, require_zarr
    from keras_rmz.io.timelapse import count_time_points, parse_times, read_timelapse

    if not is_zarr(output_path):
        raise ValueError(f"a --time range or --scheduler writes an OME-Zarr store: give -o NAME.ome.zarr; got "
                         f"{str(output_path)!r}")
    for option, given in (("--figure", args.figure), ("--normalize-from-stack", args.normalize_from_stack),
                          ("--engine", args.engine != "keras")):
        if given:
            raise ValueError(f"{option} is not available with a --time range or --scheduler")
    require_zarr()
    _scheduler(args.scheduler)  # a bad --scheduler is reported now
    if args.tile_size is not None and args.tile_size % 32:
        raise ValueError(f"--tile-size must be a multiple of 32 with a --time range or --scheduler; got "
                         f"{args.tile_size}")
    if args.halo is not None and (args.halo < 0 or args.halo % 32):
        raise ValueError(f"--halo must be a multiple of 32 (>= 0); got {args.halo}")
    unfinished = output_path.is_dir() and (output_path / PROGRESS_FOLDER).is_dir()
    check_output_path(output_path, STACK_SUFFIXES, "--output", args.overwrite or unfinished)
    output_z = parse_output_z(args.output_z)
    count = count_time_points(args.stack)
    try:
        times = parse_times(args.time, count)
    except ValueError as error:
        raise ValueError(f"--time: {error}") from None
    first = read_input_stack(args.stack, z_step_um=args.z_step, pixel_um=args.pixel_um, channel=args.channel,
                             time=times[0] if count > 1 else None,
                             pixel_option="--pixel-um (or --pixel-size)")
    indices = select_input_planes(first, input_z=args.input_z, input_planes=args.input_planes)
    movie = read_timelapse(args.stack, times=times, channel=args.channel, z_um=first.z, pixel_um=first.pixel_um)

    check_preset_request(args, first, first.z[indices], output_z)

    import warnings

    from keras_rmz.distributed import DEFAULT_HALO, DEFAULT_TILE, reconstruct_timelapse
    from keras_rmz.out_of_distribution import OutOfDistributionWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OutOfDistributionWarning)  # reported above
        reconstruct_timelapse(
            args.preset, movie, indices, output_z, output_path, scheduler=args.scheduler,
            tile=args.tile_size or DEFAULT_TILE, halo=DEFAULT_HALO if args.halo is None else args.halo,
            normalize=not args.no_normalize, precision=args.precision,
            batch_size=args.batch_size, extrapolate=args.extrapolate, overwrite=args.overwrite,
            verbose=not args.quiet,
        )
    if not args.quiet:
        print(f"wrote {output_path}: {len(times)} time points x {output_z.size} planes of {first.shape[1]}x"
              f"{first.shape[2]} px, z = {output_z.min():g}..{output_z.max():g} µm, from the input planes "
              f"{indices} of each time point")
    return 0
