"""Every choice of one MnasNet layer in one Keras layer (`SuperLayer`).

  operation   `tf.switch_case` on the op decision over three branches:
              regular conv, depthwise-separable conv and MBConv; only the
              branch taken runs. MBConv e3 and e6 are one branch with one
              set of weights (e3 uses the leading 3 x cin expansion
              channels of e6); the regular and the depthwise-separable
              conv have their own.
  kernel      3x3 kernels are the centre of the 5x5 ones (Single-Path NAS,
              TuNAS), sliced at run time.
  SE          a select between the excitation and 1 (the excitation of
              pooled vectors is cheap); without SE its weights get zero
              gradients.
  filters     every width uses the leading filters of the widest choice
              (Once-for-All): kernels and BatchNormalization parameters are
              sliced to the path's widths.
  layers      a layer the path skips takes an identity branch of the same
              switch.

Public names: SuperLayer, REGULAR, SEPARABLE, MBCONV, IDENTITY.
"""

from typing import List, Tuple

import keras
import tensorflow as tf

from akd_tf.oneshot import packed as packed_lib
from akd_tf.oneshot import path_ops
from akd_tf.space import arch
from akd_tf.space import search_space as space_lib

__all__ = ["IDENTITY", "MBCONV", "REGULAR", "SEPARABLE", "SuperLayer"]

# The op branches; MBConvs of every expansion share one. A layer the path
# skips takes the identity branch.
REGULAR, SEPARABLE, MBCONV, IDENTITY = range(4)


class SuperLayer(keras.layers.Layer):
  """Every choice of one MnasNet layer: four ops, kernels, SE, widths."""

  def __init__(self, max_in: int, max_out: int, stride: int,
               op_branches: Tuple[int, ...], op_expansions: Tuple[int, ...],
               global_params: arch.GlobalParams, name: str):
    super().__init__(name=name)
    self.stride = stride
    self.op_branches, self.op_expansions = op_branches, op_expansions
    self.global_params = global_params
    k = path_ops.MAX_KERNEL
    expanded = max_in * max(op_expansions)
    reduced = path_ops.se_reduced(max_in)
    self.regular = packed_lib.packed_op(
        "regular", [("kernel", (k, k, max_in, max_out), "he_normal")],
        [("bn", max_out)], max_out, reduced)
    self.separable = packed_lib.packed_op(
        "separable", [("kernel", (k, k, max_in, 1), "he_normal"),
                      ("project", (1, 1, max_in, max_out), "he_normal")],
        [("bn", max_in), ("project_bn", max_out)], max_in, reduced)
    self.mbconv = packed_lib.packed_op(
        "mbconv", [("expand", (1, 1, max_in, expanded), "he_normal"),
                   ("kernel", (k, k, expanded, 1), "he_normal"),
                   ("project", (1, 1, expanded, max_out), "he_normal")],
        [("expand_bn", expanded), ("bn", expanded), ("project_bn", max_out)],
        expanded, reduced)
    self.built = True

  def slices(self, prefix: str, block: arch.BlockArgs, cin: int,
             cout: int) -> List[packed_lib.WeightSlice]:
    """The weights of one student layer (see `Supernet.path_weight_slices`)."""
    one, lead = slice(None), path_ops.leading
    k = block.kernel_size
    found = []

    def bn(packed, student_name, part, channels):
      for attribute in ("gamma", "beta", "moving_mean", "moving_variance"):
        found.append(packed.locate(student_name, attribute,
                                   f"{part}_{attribute}",
                                   (lead(channels),)))

    def se(packed, channels):
      reduced = path_ops.se_reduced(cin)
      for unit, shape in (("reduce", (channels, reduced)),
                          ("expand", (reduced, channels))):
        found.append(packed.locate(
            f"{prefix}_se_{unit}", "kernel", f"se_{unit}_kernel",
            (one, one, lead(shape[0]), lead(shape[1]))))
        found.append(packed.locate(f"{prefix}_se_{unit}", "bias",
                                   f"se_{unit}_bias", (lead(shape[1]),)))

    if block.conv_type == "regular":
      found.append(self.regular.locate(
          f"{prefix}_fused_conv", "kernel", "kernel",
          path_ops.kernel_index(k, lead(cin), lead(cout))))
      bn(self.regular, f"{prefix}_fused_bn", "bn", cout)
      if block.se_ratio:
        se(self.regular, cout)
      return found
    packed = self.separable if block.expand_ratio == 1 else self.mbconv
    channels = cin * block.expand_ratio
    if block.expand_ratio != 1:
      found.append(packed.locate(f"{prefix}_expand_conv", "kernel", "expand",
                                 (one, one, lead(cin),
                                  lead(channels))))
      bn(packed, f"{prefix}_expand_bn", "expand_bn", channels)
    found.append(packed.locate(f"{prefix}_dwconv", "kernel", "kernel",
                               path_ops.kernel_index(k, lead(channels),
                                                     one)))
    bn(packed, f"{prefix}_dwconv_bn", "bn", channels)
    if block.se_ratio:
      se(packed, channels)
    found.append(packed.locate(f"{prefix}_project_conv", "kernel", "project",
                               (one, one, lead(channels),
                                lead(cout))))
    bn(packed, f"{prefix}_project_bn", "project_bn", cout)
    return found

  def apply(self, x, cin, cout, decisions, mode, present=None):
    """One layer of the path; `decisions` are its block's six actions.

    `present` (a bool tensor) says whether the path has this layer; when it
    is False the layer is the identity (x must then have cout channels).
    """
    gp = self.global_params
    kernel = tf.gather(tf.constant(space_lib.KERNELS),
                       decisions[path_ops.KERNEL])
    sizes = path_ops.Sizes(cin, kernel)
    with_se = tf.equal(decisions[path_ops.SE],
                       space_lib.SE_RATIOS.index(path_ops.SE_RATIO))
    strides = [1, self.stride, self.stride, 1]
    expanded = cin * tf.gather(tf.constant(self.op_expansions),
                               decisions[path_ops.OP])
    # Every vector a branch uses is made here, outside the branches.
    sizes.vector(kernel, kernel, cin, cout)
    sizes.vector(sizes.reduced)
    for c in (cin, cout, expanded):
      for dims in ((c,), (1, 1, c, sizes.reduced), (1, 1, sizes.reduced, c),
                   (kernel, kernel, c, 1), (1, 1, cin, c), (1, 1, c, cout)):
        sizes.vector(*dims)
    branch = lambda packed: path_ops.Branch(
        packed, sizes, mode, gp.batch_norm_momentum, gp.batch_norm_epsilon,
        path_ops.ACTIVATIONS[gp.activation])

    def depthwise(op, y, c):
      kernel_slice = tf.slice(op.weights["kernel"], sizes.centre,
                              sizes.vector(kernel, kernel, c, 1))
      return tf.nn.depthwise_conv2d(y, kernel_slice, strides, "SAME")

    def pointwise(op, part, y, c_in, c_out):
      return tf.nn.conv2d(y, op.lead(part, 1, 1, c_in, c_out), 1, "SAME")

    def regular():
      op = branch(self.regular)
      kernel_slice = tf.slice(op.weights["kernel"], sizes.centre,
                              sizes.vector(kernel, kernel, cin, cout))
      y = tf.nn.conv2d(x, kernel_slice, strides, "SAME")
      y = op.activation(op.batch_norm(y, "bn", cout))
      return op.excite(y, cout, with_se)

    def separable():
      op = branch(self.separable)
      y = op.activation(op.batch_norm(depthwise(op, x, cin), "bn", cin))
      y = pointwise(op, "project", op.excite(y, cin, with_se), cin, cout)
      return op.batch_norm(y, "project_bn", cout)

    def mbconv():
      op = branch(self.mbconv)
      c = expanded
      y = pointwise(op, "expand", x, cin, c)
      y = op.activation(op.batch_norm(y, "expand_bn", c))
      y = op.activation(op.batch_norm(depthwise(op, y, c), "bn", c))
      y = pointwise(op, "project", op.excite(y, c, with_se), c, cout)
      return op.batch_norm(y, "project_bn", cout)

    # MBConv e3 and e6 are one branch: only their expanded width differs.
    # Skipping a layer is a branch of the same switch, not a cond around
    # it: the gradient of nested control flow costs most of the tracing.
    index = tf.gather(tf.constant(self.op_branches), decisions[path_ops.OP])
    branches = {REGULAR: regular, SEPARABLE: separable, MBCONV: mbconv}
    if present is not None:
      index = tf.where(present, index, IDENTITY)
      branches[IDENTITY] = lambda: tf.identity(x)
    return tf.switch_case(index, branches)


