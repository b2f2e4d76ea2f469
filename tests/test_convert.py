"""Tests of akd_tf.latency.convert: Keras -> TFLite, float32 and int8."""

import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from ai_edge_litert import interpreter as litert
from akd_tf.latency import convert
from akd_tf.latency import errors
from akd_tf.latency import timing
from akd_tf.space import builder
from latency_testing import FAST, TINY_PARAMS, tiny_spec


def run_tflite(tflite, image):
  interpreter = litert.Interpreter(model_content=tflite)
  interpreter.allocate_tensors()
  interpreter.set_tensor(interpreter.get_input_details()[0]["index"], image)
  interpreter.invoke()
  return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def test_tflite_outputs_match_keras(tiny_model, tiny_tflite):
  image = np.random.default_rng(1).random((1, 28, 28, 1), dtype=np.float32)
  expected = tiny_model(image, training=False).numpy()
  got = run_tflite(tiny_tflite, image)
  assert np.all(np.isfinite(got))
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_int8_conversion_has_int8_input_and_times():
  blocks = ("r1_k3_s11_e1_i8_o8", "r2_k3_s22_e3_i8_o16")  # No SE: see below.
  model = builder.build_student(blocks, TINY_PARAMS, (28, 28, 1))
  tflite = convert.convert_to_tflite(model, quantize="int8")
  interpreter = litert.Interpreter(model_content=tflite)
  assert interpreter.get_input_details()[0]["dtype"] == np.int8
  assert timing.time_tflite(tflite, FAST).latency_ms > 0


def test_conversion_prints_nothing(tiny_model, capfd):
  capfd.readouterr()
  convert.convert_to_tflite(tiny_model)
  out, err = capfd.readouterr()
  assert out == "" and err == ""


def test_unconvertible_model_is_a_clear_error():
  image = keras.Input((4, 4, 1), name="image")
  strings = keras.layers.Lambda(
      lambda x: tf.strings.to_number(tf.strings.as_string(x)),
      output_shape=(4, 4, 1))(image)
  model = keras.Model(image, strings, name="stringy")
  with pytest.raises(errors.ConversionError,
                     match=r"(?s)model 'stringy'.*AsString"):
    convert.convert_to_tflite(model)


@pytest.mark.parametrize("make, message", [
    (lambda: "not a model", "expected a keras.Model, got str"),
    (lambda: keras.Sequential([keras.Input((None, None, 3)),
                               keras.layers.Conv2D(2, 3)], name="dynamic"),
     "model 'dynamic' has input shape .* unknown dimensions"),
])
def test_bad_model_is_a_clear_error(make, message):
  with pytest.raises(errors.ConversionError, match=message):
    convert.convert_to_tflite(make())


def test_int8_timing_conversion_leaves_the_weights_as_they_were():
  model = builder.build_from_spec(tiny_spec())
  before = [w.numpy().copy() for w in model.weights]
  assert builder.squeeze_reduce_layers(model)
  convert.convert_for_timing(model, "int8")
  for weight, value in zip(model.weights, before):
    np.testing.assert_array_equal(weight.numpy(), value)


if __name__ == "__main__":
  sys.exit(pytest.main([__file__]))
