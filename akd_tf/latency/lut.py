"""A latency lookup table: per-part latencies of students and a predictor.

`LatencyLUT` is a lookup-table predictor, as OFA and FBNet use. A student
is cut into parts: the stem, every layer of every block, and the head (1x1
conv, pooling, classifier). Each distinct part is converted and timed once,
in isolation, at the input resolution it sees in the network; the table
keys a part by activation, input size and a one-layer block string, e.g.
'relu6|14x14|r1_k3_s22_e6_i24_o32_se0.25'. A student's latency
is predicted as

  scale * sum over its parts of (part latency - invoke overhead) + overhead

where the invoke overhead is the latency of a trivial model (each part
timed alone pays it; the whole student pays it once) and the scale is the
median ratio of measured to summed latency over a few students measured
whole (`add_calibration`; about 1.05 at 28x28 here: a whole student reads
its weights from a slower cache level than a part timed alone). Prediction
from a full table takes microseconds and needs no model; `fill` measures
the parts a student adds, so the table grows lazily. The table also keeps
each part's parameters, so `params` tells, without building the student,
whether its weights overflow the cache (see `LatencyMeasurer`).

Public names: LatencyLUT, MissingPartsError, last_level_cache_mb,
part_keys, slice_parts.
"""

import fcntl
import functools
import json
import os
import tempfile
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import keras
import numpy as np

from akd_tf.space import arch
from akd_tf.space import builder

__all__ = ["LatencyLUT", "MissingPartsError", "last_level_cache_mb",
           "part_keys", "slice_parts"]

# The format tag of saved tables; it keeps the module's first name, so
# tables written before the move still load.
_FORMAT = "akd_tf.latency_lut/2"


def last_level_cache_mb() -> float:
  """Size of this CPU's last-level cache in MiB (32 when unknown)."""
  sizes = {}
  directory = "/sys/devices/system/cpu/cpu0/cache"
  try:
    for index in os.listdir(directory):
      with open(os.path.join(directory, index, "level")) as f:
        level = int(f.read())
      with open(os.path.join(directory, index, "size")) as f:
        text = f.read().strip()
      scale = {"K": 1 / 1024, "M": 1.0, "G": 1024.0}.get(text[-1:], 1 / 2**20)
      sizes[level] = float(text.rstrip("KMG")) * scale
  except (OSError, ValueError):
    return 32.0
  return sizes[max(sizes)] if sizes else 32.0


class MissingPartsError(KeyError):
  """The table lacks parts of a student; `fill` measures them."""

  def __init__(self, missing: Sequence[str]):
    self.missing = tuple(missing)
    super().__init__(f"the latency table lacks {len(self.missing)} part(s), "
                     f"e.g. '{self.missing[0]}'; call fill() to measure them")


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
  height = -(-height // gp.stem_strides)
  width = -(-width // gp.stem_strides)
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
      height = -(-height // strides[0])
      width = -(-width // strides[1])
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


class LatencyLUT:
  """Per-part latencies of one machine and timing setup, and a predictor.

  Args:
    meta: What the latencies were measured with (machine, threads,
      statistic, quantize, ...); a table is only valid for the same `meta`.
    entries: Part key -> (latency in ms, parameters of the part).
    overhead_ms: Latency of a trivial model (None until measured).
    calibration: (raw sum, measured latency) pairs of whole students.
  """

  def __init__(self, meta: dict,
               entries: Optional[Dict[str, Tuple[float, int]]] = None,
               overhead_ms: Optional[float] = None,
               calibration: Sequence[Tuple[float, float]] = ()):
    self.meta = dict(meta)
    self.entries = {key: (float(ms), int(params))
                    for key, (ms, params) in (entries or {}).items()}
    self.overhead_ms = overhead_ms
    self.calibration = [tuple(pair) for pair in calibration]
    self._scale = None

  @property
  def scale(self) -> float:
    """Median of (measured - overhead) / raw sum over calibration students.

    One robust ratio: an offset fitted beside it on a handful of noisy
    students overpredicted the smallest students by 10% here.
    """
    if self._scale is None:
      overhead = self.overhead_ms or 0.0
      self._scale = float(np.median([(measured - overhead) / raw
                                     for raw, measured in self.calibration])
                          ) if self.calibration else 1.0
    return self._scale

  def missing(self, spec: arch.ArchSpec) -> List[str]:
    """Keys of the student's parts that the table lacks (no duplicates)."""
    keys = [key for key, _ in part_keys(spec) if key not in self.entries]
    return list(dict.fromkeys(keys))

  def _entries_of(self, spec):
    try:
      return [self.entries[key] for key, _ in part_keys(spec)]
    except KeyError:
      raise MissingPartsError(self.missing(spec)) from None

  def params(self, spec: arch.ArchSpec) -> int:
    """Parameters of the student, summed over its parts.

    Raises:
      MissingPartsError: a part is not in the table.
    """
    return sum(params for _, params in self._entries_of(spec))

  def raw_sum_ms(self, spec: arch.ArchSpec) -> float:
    """Sum over the parts of (part latency - overhead), before the scale.

    Raises:
      MissingPartsError: a part is not in the table.
    """
    entries = self._entries_of(spec)
    if self.overhead_ms is None:
      raise MissingPartsError(["(invoke overhead)"])
    return float(sum(ms for ms, _ in entries) -
                 len(entries) * self.overhead_ms)

  def predict(self, spec: arch.ArchSpec) -> float:
    """Predicted latency in ms: scale * raw sum + overhead.

    Raises:
      MissingPartsError: a part is not in the table.
    """
    return self.scale * self.raw_sum_ms(spec) + self.overhead_ms

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
      self.entries[key] = (float(measure(part)), int(part.count_params()))
      missing.discard(key)
      measured += 1
    return measured

  def add_calibration(self, spec: arch.ArchSpec, measured_ms: float) -> None:
    """Records a whole-student measurement that fits the scale.

    Raises:
      MissingPartsError: a part of `spec` is not in the table.
    """
    self.calibration.append((self.raw_sum_ms(spec), float(measured_ms)))
    self._scale = None

  def get_config(self) -> dict:
    return {"format": _FORMAT, "meta": self.meta,
            "overhead_ms": self.overhead_ms,
            "calibration": [list(pair) for pair in self.calibration],
            "entries": {key: list(value)
                        for key, value in sorted(self.entries.items())}}

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
          self._scale = None
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
