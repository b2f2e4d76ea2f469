"""The computations of one path through packed weights: slices, BN, SE.

`Sizes` holds a layer's slice sizes on a path as int32 tensors, built once
around the op switch so that every branch captures these few tensors.
`Branch` is one op on a path: its packed weights read once, its
BatchNormalization in one of three modes and its squeeze-and-excitation.

BatchNormalization keeps per-channel statistics of the widest choice; a
path reads and updates only its leading channels. Modes: 'train' (batch
statistics; moving ones updated with the momentum), 'calibrate' (batch
statistics, which become the moving statistics of the path's channels:
recalibration in one batch) and 'infer' (moving statistics).

Public names: BN_MODES, MAX_KERNEL, SE_RATIO, ACTIVATIONS, PER_BLOCK and
the decision indices (OP, KERNEL, SE, SKIP, FILTERS, LAYERS), Sizes,
Branch, kernel_index, leading, se_reduced.
"""

from typing import Tuple

import tensorflow as tf

from akd_tf.space import search_space as space_lib

__all__ = ["ACTIVATIONS", "BN_MODES", "Branch", "FILTERS", "KERNEL", "LAYERS",
           "MAX_KERNEL", "OP", "PER_BLOCK", "SE", "SE_RATIO", "SKIP", "Sizes",
           "kernel_index", "leading", "se_reduced"]

BN_MODES = ("train", "calibrate", "infer")
MAX_KERNEL = max(space_lib.KERNELS)
SE_RATIO = 0.25
ACTIVATIONS = {"relu": tf.nn.relu, "relu6": tf.nn.relu6,
               "swish": tf.nn.silu}
# Decisions per block, and the index of each in a block's slice of a path.
PER_BLOCK = len(space_lib.DECISIONS)
OP, KERNEL, SE, SKIP, FILTERS, LAYERS = range(PER_BLOCK)


def kernel_index(kernel: int, *rest: slice) -> Tuple[slice, ...]:
  offset = (MAX_KERNEL - kernel) // 2
  centre = slice(offset, offset + kernel)
  return (centre, centre) + rest


def leading(n: int) -> slice:
  return slice(0, n)


def se_reduced(input_filters):
  """Reduced SE channels, as `akd_tf.builder` computes them."""
  return max(1, int(input_filters * SE_RATIO))


class Sizes:
  """Slice sizes of one layer's weights on a path, as int32 vectors.

  Built in the graph around the op switch, so that every branch captures
  these few tensors instead of building its own.

  Attributes:
    reduced: SE-reduced channels of input channels `cin` (scalar).
    centre: Beginning of the centred slice of a kernel of size `kernel`.
    zeros: {rank: int32 zeros}, beginnings of leading slices.
  """

  def __init__(self, cin, kernel):
    self.reduced = tf.maximum(1, cin // int(1 / SE_RATIO))
    offset = (MAX_KERNEL - kernel) // 2
    self.centre = tf.stack([offset, offset, 0, 0])
    self.zeros = {n: tf.zeros([n], tf.int32) for n in (1, 2, 4)}
    self._vectors = {}

  def vector(self, *dims) -> tf.Tensor:
    """The int32 vector of `dims` (int32 scalars or ints), made once."""
    key = tuple(d if isinstance(d, int) else id(d) for d in dims)
    if key not in self._vectors:
      self._vectors[key] = tf.stack(
          [tf.constant(d) if isinstance(d, int) else d for d in dims])
    return self._vectors[key]

  def lead(self, tensor, *dims):
    """The leading `dims` of `tensor` (a full dimension for -1)."""
    return tf.slice(tensor, self.zeros[len(dims)], self.vector(*dims))



class Branch:
  """One op branch on a path: its packed weights read once, its BNs.

  Args:
    packed: The op's `_Packed`.
    sizes: The layer's `Sizes`.
    mode: A BN mode.
    momentum, epsilon: BatchNormalization settings.
    activation: The activation function.
  """

  def __init__(self, packed, sizes, mode, momentum, epsilon, activation):
    self.packed, self.sizes, self.mode = packed, sizes, mode
    self.momentum, self.epsilon = momentum, epsilon
    self.activation = activation
    self.weights = packed.read()
    self.statistics = (packed.read_statistics() if mode == "infer" or (
        mode == "train" and momentum > 0) else None)

  def lead(self, part, *dims):
    return self.sizes.lead(self.weights[part], *dims)

  def batch_norm(self, x, part, channels):
    """BatchNormalization of x, whose channels are the leading ones.

    In the batch-statistics modes it is computed as Keras computes it
    (`tf.nn.moments`, `tf.nn.batch_normalization`): the gradient of
    `FusedBatchNormV3` in training mode differed from the stand-alone
    student's here (tests/test_supernet_training.py).
    """
    gamma = self.lead(f"{part}_gamma", channels)
    beta = self.lead(f"{part}_beta", channels)
    if self.mode == "infer":
      return tf.raw_ops.FusedBatchNormV3(
          x=x, scale=gamma, offset=beta,
          mean=self.sizes.lead(self.statistics[f"{part}_moving_mean"],
                               channels),
          variance=self.sizes.lead(
              self.statistics[f"{part}_moving_variance"], channels),
          epsilon=self.epsilon, is_training=False)[0]
    mean, variance = tf.nn.moments(x, axes=[0, 1, 2])
    y = tf.nn.batch_normalization(x, mean, variance, beta, gamma,
                                  self.epsilon)
    size = self.sizes.vector(channels)
    for name, value in (("moving_mean", mean), ("moving_variance",
                                                variance)):
      if self.mode == "train" and self.momentum > 0:
        old = self.sizes.lead(self.statistics[f"{part}_{name}"], channels)
        value = old * self.momentum + value * (1.0 - self.momentum)
      self.packed.write_statistic(f"{part}_{name}", value, size)
    return y

  def excite(self, x, channels, with_se):
    """x times its SE excitation when with_se, else x (times exactly 1)."""
    reduced = self.sizes.reduced
    s = tf.reduce_mean(x, axis=[1, 2], keepdims=True)
    s = self.activation(tf.nn.bias_add(tf.nn.conv2d(
        s, self.lead("se_reduce_kernel", 1, 1, channels, reduced), 1,
        "SAME"), self.lead("se_reduce_bias", reduced)))
    s = tf.sigmoid(tf.nn.bias_add(tf.nn.conv2d(
        s, self.lead("se_expand_kernel", 1, 1, reduced, channels), 1,
        "SAME"), self.lead("se_expand_bias", channels)))
    return x * tf.where(with_se, s, tf.ones_like(s))


