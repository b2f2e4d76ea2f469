"""Timing a TFLite model with the LiteRT interpreter on this machine.

  LatencyConfig                 how a latency is measured
  time_tflite(tflite, config)   LiteRT interpreter timing -> TimingStats
  measure_model(model, config)  convert (per config.quantize) and time

Timing protocol: `warmup` untimed invokes, then `repeats` rounds of `runs`
timed invokes `pause_ms` apart, garbage collection off; `latency_ms` is the
statistic `config.statistic` of all timed invokes. This machine is shared:
medians of one model differ by up to 70% between processes under load,
while the minimum repeats within a few percent, so 'min' is the default
(figures in benchmarks/latency.py and the README).

Public names: LatencyConfig, TimingStats, STATISTICS, time_tflite,
measure_model.
"""

import dataclasses
import gc
import time
from typing import Optional

from ai_edge_litert import interpreter as litert
import keras
import numpy as np

from akd_tf import config_checks
from akd_tf.latency import convert
from akd_tf.latency import errors
from akd_tf.latency import native_output

__all__ = ["LatencyConfig", "STATISTICS", "TimingStats", "measure_model",
           "time_tflite"]

STATISTICS = ("min", "p10", "median", "mean")


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
        (self.quantize in convert.QUANTIZE_MODES,
         f"quantize='{self.quantize}' is not one of "
         f"{convert.QUANTIZE_MODES}"),
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


def _ready_interpreter(tflite: bytes, threads: int):
  """A LiteRT interpreter of `tflite` with inputs set, invoked once.

  Raises:
    LatencyError: the interpreter rejects the model.
  """
  with native_output.captured_native_output() as capture:
    try:
      interpreter = litert.Interpreter(model_content=tflite,
                                       num_threads=threads)
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
      raise errors.LatencyError(
          f"the LiteRT interpreter rejected the model: {error}{hint}\n"
          f"{native_output.captured_tail(capture)}") from error
  return interpreter


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
  invoke = _ready_interpreter(tflite, config.threads).invoke
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
  tflite = convert.convert_for_timing(model, config.quantize,
                                      representative_data,
                                      config.calibration_samples)
  return time_tflite(tflite, config)
