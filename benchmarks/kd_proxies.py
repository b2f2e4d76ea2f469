"""Cheap scores of a candidate (proxies) that kd_bench.py checks against truth.

A registry of proxy name -> `Proxy`; kd_bench.py scores every registered
proxy but the opt-in ones (or those --proxies names) on its architectures
and its analysis
ranks them all the same way, so a new proxy (the one-shot supernet) adds
itself with one `register(Proxy(...))` call and gets its row in every table.

  kd_proxy      today's proxy: the search's short KD training
                (`CandidateEvaluator`, the preset's proxy recipe and data),
                mini-val accuracy
  kd_proxy_2x   the same with twice its training budget: 2x the epochs over
                the same proxy images, so 2x the optimizer steps (the cosine
                schedule spans the longer run)
  kd_proxy_4x   4x the epochs
  ce_proxy      the short training with cross-entropy only (kd_alpha 0):
                what NAS+KD ranks by
  params        parameter count of the student
  macs          multiply-accumulates per image
  diswot        training-free: similarity of the teacher's and the untrained
                student's sample relations on one batch of training images
                (`akd_tf.distill.diswot`)
  oneshot       (opt-in) the candidate's path through one supernet of the whole space
                trained by the proxy recipe's loss (KD) on the proxy images
                (`akd_tf.oneshot`, the config's supernet_* recipe, trained
                once by `prepare` and cached as --proxy=oneshot's search
                caches it), BatchNormalization recomputed for the path,
                mini-val accuracy

A proxy's `score` runs in a worker process and returns the score and its
cost in seconds for this one candidate (building the student included,
latency measurement and one-time work per process excluded); `prepare`, if
set, runs once per benchmark run in its own process before any score, for
work shared by all candidates (it must cache its result on disk itself, e.g.
a trained supernet under the config's cache_dir, and return
{"seconds": its one-time cost, ...}).

Public names: Proxy, ProxySetup, ProxyContext, ProxyUnit, PROXIES, register.
"""

import dataclasses
import functools
import sys
import time
from typing import Callable, Dict, Optional, Tuple

from akd_tf.space import arch


@dataclasses.dataclass(frozen=True)
class ProxySetup:
  """What every proxy of one benchmark run shares (picklable).

  Attributes:
    config: The search config (preset + budget) whose proxy recipe, data,
      teacher and latency settings define the proxies.
    lut_path: The latency table the search's evaluator reads.
    latency_cache_path: Whole-student latencies.
    relation_images: Training images of the diswot batch.
  """

  config: object
  lut_path: str
  latency_cache_path: str
  relation_images: int = 64


class ProxyContext:
  """One worker process's data, teacher and logits, loaded on first use."""

  def __init__(self, setup: ProxySetup):
    self.setup = setup
    self.config = setup.config

  @functools.cached_property
  def data(self):
    from akd_tf.distill import data as data_lib  # pylint: disable=g-import-not-at-top
    return data_lib.load_data(self.config.data)

  @functools.cached_property
  def global_params(self) -> arch.GlobalParams:
    return dataclasses.replace(self.config.global_params,
                               num_classes=self.data.num_classes)

  @functools.cached_property
  def space(self):
    from akd_tf.space import search_space  # pylint: disable=g-import-not-at-top
    return search_space.SearchSpace(
        stem_size=self.config.global_params.stem_size)

  @functools.cached_property
  def teacher(self):
    import kd_units  # pylint: disable=g-import-not-at-top
    return kd_units.builtin_teacher(self.config)[0]

  @functools.cached_property
  def teacher_logits(self):
    # pylint: disable-next=g-import-not-at-top
    from akd_tf.distill import teacher as teacher_lib
    return teacher_lib.teacher_logits(
        self.teacher, self.data.train, cache_dir=self.config.cache_dir,
        teacher_output=self.config.teacher_output)

  @functools.cached_property
  def relation_scorer(self):
    from akd_tf.distill import diswot  # pylint: disable=g-import-not-at-top
    return diswot.RelationScorer(
        self.teacher, self.data.train.images[:self.setup.relation_images])

  def supernet(self, train_if_missing: bool,
               on_step: Optional[Callable[[dict], None]] = None):
    """The config's trained supernet and its `SupernetInfo`, as
    --proxy=oneshot's search gets them (`akd_tf.nas.loop`): trained on the
    proxy images by `config.supernet_recipe()`, cached under cache_dir.

    Raises:
      FileNotFoundError: not cached, and `train_if_missing` is False.
    """
    # pylint: disable-next=g-import-not-at-top
    from akd_tf.oneshot import cache as supernet_cache
    recipe = self.config.supernet_recipe()
    return supernet_cache.get_trained_supernet(
        self.space, self.global_params, self.data.input_shape,
        self.data.train, recipe, self.config.cache_dir,
        teacher_logits=self.teacher_logits if recipe.kd_alpha > 0 else None,
        on_step=on_step, train_if_missing=train_if_missing)

  @functools.cached_property
  def oneshot_scorer(self):
    """Scores paths of the supernet `prepare` trained (as a search's
    `CandidateEvaluator` does), on the proxy's mini-val split."""
    # pylint: disable-next=g-import-not-at-top
    from akd_tf.oneshot import scorer as scorer_lib
    supernet, _ = self.supernet(train_if_missing=False)
    return scorer_lib.OneShotScorer(supernet, self.data.train,
                                    self.data.minival, self.config.oneshot)

  def spec(self, actions) -> arch.ArchSpec:
    return arch.ArchSpec(self.space.decode(actions), self.global_params,
                         self.data.input_shape)

  def build(self, actions, seed: int):
    """The student of `actions`, its initial weights seeded by `seed`."""
    import keras  # pylint: disable=g-import-not-at-top
    from akd_tf.space import builder  # pylint: disable=g-import-not-at-top
    keras.utils.set_random_seed(seed)
    return builder.build_from_spec(self.spec(actions))


_CONTEXTS: Dict[int, ProxyContext] = {}


def _context(setup: ProxySetup) -> ProxyContext:
  key = id(setup)
  if key not in _CONTEXTS:
    _CONTEXTS.clear()
    _CONTEXTS[key] = ProxyContext(setup)
  return _CONTEXTS[key]


@dataclasses.dataclass(frozen=True)
class Proxy:
  """A cheap score of a candidate.

  Attributes:
    name: Its row in the tables.
    description: One line for the tables' legend.
    score: (context, actions, seed) -> {"score": float, "seconds": cost of
      this candidate, "details": {...}}; raises if the candidate fails.
    unit: 'accuracy' (a fraction, printed in %), 'count' or 'similarity'.
    noise_seeds: Also scored under every --seeds on the repeated
      architectures (its seed-to-seed noise); False for scores that do not
      depend on a seed.
    prepare: One-time work before any score, or None (see the module doc).
    by_default: Scored when --proxies is not given; False for an opt-in
      proxy (the default run's results then stay those it always made).
    one_task: Its units of every architecture run as one task, in one
      process, instead of beside the other proxies of each architecture:
      for a score whose first call in a process costs far more than the
      next (the one-shot scorer's trace).
  """

  name: str
  description: str
  score: Callable[[ProxyContext, Tuple[int, ...], int], dict]
  unit: str = "accuracy"
  noise_seeds: bool = False
  prepare: Optional[Callable[[ProxySetup], dict]] = None
  by_default: bool = True
  one_task: bool = False


PROXIES: Dict[str, Proxy] = {}


def register(proxy: Proxy) -> Proxy:
  """Adds `proxy` to PROXIES.

  Raises:
    ValueError: the name is taken.
  """
  if proxy.name in PROXIES:
    raise ValueError(f"a proxy named '{proxy.name}' is already registered")
  PROXIES[proxy.name] = proxy
  return proxy


def _short_training(epochs_factor: int, kd: bool):
  """The search's candidate evaluation with a scaled recipe, as a score."""

  def score(context: ProxyContext, actions, seed: int) -> dict:
    from akd_tf.nas import evaluate  # pylint: disable=g-import-not-at-top
    config = context.config
    train = dataclasses.replace(
        config.proxy, seed=seed, epochs=config.proxy.epochs * epochs_factor,
        kd_alpha=config.proxy.kd_alpha if kd else 0.0)
    eval_config = evaluate.EvalConfig(
        data=config.data, global_params=context.global_params,
        space=context.space.get_config(), train=train, reward=config.reward,
        latency_mode="lut", latency=config.latency,
        latency_cache_path=context.setup.latency_cache_path,
        lut_path=context.setup.lut_path,
        teacher_output=config.teacher_output,
        threads=config.threads_per_worker)
    evaluator = evaluate.CandidateEvaluator(
        eval_config, data=context.data,
        teacher_logits=context.teacher_logits if kd else None)
    record = evaluator.evaluate(evaluate.CandidateTask(0, 0, tuple(actions)))
    if not record.ok:
      raise RuntimeError(record.error)
    timings = record.timings
    return {"score": record.accuracy,
            "seconds": timings["build"] + timings["train"] + timings["eval"],
            "details": {"timings": timings, "latency_ms": record.latency_ms,
                        "epochs": train.epochs, "kd_alpha": train.kd_alpha,
                        "train_images": context.data.train.size}}

  return score


def _size(field: str):
  """Parameters or MACs of the built student."""

  def score(context: ProxyContext, actions, seed: int) -> dict:
    from akd_tf.space import profile  # pylint: disable=g-import-not-at-top
    start = time.perf_counter()
    size = profile.profile_model(context.build(actions, seed))
    return {"score": float(getattr(size, field)),
            "seconds": time.perf_counter() - start, "details": {}}

  return score


def _relation_score(context: ProxyContext, actions, seed: int) -> dict:
  scorer = context.relation_scorer  # The teacher's side: once per process.
  start = time.perf_counter()
  value = scorer.score(context.build(actions, seed))
  return {"score": value, "seconds": time.perf_counter() - start,
          "details": {"batch": int(scorer.images.shape[0])}}


def _prepare_supernet(setup: ProxySetup) -> dict:
  """Trains the one-shot proxy's supernet into the cache (or finds it)."""
  start = time.perf_counter()
  steps = setup.config.supernet_steps

  def progress(result):
    done = result["step"] + 1
    if done % 100 == 0 or done == steps:
      print(f"{time.strftime('%H:%M:%S')} supernet step {done}/{steps}: "
            f"loss {result['loss']:.4f}", file=sys.stderr, flush=True)

  _, info = ProxyContext(setup).supernet(train_if_missing=True,
                                         on_step=progress)
  recipe = setup.config.supernet_recipe()
  return {"seconds": time.perf_counter() - start, "cached": info.cached,
          "train_seconds": info.train_seconds, "key": info.key,
          "params": info.params, "last_losses": info.last_losses,
          "resumed_from": info.resumed_from, "recipe": recipe.get_config(),
          "scorer": setup.config.oneshot.get_config()}


def _oneshot_score(context: ProxyContext, actions, seed: int) -> dict:
  del seed  # The supernet is its recipe's; scoring draws nothing.
  scorer = context.oneshot_scorer
  # Untimed: the first score of a process traces the scoring function, and
  # the first after any seeding (the other proxies of a task seed
  # TensorFlow) instantiates it again (`akd_tf.oneshot.scorer`).
  first = scorer.score(actions)
  score = scorer.score(actions)
  return {"score": score.accuracy, "seconds": score.seconds,
          "details": {"loss": score.loss,
                      "first_score_seconds": first.seconds,
                      "first_score_accuracy": first.accuracy}}


register(Proxy("kd_proxy", "short KD training (the search's reward)",
               _short_training(1, kd=True), noise_seeds=True))
register(Proxy("kd_proxy_2x", "short KD training, 2x epochs",
               _short_training(2, kd=True)))
register(Proxy("kd_proxy_4x", "short KD training, 4x epochs",
               _short_training(4, kd=True)))
register(Proxy("ce_proxy", "short CE training (NAS+KD's reward)",
               _short_training(1, kd=False)))
register(Proxy("params", "parameter count", _size("params"), unit="count"))
register(Proxy("macs", "multiply-accumulates", _size("macs"), unit="count"))
register(Proxy("diswot", "teacher-student relation similarity, untrained",
               _relation_score, unit="similarity", noise_seeds=True))
register(Proxy("oneshot", "one-shot: path through a KD-trained supernet",
               _oneshot_score, prepare=_prepare_supernet, by_default=False,
               one_task=True))


@dataclasses.dataclass(frozen=True)
class ProxyUnit:
  """One proxy's score of one architecture under one seed."""

  setup: ProxySetup
  proxy: str
  arch_id: str
  actions: Tuple[int, ...]
  blocks: Tuple[str, ...]
  seed: int
  results_path: str

  @property
  def key(self) -> str:
    return f"{self.arch_id}/{self.proxy}/seed{self.seed}"

  def describe(self) -> dict:
    return {"arch": self.arch_id, "proxy": self.proxy, "seed": self.seed}

  def run(self) -> dict:
    result = PROXIES[self.proxy].score(_context(self.setup), self.actions,
                                       self.seed)
    return {"score": float(result["score"]),
            "seconds": float(result["seconds"]),
            "details": result.get("details", {})}
