"""Keras 3 functional students from MnasNet blocks, and the named presets.

The model is MnasNet's: a 3x3 stem convolution, the blocks (MBConv with
optional squeeze-and-excitation and drop-connect, or a regular convolution),
a 1x1 head convolution, global average pooling, dropout and a dense layer
that outputs logits (no softmax: distillation needs the logits).

Only stock Keras layers are used, so a student saved as `.keras` reloads with
`safe_mode=True` and no custom objects.

Public names: build_student, build_from_spec, round_filters, PRESETS,
BUILDER_VERSION, preset_block_strings, preset_global_params,
squeeze_reduce_layers.
"""

import math
from typing import Sequence, Tuple

import keras

from akd_tf.space import arch

__all__ = ["BUILDER_VERSION", "PRESETS", "build_from_spec", "build_student",
           "preset_block_strings", "preset_global_params", "round_filters",
           "squeeze_reduce_layers"]

# Bump whenever the layers a block string builds change (an op, an order, a
# default): measured latencies are cached under it and are then re-measured.
BUILDER_VERSION = 1

PRESETS = {
    "mnasnet_a1": (
        "r1_k3_s11_e1_i32_o16_noskip",
        "r2_k3_s22_e6_i16_o24",
        "r3_k5_s22_e3_i24_o40_se0.25",
        "r4_k3_s22_e6_i40_o80",
        "r2_k3_s11_e6_i80_o112_se0.25",
        "r3_k5_s22_e6_i112_o160_se0.25",
        "r1_k3_s11_e6_i160_o320",
    ),
    "mnasnet_b1": (
        "r1_k3_s11_e1_i32_o16_noskip",
        "r3_k3_s22_e3_i16_o24",
        "r3_k5_s22_e3_i24_o40",
        "r3_k5_s22_e6_i40_o80",
        "r2_k3_s11_e6_i80_o96",
        "r4_k5_s22_e6_i96_o192",
        "r1_k3_s11_e6_i192_o320_noskip",
    ),
    "mobilenet_v2": (
        "r1_k3_s11_e1_i32_o16",
        "r2_k3_s22_e6_i16_o24",
        "r3_k3_s22_e6_i24_o32",
        "r4_k3_s22_e6_i32_o64",
        "r3_k3_s11_e6_i64_o96",
        "r3_k3_s22_e6_i96_o160",
        "r1_k3_s11_e6_i160_o320",
    ),
}
_PRESET_ACTIVATION = {"mnasnet_a1": "relu", "mnasnet_b1": "relu",
                      "mobilenet_v2": "relu6"}


def preset_block_strings(name: str) -> Tuple[str, ...]:
  """Returns the block strings of a named preset.

  Raises:
    ValueError: unknown preset; the message lists the known ones.
  """
  if name not in PRESETS:
    raise ValueError(f"unknown preset '{name}'; choose one of "
                     f"{sorted(PRESETS)}")
  return PRESETS[name]


def preset_global_params(name: str, **overrides) -> arch.GlobalParams:
  """Returns the preset's `GlobalParams` with `overrides` applied."""
  preset_block_strings(name)
  params = {"activation": _PRESET_ACTIVATION[name]}
  params.update(overrides)
  return arch.GlobalParams(**params)


def round_filters(filters: int, global_params: arch.GlobalParams) -> int:
  """Scales `filters` by the width multiplier, rounded as MnasNet does.

  With a multiplier of exactly 1 the count is returned unchanged, so the
  filter counts written in block strings are the ones built.
  """
  multiplier = global_params.depth_multiplier
  if multiplier == 1.0:
    return filters
  divisor = global_params.depth_divisor
  min_depth = global_params.min_depth or divisor
  scaled = filters * multiplier
  new_filters = max(min_depth, int(scaled + divisor / 2) // divisor * divisor)
  if new_filters < 0.9 * scaled:
    new_filters += divisor
  return int(new_filters)


class _LayerMaker:
  """Makes a student's layers from one Keras namespace.

  Every layer is named, so a model built with Keras 3 and one built with
  tf_keras from the same blocks have the same layers under the same names
  (the latency lookup table slices models by them; quantization-aware
  training copies weights by them).

  Args:
    keras_api: The Keras namespace: `keras` (Keras 3) or `tf_keras`.
    global_params: Network-wide settings.
  """

  def __init__(self, keras_api, global_params: arch.GlobalParams):
    self.api = keras_api
    self.layers = keras_api.layers
    self.gp = global_params

  def batch_norm(self, name):
    return self.layers.BatchNormalization(
        momentum=self.gp.batch_norm_momentum,
        epsilon=self.gp.batch_norm_epsilon, name=name)

  def activation(self, name):
    return self.layers.Activation(self.gp.activation, name=name)

  def conv_bn_act(self, x, filters, kernel_size, strides, name, act=True):
    x = self.layers.Conv2D(filters, kernel_size, strides=strides,
                           padding="same", use_bias=False,
                           kernel_initializer="he_normal",
                           name=f"{name}_conv")(x)
    x = self.batch_norm(f"{name}_bn")(x)
    if act:
      x = self.activation(f"{name}_act")(x)
    return x

  def squeeze_excite(self, x, input_filters, se_ratio, name):
    filters = x.shape[-1]
    reduced = max(1, int(input_filters * se_ratio))
    s = self.layers.GlobalAveragePooling2D(keepdims=True,
                                           name=f"{name}_se_squeeze")(x)
    s = self.layers.Conv2D(reduced, 1, activation=self.gp.activation,
                           name=f"{name}_se_reduce")(s)
    s = self.layers.Conv2D(filters, 1, activation="sigmoid",
                           name=f"{name}_se_expand")(s)
    return self.layers.Multiply(name=f"{name}_se_excite")([x, s])

  def depthwise_bn_act(self, x, kernel_size, strides, name):
    x = self.layers.DepthwiseConv2D(kernel_size, strides=strides,
                                    padding="same", use_bias=False,
                                    depthwise_initializer="he_normal",
                                    name=f"{name}_dwconv")(x)
    x = self.batch_norm(f"{name}_dwconv_bn")(x)
    return self.activation(f"{name}_dwconv_act")(x)

  def block_layer(self, x, block, input_filters, strides, drop_rate, name):
    """One MnasNet layer: MBConv or regular conv, with SE and residual."""
    inputs = x
    output_filters = round_filters(block.output_filters, self.gp)
    expanded = input_filters * block.expand_ratio
    if block.conv_type == "regular":
      x = self.conv_bn_act(x, expanded if block.expand_ratio != 1 else
                           output_filters, block.kernel_size, strides,
                           f"{name}_fused")
      project = block.expand_ratio != 1
    else:
      if block.expand_ratio != 1:
        x = self.conv_bn_act(x, expanded, 1, 1, f"{name}_expand")
      x = self.depthwise_bn_act(x, block.kernel_size, strides, name)
      project = True
    if block.se_ratio:
      x = self.squeeze_excite(x, input_filters, block.se_ratio, name)
    if project:
      x = self.conv_bn_act(x, output_filters, 1, 1, f"{name}_project",
                           act=False)
    if (block.id_skip and strides == (1, 1) and
        input_filters == output_filters):
      if drop_rate > 0:
        x = self.layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1),
                                name=f"{name}_drop")(x)
      x = self.layers.Add(name=f"{name}_add")([x, inputs])
    return x

  def classifier(self, x, num_classes, dropout_rate):
    """Global average pooling, dropout and the dense logits layer."""
    x = self.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if dropout_rate > 0:
      x = self.layers.Dropout(dropout_rate, name="top_dropout")(x)
    limit = 1.0 / math.sqrt(num_classes)
    return self.layers.Dense(
        num_classes, name="logits",
        kernel_initializer=self.api.initializers.RandomUniform(
            -limit, limit))(x)


def squeeze_reduce_layers(model: keras.Model) -> list:
  """The first (activated) 1x1 convolution of every squeeze-excitation unit.

  Args:
    model: A model of `build_student` (layers found by the names it gives),
      or a part of one.
  """
  return [layer for layer in model.layers
          if layer.name.endswith("_se_reduce")]


def _checked_spec(blocks, global_params, input_shape) -> arch.ArchSpec:
  """The `ArchSpec` of the arguments, its first block fed by the stem.

  Raises:
    ValueError: the blocks do not chain or the input shape is invalid.
  """
  if blocks and isinstance(blocks[0], str):
    blocks = arch.decode_blocks(blocks)
  spec = arch.ArchSpec(blocks=blocks, global_params=global_params,
                       input_shape=input_shape)
  first = spec.blocks[0]
  if first.input_filters != spec.global_params.stem_size:
    raise ValueError(
        f"block 0 '{first.encode()}': input filters i{first.input_filters} "
        f"differ from the stem size {spec.global_params.stem_size}")
  return spec


def build_student(blocks: Sequence[arch.BlockArgs],
                  global_params: arch.GlobalParams,
                  input_shape: Sequence[int],
                  name: str = "student",
                  keras_api=keras) -> keras.Model:
  """Builds a functional Keras model from MnasNet blocks.

  Args:
    blocks: The blocks in network order (block strings or `BlockArgs`).
    global_params: Network-wide settings.
    input_shape: (height, width, channels) of one image, any size.
    name: Name of the Keras model.
    keras_api: The Keras namespace whose layers build it: `keras` (Keras 3,
      the default) or `tf_keras` (the quantization-aware training child,
      `akd_tf.deploy.export_qat`). Either gives the same layers and layer names.

  Returns:
    A `keras_api.Model` mapping float images to `num_classes` logits.

  Raises:
    ValueError: the blocks do not chain or the input shape is invalid.
  """
  spec = _checked_spec(blocks, global_params, input_shape)
  gp = spec.global_params
  make = _LayerMaker(keras_api, gp)
  inputs = keras_api.Input(shape=spec.input_shape, name="image")
  x = make.conv_bn_act(inputs, round_filters(gp.stem_size, gp), 3,
                       gp.stem_strides, "stem")
  total_layers = sum(b.num_repeat for b in spec.blocks)
  layer_index = 0
  for b, block in enumerate(spec.blocks):
    input_filters = round_filters(block.input_filters, gp)
    for r in range(block.num_repeat):
      drop_rate = gp.drop_connect_rate * layer_index / total_layers
      x = make.block_layer(x, block, input_filters,
                           block.strides if r == 0 else (1, 1), drop_rate,
                           f"block{b}_{r}")
      input_filters = round_filters(block.output_filters, gp)
      layer_index += 1
  x = make.conv_bn_act(x, round_filters(gp.head_size, gp), 1, 1, "head")
  outputs = make.classifier(x, gp.num_classes, gp.dropout_rate)
  return keras_api.Model(inputs, outputs, name=name)


def build_from_spec(spec: arch.ArchSpec, name: str = "student",
                    keras_api=keras) -> keras.Model:
  """Builds the student described by an `ArchSpec` (with `keras_api`'s
  layers, as `build_student`)."""
  return build_student(spec.blocks, spec.global_params, spec.input_shape,
                       name=name, keras_api=keras_api)
