"""Deployment exports of a student, each verified against its Keras model.

`export_student` writes, under `ExportConfig.output_dir`:
  saved_model/            serving signature 'serving_default':
                          image (float32 [N, H, W, C] in [0, 1]) -> logits
  student_float.tflite    float32 TFLite
  student_int8.tflite     full-integer post-training quantization (int8 in
                          and out), calibrated on training images
                          (quantize 'int8' or 'qat')
  student_qat_int8.tflite quantization-aware training with TFMOT, then
                          full-integer conversion (quantize 'qat')
  export_report.json      the verification below

Verification is always on: every artifact runs on held-out test images and
is compared with the Keras model: the max abs logit difference of the float
exports (report keys '*_diff'), the top-1 accuracy of every artifact and its
drop from the Keras model's in percentage points ('*_drop'), the size in
bytes and, for the .tflite files, the LiteRT latency. QAT fine-tunes the
model, so its drop mixes quantization error with the effect of that extra
training and can be negative for an under-trained student.

Quantization-aware training runs in a child process
(`akd_tf.deploy.export_qat`): TFMOT 0.8 accepts only tf_keras models, and
importing it switches the process to legacy Keras, which must not leak into
this one.

Public names: QUANTIZE_MODES, ExportConfig, ExportError, Artifact,
load_student, check_data_matches, check_spec_matches, save_saved_model,
keras_logits, saved_model_logits, tflite_logits, export_student,
format_report.
"""

import dataclasses
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, Optional, Tuple

from ai_edge_litert import interpreter as litert
import keras
import numpy as np
import tensorflow as tf

from akd_tf import config_checks
from akd_tf.distill import candidate_training
from akd_tf.distill import data as data_lib
from akd_tf.latency import convert
from akd_tf.latency import native_output
from akd_tf.latency import timing
from akd_tf.space import arch
from akd_tf.space import builder

__all__ = ["Artifact", "ExportConfig", "ExportError", "QUANTIZE_MODES",
           "check_data_matches", "check_spec_matches", "export_student",
           "format_report", "keras_logits", "load_student",
           "save_saved_model", "saved_model_logits", "tflite_logits"]

_LOG = logging.getLogger(__name__)

QUANTIZE_MODES = ("none", "int8", "qat")
INPUT_NAME = "image"
OUTPUT_NAME = "logits"
_BATCH = 256


class ExportError(RuntimeError):
  """An export or its verification failed; the message says why."""


@dataclasses.dataclass(frozen=True)
class ExportConfig:
  """What `export_student` writes and how it verifies it.

  Attributes:
    output_dir: Folder of the artifacts and export_report.json.
    quantize: 'none' (SavedModel and float TFLite), 'int8' (also int8
      post-training quantization) or 'qat' (also quantization-aware
      training, then int8).
    data: The data: calibration and QAT images come from its training
      split, verification images from its test split.
    calibration_samples: Training images that calibrate int8.
    eval_size: Test images used for verification (None: all).
    qat_epochs: Epochs of QAT fine-tuning.
    qat_train_size: Training images for QAT (None: the whole split).
    qat_batch_size: QAT batch size.
    qat_learning_rate: QAT learning rate (Adam; the model is trained).
    seed: Seeds which training images calibrate and the QAT shuffle.
    latency: How the LiteRT latency of every .tflite is measured.
  """

  output_dir: str
  quantize: str = "int8"
  data: data_lib.DataConfig = data_lib.DataConfig()
  calibration_samples: int = 500
  eval_size: Optional[int] = None
  qat_epochs: int = 1
  qat_train_size: Optional[int] = None
  qat_batch_size: int = 128
  qat_learning_rate: float = 1e-4
  seed: int = 0
  latency: timing.LatencyConfig = timing.LatencyConfig(repeats=5)

  def __post_init__(self):
    checks = (
        (self.quantize in QUANTIZE_MODES,
         f"quantize='{self.quantize}' is not one of {QUANTIZE_MODES}"),
        (self.calibration_samples >= 1,
         f"calibration_samples={self.calibration_samples} must be >= 1"),
        (self.eval_size is None or self.eval_size >= 1,
         f"eval_size={self.eval_size} must be >= 1 or None"),
        (self.qat_epochs >= 1, f"qat_epochs={self.qat_epochs} must be >= 1"),
        (self.qat_train_size is None or self.qat_train_size >= 1,
         f"qat_train_size={self.qat_train_size} must be >= 1 or None"),
        (self.qat_batch_size >= 1,
         f"qat_batch_size={self.qat_batch_size} must be >= 1"),
        (self.qat_learning_rate > 0,
         f"qat_learning_rate={self.qat_learning_rate} must be > 0"),
    )
    config_checks.require(checks, "ExportConfig")

  def get_config(self) -> dict:
    config = dataclasses.asdict(self)
    config["data"] = dataclasses.asdict(self.data)
    config["latency"] = self.latency.get_config()
    return config


@dataclasses.dataclass(frozen=True)
class Artifact:
  """One verified artifact.

  Attributes:
    name: 'keras', 'saved_model', 'tflite_float', 'tflite_int8' or
      'tflite_qat_int8'.
    path: Where it lies.
    size_bytes: File size (a folder's total for the SavedModel).
    top1: Top-1 accuracy on the verification images.
    top1_drop: Keras top-1 minus this one, in percentage points.
    max_abs_diff: Max abs logit difference from Keras (float exports).
    latency_ms: LiteRT latency (.tflite files).
  """

  name: str
  path: str
  size_bytes: int
  top1: float
  top1_drop: float
  max_abs_diff: Optional[float] = None
  latency_ms: Optional[float] = None

  def get_config(self) -> dict:
    return dataclasses.asdict(self)


def load_student(model_path: Optional[str] = None,
                 arch_json: Optional[str] = None,
                 weights_path: Optional[str] = None
                 ) -> Tuple[keras.Model, Optional[arch.ArchSpec]]:
  """Loads a student from a `.keras` file, or builds it from an arch.json
  and loads a `.weights.h5` file into it.

  With `model_path`, the architecture is `arch_json` when given, else the
  arch.json beside the model (the search and akd-train write one), else
  None (quantization-aware training then cannot run).

  Returns:
    (model, spec or None).

  Raises:
    FileNotFoundError: a file does not exist.
    ValueError: the file is not a Keras model (or weights file), the
      arch.json is invalid, or neither source is given.
  """
  for path in (model_path, arch_json, weights_path):
    if path is not None and not os.path.exists(path):
      raise FileNotFoundError(f"{path} does not exist")
  spec = None
  if arch_json is not None:
    spec = arch.ArchSpec.from_json(arch_json)
  if model_path is None:
    if spec is None or weights_path is None:
      raise ValueError("give a .keras model, or an arch.json and a "
                       ".weights.h5 file")
    model = builder.build_from_spec(spec)
    try:
      model.load_weights(weights_path)
    except Exception as error:  # pylint: disable=broad-except
      raise ValueError(f"{weights_path} is not a weights file of the "
                       f"arch.json student: {type(error).__name__}: "
                       f"{error}") from None
    return model, spec
  if not model_path.endswith(".keras") or os.path.isdir(model_path):
    raise ValueError(f"{model_path} is not a Keras model file: expected a "
                     ".keras file")
  try:
    model = keras.saving.load_model(model_path, compile=False,
                                    safe_mode=True)
  except Exception as error:  # pylint: disable=broad-except
    raise ValueError(f"{model_path} is not a loadable Keras model file: "
                     f"{type(error).__name__}: {error}") from None
  if not isinstance(model, keras.Model) or len(model.inputs) != 1:
    raise ValueError(f"{model_path} does not hold a single-input "
                     "keras.Model")
  beside = os.path.join(os.path.dirname(model_path), "arch.json")
  if spec is None and os.path.exists(beside):
    spec = arch.ArchSpec.from_json(beside)
  return model, spec


def check_data_matches(model: keras.Model, data: data_lib.Data) -> None:
  """Raises ValueError when the data's images or classes do not fit the
  model (the representative dataset must have the model's input shape)."""
  shape = tuple(model.inputs[0].shape[1:])
  if tuple(data.input_shape) != shape:
    raise ValueError(
        f"dataset '{data.name}' has images of shape {tuple(data.input_shape)}"
        f" but the model takes {shape}: the representative and test images "
        "must match the model input (choose the dataset it was trained on, "
        "or resize with image_size)")
  classes = model.outputs[0].shape[-1]
  if classes != data.num_classes:
    raise ValueError(f"the model outputs {classes} classes but dataset "
                     f"'{data.name}' has {data.num_classes}")


def check_spec_matches(model: keras.Model,
                       spec: Optional[arch.ArchSpec]) -> None:
  """Raises ValueError unless `spec` can describe `model` (quantization-aware
  training rebuilds the model from it; the QAT child compares every layer's
  weights and the logits as well)."""
  if spec is None:
    raise ValueError("quantization-aware training rebuilds the student with "
                     "tf_keras from its block strings: give its arch.json "
                     "(none lies beside the model)")
  shape = tuple(model.inputs[0].shape[1:])
  if tuple(spec.input_shape) != shape:
    raise ValueError(f"the arch.json input shape {tuple(spec.input_shape)} "
                     f"is not the model's {shape}: give this model's "
                     "arch.json")


def save_saved_model(model: keras.Model, path: str) -> None:
  """Writes a SavedModel whose 'serving_default' signature maps the named
  input 'image' (float32, any batch) to the named output 'logits'."""
  spec = tf.TensorSpec((None,) + tuple(model.inputs[0].shape[1:]),
                       tf.float32, name=INPUT_NAME)
  archive = keras.export.ExportArchive()
  archive.track(model)

  def serve(image):
    return {OUTPUT_NAME: model(image, training=False)}

  archive.add_endpoint("serving_default", serve, input_signature=[spec])
  with native_output.captured_native_output():
    archive.write_out(path, verbose=False)


def keras_logits(model: keras.Model, images: np.ndarray) -> np.ndarray:
  """The model's logits (inference mode), in batches."""
  return np.concatenate([
      np.asarray(model(images[i:i + _BATCH], training=False))
      for i in range(0, len(images), _BATCH)])


def saved_model_logits(path: str, images: np.ndarray) -> np.ndarray:
  """Logits of a SavedModel written by `save_saved_model`."""
  serve = tf.saved_model.load(path).signatures["serving_default"]
  return np.concatenate([
      serve(**{INPUT_NAME: tf.constant(images[i:i + _BATCH])})[OUTPUT_NAME]
      .numpy() for i in range(0, len(images), _BATCH)])


def tflite_logits(tflite: bytes, images: np.ndarray) -> np.ndarray:
  """Logits of a batch-1 .tflite on every image, through LiteRT.

  int8 inputs are quantized and int8 outputs dequantized with the model's
  own scales, so float and int8 models compare on the same footing.

  Raises:
    ValueError: the images do not have the model's input shape.
  """
  interpreter = litert.Interpreter(model_content=tflite, num_threads=1)
  interpreter.allocate_tensors()
  inp = interpreter.get_input_details()[0]
  out = interpreter.get_output_details()[0]
  if tuple(inp["shape"][1:]) != images.shape[1:]:
    raise ValueError(f"images of shape {images.shape[1:]} do not match the "
                     f"TFLite input {tuple(inp['shape'])}")
  in_scale, in_zero = inp["quantization"]
  out_scale, out_zero = out["quantization"]
  quantized = np.issubdtype(inp["dtype"], np.integer)
  if quantized:
    info = np.iinfo(inp["dtype"])
    images = np.clip(np.round(images / in_scale + in_zero), info.min,
                     info.max)
  images = images.astype(inp["dtype"])
  logits = np.empty((len(images),) + tuple(out["shape"][1:]), np.float32)
  for i, image in enumerate(images):
    interpreter.set_tensor(inp["index"], image[None])
    interpreter.invoke()
    logits[i] = interpreter.get_tensor(out["index"])[0]
  if np.issubdtype(out["dtype"], np.integer):
    logits = (logits - out_zero) * out_scale
  return logits


def _size(path: str) -> int:
  if os.path.isdir(path):
    return sum(os.path.getsize(os.path.join(root, f))
               for root, _, files in os.walk(path) for f in files)
  return os.path.getsize(path)


def _run_qat(model, spec, train, calibration, check_images, config, path,
             log) -> dict:
  """Runs `python -m akd_tf.deploy.export_qat` on a request; returns its
  result."""
  with tempfile.TemporaryDirectory() as work:
    weights = {f"w:{layer.name}:{i}": w for layer in model.layers
               for i, w in enumerate(layer.get_weights())}
    np.savez(os.path.join(work, "arrays.npz"), train_images=train[0],
             train_labels=train[1], calibration=calibration,
             check_images=check_images,
             check_logits=keras_logits(model, check_images), **weights)
    request = {"spec": spec.get_config(), "epochs": config.qat_epochs,
               "batch_size": config.qat_batch_size,
               "learning_rate": config.qat_learning_rate,
               "seed": config.seed, "arrays": os.path.join(work,
                                                           "arrays.npz"),
               "tflite": path, "result": os.path.join(work, "result.json")}
    with open(os.path.join(work, "request.json"), "w") as f:
      json.dump(request, f)
    log(f"quantization-aware training for {config.qat_epochs} epoch(s) on "
        f"{len(train[0])} images in a tf_keras child process")
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "akd_tf.deploy.export_qat",
         os.path.join(work, "request.json")],
        env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
      tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
      raise ExportError(f"quantization-aware training failed (exit "
                        f"{proc.returncode}):\n{tail}")
    with open(request["result"]) as f:
      return json.load(f)


class _Verifier:
  """Runs every artifact on the verification images and records it against
  the Keras model's logits.

  Args:
    images, labels: The verification images and their labels.
    reference: The Keras model's logits on `images`.
    latency: How the LiteRT latency of a .tflite is measured.
    log: Progress lines.
  """

  def __init__(self, images, labels, reference, latency, log):
    self.images = images
    self.labels = labels
    self.reference = reference
    self.keras_top1 = candidate_training.top1_accuracy(reference, labels)
    self.latency = latency
    self.log = log
    self.artifacts: Dict[str, Artifact] = {}

  def record(self, name: str, path: str, logits: np.ndarray,
             float_model: bool, tflite: Optional[bytes] = None) -> None:
    """Records artifact `name` from its logits on the images (and times the
    .tflite when given)."""
    top1 = candidate_training.top1_accuracy(logits, self.labels)
    self.artifacts[name] = Artifact(
        name=name, path=path,
        size_bytes=_size(path) if path and os.path.exists(path) else 0,
        top1=top1,
        top1_drop=100.0 * (self.keras_top1 - top1),
        max_abs_diff=(float(np.max(np.abs(logits - self.reference)))
                      if float_model else None),
        latency_ms=(timing.time_tflite(tflite, self.latency).latency_ms
                    if tflite is not None else None))
    self.log(f"verified {name}: top-1 {top1:.4f}")


def _write_saved_model(model, config, verifier) -> None:
  path = os.path.join(config.output_dir, "saved_model")
  save_saved_model(model, path)
  verifier.record("saved_model", path, saved_model_logits(path,
                                                          verifier.images),
                  True)


def _write_tflites(model, config, data, verifier) -> Optional[np.ndarray]:
  """Writes the float .tflite, and the int8 one when asked; returns the
  calibration images (None for quantize 'none')."""
  outputs = [("tflite_float", "student_float.tflite", "none")]
  calibration = None
  if config.quantize in ("int8", "qat"):
    calibration = data_lib.arrays(data.train, config.calibration_samples,
                                  config.seed)[0]
    outputs.append(("tflite_int8", "student_int8.tflite", "int8"))
  for name, filename, quantize in outputs:
    tflite = convert.convert_to_tflite(model, quantize, calibration)
    path = os.path.join(config.output_dir, filename)
    with open(path, "wb") as f:
      f.write(tflite)
    verifier.record(name, path, tflite_logits(tflite, verifier.images),
                    quantize == "none", tflite)
  return calibration


def _write_qat_tflite(model, spec, config, data, calibration, verifier,
                      log) -> dict:
  """Runs quantization-aware training in the tf_keras child; returns its
  result."""
  path = os.path.join(config.output_dir, "student_qat_int8.tflite")
  qat = _run_qat(
      model, spec,
      data_lib.arrays(data.train, config.qat_train_size, config.seed),
      calibration, verifier.images[:256], config, path, log)
  with open(path, "rb") as f:
    tflite = f.read()
  verifier.record("tflite_qat_int8", path,
                  tflite_logits(tflite, verifier.images), False, tflite)
  return qat


def _report(verifier, config, data, model_path, seconds, qat) -> dict:
  """The export report (what export_report.json holds)."""
  artifacts = verifier.artifacts
  report = {
      "model": model_path, "dataset": data.name,
      "test_images": int(len(verifier.images)), "quantize": config.quantize,
      "keras_top1": verifier.keras_top1,
      "saved_model_max_abs_diff": artifacts["saved_model"].max_abs_diff,
      "tflite_float_max_abs_diff": artifacts["tflite_float"].max_abs_diff,
      "export_seconds": seconds,
      "artifacts": {k: a.get_config() for k, a in artifacts.items()},
      "config": config.get_config(),
  }
  report["float_max_abs_diff"] = max(report["saved_model_max_abs_diff"],
                                     report["tflite_float_max_abs_diff"])
  if "tflite_int8" in artifacts:
    report["int8_top1_drop"] = artifacts["tflite_int8"].top1_drop
  if qat is not None:
    report["qat_top1_drop"] = artifacts["tflite_qat_int8"].top1_drop
    report["qat_float_rebuild_max_abs_diff"] = qat["rebuild_max_abs_diff"]
    report["qat_train_seconds"] = qat["train_seconds"]
  return report


def export_student(model: keras.Model, config: ExportConfig,
                   spec: Optional[arch.ArchSpec] = None,
                   model_path: str = "",
                   log: Callable[[str], None] = _LOG.info) -> dict:
  """Writes the artifacts `config` asks for, verifies them, and writes
  `<output_dir>/export_report.json`.

  Args:
    model: The trained student (single float input, logits output).
    config: What to write and how to verify.
    spec: Its architecture (needed for quantize 'qat').
    model_path: Where the model came from (recorded in the report).
    log: Progress lines; default: the INFO log of logger
      'akd_tf.deploy.export'.

  Returns:
    The report (what export_report.json holds).

  Raises:
    ValueError: the data does not match the model, or quantize 'qat'
      without the model's architecture.
    FileNotFoundError, ImportError: the data cannot be loaded.
    akd_tf.latency.errors.ConversionError: TFLite conversion failed.
    ExportError: quantization-aware training failed.
  """
  if config.quantize == "qat":
    check_spec_matches(model, spec)
  data = data_lib.load_data(config.data)
  check_data_matches(model, data)
  os.makedirs(config.output_dir, exist_ok=True)
  images, labels = data_lib.arrays(data.test, config.eval_size, seed=None)
  verifier = _Verifier(images, labels, keras_logits(model, images),
                       config.latency, log)
  verifier.record("keras", model_path, verifier.reference, True)
  start = time.perf_counter()
  _write_saved_model(model, config, verifier)
  calibration = _write_tflites(model, config, data, verifier)
  qat = None
  if config.quantize == "qat":
    qat = _write_qat_tflite(model, spec, config, data, calibration, verifier,
                            log)
  report = _report(verifier, config, data, model_path,
                   time.perf_counter() - start, qat)
  with open(os.path.join(config.output_dir, "export_report.json"), "w") as f:
    json.dump(report, f, indent=2, sort_keys=True)
    f.write("\n")
  return report


def format_report(report: dict) -> str:
  """The report as a table: one row per artifact."""
  def cell(value, fmt):
    return "-" if value is None else format(value, fmt)

  lines = [f"{'artifact':<16} {'size (bytes)':>13} {'top-1':>7} "
           f"{'drop (pp)':>9} {'max |diff|':>11} {'latency ms':>10}"]
  for a in report["artifacts"].values():
    lines.append(
        f"{a['name']:<16} {a['size_bytes']:>13,} {a['top1']:>7.4f} "
        f"{a['top1_drop']:>9.2f} {cell(a['max_abs_diff'], '11.2e')} "
        f"{cell(a['latency_ms'], '10.3f')}")
  lines.append(f"{report['test_images']} {report['dataset']} test images; "
               f"float max |diff| {report['float_max_abs_diff']:.2e}")
  return "\n".join(lines)
