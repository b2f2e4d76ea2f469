"""Quantization-aware training of a student with TFMOT, in its own process.

TensorFlow Model Optimization 0.8 accepts only tf_keras (legacy Keras 2)
models, and importing it sets TF_USE_LEGACY_KERAS=1, which turns `tf.keras`
into tf_keras for the rest of the process. So this module is never imported
by the Keras 3 code: `akd_tf.deploy.export` runs it as

  TF_USE_LEGACY_KERAS=1 python -m akd_tf.deploy.export_qat REQUEST.json

where REQUEST.json names the student's `ArchSpec` config, an .npz of its
Keras 3 weights ('w:<layer name>:<index>') and of the images, the QAT
recipe and the output paths. The child
  1. rebuilds the student from its block strings with `akd_tf.space.builder`,
     given the tf_keras namespace: the layers and layer names of the Keras 3
     student;
  2. copies the weights layer by layer and checks that the rebuilt model's
     logits match the Keras 3 model's (max abs difference reported);
  3. quantizes it (`tfmot.quantization.keras`; squeeze-and-excitation
     Multiply layers get an output quantizer, which TFMOT's registry lacks),
     fine-tunes it for `epochs` with cross-entropy;
  4. converts it to a full-integer int8 .tflite and writes a result JSON.

The guard below refuses an import into a process whose `tf.keras` may
already be Keras 3. Keras 3 itself is imported here anyway (TFMOT imports
it, and so does `akd_tf.space.builder`): with TF_USE_LEGACY_KERAS=1 set before
TensorFlow loads, it does not change what `tf.keras` is.

Public names: copy_weights, quantize_student, main.
"""

import json
import os
import sys
import time

if "keras" in sys.modules and not os.environ.get("TF_USE_LEGACY_KERAS"):
  raise ImportError("akd_tf.deploy.export_qat switches TensorFlow to legacy "
                    "Keras; run it in its own process: TF_USE_LEGACY_KERAS=1 "
                    "python -m akd_tf.deploy.export_qat REQUEST.json")
os.environ["TF_USE_LEGACY_KERAS"] = "1"

# pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np
import tensorflow as tf
import tensorflow_model_optimization as tfmot
import tf_keras

from akd_tf.space import arch
from akd_tf.space import builder
# pylint: enable=g-import-not-at-top,wrong-import-position

__all__ = ["copy_weights", "main", "quantize_student"]

layers = tf_keras.layers


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
    print("usage: python -m akd_tf.deploy.export_qat REQUEST.json",
          file=sys.stderr)
    return 2
  with open(argv[1]) as f:
    request = json.load(f)
  arrays = np.load(request["arrays"])
  spec = arch.ArchSpec.from_config(request["spec"])
  tf_keras.utils.set_random_seed(request["seed"])
  model = builder.build_from_spec(spec, keras_api=tf_keras)
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
