"""The latency of a student as the search asks for it: measured, table, device.

`LatencyMeasurer(mode, ...)` is what a search calls: 'measured' converts and
times here (`convert`, `timing`), 'lut' predicts from a `lut.LatencyLUT`,
'command' times with an external command (`device`); whole students are
kept in a `cache.LatencyCache`.

Where a search keeps them when not told: `default_lut_path` and
`default_cache_path`, under its cache directory, shared by every search on
the machine (both key their figures by machine and software).

Public names: LatencyMeasurer, LatencyResult, MODES, default_cache_path,
default_lut_path, table_meta.
"""

import dataclasses
import hashlib
import json
import os
import time
from typing import Optional

import keras
import numpy as np

from akd_tf.latency import cache as cache_lib
from akd_tf.latency import convert
from akd_tf.latency import device
from akd_tf.latency import lut as lut_lib
from akd_tf.latency import timing
from akd_tf.space import arch
from akd_tf.space import builder

__all__ = ["LatencyMeasurer", "LatencyResult", "MODES", "default_cache_path",
           "default_lut_path", "table_meta"]

MODES = ("measured", "lut", "command")


def table_meta(config: timing.LatencyConfig) -> dict:
  """What a latency table's figures hold for: timing settings, machine and
  software; a table is only used where its meta is the same."""
  return dict(config.timing_settings(), machine=cache_lib.machine_id(),
              software=cache_lib.software_id())


def default_lut_path(cache_dir: str, config: timing.LatencyConfig) -> str:
  """The table a search uses when given none: one per `table_meta` under
  `cache_dir`, so every search on this machine with these timing settings
  shares it and no part is measured twice (`LatencyLUT.save` merges what
  concurrent searches add)."""
  digest = hashlib.sha256(json.dumps(table_meta(config), sort_keys=True)
                          .encode()).hexdigest()[:16]
  return os.path.join(cache_dir, "latency", f"lut-{digest}.json")


def default_cache_path(cache_dir: str) -> str:
  """The whole-student latency cache a search uses when given none (its
  keys hold the machine, software and timing settings)."""
  return os.path.join(cache_dir, "latency", "students.jsonl")


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
  stats: Optional[timing.TimingStats]
  seconds: float

  def get_config(self) -> dict:
    """Returns a flat dict: latency_ms, median_ms, min_ms, max_ms, cv, ..."""
    stats = self.stats.get_config() if self.stats else {
        f.name: None for f in dataclasses.fields(timing.TimingStats)}
    stats.update(latency_ms=self.latency_ms, source=self.source,
                 cached=self.cached, seconds=self.seconds)
    return stats


class LatencyMeasurer:
  """The latency of a student, as the search asks for it.

  Modes: 'measured' converts and times here with LiteRT; 'lut' predicts
  from a `lut.LatencyLUT`, measuring the parts a student adds on
  first need and also measuring the first `lut_calibration` students whole
  (best of two timings) to fit the table; 'command' converts and times with
  `command`. Whole students are kept in a `cache.LatencyCache` when
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
               config: timing.LatencyConfig = timing.LatencyConfig(),
               cache_path: Optional[str] = None,
               lut_path: Optional[str] = None,
               command: Optional[str] = None,
               lut_calibration: int = 10,
               lut_max_weight_mb: Optional[float] = None):
    if mode not in MODES:
      raise ValueError(f"latency mode '{mode}' is not one of {MODES}")
    if mode == "command":
      device.check_command_template(command)
    if lut_calibration < 1:
      raise ValueError(f"lut_calibration={lut_calibration} must be >= 1")
    self.mode = mode
    self.config = config
    self.command = command
    self.lut_path = lut_path
    self.lut_calibration = lut_calibration
    self.lut_max_weight_mb = (lut_lib.last_level_cache_mb() / 2
                              if lut_max_weight_mb is None
                              else float(lut_max_weight_mb))
    self.cache = (cache_lib.LatencyCache(cache_path) if cache_path
                  else None)
    self.num_conversions = 0
    self.lut = None
    if mode == "lut":
      meta = table_meta(config)
      if lut_path and os.path.exists(lut_path):
        self.lut = lut_lib.LatencyLUT.load(lut_path)
        if self.lut.meta != meta:
          raise ValueError(f"latency table {lut_path} was measured with "
                           f"{self.lut.meta}, not {meta}; give another "
                           "--lut_path")
      else:
        self.lut = lut_lib.LatencyLUT(meta)

  def _convert(self, model, representative_data=None) -> bytes:
    tflite = convert.convert_for_timing(model, self.config.quantize,
                                        representative_data,
                                        self.config.calibration_samples)
    self.num_conversions += 1
    return tflite

  def _measure_whole(self, spec, model, representative_data, source,
                     timings=1):
    """Measures a whole student (best of `timings`), or reads the cache."""
    machine = cache_lib.machine_id()
    software = cache_lib.software_id()
    key = cache_lib.cache_key(
        spec, self.config.timing_settings(),
        source if source == "measured" else f"command:{self.command}", machine,
        software)
    record = self.cache.get(key) if self.cache is not None else None
    if record is not None:
      return timing.TimingStats(**record["stats"]), True
    if model is None:
      model = builder.build_from_spec(spec)
    tflite = self._convert(model, representative_data)
    if source == "command":
      stats = device.run_latency_command(self.command, tflite,
                                         self.config.command_timeout_s)
    else:
      stats = min((timing.time_tflite(tflite, self.config)
                   for _ in range(timings)),
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
    except lut_lib.MissingPartsError:
      model = model if model is not None else builder.build_from_spec(spec)
      params = model.count_params()
    bytes_per_weight = 1 if self.config.quantize == "int8" else 4
    if params * bytes_per_weight / 2**20 > self.lut_max_weight_mb:
      stats, cached = self._measure_whole(spec, model, representative_data,
                                          "measured")
      return LatencyResult(stats.latency_ms, "measured", cached, stats,
                           time.perf_counter() - start)
    measure_part = lambda part: timing.time_tflite(self._convert(part),
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
