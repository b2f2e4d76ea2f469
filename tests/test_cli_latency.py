"""Tests of the akd-latency app, run as a real subprocess."""

import json
import os
import subprocess
import sys

import pytest

FAKE = os.path.join(os.path.dirname(__file__), "fake_benchmark_model.py")
TINY = ["--blocks=r1_k3_s11_e1_i32_o8,r1_k3_s22_e3_i8_o16", "--image_size=28",
        "--channels=1", "--num_classes=10", "--runs=5", "--repeats=2",
        "--warmup=1"]


def run_latency(*args):
  return subprocess.run([sys.executable, "-m", "akd_tf.cli.latency", *args],
                        capture_output=True, text=True, timeout=180,
                        check=False)


def last_json_line(result):
  assert result.returncode == 0, result.stderr
  return json.loads(result.stdout.strip().splitlines()[-1])


def test_json_line_has_the_statistics(tmp_path):
  cache = str(tmp_path / "cache.jsonl")
  record = last_json_line(run_latency(*TINY, "--json",
                                      f"--latency_cache={cache}"))
  for key in ("latency_ms", "median_ms", "min_ms", "max_ms", "cv"):
    assert isinstance(record[key], float), key
  assert record["min_ms"] <= record["median_ms"] <= record["max_ms"]
  assert record["latency_ms"] == record["min_ms"]
  assert record["samples"] == 10
  assert record["source"] == "measured" and record["conversions"] == 1
  assert record["input_shape"] == [28, 28, 1]
  again = last_json_line(run_latency(*TINY, "--json",
                                     f"--latency_cache={cache}"))
  assert again["cached"] and again["conversions"] == 0
  assert again["latency_ms"] == record["latency_ms"]


def test_command_mode_reads_benchmark_model_output():
  command = f"{sys.executable} {FAKE} --graph={{tflite}} --num_threads=1"
  record = last_json_line(run_latency(*TINY, "--json", "--latency=command",
                                      f"--latency_command={command}"))
  assert record["source"] == "command"
  assert record["latency_ms"] == pytest.approx(1.05025)
  assert record["median_ms"] == pytest.approx(1.044)


@pytest.mark.parametrize("args, message", [
    (["--latency=command"], "--latency=command needs --latency_command"),
    (["--latency=command", "--latency_command=adb shell benchmark_model"],
     "--latency_command: --latency_command 'adb shell benchmark_model' has "
     "no {tflite} placeholder"),
    (["--threads=0"], "--threads: LatencyConfig: threads=0 must be >= 1"),
    (["--latency=command",
      f"--latency_command={sys.executable} {FAKE} --graph={{tflite}} --fail"],
     "no devices/emulators found"),
])
def test_bad_input_is_a_clear_error_not_a_traceback(args, message):
  result = run_latency(*TINY, *args)
  assert result.returncode != 0
  assert message in result.stderr
  assert "Traceback" not in result.stderr


if __name__ == "__main__":
  sys.exit(pytest.main([__file__]))
