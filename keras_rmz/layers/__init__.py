"""Building blocks of Recurrent-MZ: the paper's ConvGRU, encoder, recurrent
and decoder blocks, and the DPM channel."""

from keras_rmz.layers.conv_gru import ConvGRU2D
from keras_rmz.layers.conv_gru import ConvGRUCell
from keras_rmz.layers.conv_gru import hard_sigmoid_tf2
from keras_rmz.layers.decoder_block import DecoderBlock
from keras_rmz.layers.dpm import DPM
from keras_rmz.layers.encoder_block import EncoderBlock
from keras_rmz.layers.recurrent_block import RecurrentBlock

__all__ = [
    "ConvGRU2D",
    "ConvGRUCell",
    "DPM",
    "DecoderBlock",
    "EncoderBlock",
    "RecurrentBlock",
    "hard_sigmoid_tf2",
]
