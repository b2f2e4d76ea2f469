"""Parameter and multiply-accumulate counts of a Keras model.

MACs are counted from the layers, as the MnasNet and MobileNet papers count
them: convolutions (regular and depthwise) and dense layers; batch norm,
activations, pooling, additions and the SE rescaling multiply are free.

Public names: count_params, count_macs, profile_model, ModelProfile.
"""

import dataclasses

import keras
import numpy as np

__all__ = ["ModelProfile", "count_macs", "count_params", "profile_model"]


@dataclasses.dataclass(frozen=True)
class ModelProfile:
  """Size of a model: parameters (all, trainable) and MACs per image."""

  params: int
  trainable_params: int
  macs: int


def count_params(model: keras.Model) -> int:
  """Returns the number of parameters, trainable and not (BN statistics)."""
  return int(sum(np.prod(w.shape) for w in model.weights))


def _spatial(shape):
  """Output positions per image: 1 for a dense layer on vectors."""
  return int(np.prod(shape[1:-1]))


def count_macs(model: keras.Model) -> int:
  """Returns the multiply-accumulates of one forward pass on one image.

  Raises:
    ValueError: a layer's output shape is not fully known (build the model
      with a fixed input size first).
  """
  macs = 0
  for layer in model.layers:
    if isinstance(layer, keras.Model):
      macs += count_macs(layer)
      continue
    if not isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D,
                              keras.layers.Dense)):
      continue
    out_shape = layer.output.shape
    if any(d is None for d in out_shape[1:]):
      raise ValueError(f"layer '{layer.name}' has an unknown output shape "
                       f"{out_shape}; build the model with a fixed input size")
    # Every kernel holds exactly the weights one output position multiplies:
    # (kh, kw, in/groups, out) for Conv2D, (kh, kw, in, multiplier) for
    # DepthwiseConv2D, (in, out) for Dense.
    macs += _spatial(out_shape) * int(np.prod(layer.kernel.shape))
  return int(macs)


def profile_model(model: keras.Model) -> ModelProfile:
  """Returns parameters, trainable parameters and MACs of `model`."""
  trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
  return ModelProfile(params=count_params(model), trainable_params=trainable,
                      macs=count_macs(model))
