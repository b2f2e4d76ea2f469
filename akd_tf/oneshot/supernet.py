"""A weight-sharing supernet of the whole MnasNet search space.

One Keras model holds the weights of every student of a `SearchSpace`; a
path (the actions of one student, as an int tensor) picks which of them
run. The path is an input of the traced computation, so one trace of a
training step or of a scoring function serves every path. Each layer of
the skeleton is a `akd_tf.oneshot.super_layer.SuperLayer` (operation,
kernel, SE, width and presence on the path); skip is the identity
residual, where the student builder adds one (stride 1, equal widths); a
block holds its most layers, and a path's missing trailing layers take
the identity branch. BatchNormalization modes are those of
`akd_tf.oneshot.path_ops`.

The student of a path is the one `akd_tf.space.builder` builds from the
path's block strings; `path_weight_slices` says which slice of which
supernet variable is which of its weights (`akd_tf.oneshot.student`
copies them). Drop-connect is not supported
(`GlobalParams.drop_connect_rate` must be 0); dropout before the
classifier is, seeded per step.

Public names: Supernet.
"""

import math
from typing import List, Optional, Sequence, Tuple

import keras
import tensorflow as tf

from akd_tf.oneshot import packed as packed_lib
from akd_tf.oneshot import path_ops
from akd_tf.oneshot import super_layer
from akd_tf.space import arch
from akd_tf.space import builder
from akd_tf.space import search_space as space_lib

__all__ = ["Supernet"]

_PER_BLOCK = path_ops.PER_BLOCK


def _choice_table(space: space_lib.SearchSpace, decision: int, read
                  ) -> List[Tuple[int, ...]]:
  """Per block, `read(block)` for each choice of one decision.

  Found by decoding probe actions, so the rules stay the search space's.
  """
  per_block = space.num_choices[decision::_PER_BLOCK]
  table = [[] for _ in space.skeleton]
  for choice in range(max(per_block)):
    actions = [0] * space.num_decisions
    for b, n in enumerate(per_block):
      actions[b * _PER_BLOCK + decision] = min(choice, n - 1)
    for b, block in enumerate(space.decode(actions)):
      if choice < per_block[b]:
        table[b].append(read(block))
  return [tuple(row) for row in table]


class Supernet(keras.Model):
  """Every student of a search space in one weight-sharing Keras model.

  Args:
    space: The search space (skeleton and stem size).
    global_params: Settings shared by every student: num_classes, BN
      momentum and epsilon, activation, stem stride, head size, dropout,
      width multiplier (applied as `akd_tf.builder.round_filters` does).
    input_shape: (height, width, channels) of one image.
    name: Model name.

  Call: `supernet(images, path, training=False)` gives the logits of the
  path's student; `path` is an int tensor of the space's actions
  (`path_tensor`). See `forward` for the BatchNormalization modes.

  Raises:
    ValueError: drop_connect_rate > 0 (not supported), a stem size that
      differs between the space and global_params, or a bad input shape.
  """

  def __init__(self, space: space_lib.SearchSpace,
               global_params: arch.GlobalParams,
               input_shape: Sequence[int], name: str = "supernet",
               **kwargs):
    super().__init__(name=name, **kwargs)
    if global_params.drop_connect_rate:
      raise ValueError(
          f"Supernet: drop_connect_rate={global_params.drop_connect_rate} is "
          "not supported (set it to 0 for one-shot training)")
    if global_params.stem_size != space.stem_size:
      raise ValueError(
          f"Supernet: global_params.stem_size={global_params.stem_size} "
          f"differs from the search space's stem_size={space.stem_size}")
    self.image_shape = tuple(int(d) for d in input_shape)
    if len(self.image_shape) != 3 or min(self.image_shape) < 1:
      raise ValueError(f"Supernet: input_shape {self.image_shape} must be "
                       "three positive integers (height, width, channels)")
    self.space = space
    self.global_params = gp = global_params
    self.widths = _choice_table(
        space, path_ops.FILTERS,
        lambda b: builder.round_filters(b.output_filters, gp))
    self.repeats = _choice_table(space, path_ops.LAYERS, lambda b: b.num_repeat)
    ops = _choice_table(space, path_ops.OP,
                        lambda b: (b.conv_type, b.expand_ratio))
    if any(t == "regular" and e != 1 for t, e in ops[0]):
      raise ValueError("Supernet: a regular conv op with expansion is not "
                       "supported")
    op_branches = tuple(
        super_layer.REGULAR if t == "regular" else
        super_layer.SEPARABLE if e == 1 else super_layer.MBCONV
        for t, e in ops[0])
    op_expansions = tuple(e for _, e in ops[0])
    self.stem_filters = builder.round_filters(space.stem_size, gp)
    self.head_filters = builder.round_filters(gp.head_size, gp)
    self.block_layers = []
    max_in = self.stem_filters
    for b, skeleton_block in enumerate(space.skeleton):
      max_out = max(self.widths[b])
      layers = []
      for r in range(max(self.repeats[b])):
        layers.append(super_layer.SuperLayer(
            max_in, max_out, skeleton_block.stride if r == 0 else 1,
            op_branches, op_expansions, gp, f"block{b}_{r}"))
        max_in = max_out
      self.block_layers.append(layers)
    stem_weights, stem_statistics = packed_lib.bn_weights("bn",
                                                          self.stem_filters)
    self.stem = packed_lib.Packed(
        [("kernel", (3, 3, self.image_shape[-1], self.stem_filters),
          "he_normal")] + stem_weights, stem_statistics, name="stem")
    head_weights, head_statistics = packed_lib.bn_weights("bn",
                                                          self.head_filters)
    self.head = packed_lib.Packed(
        [("kernel", (1, 1, max_in, self.head_filters), "he_normal")] +
        head_weights, head_statistics, name="head")
    limit = 1.0 / math.sqrt(gp.num_classes)
    self.classifier = packed_lib.Packed(
        [("kernel", (self.head_filters, gp.num_classes),
          keras.initializers.RandomUniform(-limit, limit)),
         ("bias", (gp.num_classes,), "zeros")], name="classifier")
    self.built = True

  def get_config(self) -> dict:
    return {"space": self.space.get_config(),
            "global_params": self.global_params.get_config(),
            "input_shape": list(self.image_shape), "name": self.name}

  @classmethod
  def from_config(cls, config: dict) -> "Supernet":
    return cls(space_lib.SearchSpace.from_config(config["space"]),
               arch.GlobalParams.from_config(config["global_params"]),
               config["input_shape"], name=config.get("name", "supernet"))

  def path_tensor(self, actions: Sequence[int]) -> tf.Tensor:
    """The int32 path tensor of `actions`, checked against the space.

    Raises:
      ValueError: see `SearchSpace.validate_actions`.
    """
    return tf.constant(self.space.validate_actions(actions), tf.int32)

  def _has_residual(self, b: int, r: int) -> bool:
    """Whether layer r of block b can have an identity residual."""
    if r > 0:
      return True
    inputs = self.widths[b - 1] if b else (self.stem_filters,)
    return (self.space.skeleton[b].stride == 1 and
            bool(set(inputs) & set(self.widths[b])))

  def _layer(self, x, b, r, cin, cout, decisions, mode, present=None):
    """Layer r of block b; `present` as in `super_layer.SuperLayer.apply`."""
    y = self.block_layers[b][r].apply(x, cin, cout, decisions, mode, present)
    if not self._has_residual(b, r):
      return y
    residual = tf.equal(decisions[path_ops.SKIP], space_lib.SKIPS.index(True))
    if present is not None:
      residual = tf.logical_and(residual, present)
    if r > 0:  # Equal widths: a select, cheaper to trace than a cond.
      return y + x * tf.cast(residual, x.dtype)
    return tf.cond(tf.logical_and(residual, tf.equal(cin, cout)),
                   lambda: y + x, lambda: y)

  def forward(self, images, path, mode: str = "infer",
              dropout_seed: Optional[tf.Tensor] = None) -> tf.Tensor:
    """The logits of the student of `path` on `images`.

    Args:
      images: (batch, height, width, channels) float32.
      path: int tensor of the space's actions.
      mode: 'train' (batch statistics, moving ones updated, dropout),
        'calibrate' (batch statistics, which replace the moving ones of the
        path's channels) or 'infer' (moving statistics).
      dropout_seed: Two int32 seeding the dropout before the classifier in
        'train' mode (None: a fresh random seed).

    Raises:
      ValueError: unknown mode.
    """
    if mode not in path_ops.BN_MODES:
      raise ValueError(f"mode='{mode}' is not one of {path_ops.BN_MODES}")
    gp = self.global_params
    activation = path_ops.ACTIVATIONS[gp.activation]
    path = tf.cast(tf.convert_to_tensor(path), tf.int32)
    cin = tf.constant(self.stem_filters)
    sizes = path_ops.Sizes(cin, path_ops.MAX_KERNEL)
    packed = lambda p: path_ops.Branch(p, sizes, mode, gp.batch_norm_momentum,
                               gp.batch_norm_epsilon, activation)
    stem = packed(self.stem)
    x = tf.nn.conv2d(tf.cast(images, tf.float32), stem.weights["kernel"],
                     gp.stem_strides, "SAME")
    x = activation(stem.batch_norm(x, "bn", self.stem_filters))
    for b, layers in enumerate(self.block_layers):
      decisions = path[b * _PER_BLOCK:(b + 1) * _PER_BLOCK]
      cout = self._width(path, b)
      depth = tf.gather(tf.constant(self.repeats[b]),
                        decisions[path_ops.LAYERS])
      for r in range(len(layers)):
        # Layers beyond the fewest the block can have are on the path or not.
        present = None if r < min(self.repeats[b]) else r < depth
        x = self._layer(x, b, r, cin, cout, decisions, mode, present)
        cin = cout
    sizes = path_ops.Sizes(cin, path_ops.MAX_KERNEL)
    head = packed(self.head)
    x = tf.nn.conv2d(x, head.lead("kernel", 1, 1, cin, self.head_filters), 1,
                     "SAME")
    x = activation(head.batch_norm(x, "bn", self.head_filters))
    x = tf.reduce_mean(x, axis=[1, 2])
    if mode == "train" and gp.dropout_rate > 0:
      if dropout_seed is None:
        dropout_seed = tf.random.uniform([2], maxval=2**31 - 1,
                                         dtype=tf.int32)
      x = tf.nn.experimental.stateless_dropout(x, gp.dropout_rate,
                                               seed=dropout_seed)
    classifier = self.classifier.read()
    return tf.matmul(x, classifier["kernel"]) + classifier["bias"]

  def _width(self, path, b):
    """Output channels of block b on the path (the stem's for b = -1)."""
    if b < 0:
      return tf.constant(self.stem_filters)
    return tf.gather(tf.constant(self.widths[b]),
                     path[b * _PER_BLOCK + path_ops.FILTERS])

  def apply_layer(self, x, path, block: int, repeat: int,
                  mode: str = "infer") -> tf.Tensor:
    """Layer `repeat` of block `block` of the path's student, on its input.

    Args:
      x: What the student feeds that layer (the previous layer's output).
      path: int tensor of the space's actions.
      block, repeat: Which layer (`akd_tf.builder` names it
        f'block{block}_{repeat}').
      mode: A BatchNormalization mode (see `forward`).

    Raises:
      ValueError: no such layer in the supernet, or an unknown mode.
    """
    if mode not in path_ops.BN_MODES:
      raise ValueError(f"mode='{mode}' is not one of {path_ops.BN_MODES}")
    if not (0 <= block < len(self.block_layers) and
            0 <= repeat < len(self.block_layers[block])):
      raise ValueError(f"the supernet has no layer block{block}_{repeat}")
    path = tf.cast(tf.convert_to_tensor(path), tf.int32)
    cout = self._width(path, block)
    cin = cout if repeat else self._width(path, block - 1)
    return self._layer(x, block, repeat, cin, cout,
                       path[block * _PER_BLOCK:(block + 1) * _PER_BLOCK], mode)

  def call(self, images, path, training=False):
    return self.forward(images, path, "train" if training else "infer")

  def path_weight_slices(self, actions: Sequence[int]
                         ) -> List[packed_lib.WeightSlice]:
    """Every weight of the student of `actions` and where it lives here.

    The student is `akd_tf.builder.build_from_spec` of the decoded actions
    with this supernet's global_params and input shape; names are its layer
    names.

    Raises:
      ValueError: see `SearchSpace.validate_actions`.
    """
    gp = self.global_params
    blocks = self.space.decode(actions)
    one = slice(None)
    found = [self.stem.locate("stem_conv", "kernel", "kernel", (one,) * 4)]
    for attribute in ("gamma", "beta", "moving_mean", "moving_variance"):
      found.append(self.stem.locate("stem_bn", attribute, f"bn_{attribute}",
                                    (one,)))
    cin = self.stem_filters
    for b, block in enumerate(blocks):
      cout = builder.round_filters(block.output_filters, gp)
      for r in range(block.num_repeat):
        found += self.block_layers[b][r].slices(f"block{b}_{r}", block, cin,
                                                cout)
        cin = cout
    found.append(self.head.locate("head_conv", "kernel", "kernel",
                                  (one, one, path_ops.leading(cin), one)))
    for attribute in ("gamma", "beta", "moving_mean", "moving_variance"):
      found.append(self.head.locate("head_bn", attribute, f"bn_{attribute}",
                                    (one,)))
    found += [self.classifier.locate("logits", "kernel", "kernel",
                                     (one, one)),
              self.classifier.locate("logits", "bias", "bias", (one,))]
    return found
