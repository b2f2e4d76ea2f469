"""TFLite latency of students: conversion, LiteRT timing, devices, facade.

  convert_to_tflite(model)      Keras -> .tflite bytes (float32 or int8), quiet
  time_tflite(tflite, config)   LiteRT interpreter timing -> TimingStats
  run_latency_command(...)      timing by an external command, e.g. adb and
                                TFLite's benchmark_model on a phone
  LatencyMeasurer(mode, ...)    what the search calls: 'measured', 'lut' or
                                'command', with the stores of `latency_lut`

Timing protocol: `warmup` untimed invokes, then `repeats` rounds of `runs`
timed invokes `pause_ms` apart, garbage collection off; `latency_ms` is the
statistic
`config.statistic` of all timed invokes. This machine is shared: medians of
one model differ by up to 70% between processes under load, while the
minimum repeats within a few percent, so 'min' is the default (figures in
benchmarks/latency.py and the README).

Public names: LatencyConfig, TimingStats, LatencyResult, LatencyMeasurer,
LatencyError, ConversionError, CommandError, MODES, STATISTICS,
QUANTIZE_MODES, convert_to_tflite, convert_for_timing, time_tflite,
measure_model,
check_command_template, parse_benchmark_output, run_latency_command,
captured_native_output.
"""

import contextlib
import dataclasses
import gc
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from typing import Iterator, Optional

from ai_edge_litert import interpreter as litert
import keras
import numpy as np
import tensorflow as tf
# TF2 has no public freezing API; the TFLite converter itself uses this one.
# pylint: disable-next=g-direct-tensorflow-import
from tensorflow.python.framework import convert_to_constants

from akd_tf import config_checks
from akd_tf import latency_lut
from akd_tf.space import arch
from akd_tf.space import builder

__all__ = [
    "CommandError", "ConversionError", "LatencyConfig", "LatencyError",
    "LatencyMeasurer", "LatencyResult", "MODES", "QUANTIZE_MODES",
    "STATISTICS", "TimingStats", "captured_native_output",
    "check_command_template", "convert_for_timing", "convert_to_tflite",
    "measure_model", "parse_benchmark_output", "run_latency_command",
    "time_tflite",
]

MODES = ("measured", "lut", "command")
STATISTICS = ("min", "p10", "median", "mean")
QUANTIZE_MODES = ("none", "int8")
_TAIL_LINES = 15


class LatencyError(RuntimeError):
  """A latency could not be obtained; the message says why."""


class ConversionError(LatencyError):
  """A Keras model could not be converted to TFLite."""


class CommandError(LatencyError):
  """An on-device command failed or printed no timing."""


@dataclasses.dataclass(frozen=True)
class LatencyConfig:
  """How a latency is measured.

  Attributes:
    threads: Interpreter threads (1: one big core of a phone).
    warmup: Untimed invokes before timing.
    runs: Timed invokes per repeat.
    repeats: Rounds of `runs` timed invokes.
    pause_ms: Sleep between rounds, so the rounds sample more moments of a
      shared machine's load (it made the minimum of 28x28 students about
      twice as repeatable here).
    statistic: The statistic of the timed invokes that the reward uses:
      'min' (default: repeatable on a shared machine), 'p10', 'median',
      'mean'.
    quantize: 'none' (float32) or 'int8' (full-integer post-training
      quantization, int8 inputs and outputs).
    calibration_samples: Representative images for int8 when no data is
      given (random uniform images: right for latency, not for accuracy).
    command_timeout_s: Seconds before an on-device command is abandoned.
  """

  threads: int = 1
  warmup: int = 10
  runs: int = 20
  repeats: int = 20
  pause_ms: float = 20.0
  statistic: str = "min"
  quantize: str = "none"
  calibration_samples: int = 8
  command_timeout_s: float = 300.0

  def __post_init__(self):
    checks = (
        (self.threads >= 1, f"threads={self.threads} must be >= 1"),
        (self.warmup >= 0, f"warmup={self.warmup} must be >= 0"),
        (self.runs >= 1, f"runs={self.runs} must be >= 1"),
        (self.repeats >= 1, f"repeats={self.repeats} must be >= 1"),
        (self.pause_ms >= 0, f"pause_ms={self.pause_ms} must be >= 0"),
        (self.statistic in STATISTICS,
         f"statistic='{self.statistic}' is not one of {STATISTICS}"),
        (self.quantize in QUANTIZE_MODES,
         f"quantize='{self.quantize}' is not one of {QUANTIZE_MODES}"),
        (self.calibration_samples >= 1,
         f"calibration_samples={self.calibration_samples} must be >= 1"),
        (self.command_timeout_s > 0,
         f"command_timeout_s={self.command_timeout_s} must be > 0"),
    )
    config_checks.require(checks, "LatencyConfig")

  def get_config(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_config(cls, config: dict) -> "LatencyConfig":
    return cls(**config)

  def timing_settings(self) -> dict:
    """The fields that change a measured value (cache and table keys)."""
    settings = self.get_config()
    del settings["calibration_samples"], settings["command_timeout_s"]
    return settings


@dataclasses.dataclass(frozen=True)
class TimingStats:
  """Per-invoke statistics of one timing in ms; `latency_ms` is the
  configured statistic, and what a device command does not print is None."""

  latency_ms: float
  median_ms: Optional[float]
  min_ms: Optional[float]
  max_ms: Optional[float]
  mean_ms: Optional[float]
  cv: Optional[float]
  samples: int

  def get_config(self) -> dict:
    return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class LatencyResult:
  """What `LatencyMeasurer.measure` returns.

  Attributes:
    latency_ms: The latency the reward uses.
    source: 'measured', 'lut' or 'command'.
    cached: True when read from the cache (nothing converted or timed).
    stats: The timing statistics (None for a LUT prediction).
    seconds: Wall time this call took.
  """

  latency_ms: float
  source: str
  cached: bool
  stats: Optional[TimingStats]
  seconds: float

  def get_config(self) -> dict:
    """Returns a flat dict: latency_ms, median_ms, min_ms, max_ms, cv, ..."""
    stats = self.stats.get_config() if self.stats else {
        f.name: None for f in dataclasses.fields(TimingStats)}
    stats.update(latency_ms=self.latency_ms, source=self.source,
                 cached=self.cached, seconds=self.seconds)
    return stats


@contextlib.contextmanager
def captured_native_output() -> Iterator:
  """Sends file descriptors 1 and 2 to a temporary file while active.

  TensorFlow's converter and LiteRT log from C++ straight to the file
  descriptors, so replacing `sys.stderr` does not silence them. The captured
  text is readable inside the block (`capture.seek(0); capture.read()`), so
  errors can quote it. Process-wide: do not print from other threads meanwhile.

  Yields:
    The binary temporary file holding the captured output.
  """
  sys.stdout.flush()
  sys.stderr.flush()
  with tempfile.TemporaryFile() as capture:
    saved = (os.dup(1), os.dup(2))
    try:
      os.dup2(capture.fileno(), 1)
      os.dup2(capture.fileno(), 2)
      yield capture
    finally:
      sys.stdout.flush()
      sys.stderr.flush()
      for fd, saved_fd in enumerate(saved, start=1):
        os.dup2(saved_fd, fd)
        os.close(saved_fd)


def _tail(text: str, lines: int = _TAIL_LINES) -> str:
  kept = [line for line in text.strip().splitlines() if line.strip()]
  return "\n".join(kept[-lines:])


def _captured_tail(capture) -> str:
  capture.flush()
  capture.seek(0)
  return _tail(capture.read().decode(errors="replace"))


def _representative_data(model, data, calibration_samples):
  shape = tuple(model.inputs[0].shape[1:])
  if data is None:
    data = np.random.default_rng(0).random(
        (calibration_samples,) + shape, dtype=np.float32)
  data = np.asarray(data, dtype=np.float32)
  if data.shape[1:] != shape:
    raise ConversionError(f"representative data of shape {data.shape} does not "
                          f"match the model input (None,) + {shape}")

  def generate():
    for image in data:
      yield [image[None]]

  return generate


def convert_to_tflite(model: keras.Model, quantize: str = "none",
                      representative_data: Optional[np.ndarray] = None,
                      calibration_samples: int = 8) -> bytes:
  """Converts a single-input Keras model to a TFLite flatbuffer, quietly.

  The model is traced with batch size 1 (without autograph: a Keras model's
  call needs none), its weights are frozen into the graph, and the frozen
  function goes to `TFLiteConverter.from_concrete_functions`: 1.25 s for a
  28x28 search-space student here, against 1.5 s through a saved frozen
  SavedModel and 3-6 s for saving the variables or `model.export(
  format="litert")`. The unfrozen function, with the model as the trackable
  object, converts to a model that outputs NaN. The converter's log is
  captured, not printed.

  Args:
    model: A built Keras model with one input of fully known shape.
    quantize: 'none' (float32) or 'int8' (full-integer post-training
      quantization with int8 inputs and outputs).
    representative_data: Float images (N, H, W, C) used to calibrate int8;
      default `calibration_samples` random uniform images.
    calibration_samples: Number of random images when no data is given.

  Returns:
    The .tflite bytes.

  Raises:
    ConversionError: not a single-input Keras model, an input dimension is
      unknown, or the converter failed; the message quotes the converter's
      last log lines.
  """
  if quantize not in QUANTIZE_MODES:
    raise ConversionError(f"quantize='{quantize}' is not one of "
                          f"{QUANTIZE_MODES}")
  if not isinstance(model, keras.Model):
    raise ConversionError(f"expected a keras.Model, got "
                          f"{type(model).__name__}")
  name = model.name
  if len(model.inputs) != 1:
    raise ConversionError(f"model '{name}' has {len(model.inputs)} inputs; "
                          "only single-input models are converted")
  shape = tuple(model.inputs[0].shape[1:])
  if any(d is None for d in shape):
    raise ConversionError(f"model '{name}' has input shape (None,) + {shape} "
                          "with unknown dimensions; build it with a fixed "
                          "input size")
  spec = tf.TensorSpec((1,) + shape, tf.float32, name="image")
  with captured_native_output() as capture:
    try:
      traced = tf.function(lambda x: model(x, training=False),
                           input_signature=[spec],
                           autograph=False).get_concrete_function()
      frozen = convert_to_constants.convert_variables_to_constants_v2(traced)
      converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
      if quantize == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = _representative_data(
            model, representative_data, calibration_samples)
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
      return converter.convert()
    except ConversionError:
      raise
    except Exception as error:  # pylint: disable=broad-except
      first_line = (str(error).strip().splitlines() or [""])[0]
      raise ConversionError(
          f"could not convert model '{name}' to TFLite ({quantize}): "
          f"{type(error).__name__}: {first_line}\nconverter log tail:\n"
          f"{_captured_tail(capture)}") from error


@contextlib.contextmanager
def _firing_squeeze_units(model: keras.Model) -> Iterator[None]:
  """Makes every squeeze-excitation unit of `model` fire while active.

  In an untrained student the ReLU after an SE unit's reduce convolution
  can be zero on every image (its few filters all weigh the pooled,
  non-negative features negatively): int8 calibration then gives that
  tensor and the ones after it a zero range, and XNNPACK refuses the model.
  Measured at 28x28x1 with width x0.25: 5 of 24 random students, with real
  or random calibration images alike, and none with non-negative reduce
  kernels. Kernel values change no op and no shape, so the latency is that
  of the student; the kernels are restored on exit.
  """
  layers = builder.squeeze_reduce_layers(model)
  kernels = [layer.kernel.numpy() for layer in layers]
  try:
    for layer, kernel in zip(layers, kernels):
      layer.kernel.assign(np.abs(kernel))
    yield
  finally:
    for layer, kernel in zip(layers, kernels):
      layer.kernel.assign(kernel)


def convert_for_timing(model: keras.Model, quantize: str = "none",
                       representative_data: Optional[np.ndarray] = None,
                       calibration_samples: int = 8) -> bytes:
  """`convert_to_tflite` for a latency measurement, not for deployment.

  For int8 the squeeze-excitation units are made to fire during calibration
  (`_firing_squeeze_units`), so an untrained student is not refused by
  XNNPACK; float conversion is `convert_to_tflite` itself.
  """
  if quantize != "int8":
    return convert_to_tflite(model, quantize, representative_data,
                             calibration_samples)
  with _firing_squeeze_units(model):
    return convert_to_tflite(model, quantize, representative_data,
                             calibration_samples)


def _fill_inputs(interpreter):
  rng = np.random.default_rng(0)
  for detail in interpreter.get_input_details():
    dtype = np.dtype(detail["dtype"])
    if np.issubdtype(dtype, np.integer):
      info = np.iinfo(dtype)
      value = rng.integers(info.min, info.max, detail["shape"], dtype=dtype)
    else:
      value = rng.random(detail["shape"]).astype(dtype)
    interpreter.set_tensor(detail["index"], value)


_STATISTICS = {"min": np.min, "p10": lambda s: np.percentile(s, 10),
               "median": np.median, "mean": np.mean}


def time_tflite(tflite: bytes, config: LatencyConfig = LatencyConfig()
                ) -> TimingStats:
  """Times a TFLite model with the LiteRT interpreter on this machine.

  Args:
    tflite: The flatbuffer bytes.
    config: Threads, warm-up, runs, repeats and the reported statistic.

  Returns:
    The `TimingStats` of the `runs * repeats` timed invokes.

  Raises:
    LatencyError: the interpreter rejects the model.
  """
  with captured_native_output() as capture:
    try:
      interpreter = litert.Interpreter(model_content=tflite,
                                       num_threads=config.threads)
      interpreter.allocate_tensors()
      _fill_inputs(interpreter)
      interpreter.invoke()
    except Exception as error:  # pylint: disable=broad-except
      hint = ("; XNNPACK refuses an int8 layer whose output range was zero on "
              "the calibration images (a ReLU that never fired; "
              "convert_for_timing makes squeeze-excitation units fire, other "
              "dead units need trained weights): time the trained model or "
              "the float model"
              if "XNNPACK" in str(error) else "")
      raise LatencyError(f"the LiteRT interpreter rejected the model: "
                         f"{error}{hint}\n{_captured_tail(capture)}"
                         ) from error
  invoke = interpreter.invoke
  clock = time.perf_counter_ns
  samples = np.empty(config.runs * config.repeats, dtype=np.int64)
  gc_was_enabled = gc.isenabled()
  gc.disable()
  try:
    for _ in range(config.warmup):
      invoke()
    for i in range(samples.size):
      if i and i % config.runs == 0 and config.pause_ms:
        time.sleep(config.pause_ms / 1e3)
      start = clock()
      invoke()
      samples[i] = clock() - start
  finally:
    if gc_was_enabled:
      gc.enable()
  samples_ms = samples / 1e6
  mean = float(samples_ms.mean())
  return TimingStats(
      latency_ms=float(_STATISTICS[config.statistic](samples_ms)),
      median_ms=float(np.median(samples_ms)),
      min_ms=float(samples_ms.min()),
      max_ms=float(samples_ms.max()),
      mean_ms=mean,
      cv=float(samples_ms.std() / mean) if mean > 0 else 0.0,
      samples=int(samples.size))


def measure_model(model: keras.Model, config: LatencyConfig = LatencyConfig(),
                  representative_data: Optional[np.ndarray] = None
                  ) -> TimingStats:
  """Converts `model` (per `config.quantize`) and times it here."""
  tflite = convert_for_timing(model, config.quantize, representative_data,
                              config.calibration_samples)
  return time_tflite(tflite, config)


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


def parse_benchmark_output(text: str) -> TimingStats:
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
    raise CommandError("the latency command printed no 'Inference timings in "
                       "us: ... Inference (avg): <us>' line, as TFLite's "
                       f"benchmark_model does; its output ends with:\n"
                       f"{_tail(text) or '(nothing)'}")
  average_ms = float(averages[-1]) / 1e3
  details = _DETAIL_RE.findall(text)
  if not details:
    return TimingStats(latency_ms=average_ms, median_ms=None, min_ms=None,
                       max_ms=None, mean_ms=average_ms, cv=None, samples=0)
  count, low, high, mean, std, median = details[-1]
  return TimingStats(
      latency_ms=average_ms,
      median_ms=float(median) / 1e3 if median else None,
      min_ms=float(low) / 1e3, max_ms=float(high) / 1e3, mean_ms=average_ms,
      cv=float(std) / float(mean) if float(mean) > 0 else 0.0,
      samples=int(count))


def run_latency_command(template: str, tflite: bytes,
                        timeout_s: float = 300.0) -> TimingStats:
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
      raise CommandError(f"latency command timed out after {timeout_s:g} s: "
                         f"{command}") from None
  if result.returncode != 0:
    raise CommandError(f"latency command exited with status "
                       f"{result.returncode}: {command}\nstderr tail:\n"
                       f"{_tail(result.stderr) or '(empty)'}")
  return parse_benchmark_output(result.stdout + "\n" + result.stderr)


class LatencyMeasurer:
  """The latency of a student, as the search asks for it.

  Modes: 'measured' converts and times here with LiteRT; 'lut' predicts
  from a `latency_lut.LatencyLUT`, measuring the parts a student adds on
  first need and also measuring the first `lut_calibration` students whole
  (best of two timings) to fit the table; 'command' converts and times with
  `command`. Whole students are kept in a `latency_lut.LatencyCache` when
  `cache_path` is given, so none is measured twice, across processes and
  restarts.

  In 'lut' mode a student whose weights exceed `lut_max_weight_mb` is
  measured whole instead (result source 'measured'): its weights no longer
  stay in the shared cache between invokes, and it ran 15-35% slower than
  its parts predict here, by an amount that depends on other processes.

  Args:
    mode: One of MODES.
    config: The timing setup.
    cache_path: JSON-lines cache file, or None for no cache.
    lut_path: The table of 'lut' mode (loaded if it exists, saved after
      every change), or None to keep it in memory.
    command: The template of 'command' mode; `{tflite}` is replaced by the
      path of the converted model.
    lut_calibration: Students measured whole to fit the table.
    lut_max_weight_mb: Weight size above which 'lut' mode measures; None:
      half this CPU's last-level cache (16 MiB here).

  Attributes:
    num_conversions: Keras -> TFLite conversions made by this object.
    lut: The table ('lut' mode), else None.

  Raises:
    ValueError: unknown mode, a template without `{tflite}`, or a table
      measured on another machine or with other timing settings.
  """

  def __init__(self, mode: str = "measured",
               config: LatencyConfig = LatencyConfig(),
               cache_path: Optional[str] = None,
               lut_path: Optional[str] = None,
               command: Optional[str] = None,
               lut_calibration: int = 10,
               lut_max_weight_mb: Optional[float] = None):
    if mode not in MODES:
      raise ValueError(f"latency mode '{mode}' is not one of {MODES}")
    if mode == "command":
      check_command_template(command)
    if lut_calibration < 1:
      raise ValueError(f"lut_calibration={lut_calibration} must be >= 1")
    self.mode = mode
    self.config = config
    self.command = command
    self.lut_path = lut_path
    self.lut_calibration = lut_calibration
    self.lut_max_weight_mb = (latency_lut.last_level_cache_mb() / 2
                              if lut_max_weight_mb is None
                              else float(lut_max_weight_mb))
    self.cache = (latency_lut.LatencyCache(cache_path) if cache_path
                  else None)
    self.num_conversions = 0
    self.lut = None
    if mode == "lut":
      meta = dict(config.timing_settings(), machine=latency_lut.machine_id(),
                  software=latency_lut.software_id())
      if lut_path and os.path.exists(lut_path):
        self.lut = latency_lut.LatencyLUT.load(lut_path)
        if self.lut.meta != meta:
          raise ValueError(f"latency table {lut_path} was measured with "
                           f"{self.lut.meta}, not {meta}; give another "
                           "--lut_path")
      else:
        self.lut = latency_lut.LatencyLUT(meta)

  def _convert(self, model, representative_data=None) -> bytes:
    tflite = convert_for_timing(model, self.config.quantize,
                                representative_data,
                                self.config.calibration_samples)
    self.num_conversions += 1
    return tflite

  def _measure_whole(self, spec, model, representative_data, source,
                     timings=1):
    """Measures a whole student (best of `timings`), or reads the cache."""
    machine = latency_lut.machine_id()
    software = latency_lut.software_id()
    key = latency_lut.cache_key(
        spec, self.config.timing_settings(),
        source if source == "measured" else f"command:{self.command}", machine,
        software)
    record = self.cache.get(key) if self.cache is not None else None
    if record is not None:
      return TimingStats(**record["stats"]), True
    if model is None:
      model = builder.build_from_spec(spec)
    tflite = self._convert(model, representative_data)
    if source == "command":
      stats = run_latency_command(self.command, tflite,
                                  self.config.command_timeout_s)
    else:
      stats = min((time_tflite(tflite, self.config) for _ in range(timings)),
                  key=lambda stats: stats.latency_ms)
    if self.cache is not None:
      self.cache.put(key, {"stats": stats.get_config(), "source": source,
                           "arch": spec.get_config(), "machine": machine,
                           "software": software, "time": time.time()})
    return stats, False

  def measure(self, spec: arch.ArchSpec, model: Optional[keras.Model] = None,
              representative_data: Optional[np.ndarray] = None
              ) -> LatencyResult:
    """Returns the latency of the student `spec`.

    Args:
      spec: The student's architecture (the cache and table key).
      model: The student built from `spec`, if the caller has it; built
        here when needed.
      representative_data: Images that calibrate int8 quantization.

    Raises:
      ConversionError: the model cannot be converted.
      CommandError: the on-device command failed.
      LatencyError: the interpreter rejected the converted model.
    """
    start = time.perf_counter()
    if self.mode != "lut":
      stats, cached = self._measure_whole(spec, model, representative_data,
                                          self.mode)
      return LatencyResult(stats.latency_ms, self.mode, cached, stats,
                           time.perf_counter() - start)
    try:
      params = self.lut.params(spec)
    except latency_lut.MissingPartsError:
      model = model if model is not None else builder.build_from_spec(spec)
      params = model.count_params()
    bytes_per_weight = 1 if self.config.quantize == "int8" else 4
    if params * bytes_per_weight / 2**20 > self.lut_max_weight_mb:
      stats, cached = self._measure_whole(spec, model, representative_data,
                                          "measured")
      return LatencyResult(stats.latency_ms, "measured", cached, stats,
                           time.perf_counter() - start)
    measure_part = lambda part: time_tflite(self._convert(part),
                                            self.config).latency_ms
    changed = bool(self.lut.fill(spec, measure_part, model))
    if len(self.lut.calibration) < self.lut_calibration:
      stats, _ = self._measure_whole(spec, model, representative_data,
                                     "measured", timings=2)
      self.lut.add_calibration(spec, stats.latency_ms)
      changed = True
    if changed and self.lut_path:
      self.lut.save(self.lut_path)
    return LatencyResult(self.lut.predict(spec), "lut", not changed, None,
                         time.perf_counter() - start)
