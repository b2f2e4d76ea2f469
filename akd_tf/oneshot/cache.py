"""Trained supernets cached like the built-in teachers, resumable after a kill.

`get_trained_supernet` stores the trained weights under
`<cache_dir>/supernets/<key>.weights.h5`, the key covering the space, the
global params, the input shape, the training data's fingerprint, the
teacher (a digest of its cached logits) and the recipe; while it trains,
checkpoints go to `<key>.checkpoints/`, from which a call after a crash
resumes (`akd_tf.oneshot.trainer`). `read_trained_weights` gives a trained
supernet's weights file as bytes and `supernet_from_weights` builds the
supernet from them, for a worker on a machine without the cache (a Ray
worker node gets them through the object store).

Public names: SUPERNET_VERSION, SupernetInfo, cache_key,
get_trained_supernet, read_trained_weights, supernet_from_weights.
"""

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import time
from typing import Callable, Dict, Optional, Sequence, Tuple

import keras
import numpy as np

from akd_tf import jsonl
from akd_tf.distill import data as data_lib
from akd_tf.oneshot import supernet as supernet_lib
from akd_tf.oneshot import trainer as trainer_lib
from akd_tf.space import arch
from akd_tf.space import search_space as space_lib

__all__ = ["SUPERNET_VERSION", "SupernetInfo", "cache_key",
           "get_trained_supernet", "read_trained_weights",
           "supernet_from_weights"]

# Bump when the supernet's layout or training changes: cached supernets are
# then trained again.
SUPERNET_VERSION = 2


@dataclasses.dataclass(frozen=True)
class SupernetInfo:
  """What getting a trained supernet gave (stored beside its weights).

  Attributes:
    key: The cache key.
    path: The cached `.weights.h5` file.
    steps: Training steps of the recipe.
    params: Parameter count of the supernet.
    train_seconds: Wall time of this call's training (tracing included).
    resumed_from: The step this call's training resumed from (0: fresh).
    last_losses: Mean training loss of the last (up to 50) steps this
      call trained, or None when it trained none.
    cached: True when this call loaded the weights instead of training.
  """

  key: str
  path: str
  steps: int
  params: int
  train_seconds: float
  resumed_from: int
  last_losses: Optional[float]
  cached: bool = False


def _digest(array: Optional[np.ndarray]) -> Optional[str]:
  if array is None:
    return None
  array = np.ascontiguousarray(array)
  h = hashlib.blake2b(str((array.dtype, array.shape)).encode(), digest_size=16)
  h.update(array.tobytes())
  return h.hexdigest()


def cache_key(space: space_lib.SearchSpace, global_params: arch.GlobalParams,
              input_shape: Sequence[int], train: data_lib.Split,
              config: trainer_lib.SupernetTrainConfig,
              teacher_logits: Optional[np.ndarray] = None) -> str:
  """The key of a trained supernet: everything its weights depend on.

  The space, the global params, the input shape, the training split's
  fingerprint, the teacher (a digest of its cached logits; none for
  kd_alpha = 0) and the recipe (but not checkpoint_every).
  """
  recipe = config.get_config()
  del recipe["checkpoint_every"]
  teacher = None if config.kd_alpha == 0 else _digest(teacher_logits)
  parts = (SUPERNET_VERSION, space.get_config(), global_params.get_config(),
           tuple(int(d) for d in input_shape), train.fingerprint, teacher,
           recipe)
  return hashlib.sha256(repr(parts).encode()).hexdigest()[:20]


def _not_trained(path: str) -> FileNotFoundError:
  return FileNotFoundError(f"no trained supernet {path}: train it first (the "
                           "search's driver does, before the workers score "
                           "candidates)")


def read_trained_weights(
    space: space_lib.SearchSpace, global_params: arch.GlobalParams,
    input_shape: Sequence[int], train: data_lib.Split,
    config: trainer_lib.SupernetTrainConfig, cache_dir: str,
    teacher_logits: Optional[np.ndarray] = None) -> bytes:
  """The `.weights.h5` file `get_trained_supernet` cached, as bytes.

  Args: as `get_trained_supernet`'s.

  Raises:
    FileNotFoundError: that supernet is not trained.
  """
  key = cache_key(space, global_params, input_shape, train, config,
                  teacher_logits)
  path = os.path.join(cache_dir, "supernets", f"{key}.weights.h5")
  if not os.path.exists(path):
    raise _not_trained(path)
  with open(path, "rb") as f:
    return f.read()


def supernet_from_weights(space: space_lib.SearchSpace,
                          global_params: arch.GlobalParams,
                          input_shape: Sequence[int],
                          weights: bytes) -> supernet_lib.Supernet:
  """The supernet whose weights are `weights` (`read_trained_weights`).

  Keras loads weights from a file only: they go through a temporary file of
  this machine, never the cache they came from.
  """
  supernet = supernet_lib.Supernet(space, global_params, input_shape)
  with tempfile.TemporaryDirectory(prefix="akd_supernet_") as folder:
    path = os.path.join(folder, "supernet.weights.h5")
    with open(path, "wb") as f:
      f.write(weights)
    supernet.load_weights(path)
  return supernet


def get_trained_supernet(
    space: space_lib.SearchSpace, global_params: arch.GlobalParams,
    input_shape: Sequence[int], train: data_lib.Split,
    config: trainer_lib.SupernetTrainConfig, cache_dir: str,
    teacher_logits: Optional[np.ndarray] = None,
    on_step: Optional[Callable[[Dict[str, float]], None]] = None,
    train_if_missing: bool = True
) -> Tuple[supernet_lib.Supernet, SupernetInfo]:
  """Returns the supernet trained on `train` by `config`, training it once.

  The trained weights are cached as `<cache_dir>/supernets/<key>.weights.h5`
  with a `.json` of the `SupernetInfo` (`cache_key`); while it trains,
  checkpoints go to `<key>.checkpoints/`, and a call after a crash resumes
  from them. The initial weights are seeded by `config.seed`.

  Args:
    space: The search space.
    global_params: Settings of every student (num_classes included).
    input_shape: (height, width, channels) of the images.
    train: The training split (loaded into memory).
    config: The recipe; kd_alpha 0 trains by cross-entropy.
    cache_dir: Where trained supernets are cached.
    teacher_logits: The teacher's cached logits on `train`, in its order
      (`akd_tf.distill.teacher.teacher_logits`); needed when kd_alpha > 0.
    on_step: Called with every training step's result.
    train_if_missing: False: raise instead of training (a search's workers
      load the supernet its driver trained).

  Raises:
    ValueError: see `SupernetTrainer` and `Supernet`.
    FloatingPointError: training diverged.
    FileNotFoundError: not cached, and train_if_missing is False.
  """
  key = cache_key(space, global_params, input_shape, train, config,
                  teacher_logits)
  folder = os.path.join(cache_dir, "supernets")
  path = os.path.join(folder, f"{key}.weights.h5")
  info_path = os.path.join(folder, f"{key}.json")
  keras.utils.set_random_seed(config.seed)
  supernet = supernet_lib.Supernet(space, global_params, input_shape)
  if os.path.exists(path) and os.path.exists(info_path):
    supernet.load_weights(path)
    with open(info_path) as f:
      info = SupernetInfo(**json.load(f))
    return supernet, dataclasses.replace(info, path=path, cached=True)
  if not train_if_missing:
    raise _not_trained(path)
  images, labels = data_lib.arrays(train)
  trainer = trainer_lib.SupernetTrainer(supernet, config, images, labels,
                                        teacher_logits)
  losses = []

  def record(result):
    losses.append(result["loss"])
    if on_step is not None:
      on_step(result)

  checkpoints = os.path.join(folder, f"{key}.checkpoints")
  start = time.perf_counter()
  resumed_from = trainer.train(checkpoints, record)
  seconds = time.perf_counter() - start
  os.makedirs(folder, exist_ok=True)
  tmp = os.path.join(folder, f"{key}.tmp{os.getpid()}.weights.h5")
  supernet.save_weights(tmp)
  os.replace(tmp, path)
  info = SupernetInfo(
      key=key, path=path, steps=config.steps,
      params=supernet.count_params(), train_seconds=seconds,
      resumed_from=resumed_from,
      last_losses=float(np.mean(losses[-50:])) if losses else None)
  jsonl.write_json_atomic(info_path, dataclasses.asdict(info))
  shutil.rmtree(checkpoints, ignore_errors=True)
  return supernet, info
