"""A search's configuration: what `run_search` is given, and its resume check.

`SearchConfig` is a whole search (proxy task, reward, controller, budget,
workers, final training); every default is akd-search's flag's. A search
writes it to `search_config.json` in its model_dir; `check_resume_config`
refuses to resume that search with settings its records depend on changed
(the one-shot proxy's among them), and accepts changes of the budget, the
workers, the executor and the final training (`_RESUMABLE_CHANGES`). A
config written by an older akd_tf has the settings added since then filled
with the values it ran with.

Public names: SearchConfig, check_resume_config, EXECUTORS,
FINAL_STRATEGIES, REWARD_ACCURACIES, DEFAULT_CANDIDATES_PER_WORKER.
"""

import dataclasses
import json
import os
from typing import Optional

from akd_tf import config_checks
from akd_tf import memory
from akd_tf.distill import candidate_training
from akd_tf.distill import data as data_lib
from akd_tf.distill import teacher as teacher_lib
from akd_tf.distill import training
from akd_tf.latency import measurer
from akd_tf.latency import timing
from akd_tf.nas import controller as controller_lib
from akd_tf.nas import evaluate
from akd_tf.nas import reward as reward_lib
from akd_tf.oneshot import scorer as scorer_lib
from akd_tf.oneshot import trainer as supernet_trainer
from akd_tf.space import arch

__all__ = ["DEFAULT_CANDIDATES_PER_WORKER", "EXECUTORS", "FINAL_STRATEGIES",
           "REWARD_ACCURACIES", "SearchConfig", "check_resume_config"]

REWARD_ACCURACIES = ("kd", "ce")
EXECUTORS = ("local", "ray")
# The winner's final training runs on this machine's devices; several
# workers ('multi_worker') would each run the whole search.
FINAL_STRATEGIES = tuple(s for s in training.STRATEGIES if s != "multi_worker")
_RESUMABLE_CHANGES = ("num_candidates", "num_workers", "final", "export",
                      "final_train_size", "executor", "ray_address",
                      "cpus_per_candidate", "gpus_per_candidate", "strategy",
                      "tpu", "candidates_per_worker", "worker_allocator",
                      "oneshot_candidates_per_task")
# Measured (benchmarks/memory.py, a worker never replaced): it grew 17 MB
# from candidate 10 to 50 on jemalloc (53 MB on glibc), against about 190 MB
# per candidate before any release. Replacing it every 50 candidates caps
# that for one worker start (importing TensorFlow, loading the data: seconds)
# per 50 candidates of ~30 s each.
DEFAULT_CANDIDATES_PER_WORKER = 50


@dataclasses.dataclass(frozen=True)
class SearchConfig:
  """A whole search: proxy task, reward, controller, budget, final training.

  Every default is akd-search's flag's (tests/test_flag_configs.py): a
  `SearchConfig()` is what `akd-search` runs without flags.

  Attributes:
    data: The proxy task's data: `train_size` proxy training images and the
      mini-validation split held out of the training set.
    global_params: Network-wide settings of every student; num_classes is
      taken from the data.
    proxy: Proxy training recipe. Its kd_alpha is used for AKD; the NAS
      baseline ('ce') trains candidates with kd_alpha = 0.
    final: KD recipe of the winner's final training (run by
      `akd_tf.distill.training.run_job`: resumable, TensorBoard logs); its
      batch size and learning rate are per replica of `strategy`.
    final_train_size: Training images of the final training and of the
      built-in teacher's (None: all but the mini-validation split).
    reward: How accuracy and latency make the reward.
    reward_accuracy: 'kd' (AKD) or 'ce' (NAS+KD baseline).
    controller: 'reinforce' or 'random'.
    controller_config: The controller's hyperparameters and seed.
    num_candidates: Candidates to evaluate in all.
    candidates_per_step: Candidates sampled per controller update (the
      batch evaluated in parallel; part of the replay, so fixed for a search).
    num_workers: Candidates evaluated at once (local worker processes, or
      Ray tasks in flight).
    threads_per_worker: TensorFlow threads of each worker (0: TF's default).
    candidates_per_worker: A worker process is replaced by a fresh one after
      evaluating this many candidates (0: never; Ray one-shot: this many
      chunks of candidates, `ray_pool`); a backstop against memory growth
      that does not change any candidate's result.
    worker_onednn: Whether the workers' TensorFlow uses its oneDNN kernels
      (off: their caches grew a worker with every candidate,
      `akd_tf.memory`). Part of the replay: a candidate's numbers differ
      in the last digits with and without.
    worker_allocator: The workers' C heap allocator: 'jemalloc' (preloaded
      when installed; glibc's malloc fragments and grew a worker by 1-2 MB
      per candidate, `akd_tf.memory`) or 'system'. Results do not depend
      on it.
    teacher: A built-in teacher name (akd_tf.distill.teacher.TEACHERS) or the
      path of a `.keras` file or SavedModel.
    teacher_output: What the teacher outputs: 'logits', or 'probabilities'
      (it then distills from its log-probabilities). Checked on training
      images: a mismatch is refused with the fix.
    teacher_recipe: How a built-in teacher is trained when not cached.
    cache_dir: Where built-in teachers and teacher logits are cached.
    latency_mode: 'measured', 'lut' or 'command'.
    latency: The timing setup.
    latency_command: The on-device command template ('command' mode).
    lut_path: The lookup table ('lut' mode; default: the machine's, under
      cache_dir, `akd_tf.latency.measurer.default_lut_path`).
    export: Write the winner's SavedModel and .tflite.
    executor: 'local' (worker processes on this machine) or 'ray' (Ray
      tasks; needs `pip install -e .[ray]`).
    ray_address: The Ray cluster to join ('auto', 'HOST:PORT',
      'ray://HOST:PORT'); None starts a local Ray instance. 'ray' only.
    cpus_per_candidate: CPUs Ray reserves for each candidate ('ray' only).
    gpus_per_candidate: GPUs Ray reserves for each candidate ('ray' only).
    strategy: The tf.distribute strategy of the winner's final training, one
      of FINAL_STRATEGIES (`akd_tf.distill.training.make_strategy`); the
      candidates' proxy trainings run one per worker.
    tpu: The TPU's name or address for strategy 'tpu' ('local' on a TPU
      VM).
    proxy_mode: 'train' (each candidate trained by the proxy recipe) or
      'oneshot' (scored through a supernet trained once).
    supernet_steps: Updates of the supernet ('oneshot'; batch size,
      optimizer, learning rate, loss and seed are the proxy recipe's).
    supernet_sampling: Its path rule, 'uniform', 'sandwich' or
      'progressive' (`akd_tf.oneshot.sampling`).
    supernet_paths_per_step: Paths per update.
    supernet_warmup_steps: First updates on the largest path alone.
    oneshot: How a candidate's path is scored.
    oneshot_candidates_per_task: Most candidates a worker scores in one pool
      task ('oneshot'; 0: each worker's share of a controller step,
      `evaluate.task_chunks`). Results do not depend on it.
  """

  data: data_lib.DataConfig = data_lib.DataConfig(
      dataset="fashion_mnist", train_size=5000, minival_size=2000)
  global_params: arch.GlobalParams = arch.GlobalParams(
      batch_norm_momentum=0.9)
  proxy: candidate_training.TrainConfig = candidate_training.TrainConfig(
      epochs=1)
  final: candidate_training.TrainConfig = candidate_training.TrainConfig(
      epochs=5)
  reward: reward_lib.RewardConfig = reward_lib.RewardConfig(target_ms=1.0)
  final_train_size: Optional[int] = None
  reward_accuracy: str = "kd"
  controller: str = "reinforce"
  controller_config: controller_lib.ControllerConfig = (
      controller_lib.ControllerConfig())
  num_candidates: int = 20
  candidates_per_step: int = 1
  num_workers: int = 1
  threads_per_worker: int = 0
  candidates_per_worker: int = DEFAULT_CANDIDATES_PER_WORKER
  worker_onednn: bool = False
  worker_allocator: str = "jemalloc"
  teacher: str = "resnet_wide"
  teacher_output: str = "logits"
  teacher_recipe: teacher_lib.TeacherRecipe = teacher_lib.TeacherRecipe()
  cache_dir: str = os.path.join(os.path.expanduser("~"), ".cache", "akd_tf")
  latency_mode: str = "measured"
  latency: timing.LatencyConfig = timing.LatencyConfig()
  latency_command: Optional[str] = None
  lut_path: Optional[str] = None
  export: bool = True
  executor: str = "local"
  ray_address: Optional[str] = None
  cpus_per_candidate: float = 1.0
  gpus_per_candidate: float = 0.0
  strategy: str = "one_device"
  tpu: Optional[str] = None
  proxy_mode: str = "train"
  supernet_steps: int = 1000
  supernet_sampling: str = "sandwich"
  supernet_paths_per_step: int = 4
  supernet_warmup_steps: int = 0
  oneshot: scorer_lib.OneShotConfig = scorer_lib.OneShotConfig()
  oneshot_candidates_per_task: int = 0

  def __post_init__(self):
    ray_settings_ok = self.executor == "ray" or (
        self.ray_address is None and self.cpus_per_candidate == 1.0 and
        self.gpus_per_candidate == 0.0)
    checks = (
        (self.reward_accuracy in REWARD_ACCURACIES,
         f"reward_accuracy='{self.reward_accuracy}' is not one of "
         f"{REWARD_ACCURACIES}"),
        (self.controller in controller_lib.CONTROLLER_KINDS,
         f"controller='{self.controller}' is not one of "
         f"{controller_lib.CONTROLLER_KINDS}"),
        (self.num_candidates >= 1,
         f"num_candidates={self.num_candidates} must be >= 1"),
        (self.candidates_per_step >= 1,
         f"candidates_per_step={self.candidates_per_step} must be >= 1"),
        (self.num_workers >= 1, f"num_workers={self.num_workers} must be >= 1"),
        (self.teacher_output in teacher_lib.TEACHER_OUTPUTS,
         f"teacher_output='{self.teacher_output}' is not one of "
         f"{teacher_lib.TEACHER_OUTPUTS}"),
        (self.threads_per_worker >= 0,
         f"threads_per_worker={self.threads_per_worker} must be >= 0"),
        (self.oneshot_candidates_per_task >= 0,
         f"oneshot_candidates_per_task={self.oneshot_candidates_per_task} "
         "must be >= 0 (0: each worker's share of a step)"),
        (self.candidates_per_worker >= 0,
         f"candidates_per_worker={self.candidates_per_worker} must be >= 0 "
         "(0: never replace a worker)"),
        (self.worker_allocator in memory.WORKER_ALLOCATORS,
         f"worker_allocator='{self.worker_allocator}' is not one of "
         f"{memory.WORKER_ALLOCATORS}"),
        (self.latency_mode in measurer.MODES,
         f"latency_mode='{self.latency_mode}' is not one of "
         f"{measurer.MODES}"),
        (self.reward_accuracy == "ce" or self.proxy.kd_alpha > 0,
         "reward_accuracy='kd' needs proxy kd_alpha > 0"),
        (self.executor in EXECUTORS,
         f"executor='{self.executor}' is not one of {EXECUTORS}"),
        (ray_settings_ok, "ray_address, cpus_per_candidate and gpus_per_candidate "
         "apply to executor='ray' only (the local executor runs num_workers "
         "processes; set threads_per_worker for their threads)"),
        (self.ray_address is None or bool(self.ray_address.strip()),
         "ray_address must be 'auto', 'HOST:PORT' or 'ray://HOST:PORT'"),
        (self.cpus_per_candidate > 0,
         f"cpus_per_candidate={self.cpus_per_candidate} must be > 0"),
        (self.gpus_per_candidate >= 0,
         f"gpus_per_candidate={self.gpus_per_candidate} must be >= 0"),
        (self.strategy in FINAL_STRATEGIES,
         f"strategy='{self.strategy}' is not one of {FINAL_STRATEGIES}: the "
         "winner trains on this machine's devices (train it on several "
         "workers with akd-train --strategy=multi_worker "
         "--arch_json=<model_dir>/best/arch.json)"),
        ((self.strategy == "tpu") == bool(self.tpu),
         "strategy='tpu' needs tpu (its name or address, 'local' on a TPU "
         "VM), and tpu applies to strategy='tpu' only"),
        (self.proxy_mode in evaluate.PROXY_MODES,
         f"proxy_mode='{self.proxy_mode}' is not one of "
         f"{evaluate.PROXY_MODES}"),
    )
    config_checks.require(checks, "SearchConfig")
    if self.proxy_mode == "oneshot":
      self.supernet_recipe()  # Its own checks, with its field names.

  def get_config(self) -> dict:
    """A JSON-serializable description (sub-configs as dicts)."""
    return json.loads(json.dumps(dataclasses.asdict(self)))

  def proxy_recipe(self) -> candidate_training.TrainConfig:
    """The recipe candidates are trained with for their reward."""
    if self.reward_accuracy == "ce":
      return dataclasses.replace(self.proxy, kd_alpha=0.0)
    return self.proxy

  def supernet_recipe(self) -> supernet_trainer.SupernetTrainConfig:
    """How the one-shot supernet is trained: the proxy recipe's loss.

    Raises:
      ValueError: a supernet setting out of range (see
        `SupernetTrainConfig`).
    """
    return supernet_trainer.SupernetTrainConfig.from_train_config(
        self.proxy_recipe(), self.supernet_steps,
        sampling=self.supernet_sampling,
        paths_per_step=self.supernet_paths_per_step,
        warmup_steps=self.supernet_warmup_steps)

  def final_data(self) -> data_lib.DataConfig:
    """The data of final training: same mini-val split, more images."""
    return dataclasses.replace(self.data, train_size=self.final_train_size)


# Settings whose default changed after they were added: (config class,
# field) -> the value a config written before the field existed ran with.
_BEFORE_IT_EXISTED = {("TrainConfig", "bn_recalibration_images"): 0}


def _with_defaults(saved: dict, cls) -> dict:
  """`saved` (a config written by `cls.get_config()`, perhaps by an older
  akd_tf) with the fields it lacks set to their defaults, nested configs
  included: a setting added since then did what its default did then
  (`_BEFORE_IT_EXISTED`, or its default)."""
  filled = dict(saved)
  for field in dataclasses.fields(cls):
    if field.name not in filled:
      if (cls.__name__, field.name) in _BEFORE_IT_EXISTED:
        filled[field.name] = _BEFORE_IT_EXISTED[cls.__name__, field.name]
      elif field.default is not dataclasses.MISSING:
        filled[field.name] = json.loads(json.dumps(
            dataclasses.asdict(field.default)
            if dataclasses.is_dataclass(field.default) else field.default))
    elif (dataclasses.is_dataclass(field.type) and
          isinstance(filled[field.name], dict)):
      filled[field.name] = _with_defaults(filled[field.name], field.type)
  return filled


def check_resume_config(path: str, config: dict) -> None:
  """Writes a search's config to `path`, or checks a resumed one against it.

  The config saved there gets the settings it lacks (written by an older
  akd_tf) at the values it ran with; then every setting but those a resume
  may change (`_RESUMABLE_CHANGES`: budget, workers, executor, final
  training) must be the same. `config` is written to `path` either way.

  Args:
    path: The search's search_config.json.
    config: `SearchConfig.get_config()` of the search starting now.

  Raises:
    ValueError: `path` holds a search with other settings; the message
      names them.
  """
  if os.path.exists(path):
    with open(path) as f:
      saved = _with_defaults(json.load(f), SearchConfig)
    changed = sorted(k for k in set(saved) | set(config)
                     if saved.get(k) != config.get(k)
                     and k not in _RESUMABLE_CHANGES)
    if changed:
      raise ValueError(
          f"{path} holds a search with other settings of {changed}; resume "
          "it with the same flags or use a new --model_dir")
  tmp = f"{path}.tmp"
  with open(tmp, "w") as f:
    json.dump(config, f, indent=2, sort_keys=True)
  os.replace(tmp, path)

