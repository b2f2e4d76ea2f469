"""Tests of akd_tf.latency.device: the on-device command path, with a local
stand-in for adb and benchmark_model (fake_benchmark_model.py)."""

import sys

import pytest

from akd_tf.latency import device
from akd_tf.latency import errors
from latency_testing import FAKE_COMMAND


def test_parser_reads_old_format_with_exponents():
  text = ("count=50 first=2990275 curr=2913402 min=2727568 max=3189954 "
          "avg=2.95034e+06 std=109798\n\nInference timings in us: Init: "
          "17187, First inference: 3512391, Warmup (avg): 3.51239e+06, "
          "Inference (avg): 2.95034e+06\n")
  stats = device.parse_benchmark_output(text)
  assert stats.latency_ms == pytest.approx(2950.34)
  assert stats.min_ms == pytest.approx(2727.568)
  assert stats.median_ms is None


def test_failing_command_shows_exit_status_and_stderr(tiny_tflite):
  with pytest.raises(errors.CommandError,
                     match=r"(?s)status 1.*no devices/emulators found"):
    device.run_latency_command(FAKE_COMMAND + " --fail", tiny_tflite)


def test_command_without_timing_line_is_a_clear_error(tiny_tflite):
  with pytest.raises(errors.CommandError,
                     match=r"(?s)no 'Inference timings.*Loaded model"):
    device.run_latency_command(FAKE_COMMAND + " --no_timing", tiny_tflite)


def test_template_without_placeholder_is_rejected():
  with pytest.raises(ValueError, match=r"no \{tflite\} placeholder"):
    device.check_command_template("adb shell benchmark_model")
  with pytest.raises(ValueError, match="is empty"):
    device.check_command_template("  ")


if __name__ == "__main__":
  sys.exit(pytest.main([__file__]))
