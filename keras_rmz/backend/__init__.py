"""Everything in keras_rmz that depends on the Keras backend in use.

The rest of the package is written in ``keras.ops`` and never imports
TensorFlow, JAX or PyTorch (``tests/test_architecture.py`` checks it).

- `keras_rmz.backend.layout`: channels-last convolution and pooling without
  PyTorch's layout copies.
- `keras_rmz.backend.device`: accelerator probes and the output planes per
  model call of ``reconstruct(batch_size="auto")``.
- `keras_rmz.backend.precision`: which precision ``"auto"`` means on this
  CPU and backend.
- `keras_rmz.backend.memory`: glibc's reuse of freed memory around eager
  PyTorch inference.
- `keras_rmz.backend.train_steps`: the adversarial train step, once per
  backend.
- `keras_rmz.backend.distribution`: data-parallel training
  (``keras.distribution.DataParallel``, JAX only).
"""
