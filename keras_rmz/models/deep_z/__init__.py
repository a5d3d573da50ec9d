from keras_rmz.models.deep_z.deep_z import DeepZ

__all__ = ["DeepZ"]
