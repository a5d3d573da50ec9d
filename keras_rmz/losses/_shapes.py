"""Shape handling shared by the loss classes."""

from keras import ops


def match_rank(y_true, y_pred):
    """Give `y_true` and `y_pred` the same rank when one lacks only a
    trailing channel axis of size 1, as Keras' built-in loss classes do
    (e.g. targets `(B, H, W)` against predictions `(B, H, W, 1)`)."""
    rank_true, rank_pred = len(y_true.shape), len(y_pred.shape)
    if rank_true == rank_pred - 1 and y_pred.shape[-1] == 1:
        y_true = ops.expand_dims(y_true, -1)
    elif rank_pred == rank_true - 1 and y_true.shape[-1] == 1:
        y_pred = ops.expand_dims(y_pred, -1)
    return y_true, y_pred
