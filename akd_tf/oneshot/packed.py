"""Flat packed variables: the weights of one supernet op in one variable.

Tracing cost grows with the number of ops and of variables captured by a
switch's branches, so the weights of one op of one layer (kernels, SE,
BatchNormalization parameters) are packed into one flat variable, and
their BatchNormalization statistics into another (`Packed`); a branch
reads its variable once and splits it. `WeightSlice` says where one
weight of a path's student lives in such a variable.

Public names: WeightSlice, Packed, bn_weights, se_weights, packed_op.
"""

import dataclasses
import math
from typing import Dict, Tuple

import keras
import numpy as np
import tensorflow as tf

__all__ = ["Packed", "WeightSlice", "bn_weights", "packed_op", "se_weights"]

_BN_PARTS = (("gamma", "ones"), ("beta", "zeros"))
_BN_STATISTICS = (("moving_mean", 0.0), ("moving_variance", 1.0))


@dataclasses.dataclass(frozen=True)
class WeightSlice:
  """Where one weight of a path's student lives in the supernet.

  Attributes:
    layer: Name of the student's layer (`akd_tf.builder`'s names).
    attribute: The layer's weight attribute ('kernel', 'bias', 'gamma',
      'beta', 'moving_mean', 'moving_variance').
    variable: The flat supernet variable holding it.
    offset: Where the packed part begins in `variable`.
    shape: The packed part's shape.
    index: The slices of the part that are the weight.
  """

  layer: str
  attribute: str
  variable: keras.Variable
  offset: int
  shape: Tuple[int, ...]
  index: Tuple[slice, ...]

  def positions(self) -> np.ndarray:
    """Positions in `variable` of the weight's elements, in its order."""
    size = math.prod(self.shape)
    return (np.arange(self.offset, self.offset + size).reshape(self.shape)
            [self.index])

  def read(self) -> np.ndarray:
    """The weight's value."""
    return keras.ops.convert_to_numpy(self.variable)[self.positions()]



def _packed_initializer(parts):
  """Initializes a flat variable part by part with each part's initializer."""

  def initialize(shape, dtype=None):
    del shape
    return tf.concat([tf.reshape(keras.initializers.get(init)(part_shape,
                                                              dtype), [-1])
                      for _, part_shape, init in parts], axis=0)

  return initialize


class Packed(keras.layers.Layer):
  """Named weights in one flat variable, named BN statistics in another.

  Args:
    weights: (part, shape, initializer) of every trainable part.
    statistics: (part, size, initial value) of every BN statistic.
    name: Layer name.
  """

  def __init__(self, weights, statistics=(), name=None):
    super().__init__(name=name)
    self._shapes = {part: tuple(shape) for part, shape, _ in weights}
    self._sizes = {part: size for part, size, _ in statistics}
    self._offsets = {}
    for table in (self._shapes, {p: (s,) for p, s in self._sizes.items()}):
      offset = 0
      for part, shape in table.items():
        self._offsets[part] = offset
        offset += math.prod(shape)
    total = sum(math.prod(s) for s in self._shapes.values())
    self.packed = self.add_weight(shape=(total,),
                                  initializer=_packed_initializer(weights),
                                  name="packed")
    self.statistics = None
    if statistics:
      self.statistics = self.add_weight(
          shape=(sum(self._sizes.values()),), trainable=False,
          initializer=keras.initializers.Constant(np.concatenate(
              [np.full(size, value, np.float32)
               for _, size, value in statistics])),
          name="statistics")
    self.built = True

  def read(self) -> Dict[str, tf.Tensor]:
    """Every trainable part, reshaped (one read, one split)."""
    pieces = tf.split(self.packed.value,
                      [math.prod(s) for s in self._shapes.values()])
    return {part: tf.reshape(piece, shape) for (part, shape), piece in
            zip(self._shapes.items(), pieces)}

  def read_statistics(self) -> Dict[str, tf.Tensor]:
    pieces = tf.split(self.statistics.value, list(self._sizes.values()))
    return dict(zip(self._sizes, pieces))

  def write_statistic(self, part: str, value, size) -> None:
    """Writes `value` over the leading `size` ([n]) elements of `part`."""
    begin = tf.constant([self._offsets[part]])
    tf.raw_ops.ResourceStridedSliceAssign(
        ref=self.statistics.value.handle, begin=begin, end=begin + size,
        strides=tf.ones([1], tf.int32), value=value)

  def locate(self, layer: str, attribute: str, part: str,
             index: Tuple[slice, ...]) -> WeightSlice:
    """The `WeightSlice` of `index` of `part` as weight layer.attribute."""
    if part in self._shapes:
      return WeightSlice(layer, attribute, self.packed, self._offsets[part],
                         self._shapes[part], index)
    return WeightSlice(layer, attribute, self.statistics,
                       self._offsets[part], (self._sizes[part],), index)


def bn_weights(part: str, channels: int):
  return ([(f"{part}_{name}", (channels,), init) for name, init in _BN_PARTS],
          [(f"{part}_{name}", channels, value)
           for name, value in _BN_STATISTICS])


def se_weights(channels: int, reduced: int):
  return [("se_reduce_kernel", (1, 1, channels, reduced), "glorot_uniform"),
          ("se_reduce_bias", (reduced,), "zeros"),
          ("se_expand_kernel", (1, 1, reduced, channels), "glorot_uniform"),
          ("se_expand_bias", (channels,), "zeros")]


def packed_op(name, convs, bns, se_channels, max_reduced):
  """A `Packed` of one op: its kernels, BNs (part, channels) and SE."""
  weights, statistics = list(convs), []
  for part, channels in bns:
    trainable, moving = bn_weights(part, channels)
    weights += trainable
    statistics += moving
  weights += se_weights(se_channels, max_reduced)
  return Packed(weights, statistics, name=name)

