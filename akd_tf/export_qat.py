"""Quantization-aware training of a student with TFMOT, in its own process.

TensorFlow Model Optimization 0.8 accepts only tf_keras (legacy Keras 2)
models, and importing it sets TF_USE_LEGACY_KERAS=1, which turns `tf.keras`
into tf_keras for the rest of the process. So this module is never imported
by the Keras 3 code: `akd_tf.export` runs it as

  TF_USE_LEGACY_KERAS=1 python -m akd_tf.export_qat REQUEST.json

where REQUEST.json names the student's `ArchSpec` config, an .npz of its
Keras 3 weights ('w:<layer name>:<index>') and of the images, the QAT
recipe and the output paths. The child
  1. rebuilds the student with tf_keras from its block strings, with the
     layer structure and names of `akd_tf.builder`;
  2. copies the weights layer by layer and checks that the rebuilt model's
     logits match the Keras 3 model's (max abs difference reported);
  3. quantizes it (`tfmot.quantization.keras`; squeeze-and-excitation
     Multiply layers get an output quantizer, which TFMOT's registry lacks),
     fine-tunes it for `epochs` with cross-entropy;
  4. converts it to a full-integer int8 .tflite and writes a result JSON.

Public names: build_tf_keras_student, copy_weights, quantize_student, main.
"""

import json
import os
import sys
import time

if "keras" in sys.modules and not os.environ.get("TF_USE_LEGACY_KERAS"):
  raise ImportError("akd_tf.export_qat switches TensorFlow to legacy Keras; "
                    "run it in its own process: TF_USE_LEGACY_KERAS=1 python "
                    "-m akd_tf.export_qat REQUEST.json")
os.environ["TF_USE_LEGACY_KERAS"] = "1"

# pylint: disable=g-import-not-at-top,wrong-import-position
import math

import numpy as np
import tensorflow as tf
import tensorflow_model_optimization as tfmot
import tf_keras

from akd_tf import arch
from akd_tf.builder import round_filters
# pylint: enable=g-import-not-at-top,wrong-import-position

__all__ = ["build_tf_keras_student", "copy_weights", "main",
           "quantize_student"]

layers = tf_keras.layers


def _bn(gp, name):
  return layers.BatchNormalization(momentum=gp.batch_norm_momentum,
                                   epsilon=gp.batch_norm_epsilon, name=name)


def _conv_bn_act(x, filters, kernel_size, strides, gp, name, act=True):
  x = layers.Conv2D(filters, kernel_size, strides=strides, padding="same",
                    use_bias=False, name=f"{name}_conv")(x)
  x = _bn(gp, f"{name}_bn")(x)
  if act:
    x = layers.Activation(gp.activation, name=f"{name}_act")(x)
  return x


def _layer(x, block, input_filters, strides, drop_rate, gp, name):
  """Mirrors `akd_tf.builder._layer`."""
  inputs = x
  output_filters = round_filters(block.output_filters, gp)
  expanded = input_filters * block.expand_ratio
  if block.conv_type == "regular":
    x = _conv_bn_act(x, expanded if block.expand_ratio != 1 else
                     output_filters, block.kernel_size, strides, gp,
                     f"{name}_fused")
    project = block.expand_ratio != 1
  else:
    if block.expand_ratio != 1:
      x = _conv_bn_act(x, expanded, 1, 1, gp, f"{name}_expand")
    x = layers.DepthwiseConv2D(block.kernel_size, strides=strides,
                               padding="same", use_bias=False,
                               name=f"{name}_dwconv")(x)
    x = _bn(gp, f"{name}_dwconv_bn")(x)
    x = layers.Activation(gp.activation, name=f"{name}_dwconv_act")(x)
    project = True
  if block.se_ratio:
    filters = x.shape[-1]
    reduced = max(1, int(input_filters * block.se_ratio))
    s = layers.GlobalAveragePooling2D(keepdims=True,
                                      name=f"{name}_se_squeeze")(x)
    s = layers.Conv2D(reduced, 1, activation=gp.activation,
                      name=f"{name}_se_reduce")(s)
    s = layers.Conv2D(filters, 1, activation="sigmoid",
                      name=f"{name}_se_expand")(s)
    x = layers.Multiply(name=f"{name}_se_excite")([x, s])
  if project:
    x = _conv_bn_act(x, output_filters, 1, 1, gp, f"{name}_project",
                     act=False)
  if (block.id_skip and strides == (1, 1) and
      input_filters == output_filters):
    if drop_rate > 0:
      x = layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1),
                         name=f"{name}_drop")(x)
    x = layers.Add(name=f"{name}_add")([x, inputs])
  return x


def build_tf_keras_student(spec: arch.ArchSpec) -> tf_keras.Model:
  """Builds the student of `spec` with tf_keras: the same layers, in the
  same order and with the same names, as `akd_tf.builder.build_from_spec`.
  """
  gp = spec.global_params
  inputs = tf_keras.Input(shape=spec.input_shape, name="image")
  x = _conv_bn_act(inputs, round_filters(gp.stem_size, gp), 3,
                   gp.stem_strides, gp, "stem")
  total_layers = sum(b.num_repeat for b in spec.blocks)
  layer_index = 0
  for b, block in enumerate(spec.blocks):
    input_filters = round_filters(block.input_filters, gp)
    for r in range(block.num_repeat):
      x = _layer(x, block, input_filters, block.strides if r == 0 else (1, 1),
                 gp.drop_connect_rate * layer_index / total_layers, gp,
                 f"block{b}_{r}")
      input_filters = round_filters(block.output_filters, gp)
      layer_index += 1
  x = _conv_bn_act(x, round_filters(gp.head_size, gp), 1, 1, gp, "head")
  x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
  if gp.dropout_rate > 0:
    x = layers.Dropout(gp.dropout_rate, name="top_dropout")(x)
  limit = 1.0 / math.sqrt(gp.num_classes)
  outputs = layers.Dense(gp.num_classes, name="logits",
                         kernel_initializer=tf_keras.initializers.RandomUniform(
                             -limit, limit))(x)
  return tf_keras.Model(inputs, outputs, name="student")


def copy_weights(model: tf_keras.Model, weights: dict) -> None:
  """Sets every layer's weights from {'w:<layer>:<index>': array}.

  Raises:
    ValueError: the layer names or weight shapes differ.
  """
  expected = {key.split(":")[1] for key in weights}
  have = {layer.name for layer in model.layers if layer.weights}
  if expected != have:
    raise ValueError(f"the tf_keras rebuild's layers differ from the Keras "
                     f"model's: missing {sorted(expected - have)[:5]}, extra "
                     f"{sorted(have - expected)[:5]}")
  for layer in model.layers:
    if layer.weights:
      layer.set_weights([weights[f"w:{layer.name}:{i}"]
                         for i in range(len(layer.weights))])


class _OutputQuantizeConfig(tfmot.quantization.keras.QuantizeConfig):
  """Quantizes a weightless layer's output (as TFMOT does for Add)."""

  def get_weights_and_quantizers(self, layer):
    return []

  def get_activations_and_quantizers(self, layer):
    return []

  def set_quantize_weights(self, layer, quantize_weights):
    pass

  def set_quantize_activations(self, layer, quantize_activations):
    pass

  def get_output_quantizers(self, layer):
    return [tfmot.quantization.keras.quantizers.MovingAverageQuantizer(
        num_bits=8, per_axis=False, symmetric=False, narrow_range=False)]

  def get_config(self):
    return {}


def quantize_student(model: tf_keras.Model) -> tf_keras.Model:
  """Returns the quantization-aware version of a tf_keras student."""
  annotate = tfmot.quantization.keras.quantize_annotate_layer

  def annotated(layer):
    if isinstance(layer, layers.Multiply):
      return annotate(layer, quantize_config=_OutputQuantizeConfig())
    return annotate(layer)

  clone = tf_keras.models.clone_model(model, clone_function=annotated)
  with tfmot.quantization.keras.quantize_scope(
      {"_OutputQuantizeConfig": _OutputQuantizeConfig}):
    return tfmot.quantization.keras.quantize_apply(clone)


def _convert(model, calibration):
  def representative():
    for image in calibration:
      yield [image[None].astype(np.float32)]

  converter = tf.lite.TFLiteConverter.from_keras_model(model)
  converter.optimizations = [tf.lite.Optimize.DEFAULT]
  converter.representative_dataset = representative
  converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
  converter.inference_input_type = tf.int8
  converter.inference_output_type = tf.int8
  return converter.convert()


def main(argv) -> int:
  """Runs the request named by argv[1]; see the module docstring."""
  if len(argv) != 2:
    print("usage: python -m akd_tf.export_qat REQUEST.json", file=sys.stderr)
    return 2
  with open(argv[1]) as f:
    request = json.load(f)
  arrays = np.load(request["arrays"])
  spec = arch.ArchSpec.from_config(request["spec"])
  tf_keras.utils.set_random_seed(request["seed"])
  model = build_tf_keras_student(spec)
  copy_weights(model, {k: arrays[k] for k in arrays.files
                       if k.startswith("w:")})
  check = arrays["check_images"]
  rebuild_diff = float(np.max(np.abs(
      model(check, training=False).numpy() - arrays["check_logits"])))
  print(f"tf_keras rebuild: max abs logit difference {rebuild_diff:.2e}",
        file=sys.stderr)
  if not rebuild_diff < 1e-3:
    raise ValueError(f"the tf_keras rebuild computes other logits than the "
                     f"Keras model (max abs difference {rebuild_diff:.3g})")
  qat = quantize_student(model)
  qat.compile(optimizer=tf_keras.optimizers.Adam(request["learning_rate"]),
              loss=tf_keras.losses.SparseCategoricalCrossentropy(
                  from_logits=True),
              metrics=["accuracy"])
  start = time.perf_counter()
  history = qat.fit(arrays["train_images"], arrays["train_labels"],
                    batch_size=request["batch_size"],
                    epochs=request["epochs"], shuffle=True, verbose=0)
  seconds = time.perf_counter() - start
  tflite = _convert(qat, arrays["calibration"])
  tmp = request["tflite"] + ".tmp"
  with open(tmp, "wb") as f:
    f.write(tflite)
  os.replace(tmp, request["tflite"])
  with open(request["result"], "w") as f:
    json.dump({"rebuild_max_abs_diff": rebuild_diff, "train_seconds": seconds,
               "history": {k: [float(v) for v in vs]
                           for k, vs in history.history.items()}}, f)
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
