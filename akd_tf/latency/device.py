"""Timing by an external command, e.g. adb and TFLite's benchmark_model.

  check_command_template(template)  the template names where the model goes
  run_latency_command(template, tflite)  writes the model, runs the command,
                                    parses its timing -> TimingStats
  parse_benchmark_output(text)      benchmark_model's timing lines

Public names: check_command_template, parse_benchmark_output,
run_latency_command.
"""

import os
import re
import shlex
import subprocess
import tempfile

from akd_tf.latency import errors
from akd_tf.latency import native_output
from akd_tf.latency import timing

__all__ = ["check_command_template", "parse_benchmark_output",
           "run_latency_command"]


def check_command_template(template: str) -> str:
  """Returns `template` if it names where the .tflite file goes.

  Raises:
    ValueError: the template is empty or lacks the `{tflite}` placeholder.
  """
  if not isinstance(template, str) or not template.strip():
    raise ValueError("--latency_command is empty; give a command such as "
                     "'adb push {tflite} /data/local/tmp/m.tflite && adb shell "
                     "/data/local/tmp/benchmark_model "
                     "--graph=/data/local/tmp/m.tflite --num_threads=1'")
  if "{tflite}" not in template:
    raise ValueError(f"--latency_command '{template}' has no {{tflite}} "
                     "placeholder; write {tflite} where the path of the "
                     "converted model goes, e.g. '... --graph={tflite}'")
  return template


_NUMBER = r"([0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?)"
_AVERAGE_RE = re.compile(r"Inference \(avg\):\s*" + _NUMBER)
_DETAIL_RE = re.compile(r"count=(\d+)\s.*?min=" + _NUMBER + r"\s+max=" +
                        _NUMBER + r"\s+avg=" + _NUMBER + r"\s+std=" + _NUMBER +
                        r"(?:.*?median=" + _NUMBER + r")?")


def parse_benchmark_output(text: str) -> timing.TimingStats:
  """Parses the output of TFLite's `benchmark_model`.

  `latency_ms` is the 'Inference (avg)' of the line
  'Inference timings in us: Init: ..., Inference (avg): 1050.25'; min, max,
  cv and median come from the last 'count=50 first=... min=... max=...
  avg=... std=... [median=...]' line when it is printed.

  Raises:
    CommandError: no 'Inference (avg)' timing is in `text`.
  """
  averages = _AVERAGE_RE.findall(text)
  if not averages:
    raise errors.CommandError(
        "the latency command printed no 'Inference timings in us: ... "
        "Inference (avg): <us>' line, as TFLite's benchmark_model does; its "
        f"output ends with:\n{native_output.tail(text) or '(nothing)'}")
  average_ms = float(averages[-1]) / 1e3
  details = _DETAIL_RE.findall(text)
  if not details:
    return timing.TimingStats(latency_ms=average_ms, median_ms=None,
                              min_ms=None, max_ms=None, mean_ms=average_ms,
                              cv=None, samples=0)
  count, low, high, mean, std, median = details[-1]
  return timing.TimingStats(
      latency_ms=average_ms,
      median_ms=float(median) / 1e3 if median else None,
      min_ms=float(low) / 1e3, max_ms=float(high) / 1e3, mean_ms=average_ms,
      cv=float(std) / float(mean) if float(mean) > 0 else 0.0,
      samples=int(count))


def run_latency_command(template: str, tflite: bytes,
                        timeout_s: float = 300.0) -> timing.TimingStats:
  """Times a model with an external command, e.g. on a phone through adb.

  The model is written to a temporary file whose shell-quoted path replaces
  every `{tflite}` in `template`; the command runs through the shell, so it
  may chain steps ('adb push {tflite} /data/local/tmp/m.tflite && adb shell
  ...'). Its stdout and stderr are parsed by `parse_benchmark_output`.

  Raises:
    ValueError: the template lacks `{tflite}`.
    CommandError: the command failed, timed out or printed no timing; the
      message quotes the end of its output.
  """
  check_command_template(template)
  with tempfile.TemporaryDirectory() as directory:
    path = os.path.join(directory, "model.tflite")
    with open(path, "wb") as f:
      f.write(tflite)
    command = template.replace("{tflite}", shlex.quote(path))
    try:
      result = subprocess.run(command, shell=True, capture_output=True,
                              text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
      raise errors.CommandError(f"latency command timed out after "
                                f"{timeout_s:g} s: {command}") from None
  if result.returncode != 0:
    raise errors.CommandError(
        f"latency command exited with status {result.returncode}: {command}\n"
        f"stderr tail:\n{native_output.tail(result.stderr) or '(empty)'}")
  return parse_benchmark_output(result.stdout + "\n" + result.stderr)
