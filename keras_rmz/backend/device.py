"""The device a backend computes on, and how much work one model call gets
there (``reconstruct``'s ``batch_size="auto"``)."""

import keras

# batch_size="auto": output planes per model call, so that one call holds
# about this many output pixels. On a CPU a 256x256 plane already keeps the
# cores busy and bigger batches mostly add memory (docs/performance.md, 8
# planes of 256² on a 2-core CPU, batched against one at a time, three runs:
# TensorFlow 0.67-0.81x as fast per plane, and 0.73x with 4 planes per call;
# JAX 0.97-1.08x, 1.16x with 4; PyTorch 0.76-0.94x, 1.07x with 4), so
# TensorFlow gets one 256² plane per call and the others four; an
# accelerator needs wider calls to fill up.
AUTO_BATCH_PIXELS_CPU = {"tensorflow": 256 * 256, "jax": 4 * 256 * 256, "torch": 4 * 256 * 256}
AUTO_BATCH_PIXELS_CPU_OTHER = 4 * 256 * 256
AUTO_BATCH_PIXELS_ACCELERATOR = 4 * 1024 * 1024
MAX_AUTO_BATCH_SIZE = 8


def has_accelerator():
    """True when the Keras backend computes on a GPU or TPU."""
    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            return bool(tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"))
        if backend == "jax":
            import jax

            return jax.default_backend() != "cpu"
        if backend == "torch":
            import torch

            return bool(torch.cuda.is_available() or getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    except Exception:  # noqa: BLE001 - a failed probe means "no accelerator"
        return False
    return False


def auto_batch_size(height, width, num_planes=None, accelerator=None, backend=None):
    """Output planes per model call for ``batch_size="auto"``: as many as
    fit ``AUTO_BATCH_PIXELS_CPU[backend]`` (or ``_ACCELERATOR``) output
    pixels, at least 1 and at most ``MAX_AUTO_BATCH_SIZE`` (and
    ``num_planes``). ``accelerator`` and ``backend`` default to the running
    Keras backend's."""
    if accelerator is None:
        accelerator = has_accelerator()
    if backend is None:
        backend = keras.backend.backend()
    budget = (AUTO_BATCH_PIXELS_ACCELERATOR if accelerator
              else AUTO_BATCH_PIXELS_CPU.get(backend, AUTO_BATCH_PIXELS_CPU_OTHER))
    size = max(1, min(MAX_AUTO_BATCH_SIZE, budget // max(1, int(height) * int(width))))
    if num_planes is not None:
        size = max(1, min(size, int(num_planes)))
    return int(size)
