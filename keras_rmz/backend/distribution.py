"""Data-parallel training with Keras's distribution API.

``keras.distribution.DataParallel`` replicates the model on every device
and splits each batch between them; Keras 3 implements it on the JAX
backend only, so any other backend is refused here, with the backend to
use. Across hosts, call ``keras.distribution.initialize()`` in every process
first (docs/training.md): ``list_devices()`` then lists every host's devices.

Example:

```python
from keras_rmz.backend.distribution import resolve_distribution

with resolve_distribution("data_parallel", batch_size=8).scope():
    model = keras_rmz.RecurrentMZ()
    model.compile()
    model.fit(dataset)
```
"""

import keras

CHOICES = ("data_parallel",)


def resolve_distribution(distribution, batch_size=None):
    """The Keras distribution for ``distribution``: None (no distribution),
    ``"data_parallel"`` (``DataParallel`` over every device Keras lists) or a
    ``keras.distribution.DataParallel`` / ``ModelParallel``. Raises ValueError on a backend without distribution
    support, or when ``batch_size`` cannot be split evenly over the devices."""
    if distribution is None:
        return None
    given = isinstance(distribution, (keras.distribution.DataParallel, keras.distribution.ModelParallel))
    if not given and distribution not in CHOICES:
        raise ValueError(f"distribution must be None, 'data_parallel' or a keras.distribution.DataParallel / "
                         f"ModelParallel; got {distribution!r}")
    backend = keras.backend.backend()
    if backend != "jax":
        raise ValueError(f"data-parallel training needs the JAX backend: Keras 3's distribution API "
                         f"(keras.distribution.DataParallel) runs on JAX only, and this process runs {backend}. "
                         "Set KERAS_BACKEND=jax")
    if isinstance(distribution, str):
        distribution = keras.distribution.DataParallel(devices=keras.distribution.list_devices())
    devices = distribution.device_mesh.devices.size
    if batch_size is not None and int(batch_size) % devices:
        raise ValueError(f"the batch size ({batch_size}) must be a multiple of the {devices} devices of the "
                         "data-parallel distribution: each device takes an equal share of every batch")
    return distribution
