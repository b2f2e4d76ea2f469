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

from akd_tf import arch

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


def _activation(global_params):
  return {"relu": "relu", "relu6": "relu6", "swish": "swish"}[
      global_params.activation]


def _batch_norm(global_params, name):
  return keras.layers.BatchNormalization(
      momentum=global_params.batch_norm_momentum,
      epsilon=global_params.batch_norm_epsilon, name=name)


def _conv_bn_act(x, filters, kernel_size, strides, global_params, name,
                 act=True):
  x = keras.layers.Conv2D(filters, kernel_size, strides=strides,
                          padding="same", use_bias=False,
                          kernel_initializer="he_normal",
                          name=f"{name}_conv")(x)
  x = _batch_norm(global_params, f"{name}_bn")(x)
  if act:
    x = keras.layers.Activation(_activation(global_params),
                                name=f"{name}_act")(x)
  return x


def _squeeze_excite(x, input_filters, se_ratio, global_params, name):
  filters = x.shape[-1]
  reduced = max(1, int(input_filters * se_ratio))
  s = keras.layers.GlobalAveragePooling2D(keepdims=True,
                                          name=f"{name}_se_squeeze")(x)
  s = keras.layers.Conv2D(reduced, 1, activation=_activation(global_params),
                          name=f"{name}_se_reduce")(s)
  s = keras.layers.Conv2D(filters, 1, activation="sigmoid",
                          name=f"{name}_se_expand")(s)
  return keras.layers.Multiply(name=f"{name}_se_excite")([x, s])


def squeeze_reduce_layers(model: keras.Model) -> list:
  """The first (activated) 1x1 convolution of every squeeze-excitation unit.

  Args:
    model: A model of `build_student` (layers found by the names it gives),
      or a part of one.
  """
  return [layer for layer in model.layers
          if layer.name.endswith("_se_reduce")]


def _layer(x, block, input_filters, strides, drop_rate, global_params, name):
  """One MnasNet layer: MBConv or regular conv, with SE and residual."""
  inputs = x
  output_filters = round_filters(block.output_filters, global_params)
  expanded = input_filters * block.expand_ratio
  if block.conv_type == "regular":
    x = _conv_bn_act(x, expanded if block.expand_ratio != 1 else
                     output_filters, block.kernel_size, strides,
                     global_params, f"{name}_fused")
    project = block.expand_ratio != 1
  else:
    if block.expand_ratio != 1:
      x = _conv_bn_act(x, expanded, 1, 1, global_params, f"{name}_expand")
    x = keras.layers.DepthwiseConv2D(block.kernel_size, strides=strides,
                                     padding="same", use_bias=False,
                                     depthwise_initializer="he_normal",
                                     name=f"{name}_dwconv")(x)
    x = _batch_norm(global_params, f"{name}_dwconv_bn")(x)
    x = keras.layers.Activation(_activation(global_params),
                                name=f"{name}_dwconv_act")(x)
    project = True
  if block.se_ratio:
    x = _squeeze_excite(x, input_filters, block.se_ratio, global_params, name)
  if project:
    x = _conv_bn_act(x, output_filters, 1, 1, global_params,
                     f"{name}_project", act=False)
  if (block.id_skip and strides == (1, 1) and
      input_filters == output_filters):
    if drop_rate > 0:
      x = keras.layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1),
                               name=f"{name}_drop")(x)
    x = keras.layers.Add(name=f"{name}_add")([x, inputs])
  return x


def build_student(blocks: Sequence[arch.BlockArgs],
                  global_params: arch.GlobalParams,
                  input_shape: Sequence[int],
                  name: str = "student") -> keras.Model:
  """Builds a functional Keras model from MnasNet blocks.

  Args:
    blocks: The blocks in network order (block strings or `BlockArgs`).
    global_params: Network-wide settings.
    input_shape: (height, width, channels) of one image, any size.
    name: Name of the Keras model.

  Returns:
    A `keras.Model` mapping float images to `num_classes` logits.

  Raises:
    ValueError: the blocks do not chain or the input shape is invalid.
  """
  if blocks and isinstance(blocks[0], str):
    blocks = arch.decode_blocks(blocks)
  spec = arch.ArchSpec(blocks=blocks, global_params=global_params,
                       input_shape=input_shape)
  gp = spec.global_params
  if spec.blocks[0].input_filters != gp.stem_size:
    raise ValueError(
        f"block 0 '{spec.blocks[0].encode()}': input filters "
        f"i{spec.blocks[0].input_filters} differ from the stem size "
        f"{gp.stem_size}")
  inputs = keras.Input(shape=spec.input_shape, name="image")
  x = _conv_bn_act(inputs, round_filters(gp.stem_size, gp), 3,
                   gp.stem_strides, gp, "stem")
  total_layers = sum(b.num_repeat for b in spec.blocks)
  layer_index = 0
  for b, block in enumerate(spec.blocks):
    input_filters = round_filters(block.input_filters, gp)
    for r in range(block.num_repeat):
      drop_rate = gp.drop_connect_rate * layer_index / total_layers
      x = _layer(x, block, input_filters, block.strides if r == 0 else (1, 1),
                 drop_rate, gp, f"block{b}_{r}")
      input_filters = round_filters(block.output_filters, gp)
      layer_index += 1
  x = _conv_bn_act(x, round_filters(gp.head_size, gp), 1, 1, gp, "head")
  x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
  if gp.dropout_rate > 0:
    x = keras.layers.Dropout(gp.dropout_rate, name="top_dropout")(x)
  outputs = keras.layers.Dense(
      gp.num_classes, name="logits",
      kernel_initializer=keras.initializers.RandomUniform(
          -1.0 / math.sqrt(gp.num_classes), 1.0 / math.sqrt(gp.num_classes)))(x)
  return keras.Model(inputs, outputs, name=name)


def build_from_spec(spec: arch.ArchSpec, name: str = "student") -> keras.Model:
  """Builds the student described by an `ArchSpec`."""
  return build_student(spec.blocks, spec.global_params, spec.input_shape,
                       name=name)
