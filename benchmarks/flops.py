"""FLOP counts of the keras_rmz networks, two independent ways.

1. ``analytic_flops(name, config, height, width, num_inputs)`` works from the
   layer configuration alone (the constructor arguments of ``RecurrentMZ``,
   ``DeepZ`` and ``UNet3D``), with the textbook rule for a convolution:
   ``2 * k_h * k_w [* k_d] * C_in * C_out`` per output pixel (a multiply and
   an add per weight). It counts convolutions only (they are > 98 % of the
   work); biases, batch norm, activations, GRU gate arithmetic, pooling and
   up-sampling are counted separately as ``elementwise`` (one FLOP per output
   element and op, an estimate) and left out of ``flops``.

2. ``traced_conv_flops_jax(fn, *args)`` traces a function with JAX
   (``jax.make_jaxpr``) and adds up the convolutions and matrix products it
   finds in the traced program, multiplying the bodies of ``scan``/``while``
   loops by their trip counts. It knows nothing about the layers: it reads
   the operations the backend really runs. ``xla_cost_analysis(fn, *args)``
   asks XLA's own cost model (``jit(fn).lower(...).compile().cost_analysis()``);
   XLA counts a loop body once, not once per iteration, and counts
   element-wise work too, so it is reported beside the others, not used.

Counts are per output plane: every output plane needs its own pass (the
DPM, ``output_z - input_z``, enters at the first layer), so the M inputs go
through the encoder again for each output plane.
"""

import math


def _ceil_to(size, multiple):
    return -(-int(size) // multiple) * multiple


def _conv(kernel_volume, c_in, c_out, pixels):
    return 2 * kernel_volume * c_in * c_out * pixels


class _Tally:
    """Conv FLOPs and an element-wise estimate, by named part."""

    def __init__(self):
        self.parts = {}
        self.elementwise = 0

    def add(self, part, flops):
        self.parts[part] = self.parts.get(part, 0) + int(flops)

    def result(self, **extra):
        return {
            "flops": int(sum(self.parts.values())),
            "parts": dict(self.parts),
            "elementwise_estimate": int(self.elementwise),
            **extra,
        }


def recurrent_mz_flops(config, height, width, num_inputs):
    """Per output plane FLOPs of ``RecurrentMZ(**config)`` on (H, W) images
    with ``num_inputs`` (M) inputs."""
    base = int(config.get("base_filters", 20))
    depth = int(config.get("depth", 4))
    k = int(config.get("kernel_size", 3))
    gru_layers = int(config.get("gru_layers", 1))
    gates = {"minimal": 2, "standard": 3}[config.get("gate", "minimal")]
    use_bn = bool(config.get("use_batch_norm", True))
    kk = k * k
    m = int(num_inputs)
    h, w = _ceil_to(height, 2**depth), _ceil_to(width, 2**depth)
    filters = [base * 2**level for level in range(depth + 1)]
    pixels = [(h // 2**level) * (w // 2**level) for level in range(depth + 1)]
    tally = _Tally()
    per_conv_elementwise = 1 + (2 if use_bn else 0) + 1  # bias, BN (scale+shift), activation
    for level, f in enumerate(filters):
        p = pixels[level]
        c_in = 2 if level == 0 else filters[level - 1]  # image + DPM at the top
        mid = f // 2
        # Encoder (Eq. 1), run once per input image.
        tally.add("encoder", m * (_conv(kk, c_in, mid, p) + _conv(kk, mid, f, p)))
        tally.elementwise += m * per_conv_elementwise * p * (mid + f)
        # Recurrent block (Eq. 2, 4-6): per step an input conv to G*f gate
        # channels and recurrent convs of the state to G*f channels; the
        # first step starts from the zero state and skips the recurrent ones
        # (ConvGRU2D computes them for M - 1 steps).
        tally.add("convgru", gru_layers * (m * _conv(kk, f, gates * f, p) + (m - 1) * _conv(kk, f, gates * f, p)))
        tally.elementwise += gru_layers * m * p * f * (2 * gates + 6)  # adds, gates, blend
        tally.add("recurrent_1x1", _conv(1, f, f, p))
        tally.elementwise += 2 * p * f
    for level in range(depth):
        f, p = filters[level], pixels[level]
        # Decoder (Eq. 3): up-sampled deeper features concatenated with s_k.
        tally.add("decoder", _conv(kk, filters[level + 1] + f, f, p) + _conv(kk, f, f, p))
        tally.elementwise += per_conv_elementwise * p * 2 * f
    tally.add("head", _conv(1, filters[0], 1, pixels[0]))
    return tally.result(padded_shape=[h, w])


def deep_z_flops(config, height, width, num_inputs=1):
    """Per output plane FLOPs of ``DeepZ(**config)`` (one input image)."""
    base = int(config.get("base_filters", 48))
    depth = int(config.get("depth", 4))
    k = int(config.get("kernel_size", 3))
    upsampling = config.get("upsampling", "nearest")
    kk = k * k
    h, w = _ceil_to(height, 2**depth), _ceil_to(width, 2**depth)
    filters = [base * 2**level for level in range(depth + 1)]
    pixels = [(h // 2**level) * (w // 2**level) for level in range(depth + 1)]
    tally = _Tally()
    for level, f in enumerate(filters):
        c_in = 2 if level == 0 else filters[level - 1]
        p = pixels[level]
        tally.add("encoder", _conv(kk, c_in, f, p) + _conv(kk, f, f, p))
        tally.elementwise += p * f * 5  # 2 biases, 2 activations, residual add
    for level in range(depth):
        f, p = filters[level], pixels[level]
        deeper = filters[level + 1]
        if upsampling == "transpose":
            # kernel = stride = 2: each output pixel sees one input pixel.
            tally.add("upsample", _conv(1, deeper, deeper, p))
        tally.add("decoder", _conv(kk, deeper + f, f, p) + _conv(kk, f, f, p))
        tally.elementwise += p * f * 4
    tally.add("head", _conv(1, filters[0], 1, pixels[0]))
    return tally.result(padded_shape=[h, w])


def unet3d_flops(config, height, width, num_inputs=None):
    """Per output plane FLOPs of ``UNet3D(**config)``: a volume of
    (H, W, 2M) voxels, one channel, 3D convs, lateral-only pooling."""
    m = int(config.get("num_inputs", 3) if num_inputs is None else num_inputs)
    base = int(config.get("base_filters", 60))
    depth = int(config.get("depth", 3))
    k = int(config.get("kernel_size", 3))
    upsampling = config.get("upsampling", "transpose")
    use_bn = bool(config.get("use_batch_norm", True))
    kkk = k**3
    h, w = _ceil_to(height, 2**depth), _ceil_to(width, 2**depth)
    planes = 2 * m  # I_1, DPM_1, I_2, DPM_2, ... along depth
    filters = [base * 2**level for level in range(depth + 1)]
    voxels = [(h // 2**level) * (w // 2**level) * planes for level in range(depth + 1)]
    tally = _Tally()
    per_conv_elementwise = 1 + (2 if use_bn else 0) + 1
    for level, f in enumerate(filters):
        c_in = 1 if level == 0 else filters[level - 1]
        v = voxels[level]
        tally.add("encoder", _conv(kkk, c_in, f // 2, v) + _conv(kkk, f // 2, f, v))
        tally.elementwise += per_conv_elementwise * v * (f // 2 + f)
    for level in range(depth):
        f, v = filters[level], voxels[level]
        deeper = filters[level + 1]
        if upsampling == "transpose":
            tally.add("upsample", _conv(1, deeper, deeper, v))  # (2, 2, 1) kernel = stride
        tally.add("decoder", _conv(kkk, deeper + f, f, v) + _conv(kkk, f, f, v))
        tally.elementwise += per_conv_elementwise * v * 2 * f
    tally.add("depth_projection", _conv(planes, filters[0], 1, h * w))
    return tally.result(padded_shape=[h, w], volume_depth=planes)


ANALYTIC = {
    "RecurrentMZ": recurrent_mz_flops,
    "DeepZ": deep_z_flops,
    "UNet3D": unet3d_flops,
}


def analytic_flops(class_name, config, height, width, num_inputs):
    """Dispatch on the model class name; see the per-model functions."""
    if class_name not in ANALYTIC:
        raise ValueError(f"no analytic FLOP count for {class_name!r}; known: {sorted(ANALYTIC)}")
    return ANALYTIC[class_name](config, height, width, num_inputs)


# --- Independent counts from the traced program (JAX backend) -------------


def _eqn_flops(eqn):
    """FLOPs of one jaxpr equation that is a conv or a matrix product."""
    name = eqn.primitive.name
    if name == "conv_general_dilated":
        rhs = eqn.invars[1].aval
        out = eqn.outvars[0].aval
        dn = eqn.params["dimension_numbers"]
        # rhs_spec: (out feature dim, in feature dim, *spatial dims).
        rhs_spec = dn.rhs_spec
        kernel_spatial = math.prod(rhs.shape[d] for d in rhs_spec[2:])
        c_in_per_group = rhs.shape[rhs_spec[1]]  # the kernel holds C_in / groups
        # A transposed conv runs as a conv over the input dilated by its
        # stride: only 1 / prod(lhs_dilation) of the taps meet real pixels
        # (exactly so when kernel = stride, as in the U-Nets here).
        dilation = math.prod(eqn.params.get("lhs_dilation") or (1,))
        return 2 * math.prod(out.shape) * kernel_spatial * c_in_per_group // dilation
    if name == "dot_general":
        (lhs_contract, _), _ = eqn.params["dimension_numbers"]
        lhs = eqn.invars[0].aval
        contracted = math.prod(lhs.shape[d] for d in lhs_contract)
        return 2 * math.prod(eqn.outvars[0].aval.shape) * contracted
    return 0


def _jaxpr_flops(jaxpr):
    total = 0
    for eqn in jaxpr.eqns:
        total += _eqn_flops(eqn)
        name = eqn.primitive.name
        if name == "scan":
            total += eqn.params["length"] * _jaxpr_flops(eqn.params["jaxpr"].jaxpr)
        elif name == "while":
            # Keras' JAX RNN uses scan; a while loop with an unknown trip
            # count would be counted once.
            total += _jaxpr_flops(eqn.params["body_jaxpr"].jaxpr)
        elif name == "cond":
            total += max(_jaxpr_flops(branch.jaxpr) for branch in eqn.params["branches"])
        else:
            for param in ("jaxpr", "call_jaxpr", "fun_jaxpr"):
                sub = eqn.params.get(param)
                if sub is not None:
                    total += _jaxpr_flops(getattr(sub, "jaxpr", sub))
    return total


def traced_conv_flops_jax(fn, *args):
    """Conv + matmul FLOPs of ``fn(*args)`` read from its JAX trace."""
    import jax

    return int(_jaxpr_flops(jax.make_jaxpr(fn)(*args).jaxpr))


def xla_cost_analysis(fn, *args):
    """XLA's cost model for ``jax.jit(fn)(*args)`` on this machine:
    {"flops": ..., "bytes accessed": ...} (loop bodies counted once)."""
    import jax

    analysis = jax.jit(fn).lower(*args).compile().cost_analysis()
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0] if analysis else {}
    analysis = analysis or {}
    return {key: float(analysis[key]) for key in ("flops", "bytes accessed") if key in analysis}
