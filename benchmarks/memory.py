"""Does a long search stay flat? Resident memory of its worker and driver.

  nice -n 10 python benchmarks/memory.py [--num_candidates=200]
      [--label=NAME] [any akd-search flag]

Runs one AKD search (`run_search`: no final training) of `--num_candidates`
candidates on one worker process that is never replaced, with a tiny proxy
on real data: the quick preset's Fashion-MNIST and cached teacher, students
a quarter wide, 256 proxy images, one epoch, every candidate converted and timed with LiteRT in
the driver, random sampling so that (almost) every candidate is new. After
each candidate it reads the resident memory (RSS) of the worker process and
of the driver (this process); it prints them after candidates 10, 50, 100
and 200 (and the last) and the line

  worker RSS growth 10 -> 200 = X%

and adds the run, under `--label`, to benchmarks/results/memory.json (runs
of other labels already there are kept).

The figures before a fix come from the same script run on the older akd_tf,
which the spawned worker imports too:

  git archive 1646704 | tar -x -C /tmp/akd_1646704
  PYTHONPATH=/tmp/akd_1646704 nice -n 10 python benchmarks/memory.py \\
      --num_candidates=20 --label=before

(an akd_tf without `--candidates_per_worker` never replaced its workers).
"""

import dataclasses
import importlib.util
import json
import os
import platform
import re
import sys
import tempfile
import time

from absl import app
from absl import flags
import psutil

from akd_tf.cli import flag_configs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results", "memory.json")
PRESET = os.path.join(ROOT, "flags", "fashion_mnist_quick.cfg")
# The quick preset's teacher and data, a proxy task of a few seconds.
# Students a quarter wide (their graphs, what a worker kept, have the same
# layers), two training steps, a short timing.
DEFAULTS = [
    "--num_candidates=200", "--num_workers=1", "--controller=random",
    "--width_multiplier=0.25", "--head_size=64", "--proxy_train_size=256",
    "--proxy_epochs=1", "--proxy_batch_size=128",
    "--bn_recalibration_images=128", "--latency_runs=10",
    "--latency_repeats=2", "--latency_pause_ms=0"]
CHECKPOINTS = (10, 50, 100, 200)
_CANDIDATE_LINE = re.compile(r"^\[\d+/\d+\] ")
_ARGS = []  # The flags this run was given, defaults included.

LABEL = flags.DEFINE_string(
    "label", None, "Name of this run in memory.json (default: 'after' when "
    "the akd_tf imported has akd_tf.memory, else 'before').")
flag_configs.define_data_flags()
flag_configs.define_student_flags()
flag_configs.define_teacher_flags()
flag_configs.define_search_flags()


def _rss_mb(process: psutil.Process) -> float:
  return process.memory_info().rss / 2**20


def _worker(driver: psutil.Process) -> psutil.Process:
  """The search's one worker process (not multiprocessing's tracker)."""
  workers = [child for child in driver.children()
             if "spawn_main" in " ".join(child.cmdline())]
  if len(workers) != 1:
    raise RuntimeError(f"expected one worker process, found {workers}")
  return workers[0]


def measure_search(config) -> dict:
  """Runs `config` in a fresh directory, reading RSS after each candidate.

  A candidate's progress line comes once its record is back from the
  worker, which then waits while the driver times the next candidate, so
  the worker is read between candidates.

  Returns:
    The run: its samples (every candidate's), growth and wall time.
  """
  from akd_tf.nas import loop  # pylint: disable=g-import-not-at-top
  driver = psutil.Process()
  samples = []

  def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
    if _CANDIDATE_LINE.match(message):
      worker = _worker(driver)
      samples.append({"candidates": len(samples) + 1,
                      "worker_mb": round(_rss_mb(worker), 1),
                      "driver_mb": round(_rss_mb(driver), 1),
                      "worker_pid": worker.pid})
      print(f"rss {samples[-1]}", file=sys.stderr, flush=True)

  model_dir = tempfile.mkdtemp(prefix="memory_")
  start = time.perf_counter()
  result = loop.run_search(config, model_dir, log=log)
  wall = time.perf_counter() - start
  first = next(s for s in samples if s["candidates"] == CHECKPOINTS[0])
  last = samples[-1]
  span = max(1, last["candidates"] - first["candidates"])
  return {
      "candidates": last["candidates"],
      "failed": sum(not r.ok for r in result.records),
      "worker_processes": len({s["worker_pid"] for s in samples}),
      "wall_seconds": round(wall, 1),
      "worker_growth": last["worker_mb"] / first["worker_mb"] - 1,
      "driver_growth": last["driver_mb"] / first["driver_mb"] - 1,
      "worker_mb_per_candidate":
          (last["worker_mb"] - first["worker_mb"]) / span,
      "driver_mb_per_candidate":
          (last["driver_mb"] - first["driver_mb"]) / span,
      "samples": samples,
  }


def print_run(label: str, run: dict) -> None:
  """The checkpoints' table and the growth lines of one run."""
  print(f"\n{label}: {run['candidates']} candidates ({run['failed']} "
        f"failed) on {run['worker_processes']} worker process(es), "
        f"{run['wall_seconds'] / 60:.1f} min")
  print(f"{'after candidate':>15s} {'worker RSS MB':>14s} "
        f"{'driver RSS MB':>14s}")
  last = run["samples"][-1]["candidates"]
  for sample in run["samples"]:
    if sample["candidates"] in CHECKPOINTS or sample["candidates"] == last:
      print(f"{sample['candidates']:15d} {sample['worker_mb']:14.0f} "
            f"{sample['driver_mb']:14.0f}")
  for who in ("driver", "worker"):
    print(f"{who} RSS growth {CHECKPOINTS[0]} -> {last} = "
          f"{run[f'{who}_growth']:.1%} "
          f"({run[f'{who}_mb_per_candidate']:+.1f} MB per candidate)")


def main(argv):
  del argv
  config = flag_configs.search_config_from_flags()
  if config.num_candidates < CHECKPOINTS[0] or config.num_workers != 1:
    raise app.UsageError(f"this benchmark measures one worker over at least "
                         f"{CHECKPOINTS[0]} candidates: --num_workers=1 "
                         f"--num_candidates>={CHECKPOINTS[0]}")
  if "candidates_per_worker" in {f.name for f in dataclasses.fields(config)}:
    # The worker is measured, not replaced.
    config = dataclasses.replace(config, candidates_per_worker=0)
  has_release = importlib.util.find_spec("akd_tf.memory") is not None
  label = LABEL.value or ("after" if has_release else "before")
  run = measure_search(config)
  run.update(akd_tf=os.path.dirname(importlib.util.find_spec(
      "akd_tf").origin), flags=_ARGS, date=time.strftime("%Y-%m-%d %H:%M"),
             machine=platform.node(), cpus=os.cpu_count())
  print_run(label, run)
  results = {}
  if os.path.exists(RESULTS):
    with open(RESULTS) as f:
      results = json.load(f)
  results[label] = run
  os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
  with open(RESULTS, "w") as f:
    json.dump(results, f, indent=2)
    f.write("\n")
  print(f"wrote {RESULTS} ['{label}']")


if __name__ == "__main__":
  args = sys.argv[1:]
  if not any(a.startswith("--flagfile") for a in args):
    args = [f"--flagfile={PRESET}"] + DEFAULTS + args
  _ARGS.extend(args)
  app.run(main, argv=[sys.argv[0]] + args)
