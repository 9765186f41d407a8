"""The image codec: checkpoints, model specs, the ``.ltc`` container and ``ImageCodec``."""

from ltchm.codec.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from ltchm.codec.container import ContainerError
from ltchm.codec.identity import ModelIdentity, identity_of, weights_hash
from ltchm.codec.image import ImageCodec, ModelMismatchError, bits_per_pixel
from ltchm.codec.spec import load_model

__all__ = [
    "CheckpointError",
    "ContainerError",
    "ImageCodec",
    "ModelIdentity",
    "ModelMismatchError",
    "bits_per_pixel",
    "identity_of",
    "load_checkpoint",
    "load_model",
    "save_checkpoint",
    "weights_hash",
]
