"""kd_bench.py's units of work and the worker processes that run them.

A unit is one training or scoring of one architecture that ends in one JSON
record (stand-alone training here, proxy scores in kd_proxies.py). Units run
in spawned worker processes, one process per task (a few units at most), so
no process lives long enough to grow out of memory (a process grows about
225 MB per trained model). The worker appends each unit's record to its
results file itself, durably, as soon as the unit ends, so a killed run
loses at most the units in flight. A unit that raises becomes a failed
record; a worker that dies (killed, out of memory) gets its missing units
run again in a new process, up to `max_retries` times, and then recorded as
failed by the parent. Nothing ends the run but the parent being stopped.

Results files are keyed JSON-lines stores: `latency.cache.LatencyCache`, the
project's crash-safe appender (one write under flock, fsync'd; a torn last
line is skipped), keyed by the unit's key.

Public names: RESULT_OK, RESULT_FAILED, SelectionConfig, StandaloneUnit,
WorkerTask, UnitRunner, builtin_teacher, call_in_worker,
prepare_teachers, record_failed, results_store, select_architectures.
"""

import collections
import concurrent.futures
import dataclasses
import multiprocessing
import multiprocessing.connection
import os
import resource
import sys
import tempfile
import time
import traceback
import uuid
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from akd_tf.latency import cache
from akd_tf.space import arch

RESULT_OK = "ok"
RESULT_FAILED = "failed"
_ERROR_CHARS = 600


def results_store(path: str) -> cache.LatencyCache:
  """The keyed, crash-safe JSON-lines store of one results file."""
  return cache.LatencyCache(path)


def builtin_teacher(config):
  """The built-in teacher of a search config, as akd-search prepares it.

  The same calls as `akd_tf.nas.loop._prepare_teacher` for a built-in
  teacher: trained on the final training data with `config.teacher_recipe`
  and cached under `config.cache_dir` (so akd_vs_nas.py's searches and this
  benchmark share it), then checked against the data.

  Returns:
    (the teacher, its `teacher.TeacherInfo`).
  """
  # pylint: disable=g-import-not-at-top
  from akd_tf.distill import data as data_lib
  from akd_tf.distill import teacher as teacher_lib
  # pylint: enable=g-import-not-at-top
  full = data_lib.load_data(config.final_data())
  model, info = teacher_lib.get_builtin_teacher(
      config.teacher, full, config.cache_dir, config.teacher_recipe)
  teacher_lib.check_teacher(model, full.input_shape, full.num_classes,
                            dataset=full.name,
                            images=teacher_lib.sample_images(full.train),
                            teacher_output=config.teacher_output)
  return model, info


def prepare_teachers(configs: Sequence, proxy_config) -> Dict[str, dict]:
  """Trains (or loads) every teacher and caches its logits.

  Args:
    configs: One search config per teacher of the stand-alone KD recipes;
      logits on their final training images are cached.
    proxy_config: The config of the short-train proxies (or None); its
      teacher's logits on the proxy training images are cached.

  Returns:
    teacher name -> its TeacherInfo as a dict.
  """
  # pylint: disable=g-import-not-at-top
  from akd_tf.distill import data as data_lib
  from akd_tf.distill import teacher as teacher_lib
  # pylint: enable=g-import-not-at-top
  infos = {}
  for config in configs:
    model, info = builtin_teacher(config)
    full = data_lib.load_data(config.final_data())
    teacher_lib.teacher_logits(model, full.train, cache_dir=config.cache_dir,
                               teacher_output=config.teacher_output)
    infos[config.teacher] = dataclasses.asdict(info)
    print(f"teacher {info.name}: {info.params:,} params, minival accuracy "
          f"{info.minival_accuracy:.4f} "
          f"({'cached' if info.cached else 'trained'})", file=sys.stderr,
          flush=True)
  if proxy_config is not None:
    model, info = builtin_teacher(proxy_config)
    proxy_data = data_lib.load_data(proxy_config.data)
    teacher_lib.teacher_logits(model, proxy_data.train,
                               cache_dir=proxy_config.cache_dir,
                               teacher_output=proxy_config.teacher_output)
    infos.setdefault(proxy_config.teacher, dataclasses.asdict(info))
  return infos


@dataclasses.dataclass(frozen=True)
class SelectionConfig:
  """How the benchmark's architectures are drawn (see select_architectures).

  Attributes:
    space: `SearchSpace.get_config()`.
    global_params: The students' settings (num_classes is the data's).
    data: The data (for the input shape and class count).
    latency: The timing setup of the search.
    lut_path: The latency table (filled as needed, reused across runs).
    latency_cache_path: Whole-student latencies (students too big for the
      table are measured whole).
    target_ms: The search's latency target.
    span: (low, high): strata cover [low * target, high * target].
    num_archs: Architectures to pick.
    num_strata: Equal-count strata, geometric in latency.
    pool_size: Random architectures whose latency is predicted.
    seed: Seed of the pool and of the picks.
  """

  space: dict
  global_params: arch.GlobalParams
  data: object
  latency: object
  lut_path: str
  latency_cache_path: str
  target_ms: float
  span: Tuple[float, float]
  num_archs: int
  num_strata: int
  pool_size: int
  seed: int

  def selection_settings(self) -> dict:
    """What decides the picks (stored, and checked on resume)."""
    return {"target_ms": self.target_ms, "span": list(self.span),
            "num_strata": self.num_strata, "pool_size": self.pool_size,
            "seed": self.seed}


def select_architectures(config: SelectionConfig) -> dict:
  """Draws a random pool, predicts latencies from the table, picks strata.

  The pool's latencies are predicted by `LatencyMeasurer(mode='lut')`,
  which measures every part the table lacks (about 0.25 s each here; the
  whole space at 28x28 has about 1,600) and ten calibration students whole;
  after the pool is in, every prediction is made again with the final
  scale. [low, high] x target is cut into `num_strata` geometric strata and
  the same number of architectures (up to one more) is drawn at random from
  each. They are returned interleaved (stratum 0, 1, ..., 0, 1, ...), so
  every prefix of the list is stratified too.

  Returns:
    {"archs": [{"id", "actions", "blocks", "lut_ms", "stratum"}],
     "edges_ms": [...], "pool_lut_ms": [...], "seconds": ..., "settings"}.

  Raises:
    ValueError: a stratum holds fewer pool architectures than it needs; the
      message names --pool_size and --latency_span.
  """
  # pylint: disable=g-import-not-at-top
  from akd_tf.distill import data as data_lib
  from akd_tf.latency import measurer as measurer_lib
  from akd_tf.space import search_space
  # pylint: enable=g-import-not-at-top
  start = time.perf_counter()
  data = data_lib.load_data(config.data)
  global_params = dataclasses.replace(config.global_params,
                                      num_classes=data.num_classes)
  space = search_space.SearchSpace.from_config(config.space)
  measurer = measurer_lib.LatencyMeasurer(
      mode="lut", config=config.latency, lut_path=config.lut_path,
      cache_path=config.latency_cache_path)
  rng = np.random.default_rng(config.seed)
  pool, seen = [], set()
  while len(pool) < config.pool_size:
    actions = space.sample(rng)
    if actions in seen:
      continue
    seen.add(actions)
    spec = arch.ArchSpec(space.decode(actions), global_params,
                         data.input_shape)
    measurer.measure(spec)
    pool.append((actions, spec))
    if len(pool) % 25 == 0:
      print(f"  latency pool: {len(pool)}/{config.pool_size} architectures, "
            f"{len(measurer.lut.entries)} table parts, "
            f"{time.perf_counter() - start:.0f} s", file=sys.stderr,
            flush=True)
  predicted = np.array([measurer.measure(spec).latency_ms
                        for _, spec in pool])
  low, high = config.span
  edges = np.geomspace(low * config.target_ms, high * config.target_ms,
                       config.num_strata + 1)
  counts = [config.num_archs // config.num_strata +
            (k < config.num_archs % config.num_strata)
            for k in range(config.num_strata)]
  picks = []
  for k, count in enumerate(counts):
    members = np.flatnonzero((predicted >= edges[k]) &
                             (predicted < edges[k + 1]))
    if members.size < count:
      raise ValueError(
          f"latency stratum [{edges[k]:.3f}, {edges[k + 1]:.3f}) ms holds "
          f"{members.size} of the pool's {len(pool)} architectures but needs "
          f"{count}: raise --pool_size or widen --latency_span")
    picks.append(sorted(rng.choice(members, count, replace=False)))
  order = [picks[k][j] for j in range(max(counts))
           for k in range(config.num_strata) if j < len(picks[k])]
  archs = []
  for position, index in enumerate(order):
    actions, spec = pool[index]
    archs.append({"id": f"a{position:02d}", "actions": list(actions),
                  "blocks": list(spec.block_strings),
                  "lut_ms": float(predicted[index]),
                  "stratum": int(np.searchsorted(edges, predicted[index],
                                                 side="right") - 1)})
  return {"archs": archs, "edges_ms": edges.tolist(),
          "pool_lut_ms": predicted.tolist(),
          "lut_parts": len(measurer.lut.entries),
          "seconds": time.perf_counter() - start,
          "settings": config.selection_settings()}


@dataclasses.dataclass(frozen=True)
class StandaloneUnit:
  """One architecture trained stand-alone with a search's final recipe.

  Attributes:
    config: The search config whose `final` recipe, `final_data()` and
      teacher train it (its final kd_alpha 0 trains with cross-entropy).
    recipe: The recipe's name in the results ('kd_resnet_wide', 'ce', ...).
    arch_id: The architecture's id in the benchmark.
    actions: Its actions in the search space.
    blocks: Its block strings.
    seed: The training seed (config.final.seed).
    results_path: Where its record goes.
  """

  config: object
  recipe: str
  arch_id: str
  actions: Tuple[int, ...]
  blocks: Tuple[str, ...]
  seed: int
  results_path: str

  @property
  def key(self) -> str:
    return f"{self.arch_id}/{self.recipe}/seed{self.seed}"

  def describe(self) -> dict:
    return {"arch": self.arch_id, "recipe": self.recipe, "seed": self.seed,
            "blocks": list(self.blocks)}

  def run(self) -> dict:
    """Trains as `finalize.finalize` trains a search's winner; scores it.

    Returns:
      The record's measured fields: test and mini-val accuracy, params,
      MACs, TFLite latency measured here as the search measures it, and
      training seconds.
    """
    # pylint: disable=g-import-not-at-top
    from akd_tf.deploy import finalize
    from akd_tf.distill import data as data_lib
    from akd_tf.latency import measurer as measurer_lib
    from akd_tf.nas import history
    # pylint: enable=g-import-not-at-top
    config = self.config
    data = data_lib.load_data(config.final_data())
    global_params = dataclasses.replace(config.global_params,
                                        num_classes=data.num_classes)
    kd = config.final.kd_alpha > 0
    teacher_path = builtin_teacher(config)[1].path if kd else None
    record = history.CandidateRecord(
        step=0, index=0, actions=self.actions, blocks=self.blocks,
        status=history.STATUS_OK)
    with tempfile.TemporaryDirectory(prefix="kd_bench_") as out_dir:
      final = finalize.finalize(record, config, global_params, teacher_path,
                                out_dir, log=lambda message: None)
    spec = arch.ArchSpec(arch.decode_blocks(self.blocks), global_params,
                         data.input_shape)
    timing = measurer_lib.LatencyMeasurer("measured", config.latency).measure(
        spec)
    return {
        "teacher": config.teacher if kd else None,
        "test_accuracy": final.test_accuracy,
        "minival_accuracy": final.minival_accuracy,
        "params": final.params, "macs": final.macs,
        "latency_ms": timing.latency_ms,
        "latency_median_ms": timing.stats.median_ms,
        "train_seconds": final.train_seconds,
        "train_images": data.train.size, "epochs": config.final.epochs,
        "batch_size": config.final.batch_size,
        "kd_alpha": config.final.kd_alpha,
    }


@dataclasses.dataclass(frozen=True)
class WorkerTask:
  """Units run one after another in one fresh worker process.

  Attributes:
    name: For progress lines.
    units: The units, each with `key`, `results_path`, `describe()` and
      `run()`.
    threads: TensorFlow threads of the worker (0: TF's default).
    run_id: Stamped on the records this attempt writes (set by UnitRunner),
      so an older record of the same unit is not taken for this one's.
  """

  name: str
  units: Tuple[object, ...]
  threads: int = 0
  run_id: str = ""


def _max_rss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _run_unit(unit, run_id: str) -> dict:
  """Runs one unit; returns its record, failed if the unit raised."""
  start = time.perf_counter()
  try:
    fields, status = unit.run(), RESULT_OK
  except Exception as error:  # pylint: disable=broad-except
    # One unit's failure is a result of the benchmark, not its end.
    text = f"{type(error).__name__}: {error}"
    last = traceback.extract_tb(error.__traceback__)[-1]
    fields = {"error": (text[:_ERROR_CHARS] +
                        f" (at {os.path.basename(last.filename)}:"
                        f"{last.lineno})")}
    status = RESULT_FAILED
  return dict(unit.describe(), **fields, status=status,
              unit_seconds=time.perf_counter() - start,
              worker=f"{os.uname().nodename}:{os.getpid()}",
              max_rss_mb=_max_rss_mb(), machine=cache.machine_id(),
              finished=time.strftime("%Y-%m-%d %H:%M:%S"), run_id=run_id)


def record_failed(unit, error: str, run_id: str) -> dict:
  """Stores the failed record of a unit that could not run; returns it."""
  record = dict(unit.describe(), status=RESULT_FAILED, error=error,
                machine=cache.machine_id(), run_id=run_id)
  results_store(unit.results_path).put(unit.key, record)
  return record


def run_task(task: WorkerTask) -> None:
  """Worker process entry: runs the task's units, appending each record."""
  from akd_tf.nas import evaluate  # pylint: disable=g-import-not-at-top
  evaluate.set_worker_threads(task.threads)
  for unit in task.units:
    record = _run_unit(unit, task.run_id)
    results_store(unit.results_path).put(unit.key, record)


def _init_worker(threads: int) -> None:
  from akd_tf.nas import evaluate  # pylint: disable=g-import-not-at-top
  evaluate.set_worker_threads(threads)


def call_in_worker(fn: Callable, *args, threads: int = 0):
  """Runs `fn(*args)` in a fresh spawned process; returns its result.

  For one-off work that would otherwise grow this process (building and
  converting models, training a teacher). Exceptions are raised here.
  """
  with concurrent.futures.ProcessPoolExecutor(
      1, mp_context=multiprocessing.get_context("spawn"),
      initializer=_init_worker, initargs=(threads,)) as executor:
    return executor.submit(fn, *args).result()


class UnitRunner:
  """Runs tasks in at most `num_workers` worker processes at a time.

  Each task gets a new spawned process that exits when the task is done:
  the memory a process gathers while training is returned with it.

  Args:
    num_workers: Processes at once.
    max_retries: Times a task's missing units are run again after its
      process died; then they are recorded as failed.
    log: Receives progress lines.
  """

  def __init__(self, num_workers: int, max_retries: int = 1,
               log: Callable[[str], None] = print):
    if num_workers < 1:
      raise ValueError(f"num_workers={num_workers} must be >= 1")
    self.num_workers = num_workers
    self.max_retries = max_retries
    self.log = log
    self._context = multiprocessing.get_context("spawn")

  def run(self, tasks: Sequence[WorkerTask],
          on_unit: Callable[[object, Optional[dict]], None]) -> None:
    """Runs `tasks`; calls `on_unit(unit, record)` as each unit is settled.

    `record` is the unit's record as stored, or None if the worker wrote
    none and the unit will be retried.
    """
    pending = collections.deque(tasks)
    attempts: Dict[str, int] = collections.Counter()
    running = {}
    try:
      while pending or running:
        while pending and len(running) < self.num_workers:
          task = dataclasses.replace(pending.popleft(),
                                     run_id=uuid.uuid4().hex)
          process = self._context.Process(target=run_task, args=(task,),
                                          name=f"kd_bench:{task.name}")
          process.start()
          running[process.sentinel] = (process, task)
        for sentinel in multiprocessing.connection.wait(list(running)):
          process, task = running.pop(sentinel)
          process.join()
          missing = self._settle(task, on_unit)
          if not missing:
            continue
          attempts[task.name] += 1
          cause = (f"worker process {process.pid} ended with exit code "
                   f"{process.exitcode} (killed, or out of memory) before "
                   "writing its record")
          if attempts[task.name] <= self.max_retries:
            self.log(f"{cause}: running {[u.key for u in missing]} again")
            pending.appendleft(dataclasses.replace(task, units=tuple(missing)))
          else:
            for unit in missing:
              on_unit(unit, record_failed(
                  unit, f"{cause}, {attempts[task.name]} times",
                  task.run_id))
    finally:
      for process, _ in running.values():
        process.terminate()
        process.join()

  @staticmethod
  def _settle(task, on_unit) -> List[object]:
    """Reports the task's stored records; returns the units without one."""
    missing = []
    for unit in task.units:
      record = results_store(unit.results_path).get(unit.key)
      if record is None or record.get("run_id") != task.run_id:
        missing.append(unit)
      else:
        on_unit(unit, record)
    return missing
