"""akd-export: verified SavedModel and TFLite exports of a trained student.

  # The search's winner, float and int8 (about 20 s on 2 CPU cores):
  akd-export --model=runs/search/best/student.keras --quantize=int8 \
      --output_dir=runs/export
  # Also quantization-aware training (TFMOT, in a tf_keras child process):
  akd-export --model=runs/search/best/student.keras --quantize=qat \
      --qat_epochs=1 --output_dir=runs/export_qat
  # From an architecture and a weights file:
  akd-export --arch_json=best/arch.json --weights=student.weights.h5 ...

Writes saved_model/ (signature 'serving_default': image -> logits),
student_float.tflite, with --quantize=int8|qat student_int8.tflite
(full-integer post-training quantization calibrated on
--calibration_samples training images), with --quantize=qat
student_qat_int8.tflite, and export_report.json. Every artifact is run on
the --dataset test images and compared with the Keras model (max abs logit
difference of the float exports, top-1 accuracy and its drop in percentage
points, size, LiteRT latency); the table is printed, then one JSON line.
Inputs are float32 images in [0, 1] like the training data (int8 models
quantize them with their input scale).
"""

import json
import os

from absl import app
from absl import flags
from absl import logging

from akd_tf.cli import entry

MODEL = flags.DEFINE_string(
    "model", None,
    "The student's .keras file (the search writes best/student.keras); an "
    "arch.json beside it gives the architecture that --quantize=qat needs.")
ARCH_JSON = flags.DEFINE_string(
    "arch_json", None,
    "The student's arch.json: with --weights instead of --model, or to "
    "name the architecture of --model for --quantize=qat.")
WEIGHTS = flags.DEFINE_string(
    "weights", None, "A .weights.h5 file of the --arch_json student.")
OUTPUT_DIR = flags.DEFINE_string("output_dir", None,
                                 "Folder of the artifacts and the report.")
QUANTIZE = flags.DEFINE_enum(
    "quantize", "int8", ["none", "int8", "qat"],
    "none: SavedModel and float TFLite; int8: also full-integer "
    "post-training quantization; qat: also quantization-aware training.")
DATASET = flags.DEFINE_string(
    "dataset", "fashion_mnist",
    "The data the student was trained on (a name as akd-train takes, or "
    "folder:PATH): calibration and QAT images come from its training "
    "split, verification images from its test split.")
DATA_DIR = flags.DEFINE_string("data_dir", None, "Folder of the data.")
IMAGE_SIZE = flags.DEFINE_integer(
    "image_size", None, "Resize the images (default: native size).")
CALIBRATION_SAMPLES = flags.DEFINE_integer(
    "calibration_samples", 500, "Training images that calibrate int8.")
EVAL_SIZE = flags.DEFINE_integer(
    "eval_size", None, "Test images used for verification (default: all).")
QAT_EPOCHS = flags.DEFINE_integer("qat_epochs", 1,
                                  "Quantization-aware training epochs.")
QAT_TRAIN_SIZE = flags.DEFINE_integer(
    "qat_train_size", None, "Training images for QAT (default: all).")
QAT_BATCH_SIZE = flags.DEFINE_integer("qat_batch_size", 128, "QAT batch.")
QAT_LEARNING_RATE = flags.DEFINE_float("qat_learning_rate", 1e-4,
                                       "QAT learning rate (Adam).")
SEED = flags.DEFINE_integer("seed", 0, "Seed of the calibration subset and "
                            "the QAT shuffle.")
THREADS = flags.DEFINE_integer("threads", 1, "LiteRT threads when timing.")
REPEATS = flags.DEFINE_integer("repeats", 5,
                               "Timing rounds of 20 invokes per .tflite.")

GROUPS = (entry.module_group("akd-export", globals()),)


def _usage(flag_name, message):
  raise app.UsageError(f"--{flag_name}: {message}")


def _check_flags():
  if not OUTPUT_DIR.value:
    _usage("output_dir", "required: where the artifacts go")
  if MODEL.value is None and (ARCH_JSON.value is None or
                              WEIGHTS.value is None):
    _usage("model", "required (or --arch_json with --weights)")
  if MODEL.value is not None and WEIGHTS.value is not None:
    _usage("weights", "give --model or --arch_json with --weights, not both")
  for flag in (MODEL, ARCH_JSON, WEIGHTS):
    if flag.value is not None and not os.path.exists(flag.value):
      _usage(flag.name, f"{flag.value} does not exist")
  for flag in (CALIBRATION_SAMPLES, QAT_EPOCHS, QAT_BATCH_SIZE, THREADS,
               REPEATS):
    if flag.value < 1:
      _usage(flag.name, f"{flag.value} must be >= 1")
  for flag in (EVAL_SIZE, QAT_TRAIN_SIZE, IMAGE_SIZE):
    if flag.value is not None and flag.value < 1:
      _usage(flag.name, f"{flag.value} must be >= 1")
  if not QAT_LEARNING_RATE.value > 0:
    _usage("qat_learning_rate", f"{QAT_LEARNING_RATE.value} must be > 0")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  _check_flags()
  # pylint: disable=g-import-not-at-top
  from akd_tf.deploy import export
  from akd_tf.distill import data as data_lib
  from akd_tf.latency import errors
  from akd_tf.latency import timing
  # pylint: enable=g-import-not-at-top
  try:
    model, spec = export.load_student(MODEL.value, ARCH_JSON.value,
                                      WEIGHTS.value)
  except (OSError, ValueError) as error:
    flag = "model" if MODEL.value and str(MODEL.value) in str(error) else (
        "weights" if WEIGHTS.value and str(WEIGHTS.value) in str(error)
        else "arch_json")
    _usage(flag, error)
  if QUANTIZE.value == "qat":
    try:
      export.check_spec_matches(model, spec)
    except ValueError as error:
      _usage("arch_json", error)
  try:
    data_config = data_lib.DataConfig(
        dataset=DATASET.value, data_dir=DATA_DIR.value,
        image_size=IMAGE_SIZE.value)
  except ValueError as error:
    _usage("image_size", error)
  config = export.ExportConfig(
      output_dir=OUTPUT_DIR.value, quantize=QUANTIZE.value, data=data_config,
      calibration_samples=CALIBRATION_SAMPLES.value,
      eval_size=EVAL_SIZE.value, qat_epochs=QAT_EPOCHS.value,
      qat_train_size=QAT_TRAIN_SIZE.value,
      qat_batch_size=QAT_BATCH_SIZE.value,
      qat_learning_rate=QAT_LEARNING_RATE.value, seed=SEED.value,
      latency=timing.LatencyConfig(threads=THREADS.value,
                                    repeats=REPEATS.value))
  try:
    report = export.export_student(model, config, spec,
                                   model_path=MODEL.value or WEIGHTS.value,
                                   log=logging.info)
  except FileNotFoundError as error:
    _usage("data_dir" if DATA_DIR.value else "dataset", error)
  except (ImportError, ValueError) as error:
    _usage("dataset", error)
  except (errors.LatencyError, export.ExportError) as error:
    raise SystemExit(f"akd-export: {error}") from None
  print(export.format_report(report))
  print(json.dumps({k: v for k, v in sorted(report.items())
                    if "diff" in k or "drop" in k or k == "keras_top1"}),
        flush=True)


def run():
  """Console-script entry point."""
  entry.run(main, "akd-export", __doc__, GROUPS)


if __name__ == "__main__":
  run()
