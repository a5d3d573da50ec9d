"""Training Recurrent-MZ: the adversarial trainer, checkpoints, fine-tuning.

- `AdversarialTrainer(generator, discriminator)`: a `keras.Model` whose
  `compile()` defaults to the paper's recipe (Adam 1e-5, Eq. 7 and 10) and
  whose `fit()` runs on TensorFlow, JAX and PyTorch.
- `AdversarialOptimizer`: both networks' optimizers as one Keras optimizer
  (what keeps both states across steps on JAX).
- `TrainingCheckpoint`: atomic checkpoints, resume after a crash, best
  generator on validation.
- `train_from_config`: a training run from a YAML/JSON config, resumable,
  ending in a preset folder (``keras-rmz train``).
- `finetune`: a preset fine-tuned on your own z-stacks with a held-out
  report, written as a new preset (``keras-rmz finetune``).

See docs/training.md for the recipe and every knob.
"""

from keras_rmz.training.adversarial_optimizer import AdversarialOptimizer
from keras_rmz.training.adversarial_trainer import AdversarialTrainer
from keras_rmz.training.callbacks import TrainingCheckpoint
from keras_rmz.training.fine_tuning import FinetuneResult, finetune
from keras_rmz.training.run import train_from_config

__all__ = [
    "AdversarialOptimizer", "AdversarialTrainer", "FinetuneResult", "TrainingCheckpoint", "finetune", "train_from_config",
]
