"""akd-train: train a built-in teacher, or a student by distillation.

  # A built-in teacher on Fashion-MNIST (about 2.5 minutes on 2 CPU cores):
  akd-train --role=teacher --teacher=resnet_wide --epochs=3 \
      --model_dir=runs/teacher
  # A student distilled from it (teacher logits computed once, cached):
  akd-train --role=student --teacher_path=runs/teacher/teacher.keras \
      --preset=mobilenet_v2 --width_multiplier=0.35 --bn_momentum=0.9 \
      --kd_alpha=0.9 --kd_temperature=4 --epochs=10 --model_dir=runs/student
  # The same student trained plainly (the NAS baseline): --kd_alpha=0.
  # A teacher that ends in a softmax (keras.applications models do):
  #   --teacher_path=teacher.keras --teacher_output=probabilities

The input shape and class count come from --dataset (--image_size resizes
its images); images are float32 in [0, 1]. --batch_size and
--learning_rate are per replica: the global batch and the learning rate are
multiplied by the number of replicas of --strategy. Every epoch the whole
training state is backed up in --model_dir; run the same command again
after a kill and it resumes from the last finished epoch. TensorBoard logs
go to <model_dir>/logs; the final model to <model_dir>/<role>.keras, with
arch.json for a student and result.json (minival and test accuracy).
"""

import os

from absl import app
from absl import flags
from absl import logging

from akd_tf.cli import common
from akd_tf.cli import entry
from akd_tf.distill import candidate_training
from akd_tf.distill import data as data_lib
from akd_tf.distill import teacher as teacher_lib
from akd_tf.distill import training

ROLE = flags.DEFINE_enum("role", "student", list(training.ROLES),
                         "Train a built-in teacher or a student.")
TEACHER = flags.DEFINE_string(
    "teacher", None,
    "Built-in teacher: resnet_wide (wide residual) or cnn_deep (deep "
    "narrow). With --role=teacher the one to train; with --role=student the "
    "one to distill from (trained once and cached in --cache_dir).")
TEACHER_PATH = flags.DEFINE_string(
    "teacher_path", None,
    "Teacher to distill from: a .keras file (loaded in safe mode) or a "
    "SavedModel folder.")
TEACHER_OUTPUT = flags.DEFINE_enum(
    "teacher_output", "logits", list(teacher_lib.TEACHER_OUTPUTS),
    "What the teacher outputs: logits, or probabilities (it ends in a "
    "softmax, as keras.applications models do; it then distills from its "
    "log-probabilities). Checked on training images.")
DATASET = flags.DEFINE_string(
    "dataset", "fashion_mnist",
    "fashion_mnist (offline, Debian's dataset-fashion-mnist), digits "
    "(scikit-learn), folder:PATH (your images, one sub-folder per class) or "
    "a tensorflow-datasets name such as imagenet2012.")
DATA_DIR = flags.DEFINE_string(
    "data_dir", None,
    "Folder of the data: Fashion-MNIST's idx files or a tfds data_dir.")
DOWNLOAD = flags.DEFINE_bool(
    "download", False,
    "Let tensorflow-datasets download a missing dataset (needs network).")
TRAIN_SIZE = flags.DEFINE_integer(
    "train_size", None, "Use at most this many training images.")
MINIVAL_SIZE = flags.DEFINE_integer(
    "minival_size", None,
    "Training images held out for minival (default 10%, at most 10000).")
KD_ALPHA = flags.DEFINE_float(
    "kd_alpha", 0.9,
    "Weight of the distillation loss in [0, 1]; 0 trains with cross-entropy "
    "alone and needs no teacher.")
KD_TEMPERATURE = flags.DEFINE_float("kd_temperature", 4.0,
                                    "Distillation temperature (> 0).")
EPOCHS = flags.DEFINE_integer("epochs", 10, "Training epochs.")
BATCH_SIZE = flags.DEFINE_integer(
    "batch_size", 128, "Batch size per replica (global = this x replicas).")
LEARNING_RATE = flags.DEFINE_float(
    "learning_rate", 2e-3,
    "Learning rate for one replica's batch (scaled by the replica count).")
OPTIMIZER = flags.DEFINE_enum("optimizer", "adam",
                              list(candidate_training.OPTIMIZERS),
                              "Optimizer (sgd: momentum 0.9, Nesterov).")
LR_SCHEDULE = flags.DEFINE_enum("lr_schedule", "cosine",
                                list(candidate_training.LR_SCHEDULES),
                                "Learning-rate schedule over the run.")
AUGMENT = flags.DEFINE_bool(
    "augment", False,
    "Random flips and shifts; the teacher then runs online every step.")
SEED = flags.DEFINE_integer("seed", 0, "Seed of data split, shuffle and init.")
STRATEGY = flags.DEFINE_enum(
    "strategy", "one_device", list(training.STRATEGIES),
    "tf.distribute strategy: one_device (first GPU or CPU), mirrored (all "
    "local GPUs), multi_worker (workers from TF_CONFIG), tpu (with --tpu).")
TPU = flags.DEFINE_string("tpu", None,
                          "TPU name or grpc address for --strategy=tpu "
                          "('local' on a TPU VM).")
LOGICAL_CPUS = flags.DEFINE_integer(
    "logical_cpus", 0,
    "Split the CPU into this many logical devices (>= 2), so that "
    "--strategy=mirrored can be tried without GPUs.")
JIT_COMPILE = flags.DEFINE_bool(
    "jit_compile", False, "XLA-compile the training step (slower on CPU).")
MODEL_DIR = flags.DEFINE_string(
    "model_dir", None, "Output folder: backups, logs, the final model.")
CACHE_DIR = flags.DEFINE_string(
    "cache_dir", None,
    "Cache of built-in teachers and teacher logits (default "
    "<model_dir>/cache); share it between runs.")

GROUPS = (
    entry.module_group("akd-train", globals()),
    # akd-train takes the class count and channels from --dataset.
    entry.module_group("architecture (--role=student)", vars(common),
                       exclude=("num_classes", "channels")),
)


def _usage(flag_name, message):
  raise app.UsageError(f"--{flag_name}: {message}")


def _check_flags():
  """Raises app.UsageError naming the first bad flag."""
  if not MODEL_DIR.value:
    _usage("model_dir", "required: where checkpoints and the model go")
  for flag, low in ((EPOCHS, 1), (BATCH_SIZE, 1)):
    if flag.value < low:
      _usage(flag.name, f"{flag.value} must be >= {low}")
  for flag in (TRAIN_SIZE, MINIVAL_SIZE):
    if flag.value is not None and flag.value < 1:
      _usage(flag.name, f"{flag.value} must be >= 1")
  if not LEARNING_RATE.value > 0:
    _usage("learning_rate", f"{LEARNING_RATE.value} must be > 0")
  if not 0.0 <= KD_ALPHA.value <= 1.0:
    _usage("kd_alpha", f"{KD_ALPHA.value} must be in [0, 1]")
  if not KD_TEMPERATURE.value > 0:
    _usage("kd_temperature", f"{KD_TEMPERATURE.value} must be > 0")
  if LOGICAL_CPUS.value not in (0,) and LOGICAL_CPUS.value < 2:
    _usage("logical_cpus", f"{LOGICAL_CPUS.value} must be 0 or >= 2")
  if STRATEGY.value == "tpu" and not TPU.value:
    _usage("tpu", "--strategy=tpu needs --tpu (a name, address or 'local')")
  if TEACHER.value is not None and TEACHER.value not in teacher_lib.TEACHERS:
    _usage("teacher", f"unknown built-in teacher '{TEACHER.value}'; choose "
           f"one of {list(teacher_lib.TEACHERS)}")
  if TEACHER.value is not None and TEACHER_PATH.value is not None:
    _usage("teacher_path", "give --teacher or --teacher_path, not both")
  if TEACHER_PATH.value is not None and not os.path.exists(
      TEACHER_PATH.value):
    _usage("teacher_path", f"{TEACHER_PATH.value} does not exist")
  for name in ("num_classes", "channels"):
    if flags.FLAGS[name].present:
      _usage(name, "akd-train takes it from --dataset (use --image_size to "
             "resize the images)")
  arch_given = [n for n in ("preset", "blocks", "arch_json")
                if flags.FLAGS[n].value is not None]
  if ROLE.value == "teacher":
    if TEACHER.value is None:
      _usage("teacher", "--role=teacher trains a built-in teacher: "
             f"--teacher={'|'.join(teacher_lib.TEACHERS)}")
    if TEACHER_PATH.value is not None:
      _usage("teacher_path", "--role=teacher trains --teacher from scratch")
    if arch_given:
      _usage(arch_given[0], "--role=teacher takes no student architecture")
  elif (KD_ALPHA.value > 0 and TEACHER.value is None and
        TEACHER_PATH.value is None):
    _usage("kd_alpha", f"{KD_ALPHA.value} needs --teacher or --teacher_path"
           " (--kd_alpha=0 trains without a teacher)")


def _job_from_flags():
  """Builds the `TrainJob` the flags describe."""
  spec = common.arch_spec_from_flags() if ROLE.value == "student" else None
  image_size = (common.IMAGE_SIZE.value if flags.FLAGS["image_size"].present
                else None)
  try:
    data_config = data_lib.DataConfig(
        dataset=DATASET.value, data_dir=DATA_DIR.value, image_size=image_size,
        train_size=TRAIN_SIZE.value, minival_size=MINIVAL_SIZE.value,
        seed=SEED.value, download=DOWNLOAD.value)
  except ValueError as error:
    _usage("image_size", error)
  train_config = candidate_training.TrainConfig(
      epochs=EPOCHS.value, batch_size=BATCH_SIZE.value,
      learning_rate=LEARNING_RATE.value, optimizer=OPTIMIZER.value,
      lr_schedule=LR_SCHEDULE.value, kd_alpha=KD_ALPHA.value,
      kd_temperature=KD_TEMPERATURE.value, seed=SEED.value,
      jit_compile=JIT_COMPILE.value, bn_momentum=None, augment=AUGMENT.value)
  return training.TrainJob(
      role=ROLE.value, model_dir=MODEL_DIR.value, data=data_config,
      train=train_config, arch=spec, teacher=TEACHER.value,
      teacher_path=TEACHER_PATH.value, teacher_output=TEACHER_OUTPUT.value,
      cache_dir=CACHE_DIR.value,
      strategy=STRATEGY.value, tpu=TPU.value)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if LOGICAL_CPUS.value >= 2:
    training.split_cpu(LOGICAL_CPUS.value)
  _check_flags()
  job = _job_from_flags()
  strategy = training.make_strategy(job.strategy, job.tpu)
  try:
    result = training.run_job(job, strategy=strategy, log=logging.info)
  except training.JobInputError as error:
    if error.source == "data":
      flag = "data_dir" if DATA_DIR.value else "dataset"
    elif error.source == "teacher":
      flag = "teacher_path" if TEACHER_PATH.value else "teacher"
    else:
      flag = next(n for n in ("preset", "blocks", "arch_json")
                  if flags.FLAGS[n].value is not None)
    _usage(flag, error)
  common.print_json_line({"model_path": result.model_path,
                          "minival_accuracy": result.minival_accuracy,
                          "test_accuracy": result.test_accuracy,
                          "train_seconds": round(result.train_seconds, 1),
                          "mode": result.mode})


def run():
  """Console-script entry point."""
  entry.run(main, "akd-train", __doc__, GROUPS)


if __name__ == "__main__":
  run()
