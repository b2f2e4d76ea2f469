"""The search's flags, defined once, and their conversion to config objects.

`define_*_flags` define the flag groups (in absl's FLAGS, or in the
FlagValues given); `search_config_from_flags` turns the parsed flags into an
`akd_tf.nas.config.SearchConfig`, raising `app.UsageError` that names the
flag for any bad value. `akd_tf.api.search` defines the same flags in a
FlagValues of its own and fills it from its keyword arguments, so the Python
API and akd-search share defaults, checks and messages.
"""

import dataclasses
import os
import re
from typing import Dict

from absl import app
from absl import flags

from akd_tf import memory
from akd_tf.distill import candidate_training
from akd_tf.distill import data as data_lib
from akd_tf.distill import image_folder
from akd_tf.distill import teacher as teacher_lib
from akd_tf.latency import device
from akd_tf.latency import measurer
from akd_tf.latency import timing
from akd_tf.nas import config as config_lib
from akd_tf.nas import controller as controller_lib
from akd_tf.nas import reward as reward_lib
from akd_tf.oneshot import scorer as scorer_lib
from akd_tf.space import arch

FLAGS = flags.FLAGS


def define_data_flags(flag_values: flags.FlagValues = FLAGS):
  flags.DEFINE_string("dataset", "fashion_mnist",
                      "'fashion_mnist' (Debian's package), 'digits' "
                      "(scikit-learn), 'folder:PATH' (your images: one "
                      "sub-folder per class, and a test/ sub-folder or 20% "
                      "held out for testing) or a tensorflow-datasets name.",
                      flag_values=flag_values)
  flags.DEFINE_string("data_dir", None, "Where the dataset lies (default: "
                      "the dataset's standard place).", flag_values=flag_values)
  flags.DEFINE_bool("download", False, "Let tensorflow-datasets download a "
                    "missing dataset (needs network).", flag_values=flag_values)
  flags.DEFINE_integer("image_size", 0, "Resize images to this size; 0 keeps "
                       "the native size.", flag_values=flag_values)
  flags.DEFINE_integer("proxy_train_size", 5000, "Training images of each "
                       "candidate's proxy task (0: all).",
                       flag_values=flag_values)
  flags.DEFINE_integer("minival_size", 2000, "Images held out of the training"
                       " set; the accuracy the search rewards is measured "
                       "there.", flag_values=flag_values)
  flags.DEFINE_integer("data_seed", 0, "Seed of the mini-val hold-out.",
                       flag_values=flag_values)


def define_student_flags(flag_values: flags.FlagValues = FLAGS):
  flags.DEFINE_float("bn_momentum", 0.9, "BatchNormalization momentum of "
                     "students; short proxy training needs about 0.9.",
                     flag_values=flag_values)
  flags.DEFINE_float("width_multiplier", 1.0, "Width multiplier of students.",
                     flag_values=flag_values)
  flags.DEFINE_enum("activation", "relu", list(arch.ACTIVATIONS),
                    "Activation of students.", flag_values=flag_values)
  flags.DEFINE_integer("head_size", 1280, "Filters of the students' 1x1 "
                       "head convolution.", flag_values=flag_values)
  flags.DEFINE_integer("stem_strides", 2, "Stride of the students' stem.",
                       flag_values=flag_values)
  flags.DEFINE_float("dropout_rate", 0.2, "Dropout before the classifier.",
                     flag_values=flag_values)
  flags.DEFINE_float("drop_connect_rate", 0.0, "Stochastic depth rate.",
                     flag_values=flag_values)


def define_teacher_flags(flag_values: flags.FlagValues = FLAGS):
  flags.DEFINE_string("teacher", "resnet_wide",
                      f"Built-in teacher {teacher_lib.TEACHERS} (trained once "
                      "and cached) or the path of a .keras / SavedModel "
                      "teacher.", flag_values=flag_values)
  flags.DEFINE_enum("teacher_output", "logits",
                    list(teacher_lib.TEACHER_OUTPUTS),
                    "What the teacher outputs: logits, or probabilities (it "
                    "ends in a softmax, as keras.applications models do; it "
                    "then distills from its log-probabilities). Checked on "
                    "training images.", flag_values=flag_values)
  flags.DEFINE_integer("teacher_epochs", 3, "Epochs of a built-in teacher.",
                       flag_values=flag_values)
  flags.DEFINE_string("cache_dir", os.path.join(os.path.expanduser("~"),
                                                ".cache", "akd_tf"),
                      "Cache of built-in teachers and teacher logits.",
                      flag_values=flag_values)


def define_all_flags(flag_values: flags.FlagValues = FLAGS):
  """Defines every flag `search_config_from_flags` reads."""
  define_data_flags(flag_values)
  define_teacher_flags(flag_values)
  define_student_flags(flag_values)
  define_search_flags(flag_values)


def define_search_flags(flag_values: flags.FlagValues = FLAGS):
  """Defines the controller, reward, training, latency and run flags."""
  define_controller_flags(flag_values)
  define_reward_flags(flag_values)
  define_training_flags(flag_values)
  define_oneshot_flags(flag_values)
  define_latency_flags(flag_values)
  define_run_flags(flag_values)


def define_controller_flags(flag_values: flags.FlagValues = FLAGS):
  flags.DEFINE_enum("reward_accuracy", "kd", ["kd", "ce"],
                    "Accuracy in the reward: 'kd' KD-trained (AKD) or 'ce' "
                    "plainly trained (the NAS+KD baseline).",
                    flag_values=flag_values)
  flags.DEFINE_enum("controller", "reinforce",
                    list(controller_lib.CONTROLLER_KINDS),
                    "REINFORCE LSTM policy or random search.",
                    flag_values=flag_values)
  flags.DEFINE_integer("num_candidates", 20, "Candidates to evaluate.",
                       flag_values=flag_values)
  flags.DEFINE_integer("candidates_per_step", 0, "Candidates per controller "
                       "update (0: --num_workers).", flag_values=flag_values)
  flags.DEFINE_integer("seed", 0, "Seed of the controller and of training.",
                       flag_values=flag_values)
  flags.DEFINE_float("controller_learning_rate", 0.0035,
                     "Adam learning rate of the controller.",
                     flag_values=flag_values)
  flags.DEFINE_float("entropy_weight", 1e-3, "Entropy bonus of the policy.",
                     flag_values=flag_values)
  flags.DEFINE_float("baseline_decay", 0.95, "Moving-average baseline decay.",
                     flag_values=flag_values)


def define_reward_flags(flag_values: flags.FlagValues = FLAGS):
  flags.DEFINE_enum("reward", "soft", list(reward_lib.REWARD_KINDS),
                    "soft: ACC*(LAT/T)^-0.07; hard: ACC, *(LAT/T)^-1 over T; "
                    "mnas: ACC*(LAT/T)^w with w = --reward_alpha at or under "
                    "T, --reward_beta over T; abs: ACC + beta*|LAT/T - 1| "
                    "(beta -0.07 or --reward_beta).", flag_values=flag_values)
  flags.DEFINE_float("target_ms", 1.0, "Latency target T in milliseconds.",
                     flag_values=flag_values)
  flags.DEFINE_float("reward_alpha", None, "--reward=mnas: the exponent w at "
                     "or under the target (<= 0; 0 ignores latency there).",
                     flag_values=flag_values)
  flags.DEFINE_float("reward_beta", None, "--reward=mnas: the exponent w over "
                     "the target (<= 0); --reward=abs: the slope beta (<= 0, "
                     "default -0.07).", flag_values=flag_values)


def define_training_flags(flag_values: flags.FlagValues = FLAGS):
  """The candidates' proxy training and the winner's final training."""
  flags.DEFINE_integer("proxy_epochs", 1, "Epochs of each candidate.",
                       flag_values=flag_values)
  flags.DEFINE_integer("proxy_batch_size", 128, "Batch size of candidates.",
                       flag_values=flag_values)
  flags.DEFINE_float("proxy_learning_rate", 2e-3, "Learning rate of "
                     "candidates.", flag_values=flag_values)
  flags.DEFINE_enum("optimizer", "adam",
                    list(candidate_training.OPTIMIZERS),
                    "Optimizer of candidates and the final student.",
                    flag_values=flag_values)
  flags.DEFINE_float("kd_alpha", 0.9, "Weight of the KD term in [0, 1].",
                     flag_values=flag_values)
  flags.DEFINE_float("kd_temperature", 4.0, "KD temperature (> 0).",
                     flag_values=flag_values)
  flags.DEFINE_integer("bn_recalibration_images", 1000, "After training, "
                       "BatchNormalization statistics are recomputed over "
                       "this many training images (0: keep the moving "
                       "averages, which lag in short runs).",
                       flag_values=flag_values)
  flags.DEFINE_integer("final_epochs", 5, "Epochs of the winner's final KD "
                       "training.", flag_values=flag_values)
  flags.DEFINE_integer("final_train_size", 0, "Training images of the final "
                       "training and built-in teacher (0: all).",
                       flag_values=flag_values)
  flags.DEFINE_float("final_learning_rate", 2e-3, "Final learning rate.",
                     flag_values=flag_values)
  flags.DEFINE_integer("final_batch_size", 128, "Final batch size.",
                       flag_values=flag_values)
  flags.DEFINE_enum("strategy", "one_device",
                    list(config_lib.FINAL_STRATEGIES),
                    "tf.distribute strategy of the winner's final training "
                    "(candidates train one per worker): one_device (first "
                    "GPU or CPU), mirrored (all local GPUs, or --logical_cpus"
                    "), tpu (with --tpu). --final_batch_size and "
                    "--final_learning_rate are per replica. The final "
                    "training backs up its state every epoch in "
                    "<model_dir>/best and resumes when the command is run "
                    "again.", flag_values=flag_values)
  flags.DEFINE_string("tpu", None, "TPU name or grpc address for "
                      "--strategy=tpu ('local' on a TPU VM).",
                      flag_values=flag_values)
  flags.DEFINE_integer("logical_cpus", 0, "Split the CPU into this many "
                       "logical devices (>= 2), so that --strategy=mirrored "
                       "can be tried without GPUs.", flag_values=flag_values)


def define_oneshot_flags(flag_values: flags.FlagValues = FLAGS):
  """The candidates' proxy: trained each, or scored through a supernet."""
  flags.DEFINE_enum("proxy", "train", ["train", "oneshot"],
                    "train: each candidate trained on the proxy task "
                    "(--proxy_*); oneshot: one supernet of the whole space "
                    "trained once (cached under --cache_dir), each candidate "
                    "scored by its path's mini-val accuracy with "
                    "BatchNormalization recomputed, in about a second.",
                    flag_values=flag_values)
  flags.DEFINE_integer("supernet_steps", 1000, "--proxy=oneshot: updates of "
                       "the supernet (batch, optimizer, learning rate and "
                       "loss of --proxy_*, --kd_*).", flag_values=flag_values)
  flags.DEFINE_enum("supernet_sampling", "sandwich",
                    ["uniform", "sandwich", "progressive"],
                    "--proxy=oneshot: paths of each update: uniform ones; "
                    "the largest and the smallest plus uniform ones "
                    "(sandwich rule); or the largest plus neighbours of it "
                    "that redraw more of its decisions as training goes on, "
                    "uniform ones at the end (progressive).",
                    flag_values=flag_values)
  flags.DEFINE_integer("supernet_paths_per_step", 4, "--proxy=oneshot: paths "
                       "whose gradients make one update (>= 2 for sandwich "
                       "and progressive).", flag_values=flag_values)
  flags.DEFINE_integer("supernet_warmup_steps", 0, "--proxy=oneshot: first "
                       "updates that train the largest path alone.",
                       flag_values=flag_values)
  flags.DEFINE_integer("oneshot_calibration_images", 512, "--proxy=oneshot: "
                       "training images each candidate's BatchNormalization "
                       "statistics are recomputed on (0: none, the "
                       "supernet's trained statistics; an ablation).",
                       flag_values=flag_values)
  flags.DEFINE_integer("oneshot_candidates_per_task", 0, "--proxy=oneshot: "
                       "most candidates a worker scores in one pool (or Ray) "
                       "task; 0: each worker's share of a controller step. "
                       "Fewer balance uneven workers; results do not depend "
                       "on it.", flag_values=flag_values)


def define_latency_flags(flag_values: flags.FlagValues = FLAGS):
  flags.DEFINE_enum("latency", "measured", list(measurer.MODES),
                    "measured: TFLite + LiteRT here; lut: lookup table (one "
                    "per machine under --cache_dir); command: "
                    "--latency_command (e.g. adb on a phone).",
                    flag_values=flag_values)
  flags.DEFINE_string("latency_command", None, "Command template timing "
                      "{tflite} on a device (--latency=command).",
                      flag_values=flag_values)
  flags.DEFINE_integer("latency_threads", 1, "LiteRT interpreter threads.",
                       flag_values=flag_values)
  flags.DEFINE_integer("latency_runs", 20, "Timed invokes per round.",
                       flag_values=flag_values)
  flags.DEFINE_integer("latency_repeats", 20, "Rounds of --latency_runs "
                       "invokes, --latency_pause_ms apart; the latency is the"
                       " fastest invoke of all rounds.",
                       flag_values=flag_values)
  flags.DEFINE_float("latency_pause_ms", 20.0, "Sleep between rounds, so "
                     "they sample more moments of a shared machine.",
                     flag_values=flag_values)


def define_run_flags(flag_values: flags.FlagValues = FLAGS):
  """Where candidates run, and the winner's export."""
  flags.DEFINE_integer("num_workers", 1, "Worker processes evaluating "
                       "candidates in parallel.", flag_values=flag_values)
  flags.DEFINE_integer("threads_per_worker", 0, "TensorFlow threads per "
                       "worker (0: TensorFlow's default).",
                       flag_values=flag_values)
  flags.DEFINE_integer(
      "candidates_per_worker", config_lib.DEFAULT_CANDIDATES_PER_WORKER,
      "Replace a worker process by a fresh one after it has evaluated this "
      "many candidates (0: never; with --executor=ray --proxy=oneshot, this "
      "many chunks of candidates). A backstop against memory growth "
      "(README, Memory); results do not depend on it.",
      flag_values=flag_values)
  flags.DEFINE_bool(
      "worker_onednn", False, "Let the workers' TensorFlow use its oneDNN "
      "CPU kernels. Off by default: their caches grow a worker with every "
      "candidate (README, Memory).", flag_values=flag_values)
  flags.DEFINE_enum(
      "worker_allocator", "jemalloc", list(memory.WORKER_ALLOCATORS),
      "The workers' C heap allocator: 'jemalloc' (Debian's libjemalloc2, "
      "preloaded when installed; glibc's malloc fragments and grows a "
      "worker by 1-2 MB per candidate, README, Memory) or 'system'. Results "
      "do not depend on it.", flag_values=flag_values)
  flags.DEFINE_enum("executor", "local", ["local", "ray"],
                    "Where candidates are evaluated: 'local' worker "
                    "processes, or 'ray' tasks on a Ray cluster (pip install "
                    "-e .[ray]).", flag_values=flag_values)
  flags.DEFINE_string("ray_address", None, "--executor=ray: the cluster to "
                      "join ('auto' for the one `ray start` made here, "
                      "'HOST:6379' or 'ray://HOST:10001'); unset starts a "
                      "local Ray instance.", flag_values=flag_values)
  flags.DEFINE_float("cpus_per_candidate", 1.0, "--executor=ray: CPUs Ray "
                     "reserves for each candidate.", flag_values=flag_values)
  flags.DEFINE_float("gpus_per_candidate", 0.0, "--executor=ray: GPUs Ray "
                     "reserves for each candidate (0.5 shares a GPU by two).",
                     flag_values=flag_values)
  flags.DEFINE_bool("export", True, "Export the winner as akd-export "
                    "--quantize=none does: best/saved_model (image -> "
                    "logits), best/student_float.tflite and "
                    "best/export_report.json, verified on the test split.",
                    flag_values=flag_values)


def _flag_text(f: flags.FlagValues, name: str) -> str:
  value = f[name].value
  return f"--{name}={','.join(value) if isinstance(value, list) else value}"


def _build(f: flags.FlagValues, flag_of: Dict[str, str], factory, **kwargs):
  """Calls `factory(**kwargs)`, turning a ValueError into a UsageError that
  names the flags the error is about.

  Args:
    f: The parsed flags.
    flag_of: The words a config's error message uses for its settings
      (field names, as in 'epochs=0 must be >= 1') -> the flag that sets
      each. The flags whose words the message names are blamed, in the
      message's order (only those given on the command line, when some
      were); when it names none, every flag of `flag_of` is.
    factory: Builds the config.
    **kwargs: Its arguments.
  """
  try:
    return factory(**kwargs)
  except ValueError as error:
    message = str(error)
    found = []
    for word, flag in flag_of.items():
      match = re.search(rf"\b{word}\b", message)
      if match:
        found.append((match.start(), flag))
    blamed = list(dict.fromkeys(flag for _, flag in sorted(found))) or list(
        dict.fromkeys(flag_of.values()))
    given = [name for name in blamed if f[name].present]
    blamed = given or blamed
    names = ", ".join(_flag_text(f, name) for name in blamed)
    raise app.UsageError(f"{names}: {message}") from None


def _require(f: flags.FlagValues, flag_name: str, ok: bool,
             condition: str) -> None:
  """Raises a UsageError '--flag=value: must be <condition>' unless ok."""
  if not ok:
    raise app.UsageError(f"{_flag_text(f, flag_name)}: must be {condition}")


def _data_config(f) -> data_lib.DataConfig:
  """The proxy task's data."""
  if f.dataset in ("fashion_mnist",) and f.data_dir and not os.path.isdir(
      f.data_dir):
    raise app.UsageError(f"--data_dir={f.data_dir}: no such directory")
  for name in ("image_size", "proxy_train_size", "minival_size"):
    _require(f, name, f[name].value >= 0, ">= 0 (0: the default)")
  if image_folder.is_folder_dataset(f.dataset):
    try:
      image_folder.class_folders(image_folder.folder_path(f.dataset))
    except (OSError, ValueError) as error:
      raise app.UsageError(f"--dataset={f.dataset}: " + str(error).removeprefix(
          f"dataset '{f.dataset}': ")) from None
  return _build(f, {"dataset": "dataset", "data_dir": "data_dir",
                    "image_size": "image_size",
                    "train_size": "proxy_train_size",
                    "minival_size": "minival_size", "seed": "data_seed"},
                data_lib.DataConfig, dataset=f.dataset, data_dir=f.data_dir,
                image_size=f.image_size or None,
                train_size=f.proxy_train_size or None,
                minival_size=f.minival_size or None, seed=f.data_seed,
                download=f.download)


def _global_params(f) -> arch.GlobalParams:
  """The students' settings (num_classes comes from the data later)."""
  return _build(
      f, {"batch_norm_momentum": "bn_momentum",
          "depth_multiplier": "width_multiplier", "activation": "activation",
          "head_size": "head_size", "stem_strides": "stem_strides",
          "dropout_rate": "dropout_rate",
          "drop_connect_rate": "drop_connect_rate"}, arch.GlobalParams,
      num_classes=1, batch_norm_momentum=f.bn_momentum,
      depth_multiplier=f.width_multiplier, activation=f.activation,
      head_size=f.head_size, stem_strides=f.stem_strides,
      dropout_rate=f.dropout_rate, drop_connect_rate=f.drop_connect_rate)


def _train_configs(f):
  """Returns (the candidates' proxy recipe, the winner's final recipe)."""
  proxy = _build(f, {"epochs": "proxy_epochs",
                     "batch_size": "proxy_batch_size",
                     "learning_rate": "proxy_learning_rate",
                     "optimizer": "optimizer", "alpha": "kd_alpha",
                     "temperature": "kd_temperature",
                     "bn_momentum": "bn_momentum",
                     "bn_recalibration_images": "bn_recalibration_images"},
                 candidate_training.TrainConfig,
                 epochs=f.proxy_epochs, batch_size=f.proxy_batch_size,
                 learning_rate=f.proxy_learning_rate, optimizer=f.optimizer,
                 kd_alpha=f.kd_alpha, kd_temperature=f.kd_temperature,
                 seed=f.seed, bn_momentum=f.bn_momentum,
                 bn_recalibration_images=f.bn_recalibration_images)
  final = _build(f, {"epochs": "final_epochs",
                     "learning_rate": "final_learning_rate",
                     "batch_size": "final_batch_size"},
                 lambda **changes: dataclasses.replace(proxy, **changes),
                 epochs=f.final_epochs, learning_rate=f.final_learning_rate,
                 batch_size=f.final_batch_size)
  return proxy, final


def _latency_config(f) -> timing.LatencyConfig:
  """The timing setup (and a check of the device command's template)."""
  config = _build(
      f, {"threads": "latency_threads", "runs": "latency_runs",
          "repeats": "latency_repeats", "pause_ms": "latency_pause_ms"},
      timing.LatencyConfig, threads=f.latency_threads, runs=f.latency_runs,
      repeats=f.latency_repeats, pause_ms=f.latency_pause_ms)
  if f.latency == "command":
    _build(f, {"template": "latency_command"}, device.check_command_template,
           template=f.latency_command)
  return config


def _controller_config(f) -> controller_lib.ControllerConfig:
  return _build(
      f, {"learning_rate": "controller_learning_rate",
          "entropy_weight": "entropy_weight",
          "baseline_decay": "baseline_decay"},
      controller_lib.ControllerConfig,
      learning_rate=f.controller_learning_rate,
      entropy_weight=f.entropy_weight, baseline_decay=f.baseline_decay,
      seed=f.seed)


def _reward_config(f) -> reward_lib.RewardConfig:
  if f.reward == "mnas" and (f.reward_alpha is None or f.reward_beta is None):
    raise app.UsageError(
        "--reward=mnas: give MnasNet's exponents --reward_alpha (at or "
        "under the target) and --reward_beta (over it); --reward=soft is "
        "-0.07 and -0.07, --reward=hard 0 and -1")
  return _build(f, {"kind": "reward", "target": "target_ms",
                    "alpha": "reward_alpha", "beta": "reward_beta"},
                reward_lib.RewardConfig, kind=f.reward, target_ms=f.target_ms,
                alpha=f.reward_alpha, beta=f.reward_beta)


def _check_teacher_and_executor(f) -> None:
  """Raises app.UsageError for a teacher that is neither built in nor a
  file, or --executor=ray without Ray."""
  if f.teacher not in teacher_lib.TEACHERS and not os.path.exists(f.teacher):
    raise app.UsageError(
        f"--teacher={f.teacher}: neither a built-in teacher "
        f"{teacher_lib.TEACHERS} nor an existing .keras file or SavedModel")
  _require(f, "teacher_epochs", f.teacher_epochs >= 1, ">= 1")
  if f.executor == "ray":
    from akd_tf.nas import ray_pool  # pylint: disable=g-import-not-at-top
    try:
      ray_pool.import_ray()
    except ImportError as error:
      raise app.UsageError(f"--executor=ray: {error}") from None


# The words of SearchConfig's error messages -> the flags that set them.
_SEARCH_FLAG_OF = {
    "num_candidates": "num_candidates", "num_workers": "num_workers",
    "candidates_per_step": "candidates_per_step",
    "threads_per_worker": "threads_per_worker",
    "candidates_per_worker": "candidates_per_worker",
    "worker_onednn": "worker_onednn",
    "worker_allocator": "worker_allocator",
    "reward_accuracy": "reward_accuracy", "kd_alpha": "kd_alpha",
    "controller": "controller", "teacher_output": "teacher_output",
    "latency_mode": "latency", "executor": "executor",
    "ray_address": "ray_address", "cpus_per_candidate": "cpus_per_candidate",
    "gpus_per_candidate": "gpus_per_candidate", "strategy": "strategy",
    "tpu": "tpu", "proxy_mode": "proxy", "steps": "supernet_steps",
    "sampling": "supernet_sampling",
    "paths_per_step": "supernet_paths_per_step",
    "warmup_steps": "supernet_warmup_steps",
    "oneshot_candidates_per_task": "oneshot_candidates_per_task"}


def search_config_from_flags(f: flags.FlagValues = FLAGS):
  """Returns the `SearchConfig` the parsed flags describe.

  Args:
    f: The parsed flags (absl's global FLAGS, or the FlagValues that
      `akd_tf.api.search` fills from its keyword arguments).

  Raises:
    app.UsageError: a flag value is invalid; the message names the flag.
  """
  data = _data_config(f)
  global_params = _global_params(f)
  proxy, final = _train_configs(f)
  reward = _reward_config(f)
  latency_config = _latency_config(f)
  controller_config = _controller_config(f)
  _check_teacher_and_executor(f)
  _require(f, "final_train_size", f.final_train_size >= 0, ">= 0 (0: all)")
  _require(f, "logical_cpus", f.logical_cpus == 0 or f.logical_cpus >= 2,
           "0 or >= 2")
  _require(f, "tpu", f.strategy != "tpu" or bool(f.tpu),
           "the TPU's name or grpc address ('local' on a TPU VM) with "
           "--strategy=tpu")
  recipe = teacher_lib.TeacherRecipe(epochs=f.teacher_epochs, seed=f.seed)
  oneshot = _build(f, {"calibration_images": "oneshot_calibration_images"},
                   scorer_lib.OneShotConfig,
                   calibration_images=f.oneshot_calibration_images,
                   calibration_seed=f.seed)
  return _build(
      f, _SEARCH_FLAG_OF, config_lib.SearchConfig,
      data=data, global_params=global_params, proxy=proxy, final=final,
      reward=reward, final_train_size=f.final_train_size or None,
      reward_accuracy=f.reward_accuracy, controller=f.controller,
      controller_config=controller_config, num_candidates=f.num_candidates,
      candidates_per_step=f.candidates_per_step or max(1, f.num_workers),
      num_workers=f.num_workers, threads_per_worker=f.threads_per_worker,
      candidates_per_worker=f.candidates_per_worker,
      worker_onednn=f.worker_onednn,
      worker_allocator=f.worker_allocator, teacher=f.teacher,
      teacher_output=f.teacher_output,
      teacher_recipe=recipe, cache_dir=f.cache_dir,
      latency_mode=f.latency, latency=latency_config,
      latency_command=f.latency_command, export=f.export,
      executor=f.executor, ray_address=f.ray_address,
      cpus_per_candidate=f.cpus_per_candidate,
      gpus_per_candidate=f.gpus_per_candidate, strategy=f.strategy,
      tpu=f.tpu, proxy_mode=f.proxy, supernet_steps=f.supernet_steps,
      supernet_sampling=f.supernet_sampling,
      supernet_paths_per_step=f.supernet_paths_per_step,
      supernet_warmup_steps=f.supernet_warmup_steps, oneshot=oneshot,
      oneshot_candidates_per_task=f.oneshot_candidates_per_task)
