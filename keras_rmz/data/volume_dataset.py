"""``VolumeDataset``: Recurrent-MZ training items drawn from image stacks."""

import math
import os

import keras
import numpy as np

from keras_rmz.data.normalization import compute_normalization

# The choices of the constructor (the training config offers the same).
ORDERS = ("sorted", "random", "descending_dz")
SPACINGS = ("uniform", "random")
TARGET_NORMALIZATIONS = ("own", "inputs")
NORMALIZATION_SOURCES = ("stack", "inputs")
# Paired stacks must share their z grid to this tolerance (µm): files store
# z as decimal text or float32, so exact equality is too strict.
_Z_ATOL_UM = 1e-4
# A jittered draw that maps two inputs onto one plane is redrawn this often
# before the un-jittered grid (always distinct, checked at construction) is used.
_JITTER_TRIES = 10


class VolumeDataset(keras.utils.PyDataset):
    """Recurrent-MZ training batches drawn from z-stacks.

    Each item is one batch ``(inputs, target)``:

    - ``inputs["images"]`` float32 ``(B, M, P, P, 1)``: ``M = num_inputs``
      planes of one stack, cropped to the same ``P × P`` patch, normalized.
    - ``inputs["input_z"]`` float32 ``(B, M)``: their z positions (µm, as
      stored in the stack), in the order the images are given.
    - ``inputs["output_z"]`` float32 ``(B,)``: the z (µm) of the output plane.
    - ``target`` float32 ``(B, P, P, 1)``: the same patch of the plane at
      ``output_z`` of the target stack (``targets[i]`` when paired stacks are
      given, otherwise the input stack itself), normalized.

    Every input plane and the output plane is a real plane of the stack, so
    ``input_z`` and ``output_z`` are values of ``stack.z``. Following the
    paper's Methods, ``M`` planes are drawn with an axial spacing ``Δz =
    input_spacing_um`` (snapped to the nearest real planes); the output plane
    is drawn uniformly among the planes within the inputs' span widened by
    ``output_margin_um`` on both sides (clipped to the stack).

    Each stack is normalized with its own `compute_normalization` (the paper's
    EDF / triangle-threshold rule), computed once at construction and kept in
    ``input_normalizations`` and ``target_normalizations``. Stacks are held
    in memory in their stored dtype; patches are cast and normalized when
    drawn.

    Items are deterministic: item ``i`` depends only on ``(seed, epoch, i)``
    (``epoch`` stays 0 when ``resample_each_epoch=False``), so it is the same
    every time it is requested, in any worker process.

    Args:
        stacks: a `keras_rmz.io.Stack`, a path (read with
            `keras_rmz.io.read_stack`), or a list of them.
        targets: optional paired target stacks (e.g. confocal), one per
            input stack, with the same shape and z grid; same accepted types.
            `None` uses each input stack as its own target.
        num_inputs: ``M``, the number of input planes per item (≥ 1).
        input_spacing_um: ``Δz`` in µm between consecutive input planes
            (required when ``num_inputs ≥ 2``). The input span
            ``(M - 1)·Δz`` must fit in every stack's z range.
        spacing: ``"uniform"``: planes nearest to ``z_a + k·Δz`` for a random
            start plane ``z_a``; ``"random"``: ``M`` distinct planes drawn at
            random within a window ``[z_a, z_a + (M - 1)·Δz]`` (non-uniform
            inputs, as in the paper's Fig. 4 tests).
        spacing_jitter_um: ``"uniform"`` only: each nominal position is moved
            by a uniform random offset in ``[-jitter, +jitter]`` µm before
            snapping to a plane (must be < ``Δz / 2``).
        output_margin_um: how far (µm) beyond the first and last input plane
            the output plane may lie. `None` means ``Δz / 2`` (so windows
            placed ``M·Δz`` apart tile the axis); required when
            ``num_inputs == 1`` and ``input_spacing_um`` is `None`.
        patch_size: ``P``, an int, or ``(height, width)``; must not exceed
            any stack's plane.
        batch_size: ``B``, samples per item.
        order: order of the input planes within an item: ``"sorted"``
            (ascending z, the paper's default training), ``"random"`` (a
            random permutation per sample), or ``"descending_dz"``
            (descending ``|input_z - output_z|``: the farthest input first,
            ties by ascending z) — the training schemes of the paper's Fig. S6.
        augment: apply one random symmetry of the square (90° rotations and
            a flip; only 180° rotations for non-square patches) to each
            sample, the same for its inputs and its target.
        min_signal: `None`, or a normalized intensity: a patch location is
            redrawn (up to ``max_signal_retries`` times, keeping the best)
            while the ``signal_percentile`` percentile of the normalized
            target patch is below it, so empty background patches are rare.
        signal_percentile: percentile used by ``min_signal`` (default 99.9:
            a few bright pixels, e.g. one bead, count as signal).
        max_signal_retries: bound on the redraws for ``min_signal``.
        steps_per_epoch: items per epoch (``len(dataset)``). `None` gives
            the number of non-overlapping ``P × P`` patches in all stacks
            divided by ``batch_size`` (rounded up), i.e. the paper's crops.
        target_normalization: "own" (default: each target stack is
            normalized with its own statistics, as the paper does for
            confocal targets) or "inputs" (targets are normalized with their
            input stack's shift and scale, so a clean or differently exposed
            target of the same modality keeps the input's units).
        normalization_source: "stack" (default: shift and scale from the
            whole input stack, as the paper does) or "inputs" (from the M
            drawn input planes' full field of view only: the statistics
            ``reconstruct`` can compute at inference, where only those
            planes exist; the target then shares them when
            ``target_normalization="inputs"`` or there are no targets).
        resample_each_epoch: if True, `on_epoch_end` advances ``epoch`` so
            the next epoch draws new items (still deterministic from
            ``(seed, epoch)``); use False for a fixed validation set. To
            resume training at epoch ``e``, set ``dataset.epoch = e``.
        seed: int ≥ 0, or `None` to draw one at construction (then readable
            as ``dataset.seed``).
        **kwargs: `keras.utils.PyDataset` arguments (``workers``,
            ``use_multiprocessing``, ``max_queue_size``).

    Example:

    ```python
    import keras_rmz as rmz

    dataset = rmz.data.VolumeDataset(
        ["beads_0.ome.tif", "beads_1.ome.tif"],
        num_inputs=3, input_spacing_um=3.0, patch_size=256, batch_size=4,
        order="sorted", augment=True, min_signal=0.2, seed=0,
    )
    inputs, target = dataset[0]
    inputs["images"].shape  # (4, 3, 256, 256, 1)
    model.fit(dataset, epochs=10)
    ```

    Reference:
    - [Huang et al., Recurrent neural network-based volumetric fluorescence
      microscopy, Light Sci. Appl. 10, 62 (2021)](
      https://doi.org/10.1038/s41377-021-00506-9), Methods (data
      preparation) and Fig. S6 (training input orders).
    """

    def __init__(
        self,
        stacks,
        targets=None,
        num_inputs=3,
        input_spacing_um=None,
        spacing="uniform",
        spacing_jitter_um=0.0,
        output_margin_um=None,
        patch_size=256,
        batch_size=4,
        order="sorted",
        augment=True,
        min_signal=None,
        signal_percentile=99.9,
        max_signal_retries=20,
        steps_per_epoch=None,
        resample_each_epoch=True,
        target_normalization="own",
        normalization_source="stack",
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        checked = self.check_arguments(
            num_inputs=num_inputs, input_spacing_um=input_spacing_um, spacing=spacing,
            spacing_jitter_um=spacing_jitter_um, output_margin_um=output_margin_um, patch_size=patch_size,
            batch_size=batch_size, order=order, min_signal=min_signal, signal_percentile=signal_percentile,
            max_signal_retries=max_signal_retries, target_normalization=target_normalization,
            normalization_source=normalization_source,
        )
        for name, value in checked.items():
            setattr(self, name, value)
        self.augment = bool(augment)
        self.resample_each_epoch = bool(resample_each_epoch)
        self._planes_normalization_cache = {}

        if seed is None:
            # Drawn once here, so every worker (and every later request) sees
            # the same items.
            seed = int(np.random.SeedSequence().entropy % (2**63))
        self.seed = _check_int("seed", seed, minimum=0)

        self.stacks = _load_stacks("stacks", stacks)
        if targets is None:
            self.targets = None
        else:
            self.targets = _load_stacks("targets", targets)
            _check_pairs(self.stacks, self.targets)

        self._plans = [self._stack_plan(i, stack) for i, stack in enumerate(self.stacks)]
        # Larger fields of view hold more patches: weight stacks by plane area,
        # as the paper's non-overlapping crops do.
        areas = np.array([s.data.shape[1] * s.data.shape[2] for s in self.stacks], dtype=np.float64)
        self._stack_weights = areas / areas.sum()

        if steps_per_epoch is None:
            ph, pw = self.patch_size
            patches = sum((s.data.shape[1] // ph) * (s.data.shape[2] // pw) for s in self.stacks)
            steps_per_epoch = max(1, math.ceil(patches / self.batch_size))
        self.steps_per_epoch = _check_int("steps_per_epoch", steps_per_epoch, minimum=1)

        self.input_normalizations = [compute_normalization(s) for s in self.stacks]
        if self.targets is None or self.target_normalization == "inputs":
            self.target_normalizations = self.input_normalizations
        else:
            self.target_normalizations = [compute_normalization(s) for s in self.targets]

        self.epoch = 0

    @staticmethod
    def check_arguments(num_inputs=3, input_spacing_um=None, spacing="uniform", spacing_jitter_um=0.0,
                        output_margin_um=None, patch_size=256, batch_size=4, order="sorted", min_signal=None,
                        signal_percentile=99.9, max_signal_retries=20, target_normalization="own",
                        normalization_source="stack"):
        """The constructor's sampling arguments, checked without reading any
        stack (``keras-rmz train`` checks its config with it before any
        work), as the attribute values: ``patch_size`` as ``(height,
        width)``, ``output_margin_um`` resolved.

        Raises:
            ValueError / TypeError: naming the argument and what it accepts.
        """
        num_inputs = _check_int("num_inputs", num_inputs, minimum=1)
        spacing = _check_choice("spacing", spacing, SPACINGS)
        if target_normalization not in TARGET_NORMALIZATIONS:
            raise ValueError(
                "target_normalization must be 'own' (each target stack normalized by its own "
                "statistics, as the paper does for confocal targets) or 'inputs' (targets in the "
                f"units of their input stack); got {target_normalization!r}."
            )
        if normalization_source not in NORMALIZATION_SOURCES:
            raise ValueError(
                "normalization_source must be 'stack' (statistics of the whole input stack, as "
                "the paper does) or 'inputs' (statistics of the M drawn input planes only, as "
                f"reconstruct() computes them at inference); got {normalization_source!r}."
            )
        if input_spacing_um is not None:
            input_spacing_um = _check_float("input_spacing_um", input_spacing_um, positive=True)
        elif num_inputs > 1:
            raise ValueError(
                f"input_spacing_um (Δz in µm between input planes) is required when "
                f"num_inputs > 1; got num_inputs={num_inputs} and input_spacing_um=None."
            )
        spacing_jitter_um = _check_float("spacing_jitter_um", spacing_jitter_um, minimum=0.0)
        if spacing_jitter_um > 0 and spacing != "uniform":
            raise ValueError(
                "spacing_jitter_um applies to spacing='uniform' only (spacing='random' already draws "
                f"non-uniform planes); got spacing_jitter_um={spacing_jitter_um} with spacing={spacing!r}."
            )
        if spacing_jitter_um > 0 and num_inputs > 1 and spacing_jitter_um >= input_spacing_um / 2:
            raise ValueError(
                "spacing_jitter_um must be smaller than input_spacing_um / 2 so that the inputs keep "
                f"their order; got spacing_jitter_um={spacing_jitter_um} with input_spacing_um={input_spacing_um}."
            )
        if output_margin_um is None:
            if input_spacing_um is None:
                raise ValueError(
                    "num_inputs=1 without input_spacing_um needs output_margin_um: the axial "
                    "range (µm) around the input plane that output planes are drawn from."
                )
            output_margin_um = input_spacing_um / 2
        signal_percentile = _check_float("signal_percentile", signal_percentile, minimum=0.0)
        if signal_percentile > 100:
            raise ValueError(f"signal_percentile must be in [0, 100]; got {signal_percentile}.")
        return {
            "num_inputs": num_inputs,
            "spacing": spacing,
            "order": _check_choice("order", order, ORDERS),
            "batch_size": _check_int("batch_size", batch_size, minimum=1),
            "patch_size": _check_patch_size(patch_size),
            "target_normalization": target_normalization,
            "normalization_source": normalization_source,
            "input_spacing_um": input_spacing_um,
            "spacing_jitter_um": spacing_jitter_um,
            "output_margin_um": _check_float("output_margin_um", output_margin_um, minimum=0.0),
            "min_signal": None if min_signal is None else _check_float("min_signal", min_signal),
            "signal_percentile": signal_percentile,
            "max_signal_retries": _check_int("max_signal_retries", max_signal_retries, minimum=0),
        }

    # === PyDataset ===

    def __len__(self):
        return self.steps_per_epoch

    def __getitem__(self, index):
        samples = self.describe_item(index)
        ph, pw = self.patch_size
        m = self.num_inputs
        images = np.empty((self.batch_size, m, ph, pw, 1), dtype=np.float32)
        target = np.empty((self.batch_size, ph, pw, 1), dtype=np.float32)
        input_z = np.empty((self.batch_size, m), dtype=np.float32)
        output_z = np.empty((self.batch_size,), dtype=np.float32)
        for b, sample in enumerate(samples):
            planes = self._render(sample)
            images[b, ..., 0] = planes[:m]
            target[b, ..., 0] = planes[m]
            input_z[b] = sample["input_z"]
            output_z[b] = sample["output_z"]
        return {"images": images, "input_z": input_z, "output_z": output_z}, target

    def on_epoch_end(self):
        if self.resample_each_epoch:
            self.epoch += 1

    # === Sampling ===

    def describe_item(self, index):
        """What item ``index`` holds, without reading pixels beyond the checks.

        Returns:
            A list of ``batch_size`` dicts, one per sample: ``stack_index``,
            ``input_planes`` (plane indices into the stack, in input order),
            ``output_plane``, ``input_z``, ``output_z`` (µm), ``y``, ``x``
            (top-left corner of the patch), ``rot90`` (quarter turns, counter-
            clockwise) and ``flip`` (left-right, applied after the rotation).
        """
        if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"index must be an int; got {type(index).__name__}.")
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} is out of range for a dataset of {len(self)} items.")
        epoch = self.epoch if self.resample_each_epoch else 0
        rng = np.random.default_rng([self.seed, epoch, int(index)])
        return [self._draw_sample(rng) for _ in range(self.batch_size)]

    def _stack_plan(self, index, stack):
        """Sorted z grid and the start planes at which an input window fits."""
        z = np.asarray(stack.z, dtype=np.float64)
        sort = np.argsort(z, kind="stable")
        zs = z[sort]
        step = float(np.median(np.diff(zs))) if zs.size > 1 else 0.0
        span = (self.num_inputs - 1) * (self.input_spacing_um or 0.0)
        zrange = f"[{zs[0]:g}, {zs[-1]:g}] µm (extent {zs[-1] - zs[0]:g} µm, {zs.size} planes)"

        _, height, width = stack.data.shape
        ph, pw = self.patch_size
        if ph > height or pw > width:
            raise ValueError(
                f"patch_size {ph}×{pw} is larger than the planes of stack {index} "
                f"({height}×{width} pixels); use a patch_size ≤ the smallest plane."
            )
        if self.num_inputs > zs.size:
            raise ValueError(
                f"num_inputs={self.num_inputs} needs at least that many planes, but stack "
                f"{index} has {zs.size} planes over z range {zrange}."
            )
        # Half a plane step of slack: a nominal last position just past the
        # last plane still snaps onto it.
        tolerance = step / 2 + _Z_ATOL_UM
        if span > zs[-1] - zs[0] + tolerance:
            raise ValueError(
                f"The input span (num_inputs - 1)·input_spacing_um = {span:g} µm does not fit "
                f"in the z range of stack {index}, {zrange}; use a smaller input_spacing_um "
                f"or num_inputs."
            )
        starts = np.flatnonzero(zs + span <= zs[-1] + tolerance)
        offsets = np.arange(self.num_inputs) * (self.input_spacing_um or 0.0)
        if self.spacing == "uniform":
            valid = [a for a in starts if _distinct(_nearest(zs, zs[a] + offsets))]
        else:
            counts = np.searchsorted(zs, zs[starts] + span + _Z_ATOL_UM, side="right") - starts
            valid = starts[counts >= self.num_inputs].tolist()
        if not valid:
            raise ValueError(
                f"input_spacing_um={self.input_spacing_um} µm is finer than the planes of "
                f"stack {index} (z step {step:g} µm, z range {zrange}): {self.num_inputs} "
                f"distinct input planes cannot be drawn; use input_spacing_um ≥ the z step."
            )
        return {"sort": sort, "zs": zs, "starts": np.asarray(valid), "offsets": offsets,
                "span": span}

    def _draw_sample(self, rng):
        stack_index = int(rng.choice(len(self.stacks), p=self._stack_weights))
        plan = self._plans[stack_index]
        zs, sort = plan["zs"], plan["sort"]
        start = int(rng.choice(plan["starts"]))

        if self.spacing == "uniform":
            chosen = _nearest(zs, zs[start] + plan["offsets"])
            if self.spacing_jitter_um > 0:
                for _ in range(_JITTER_TRIES):
                    jitter = rng.uniform(-self.spacing_jitter_um, self.spacing_jitter_um,
                                         size=self.num_inputs)
                    jittered = _nearest(zs, zs[start] + plan["offsets"] + jitter)
                    if _distinct(jittered):
                        chosen = jittered
                        break
        else:
            stop = int(np.searchsorted(zs, zs[start] + plan["span"] + _Z_ATOL_UM, side="right"))
            chosen = np.sort(rng.choice(np.arange(start, stop), size=self.num_inputs,
                                        replace=False))

        # Output plane: uniform among the planes within the span + margin.
        low = zs[chosen].min() - self.output_margin_um - _Z_ATOL_UM
        high = zs[chosen].max() + self.output_margin_um + _Z_ATOL_UM
        first = int(np.searchsorted(zs, low, side="left"))
        last = int(np.searchsorted(zs, high, side="right"))
        out = int(rng.integers(first, last))

        chosen = np.sort(chosen)
        if self.order == "random":
            chosen = rng.permutation(chosen)
        elif self.order == "descending_dz":
            # Sorted ascending already, so a stable sort breaks ties by z.
            dz = np.abs(zs[chosen] - zs[out])
            chosen = chosen[np.argsort(-dz, kind="stable")]

        y, x = self._draw_location(rng, stack_index, int(sort[out]))

        if self.augment:
            square = self.patch_size[0] == self.patch_size[1]
            rot90 = int(rng.integers(0, 4)) if square else 2 * int(rng.integers(0, 2))
            flip = bool(rng.integers(0, 2))
        else:
            rot90, flip = 0, False

        return {
            "stack_index": stack_index,
            "input_planes": [int(i) for i in sort[chosen]],
            "output_plane": int(sort[out]),
            "input_z": [float(z) for z in zs[chosen]],
            "output_z": float(zs[out]),
            "y": y,
            "x": x,
            "rot90": rot90,
            "flip": flip,
        }

    def _draw_location(self, rng, stack_index, output_plane):
        _, height, width = self.stacks[stack_index].data.shape
        ph, pw = self.patch_size
        y, x = int(rng.integers(0, height - ph + 1)), int(rng.integers(0, width - pw + 1))
        if self.min_signal is None:
            return y, x
        target = self._target_stack(stack_index).data[output_plane]
        norm = self.target_normalizations[stack_index]
        best, best_signal = (y, x), -np.inf
        for attempt in range(self.max_signal_retries + 1):
            if attempt:
                y, x = int(rng.integers(0, height - ph + 1)), int(rng.integers(0, width - pw + 1))
            patch = np.asarray(norm.apply(target[y:y + ph, x:x + pw].astype(np.float32)))
            signal = float(np.percentile(patch, self.signal_percentile))
            if signal >= self.min_signal:
                return y, x
            if signal > best_signal:
                best, best_signal = (y, x), signal
        return best

    def _planes_normalization(self, stack_index, planes):
        """The paper's normalization computed from the whole field of view of
        the given input planes only, as ``reconstruct`` computes it at
        inference, where only those planes exist. Cached per plane set."""
        key = (stack_index, tuple(sorted(planes)))
        norm = self._planes_normalization_cache.get(key)
        if norm is None:
            norm = compute_normalization(self.stacks[stack_index].data[list(key[1])])
            self._planes_normalization_cache[key] = norm
        return norm

    def _target_stack(self, stack_index):
        return self.stacks[stack_index] if self.targets is None else self.targets[stack_index]

    def _render(self, sample):
        """(M + 1, P, P) float32: the normalized input patches, then the target."""
        i = sample["stack_index"]
        ph, pw = self.patch_size
        y, x = sample["y"], sample["x"]
        window = (slice(y, y + ph), slice(x, x + pw))
        inputs = self.stacks[i].data[(sample["input_planes"], *window)].astype(np.float32)
        target = self._target_stack(i).data[(sample["output_plane"], *window)].astype(np.float32)
        input_norm, target_norm = self.input_normalizations[i], self.target_normalizations[i]
        if self.normalization_source == "inputs":
            input_norm = self._planes_normalization(i, sample["input_planes"])
            if self.targets is None or self.target_normalization == "inputs":
                target_norm = input_norm
        planes = np.concatenate([
            np.asarray(input_norm.apply(inputs), dtype=np.float32),
            np.asarray(target_norm.apply(target[None]), dtype=np.float32),
        ])
        if sample["rot90"]:
            planes = np.rot90(planes, sample["rot90"], axes=(1, 2))
        if sample["flip"]:
            planes = planes[:, :, ::-1]
        return planes


def _nearest(zs, positions):
    """Index of the plane of sorted ``zs`` nearest each position."""
    positions = np.asarray(positions, dtype=np.float64)
    if zs.size == 1:
        return np.zeros(positions.shape, dtype=np.int64)
    right = np.clip(np.searchsorted(zs, positions), 1, zs.size - 1)
    left = right - 1
    take_left = (positions - zs[left]) <= (zs[right] - positions)
    return np.where(take_left, left, right).astype(np.int64)


def _distinct(indices):
    return np.unique(indices).size == np.size(indices)


def _load_stacks(name, value):
    from keras_rmz.io import Stack, read_stack

    if isinstance(value, (Stack, str, os.PathLike)):
        value = [value]
    try:
        items = list(value)
    except TypeError:
        raise TypeError(
            f"{name} must be a Stack, a path, or a list of them; got {type(value).__name__}."
        ) from None
    if not items:
        raise ValueError(f"{name} is empty; give at least one Stack or path.")
    stacks = []
    for i, item in enumerate(items):
        if isinstance(item, Stack):
            stacks.append(item)
        elif isinstance(item, (str, os.PathLike)):
            stacks.append(read_stack(item))
        else:
            hint = " (wrap arrays as Stack(data, z=..., pixel_um=...))" if isinstance(
                item, np.ndarray) else ""
            raise TypeError(
                f"{name}[{i}] must be a keras_rmz.io.Stack or a file path; got "
                f"{type(item).__name__}{hint}."
            )
    return stacks


def _check_pairs(stacks, targets):
    if len(targets) != len(stacks):
        raise ValueError(
            f"targets must pair one-to-one with stacks; got {len(stacks)} stacks and "
            f"{len(targets)} targets."
        )
    for i, (stack, target) in enumerate(zip(stacks, targets)):
        if stack.data.shape != target.data.shape:
            raise ValueError(
                f"targets[{i}] has shape {target.data.shape} but stacks[{i}] has shape "
                f"{stack.data.shape}; paired stacks must have the same (Z, Y, X) shape "
                f"(register and resample the target onto the input grid first)."
            )
        z_in, z_out = np.asarray(stack.z, np.float64), np.asarray(target.z, np.float64)
        if not np.allclose(z_in, z_out, rtol=0, atol=_Z_ATOL_UM):
            worst = int(np.argmax(np.abs(z_in - z_out)))
            raise ValueError(
                f"targets[{i}] is on a different z grid from stacks[{i}]: plane {worst} is at "
                f"z={z_out[worst]:g} µm in the target and {z_in[worst]:g} µm in the input; "
                f"paired stacks must share their z positions (within {_Z_ATOL_UM} µm)."
            )


def _check_int(name, value, minimum):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int ≥ {minimum}; got {value!r}.")
    if value < minimum:
        raise ValueError(f"{name} must be an int ≥ {minimum}; got {value}.")
    return int(value)


def _check_float(name, value, minimum=None, positive=False):
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number; got {value!r}.") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite; got {value!r}.")
    if positive and number <= 0:
        raise ValueError(f"{name} must be > 0; got {value!r}.")
    if minimum is not None and number < minimum:
        raise ValueError(f"{name} must be ≥ {minimum}; got {value!r}.")
    return number


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}.")
    return value


def _check_patch_size(value):
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        value = (value, value)
    try:
        height, width = (int(v) for v in value)
        ok = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value)
    except (TypeError, ValueError):
        ok = False
    if not ok or height < 1 or width < 1:
        raise ValueError(
            f"patch_size must be a positive int P or a pair (height, width); got {value!r}."
        )
    return (height, width)
