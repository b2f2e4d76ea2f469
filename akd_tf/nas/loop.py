"""The AKD search loop: sample, evaluate, reward, update; resume.

One step of the search samples a batch of candidates from the controller,
evaluates them in parallel (`akd_tf.nas.evaluate`), appends every finished
evaluation to `history.jsonl` as soon as it is finished, then gives the
batch's rewards to the controller and checkpoints it. AKD and the paper's
NAS+KD baseline differ only in the accuracy that enters the reward:
KD-trained ('kd') or plainly trained ('ce').

Resume is exact: the history is the source of truth. On start the
controller's last checkpoint is restored and every complete batch recorded
after it is replayed (the controller samples again, which reproduces the
recorded actions, and is updated with the recorded rewards); the candidates
of a partly finished batch that are already in the history are not evaluated
again. So a search killed at any moment keeps every finished evaluation
exactly once and continues as if it had not been stopped.

Files under `model_dir`:
  search_config.json   the configuration (`config.SearchConfig`; a resume
                       must match it, `config.check_resume_config`)
  history.jsonl        one record per finished evaluation
  controller/          controller checkpoints
  teacher_logits.npy   the teacher's logits on the proxy training images
  tensorboard/         scalars per candidate and per controller step, and
                       an HParams session per candidate (`board`)
  pareto.png, reward.png
Latencies are kept under `cache_dir` for every search on the machine (the
whole-student cache and the 'lut' table, `akd_tf.latency.measurer`).
The search ends with its best record; training and exporting the winner
into best/ is deployment's (`akd_tf.deploy.pipeline.search_and_export`, what
akd-search runs), which this package does not import.

Candidates are evaluated by local worker processes (`local_pool.LocalPool`,
executor 'local') or as Ray tasks on a cluster (`ray_pool.RayPool`,
executor 'ray'); either way the controller and the history stay here and
the history is the same.

With `proxy_mode='oneshot'` the driver first trains (or loads from
`cache_dir`) one supernet of the whole space by the proxy recipe's loss
(KD for AKD, cross-entropy for the NAS+KD baseline), phase 'supernet';
the workers then score candidates through it instead of training them
(`akd_tf.nas.evaluate`).

Public names: SearchResult, run_search.
"""

import contextlib
import dataclasses
import functools
import itertools
import logging
import os
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np

from akd_tf.distill import data as data_lib
from akd_tf.distill import teacher as teacher_lib
from akd_tf.distill import training
from akd_tf.latency import measurer as measurer_lib
from akd_tf.nas import board as board_lib
from akd_tf.nas import config as config_lib
from akd_tf.nas import controller as controller_lib
from akd_tf.nas import evaluate
from akd_tf.nas import history
from akd_tf.nas import local_pool
from akd_tf.nas import report
from akd_tf.oneshot import cache as supernet_cache
from akd_tf.space import arch
from akd_tf.space import search_space

__all__ = ["SearchResult", "run_search"]

_LOG = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class SearchResult:
  """What a search produced.

  Attributes:
    records: Every evaluation in history order.
    best: The record with the highest reward, or None if all failed.
    final: The winner after its final training
      (`akd_tf.deploy.finalize.FinalResult`), filled by
      `akd_tf.deploy.pipeline.search_and_export`; None from `run_search`.
    wall_seconds: Wall time of the call that returned it.
    evaluated: Evaluations this call ran (the rest came from the history).
    phase_seconds: Driver wall seconds per phase ('teacher',
      'teacher_logits', 'supernet' (one-shot only), 'pool_start' (starting
      Ray included), 'sample',
      'latency' (the batches' candidates timed here), 'wait_for_workers',
      'bookkeeping', 'controller_update', 'plots'; 'final' when the winner
      was trained) and of the whole candidate loop ('loop', the pool's
      shutdown included); workers' phases are in each record's `timings`.
    teacher_path: Where the teacher is stored (a built-in teacher's cache
      file, or `SearchConfig.teacher`): what the winner distills from.
    global_params: The students' settings, num_classes matching the data.
  """

  records: Tuple[history.CandidateRecord, ...]
  best: Optional[history.CandidateRecord]
  final: Optional[Any]
  wall_seconds: float
  evaluated: int
  phase_seconds: Dict[str, float]
  teacher_path: str
  global_params: arch.GlobalParams


def _prepare_teacher(config: config_lib.SearchConfig,
                     data: data_lib.Data, log: Callable[[str], None]):
  """Loads or trains the teacher and checks it against the data.

  Returns:
    (the teacher, the path it is stored at).
  """
  path = config.teacher
  if config.teacher in teacher_lib.TEACHERS:
    full = data_lib.load_data(config.final_data())
    progress = training.EtaLogger(
        lambda line: log(f"teacher {config.teacher} training: {line}"))
    model, info = teacher_lib.get_builtin_teacher(
        config.teacher, full, config.cache_dir, config.teacher_recipe,
        callbacks=[progress])
    log(f"teacher {info.name}: {info.params:,} params, minival accuracy "
        f"{info.minival_accuracy:.4f}, "
        f"{'cached' if info.cached else f'trained in {info.train_seconds:.0f} s'}"
        f" ({info.path})")
    path = info.path
  else:
    model = teacher_lib.load_teacher(config.teacher)
    log(f"teacher {config.teacher}: {model.count_params():,} params")
  teacher_lib.check_teacher(model, data.input_shape, data.num_classes,
                            dataset=data.name,
                            images=teacher_lib.sample_images(data.train),
                            teacher_output=config.teacher_output)
  return model, path


def _batch_sizes(config: config_lib.SearchConfig) -> List[int]:
  per_step = config.candidates_per_step
  full, rest = divmod(config.num_candidates, per_step)
  return [per_step] * full + ([rest] if rest else [])


def run_search(config: config_lib.SearchConfig, model_dir: str,
               log: Callable[[str], None] = _LOG.info) -> SearchResult:
  """Runs (or resumes) a search in `model_dir`.

  Args:
    config: The search.
    model_dir: Where everything is written; an existing search there is
      resumed.
    log: Receives one progress line per event (candidate, step, phase);
      default: the INFO log of logger 'akd_tf.nas.loop'.

  Returns:
    A `SearchResult` without `final`: the winner's final training is
    `akd_tf.deploy.pipeline.search_and_export`'s.

  Raises:
    ValueError: `model_dir` holds a search with other settings, the teacher
      does not fit the data, or the history does not replay (it was written
      by another controller or edited).
    FileNotFoundError: the data or the teacher is missing.
    ImportError: executor 'ray' without Ray installed.
  """
  start = time.time()
  if config.executor == "ray":
    from akd_tf.nas import ray_pool  # pylint: disable=g-import-not-at-top
    ray_pool.import_ray()  # Before the teacher: fail in seconds.
  timer = _PhaseTimer()
  setup = _set_up(config, model_dir)
  pool = None
  if setup.logits_path or config.proxy_recipe().kd_alpha == 0:
    # The workers need no teacher: they start (TensorFlow, data) while the
    # teacher is loaded or trained and its logits are computed.
    pool = _start_pool(config, setup.make_eval_config(), setup.data, timer)
  try:
    teacher_path = _prepare_teacher_and_logits(config, setup, timer, log)
    if config.proxy_mode == "oneshot":
      with timer.phase("supernet"):
        _train_supernet(config, setup, log)
    state = _resume(config, setup.space, model_dir, log)
    eval_config = setup.make_eval_config(teacher_path=teacher_path)
    if pool is None:
      pool = _start_pool(config, eval_config, setup.data, timer)
    candidate_timer = evaluate.CandidateTimer(eval_config, setup.data)
    loop_start = time.time()
    with timer.phase("pool_start"):
      pool.wait_until_started()  # Their start would disturb the timing.
    evaluated = _search_steps(config, state, pool, candidate_timer, model_dir,
                              timer, log,
                              _final_work_ratio(config, setup.data),
                              setup.space)
  finally:
    if pool is not None:
      pool.shutdown()
  timer.seconds["loop"] = time.time() - loop_start
  records = state.log_file.read()
  _plot(records, config.reward.target_ms, model_dir, timer)
  return SearchResult(records=tuple(records), best=_best(records, log),
                      final=None, wall_seconds=time.time() - start,
                      evaluated=evaluated, phase_seconds=dict(timer.seconds),
                      teacher_path=teacher_path,
                      global_params=setup.global_params)


@dataclasses.dataclass(frozen=True)
class _Setup:
  """What a search's steps share: its data, students and worker setup.

  Attributes:
    data: The proxy task's data.
    global_params: The students' settings, num_classes matching the data.
    space: The search space.
    logits_path: Where the teacher's cached logits go (None: online).
    make_eval_config: Makes the workers' `evaluate.EvalConfig`; takes the
      teacher's path once it is known.
  """

  data: data_lib.Data
  global_params: arch.GlobalParams
  space: search_space.SearchSpace
  logits_path: Optional[str]
  make_eval_config: Callable[..., evaluate.EvalConfig]


def _set_up(config: config_lib.SearchConfig, model_dir: str) -> _Setup:
  """Checks a resumed config, loads the data and fixes the students."""
  # The data first: a search that fails on its data (a wrong folder, images
  # of mixed sizes) leaves no search_config.json that the fixed command
  # would have to match.
  data = data_lib.load_data(config.data)
  os.makedirs(model_dir, exist_ok=True)
  config_lib.check_resume_config(
      os.path.join(model_dir, "search_config.json"), config.get_config())
  global_params = dataclasses.replace(config.global_params,
                                      num_classes=data.num_classes)
  space = search_space.SearchSpace(stem_size=config.global_params.stem_size)
  logits_path = _teacher_logits_path(config, data, model_dir)
  make_eval_config = functools.partial(
      evaluate.EvalConfig, data=config.data, global_params=global_params,
      space=space.get_config(), train=config.proxy_recipe(),
      reward=config.reward, latency_mode=config.latency_mode,
      latency=config.latency,
      latency_cache_path=measurer_lib.default_cache_path(config.cache_dir),
      lut_path=(config.lut_path or
                measurer_lib.default_lut_path(config.cache_dir,
                                              config.latency)),
      latency_command=config.latency_command, teacher_logits_path=logits_path,
      teacher_output=config.teacher_output, threads=config.threads_per_worker,
      proxy_mode=config.proxy_mode,
      supernet=(config.supernet_recipe() if config.proxy_mode == "oneshot"
                else None),
      scorer=config.oneshot, cache_dir=config.cache_dir)
  return _Setup(data, global_params, space, logits_path, make_eval_config)


def _prepare_teacher_and_logits(config: config_lib.SearchConfig,
                                setup: _Setup, timer: "_PhaseTimer",
                                log: Callable[[str], None]) -> str:
  """Loads or trains the teacher and caches its logits; returns its path."""
  with timer.phase("teacher"):
    teacher, teacher_path = _prepare_teacher(config, setup.data, log)
  with timer.phase("teacher_logits"):
    _write_teacher_logits(config, teacher, setup.data, setup.logits_path)
  return teacher_path


def _train_supernet(config: config_lib.SearchConfig, setup: _Setup,
                    log: Callable[[str], None]) -> None:
  """Trains the one-shot supernet into the cache, or finds it there.

  A training killed before its end resumes from its last checkpoint when
  the search is run again.
  """
  recipe = config.supernet_recipe()
  logits = (np.load(setup.logits_path) if setup.logits_path is not None
            else None)
  start = time.time()

  def progress(result):
    done = result["step"] + 1
    if done % 100 == 0 or done == recipe.steps:
      elapsed = time.time() - start
      log(f"supernet step {done}/{recipe.steps}: loss {result['loss']:.4f} "
          f"({_duration(elapsed)}; ETA "
          f"{_duration(elapsed / done * (recipe.steps - done))})")

  _, info = supernet_cache.get_trained_supernet(
      setup.space, setup.global_params, setup.data.input_shape,
      setup.data.train, recipe, config.cache_dir, teacher_logits=logits,
      on_step=progress)
  log(f"supernet: {info.params:,} params, {recipe.steps} steps "
      f"({recipe.sampling}, {recipe.paths_per_step} paths per step), "
      + ("cached" if info.cached else
         f"trained in {info.train_seconds:.0f} s") + f" ({info.path})")


@dataclasses.dataclass
class _SearchState:
  """The controller and the history, as a resumed search finds them."""

  controller: Any
  controller_dir: str
  log_file: history.History
  records: List[history.CandidateRecord]


def _resume(config: config_lib.SearchConfig,
            space: search_space.SearchSpace, model_dir: str,
            log: Callable[[str], None]) -> _SearchState:
  """Restores the controller's last checkpoint and reads the history."""
  controller = controller_lib.make_controller(
      config.controller, space.num_choices, config.controller_config)
  controller_dir = os.path.join(model_dir, "controller")
  controller.restore(controller_dir)
  log_file = history.History(os.path.join(model_dir, "history.jsonl"))
  records = log_file.read()
  if records:
    log(f"resuming: {len(records)} evaluations come from the history, "
        f"controller at step {controller.step}")
  return _SearchState(controller, controller_dir, log_file, records)


def _start_pool(config: config_lib.SearchConfig,
                eval_config: evaluate.EvalConfig, data: data_lib.Data,
                timer: "_PhaseTimer"):
  """Starts the candidate evaluator pool of `config.executor`."""
  with timer.phase("pool_start"):
    if config.executor == "ray":
      from akd_tf.nas import ray_pool  # pylint: disable=g-import-not-at-top
      pool = ray_pool.RayPool(
          eval_config, config.num_workers, address=config.ray_address,
          cpus_per_candidate=config.cpus_per_candidate,
          gpus_per_candidate=config.gpus_per_candidate, data=data,
          candidates_per_worker=config.candidates_per_worker,
          oneshot_candidates_per_task=config.oneshot_candidates_per_task,
          onednn=config.worker_onednn, allocator=config.worker_allocator)
    else:
      pool = local_pool.LocalPool(
          eval_config, config.num_workers,
          candidates_per_worker=config.candidates_per_worker,
          oneshot_candidates_per_task=config.oneshot_candidates_per_task,
          onednn=config.worker_onednn, allocator=config.worker_allocator)
    pool.start()
  return pool


def _plot(records, target_ms: float, model_dir: str,
          timer: "_PhaseTimer") -> None:
  """Writes pareto.png and reward.png."""
  with timer.phase("plots"):
    report.plot_pareto(records, target_ms,
                       os.path.join(model_dir, "pareto.png"))
    report.plot_rewards(records, os.path.join(model_dir, "reward.png"))


def _best(records, log: Callable[[str], None]
          ) -> Optional[history.CandidateRecord]:
  """The best record, logged (or the first error when every one failed)."""
  best = report.best_record(records)
  if best is None:
    log(f"all {len(records)} candidates failed; first error: "
        f"{records[0].error if records else 'none'}")
  else:
    log(f"best: reward {best.reward:.4f}, accuracy {best.accuracy:.4f}, "
        f"latency {best.latency_ms:.3f} ms, {list(best.blocks)}")
  return best


def _teacher_logits_path(config, data, model_dir) -> Optional[str]:
  """Where the teacher's logits on the proxy images are cached, if they are.

  Data held in memory gets its logits computed once for every candidate;
  streamed data (ImageNet) gets None and has the teacher run online in every
  worker instead; so does a search without KD.
  """
  if config.proxy_recipe().kd_alpha == 0 or data.train.images is None:
    return None
  return os.path.join(model_dir, "teacher_logits.npy")


def _write_teacher_logits(config, teacher, data, path: Optional[str]) -> None:
  """Writes the teacher's logits on the proxy images to `path` once."""
  if path is None or os.path.exists(path):
    return
  logits = teacher_lib.teacher_logits(teacher, data.train,
                                      cache_dir=config.cache_dir,
                                      teacher_output=config.teacher_output)
  np.save(path + ".tmp.npy", logits)
  os.replace(path + ".tmp.npy", path)


def _final_work_ratio(config: config_lib.SearchConfig,
                      data: data_lib.Data) -> float:
  """Image-epochs of the winner's final training per image-epoch of one
  candidate's proxy training: the final training's ETA in candidates'
  training times."""
  final_images = data.train.size
  if data.train_pool_size is not None:
    final_images = data.train_pool_size - data.minival.size
  if config.final_train_size is not None:
    final_images = min(final_images, config.final_train_size)
  return (final_images * config.final.epochs /
          (data.train.size * config.proxy.epochs))


def _search_steps(config: config_lib.SearchConfig, state: _SearchState,
                  pool, candidate_timer: evaluate.CandidateTimer,
                  model_dir: str, timer: "_PhaseTimer",
                  log: Callable[[str], None], final_work_ratio: float,
                  space: search_space.SearchSpace) -> int:
  """Runs (and replays) the controller steps; returns evaluations run.

  Each batch's latencies are measured here, by `candidate_timer`, while the
  workers wait for the batch, so no training runs beside the timing. The
  ETA of each progress line adds the final training, estimated as
  `final_work_ratio` times the mean training time of the candidates.
  """
  by_step = {}
  for record in state.records:
    by_step.setdefault(record.step, {})[record.index] = record
  known = {r.actions: r for r in state.records}
  batch_sizes = _batch_sizes(config)
  board = board_lib.SearchBoard(os.path.join(model_dir, "tensorboard"),
                                space)
  evaluated = 0
  train_seconds = []
  loop_start = time.time()
  for step in range(state.controller.step, len(batch_sizes)):
    with timer.phase("sample"):
      actions = [state.controller.sample() for _ in range(batch_sizes[step])]
    done = by_step.get(step, {})
    _check_replay(step, actions, done, model_dir)
    todo = _reuse_known(step, actions, done, known, state)
    for record in _finished(todo, candidate_timer, pool, timer):
      with timer.phase("bookkeeping"):
        _append(record, done, known, state)
        evaluated += 1
        if record.ok and "train" in record.timings:
          train_seconds.append(record.timings["train"])
        final_seconds = (final_work_ratio * float(np.mean(train_seconds))
                         if train_seconds else None)
        _log_candidate(log, record, len(state.records), config.num_candidates,
                       time.time() - loop_start, evaluated, final_seconds)
        board.scalars(len(state.records), _candidate_scalars(record))
        board.candidate(record)
    with timer.phase("controller_update"):
      # A failure is given as None (whatever its record holds): the
      # controller has its own penalty for it.
      stats = state.controller.update(
          [(done[i].actions, done[i].reward if done[i].ok else None)
           for i in range(len(actions))])
      state.controller.save(state.controller_dir)
    with timer.phase("bookkeeping"):
      board.scalars(step, {f"controller/{k}": v for k, v in stats.items()})
  return evaluated


def _check_replay(step: int, actions, done: dict, model_dir: str) -> None:
  """Raises ValueError if the history's candidates of `step` are not what
  the controller samples again."""
  for index, record in done.items():
    if index >= len(actions) or record.actions != actions[index]:
      raise ValueError(
          f"history step {step} candidate {index} does not replay: the "
          f"controller now samples other actions; {model_dir} was "
          "written by another controller or seed")


def _reuse_known(step: int, actions, done: dict, known: dict,
                 state: _SearchState) -> List[evaluate.CandidateTask]:
  """Records again the step's candidates that were evaluated before;
  returns the tasks of the others."""
  todo = []
  for index, acts in enumerate(actions):
    if index in done:
      continue
    if acts in known:  # Sampled before: reuse, do not train it again.
      first = known[acts]
      reused = dataclasses.replace(
          first, step=step, index=index, timings={},
          worker=f"reused:{first.step}/{first.index}")
      _append(reused, done, known, state)
    else:
      todo.append(evaluate.CandidateTask(step, index, acts))
  return todo


def _finished(todo, candidate_timer: evaluate.CandidateTimer, pool,
              timer: "_PhaseTimer") -> Iterator[history.CandidateRecord]:
  """Times the tasks here, then yields each record as it finishes.

  A candidate whose timing failed is a record already; the others go to
  the pool. Waiting counts as phase 'wait_for_workers'.
  """
  with timer.phase("latency"):
    timed = [candidate_timer.time(task) for task in todo]
  results = itertools.chain(
      (t for t in timed if isinstance(t, history.CandidateRecord)),
      pool.evaluate([t for t in timed
                     if isinstance(t, evaluate.CandidateTask)]))
  while True:
    with timer.phase("wait_for_workers"):
      record = next(results, None)
    if record is None:
      return
    yield record


def _append(record: history.CandidateRecord, done: dict, known: dict,
            state: _SearchState) -> None:
  """Writes `record` to the history and to the step's bookkeeping."""
  state.log_file.append(record)
  done[record.index] = record
  state.records.append(record)
  known.setdefault(record.actions, record)


class _PhaseTimer:
  """Accumulates wall seconds per named phase of the driver."""

  def __init__(self):
    self.seconds = {}

  @contextlib.contextmanager
  def phase(self, name: str):
    start = time.perf_counter()
    try:
      yield
    finally:
      self.seconds[name] = (self.seconds.get(name, 0.0) +
                            time.perf_counter() - start)


def _candidate_scalars(record: history.CandidateRecord) -> Dict[str, float]:
  return {"candidate/reward": record.reward,
          "candidate/accuracy": record.accuracy,
          "candidate/latency_ms": record.latency_ms,
          "candidate/failed": float(not record.ok)}


def _log_candidate(log, record, done, total, elapsed, evaluated,
                   final_seconds) -> None:
  """One progress line: the candidate, and the ETA of the rest of the
  search, the winner's final training (`final_seconds`; None: no estimate
  before a candidate has trained) included."""
  eta = elapsed / max(1, evaluated) * max(0, total - done)
  final = ""
  if final_seconds is not None:
    eta += final_seconds
    final = f", final training {_duration(final_seconds)} of it"
  if record.ok:
    what = (f"acc {record.accuracy:.4f} lat {record.latency_ms:.3f} ms "
            f"reward {record.reward:.4f}")
  else:
    what = f"FAILED ({record.error})"
  log(f"[{done}/{total}] step {record.step} candidate {record.index}: "
      f"{what} ({record.timings.get('total', 0.0):.1f} s; ETA "
      f"{_duration(eta)}{final})")


def _duration(seconds: float) -> str:
  """'45 s', '12.5 min' or '3.2 h'."""
  if seconds < 120:
    return f"{seconds:.0f} s"
  if seconds < 7200:
    return f"{seconds / 60:.1f} min"
  return f"{seconds / 3600:.1f} h"
