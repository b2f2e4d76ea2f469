"""A search small enough for tests: scikit-learn's digits, candidates that
train in seconds, a two-epoch built-in teacher, no export; the evaluation
setup of such candidates without a teacher, trained or scored through a
tiny trained supernet; and the actions of the quickest candidates, for
tests that need a candidate, not a particular one."""

import dataclasses

from akd_tf.distill import candidate_training
from akd_tf.distill import data as data_lib
from akd_tf.distill import teacher as teacher_lib
from akd_tf.latency import timing
from akd_tf.nas import config as config_lib
from akd_tf.nas import controller as controller_lib
from akd_tf.nas import evaluate
from akd_tf.nas import reward
from akd_tf.oneshot import cache as supernet_cache
from akd_tf.oneshot import trainer as supernet_trainer
from akd_tf.space import arch
from akd_tf.space import search_space

# The controller seed of the tests' searches. Of seeds 0-199, its first three
# candidates are about the quickest to train (fewest squeeze-excitation and
# expansion layers: 31 s for three against 44 s with seed 3, measured in one
# akd-search run each), and they still mix regular, depthwise and MBConv
# blocks, with and without SE. The tests need candidates, not particular
# ones.
QUICK_SEED = 152


def tiny_search_config(cache_dir: str, **changes) -> config_lib.SearchConfig:
  """A digits search of 2 candidates on 1 worker, its controller seeded with
  QUICK_SEED; `changes` override any SearchConfig field."""
  proxy = candidate_training.TrainConfig(epochs=1, batch_size=32,
                                         kd_alpha=0.9, seed=3)
  settings = dict(
      data=data_lib.DataConfig(dataset="digits", train_size=320,
                               minival_size=300),
      global_params=arch.GlobalParams(num_classes=10, batch_norm_momentum=0.9,
                                      head_size=32, depth_multiplier=0.25),
      proxy=proxy, final=dataclasses.replace(proxy, epochs=1),
      final_train_size=320, reward=reward.RewardConfig(target_ms=0.05),
      controller_config=controller_lib.ControllerConfig(seed=QUICK_SEED),
      teacher_recipe=teacher_lib.TeacherRecipe(epochs=2),
      cache_dir=cache_dir, num_candidates=2, num_workers=1,
      latency=timing.LatencyConfig(runs=5, repeats=1, warmup=2),
      export=False)
  settings.update(changes)
  return config_lib.SearchConfig(**settings)


def tiny_eval_config(tmp_path, **train_changes) -> evaluate.EvalConfig:
  """The evaluation of digits candidates, trained plainly (kd_alpha 0) for
  one epoch, their latencies cached in `tmp_path`; `train_changes` override
  any TrainConfig field."""
  train = candidate_training.TrainConfig(**{"epochs": 1, "batch_size": 32,
                                            "kd_alpha": 0.0, **train_changes})
  return evaluate.EvalConfig(
      data=data_lib.DataConfig(dataset="digits", train_size=256,
                               minival_size=200),
      global_params=arch.GlobalParams(num_classes=10, batch_norm_momentum=0.9,
                                      head_size=32, depth_multiplier=0.25),
      space=search_space.SearchSpace().get_config(), train=train,
      reward=reward.RewardConfig(target_ms=0.05),
      latency=timing.LatencyConfig(runs=5, repeats=1, warmup=2),
      latency_cache_path=str(tmp_path / "latency.jsonl"))


# The one-shot tests' space: the first two blocks of the skeleton (every
# kind of decision), a supernet that traces in seconds.
ONESHOT_SPACE = search_space.SearchSpace(
    search_space.MOBILENET_V2_SKELETON[:2])


def tiny_oneshot_eval_config(tmp_path) -> evaluate.EvalConfig:
  """`tiny_eval_config` with the one-shot proxy over ONESHOT_SPACE: a
  supernet of 12 sandwich updates, trained by cross-entropy into
  `tmp_path`/cache."""
  config = tiny_eval_config(tmp_path)
  recipe = supernet_trainer.SupernetTrainConfig.from_train_config(
      config.train, 12, sampling="sandwich", paths_per_step=3)
  config = dataclasses.replace(
      config, space=ONESHOT_SPACE.get_config(), proxy_mode="oneshot",
      supernet=recipe, cache_dir=str(tmp_path / "cache"))
  data = data_lib.load_data(config.data)
  supernet_cache.get_trained_supernet(ONESHOT_SPACE, config.global_params,
                                      data.input_shape, data.train, recipe,
                                      config.cache_dir)
  return config


def oneshot_tasks(count: int, step: int = 0) -> list:
  """`count` candidates of ONESHOT_SPACE, their latency given (as the
  driver's lookup table gives it), so that a worker only scores them."""
  return [evaluate.CandidateTask(step, i, ONESHOT_SPACE.sample(i),
                                 latency_ms=0.05, latency_source="lut")
          for i in range(count)]


def quick_actions(filters: int = 0) -> tuple:
  """The actions of one of the quickest students of the search space to
  build and train (a quarter of a sampled student's time, which is mostly
  the tracing of its first training step): regular 3x3 convolutions without
  squeeze-excitation, the fewest layers. `filters` picks the width
  multiplier (an index into search_space.FILTER_MULTIPLIERS)."""
  block = {"conv_op": 0, "kernel": 0, "se_ratio": 0, "skip": 0,
           "filters": filters, "layers": 0}
  return (tuple(block[d] for d in search_space.DECISIONS) *
          len(search_space.MOBILENET_V2_SKELETON))
