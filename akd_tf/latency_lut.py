"""A lookup-table latency predictor for MnasNet students (as OFA, FBNet).

A student is cut into parts: the stem, every layer of every block, and the
head (1x1 conv, pooling, classifier). Each distinct part is converted and
timed once, in isolation, at the input resolution it sees in the network;
the table keys a part by activation, input size and a one-layer block
string, e.g. 'relu6|14x14|r1_k3_s22_e6_i24_o32_se0.25'. A student's latency
is predicted as

  scale * sum over its parts of (part latency - invoke overhead) + offset

where the invoke overhead is the latency of a trivial model (every isolated
part pays it once) and scale and offset are fitted robustly to a few
students measured whole (`add_calibration`): the whole student pays the
invoke overhead once, and reads its weights from a larger, slower cache
level than a part timed alone (scale about 1.05 at 28x28 here).
Prediction from a full table takes microseconds and needs no model;
`fill` measures the parts a student adds, so the table grows lazily.

Public names: LatencyLUT, MissingPartsError, part_keys, slice_parts.
"""

import fcntl
import functools
import json
import math
import os
import tempfile
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import keras
import numpy as np

from akd_tf import arch
from akd_tf import builder

__all__ = ["LatencyLUT", "MissingPartsError", "part_keys", "slice_parts"]

_FORMAT = "akd_tf.latency_lut/1"


class MissingPartsError(KeyError):
  """The table lacks parts of a student; `fill` measures them."""

  def __init__(self, missing: Sequence[str]):
    self.missing = tuple(missing)
    super().__init__(f"the latency table lacks {len(self.missing)} part(s), "
                     f"e.g. '{self.missing[0]}'; call fill() to measure them")


def _same_padding(size: int, stride: int) -> int:
  return int(math.ceil(size / stride))


def _layer_string(block: arch.BlockArgs, strides, in_filters, out_filters,
                  residual) -> str:
  """The canonical one-layer block string (as `BlockArgs.encode` writes)."""
  text = (f"r1_k{block.kernel_size}_s{strides[0]}{strides[1]}_"
          f"e{block.expand_ratio}_i{in_filters}_o{out_filters}")
  if block.se_ratio is not None:
    text += f"_se{block.se_ratio:g}"
  if block.conv_type == "regular":
    text += "_conv"
  if not residual:
    text += "_noskip"
  return text


@functools.lru_cache(maxsize=65536)
def part_keys(spec: arch.ArchSpec) -> Tuple[Tuple[str, Tuple[int, int, int]],
                                            ...]:
  """Returns (key, input shape) of every part of a student, in order.

  The parts are the stem, each layer of each block (a one-layer block string
  with the built filter counts; 'noskip' when no residual is added) and the
  head. Only what changes the converted graph enters a key: dropout,
  drop-connect and batch-norm momentum do not.
  """
  gp = spec.global_params
  act = gp.activation
  height, width, channels = spec.input_shape
  stem = builder.round_filters(gp.stem_size, gp)
  parts = [(f"{act}|{height}x{width}x{channels}|stem_k3_s{gp.stem_strides}_"
            f"o{stem}", (height, width, channels))]
  height = _same_padding(height, gp.stem_strides)
  width = _same_padding(width, gp.stem_strides)
  for block in spec.blocks:
    in_filters = builder.round_filters(block.input_filters, gp)
    out_filters = builder.round_filters(block.output_filters, gp)
    for r in range(block.num_repeat):
      strides = block.strides if r == 0 else (1, 1)
      residual = (block.id_skip and strides == (1, 1) and
                  in_filters == out_filters)
      layer = _layer_string(block, strides, in_filters, out_filters, residual)
      parts.append((f"{act}|{height}x{width}|{layer}",
                    (height, width, in_filters)))
      height = _same_padding(height, strides[0])
      width = _same_padding(width, strides[1])
      in_filters = out_filters
  head = builder.round_filters(gp.head_size, gp)
  parts.append((f"{act}|{height}x{width}|head_i{in_filters}_o{head}_"
                f"c{gp.num_classes}", (height, width, in_filters)))
  return tuple(parts)


def _part_name(layer_name: str) -> str:
  if layer_name.startswith("stem_"):
    return "stem"
  if layer_name.startswith("block"):
    return "_".join(layer_name.split("_")[:2])
  return "head"


def slice_parts(model: keras.Model) -> List[keras.Model]:
  """Cuts a `builder.build_student` model into its parts, in order.

  Every part is a Keras model from the tensor entering its first layer to
  the tensor leaving its last one, sharing the student's weights: the stem
  ('stem_*' layers), each layer ('block<b>_<r>_*') and the head (the rest).
  """
  bounds: Dict[str, list] = {}
  for layer in model.layers:
    if isinstance(layer, keras.layers.InputLayer):
      continue
    name = _part_name(layer.name)
    if name not in bounds:
      inputs = layer.input
      bounds[name] = [inputs[0] if isinstance(inputs, list) else inputs, None]
    bounds[name][1] = layer.output
  return [keras.Model(first, last, name=f"part_{name}")
          for name, (first, last) in bounds.items()]


def _overhead_model() -> keras.Model:
  inputs = keras.Input((1, 1, 1))
  return keras.Model(inputs, keras.layers.ReLU()(inputs), name="overhead")


def _theil_sen(points: Sequence[Tuple[float, float]]) -> Tuple[float, float]:
  """Median-of-pairwise-slopes line through (x, y) points: (slope, offset)."""
  x = np.array([p[0] for p in points])
  y = np.array([p[1] for p in points])
  i, j = np.triu_indices(len(x), k=1)
  keep = x[j] != x[i]
  if not keep.any():
    return 1.0, float(np.median(y - x))
  slope = float(np.median((y[j] - y[i])[keep] / (x[j] - x[i])[keep]))
  return slope, float(np.median(y - slope * x))


class LatencyLUT:
  """Per-part latencies of one machine and timing setup, and a predictor.

  Args:
    meta: What the latencies were measured with (machine, threads,
      statistic, quantize, ...); a table is only valid for the same `meta`.
    entries: Part key -> latency in ms.
    overhead_ms: Latency of a trivial model (None until measured).
    calibration: (raw sum, measured latency) pairs of whole students.
  """

  def __init__(self, meta: dict, entries: Optional[Dict[str, float]] = None,
               overhead_ms: Optional[float] = None,
               calibration: Sequence[Tuple[float, float]] = ()):
    self.meta = dict(meta)
    self.entries = dict(entries or {})
    self.overhead_ms = overhead_ms
    self.calibration = [tuple(pair) for pair in calibration]
    self._fit = None

  @property
  def fit(self) -> Tuple[float, float]:
    """(scale, offset_ms) mapping a raw sum to a whole-student latency.

    With three or more calibration students: the Theil-Sen line (median of
    pairwise slopes), robust to a student that fell off a cache cliff.
    With fewer: scale 1 and the median residual (or the invoke overhead
    when there is none).
    """
    if self._fit is None:
      if len(self.calibration) >= 3:
        self._fit = _theil_sen(self.calibration)
      elif self.calibration:
        self._fit = (1.0, float(np.median([measured - raw for raw, measured
                                           in self.calibration])))
      else:
        self._fit = (1.0, self.overhead_ms or 0.0)
    return self._fit

  def missing(self, spec: arch.ArchSpec) -> List[str]:
    """Keys of the student's parts that the table lacks (no duplicates)."""
    keys = [key for key, _ in part_keys(spec) if key not in self.entries]
    return list(dict.fromkeys(keys))

  def raw_sum_ms(self, spec: arch.ArchSpec) -> float:
    """Sum over the parts of (part latency - overhead), before the fit.

    Raises:
      MissingPartsError: a part is not in the table.
    """
    entries = self.entries
    try:
      total = sum(entries[key] for key, _ in part_keys(spec))
    except KeyError:
      raise MissingPartsError(self.missing(spec)) from None
    if self.overhead_ms is None:
      raise MissingPartsError(["(invoke overhead)"])
    return float(total - len(part_keys(spec)) * self.overhead_ms)

  def predict(self, spec: arch.ArchSpec) -> float:
    """Predicted latency in ms: scale * raw sum + offset (see `fit`).

    Raises:
      MissingPartsError: a part is not in the table.
    """
    scale, offset = self.fit
    return scale * self.raw_sum_ms(spec) + offset

  def fill(self, spec: arch.ArchSpec, measure: Callable[[keras.Model], float],
           model: Optional[keras.Model] = None) -> int:
    """Measures the parts of `spec` the table lacks.

    Args:
      spec: The student.
      measure: Converts and times a Keras model, returning ms.
      model: The built student (built from `spec` when None).

    Returns:
      The number of models measured (parts, and the overhead model once).

    Raises:
      ValueError: `model` does not have the parts `spec` implies.
    """
    measured = 0
    if self.overhead_ms is None:
      self.overhead_ms = float(measure(_overhead_model()))
      self._fit = None
      measured += 1
    missing = set(self.missing(spec))
    if not missing:
      return measured
    if model is None:
      model = builder.build_from_spec(spec)
    keys = part_keys(spec)
    parts = slice_parts(model)
    if len(parts) != len(keys):
      raise ValueError(f"model '{model.name}' has {len(parts)} parts but its "
                       f"architecture implies {len(keys)}; was it built by "
                       "builder.build_student from this spec?")
    for (key, shape), part in zip(keys, parts):
      if key not in missing:
        continue
      if tuple(part.inputs[0].shape[1:]) != shape:
        raise ValueError(f"part '{part.name}' of model '{model.name}' has "
                         f"input {tuple(part.inputs[0].shape[1:])}, expected "
                         f"{shape} for '{key}'")
      self.entries[key] = float(measure(part))
      missing.discard(key)
      measured += 1
    return measured

  def add_calibration(self, spec: arch.ArchSpec, measured_ms: float) -> None:
    """Records a whole-student measurement that fits scale and offset.

    Raises:
      MissingPartsError: a part of `spec` is not in the table.
    """
    self.calibration.append((self.raw_sum_ms(spec), float(measured_ms)))
    self._fit = None

  def get_config(self) -> dict:
    return {"format": _FORMAT, "meta": self.meta,
            "overhead_ms": self.overhead_ms,
            "calibration": [list(pair) for pair in self.calibration],
            "entries": dict(sorted(self.entries.items()))}

  @classmethod
  def from_config(cls, config: dict) -> "LatencyLUT":
    if config.get("format") != _FORMAT:
      raise ValueError(f"not a latency table (format "
                       f"{config.get('format')!r}, expected '{_FORMAT}')")
    return cls(config["meta"], config["entries"], config["overhead_ms"],
               config["calibration"])

  def save(self, path: str) -> None:
    """Writes the table atomically, merging what another process saved.

    Under an exclusive lock on `<path>.lock`, entries and calibration points
    in the file but not in memory are added first, so searches that share a
    table lose nothing; the file is then replaced in one rename.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with open(path + ".lock", "w") as lock:
      fcntl.flock(lock, fcntl.LOCK_EX)
      if os.path.exists(path):
        on_disk = LatencyLUT.load(path)
        if on_disk.meta == self.meta:
          for key, value in on_disk.entries.items():
            self.entries.setdefault(key, value)
          known = set(self.calibration)
          self.calibration.extend(pair for pair in on_disk.calibration
                                  if pair not in known)
          if self.overhead_ms is None:
            self.overhead_ms = on_disk.overhead_ms
          self._fit = None
      fd, temporary = tempfile.mkstemp(dir=directory, suffix=".tmp")
      with os.fdopen(fd, "w") as f:
        json.dump(self.get_config(), f, indent=1)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
      os.replace(temporary, path)

  @classmethod
  def load(cls, path: str) -> "LatencyLUT":
    """Reads a table written by `save`.

    Raises:
      FileNotFoundError: `path` does not exist.
      ValueError: the file is not a latency table.
    """
    with open(path) as f:
      try:
        config = json.load(f)
      except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None
    try:
      return cls.from_config(config)
    except (KeyError, TypeError, ValueError) as error:
      raise ValueError(f"{path}: {error}") from None
