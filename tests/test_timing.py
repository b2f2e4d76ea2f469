"""Tests of akd_tf.latency.timing: the LiteRT timing protocol and its config."""

import sys

import keras
import pytest

from akd_tf.latency import convert
from akd_tf.latency import errors
from akd_tf.latency import timing
from latency_testing import FAST


def test_int8_layer_that_never_fires_is_a_clear_error():
  image = keras.Input((8, 8, 4), name="image")
  features = keras.layers.Conv2D(4, 3, padding="same",
                                 activation="relu")(image)
  dead = keras.layers.Conv2D(
      2, 1, activation="relu",
      bias_initializer=keras.initializers.Constant(-100.0))(features)
  gate = keras.layers.Conv2D(4, 1, activation="sigmoid")(dead)
  model = keras.Model(image, keras.layers.Multiply()([features, gate]))
  tflite = convert.convert_to_tflite(model, quantize="int8")
  with pytest.raises(errors.LatencyError,
                     match="output range was zero on the calibration"):
    timing.time_tflite(tflite, FAST)


def test_timing_statistics_are_ordered(tiny_tflite):
  stats = timing.time_tflite(tiny_tflite, FAST)
  assert stats.samples == 20
  assert 0 < stats.min_ms <= stats.median_ms <= stats.max_ms
  assert stats.latency_ms == stats.min_ms
  assert stats.cv >= 0
  p10 = timing.time_tflite(tiny_tflite, timing.LatencyConfig(
      warmup=2, runs=10, repeats=2, statistic="p10"))
  assert p10.min_ms <= p10.latency_ms <= p10.max_ms


def test_config_rejects_bad_values_by_name():
  with pytest.raises(ValueError, match="threads=0"):
    timing.LatencyConfig(threads=0)
  with pytest.raises(ValueError, match="statistic='p99'"):
    timing.LatencyConfig(statistic="p99")


if __name__ == "__main__":
  sys.exit(pytest.main([__file__]))
