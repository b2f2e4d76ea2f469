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

It adds the run, under `--label`, to benchmarks/results/memory.json (runs
of other labels already there are kept), after every candidate: a run
stopped early keeps its figures, marked "complete": false.

The figures before a fix come from the same script run on the older akd_tf,
which the spawned worker imports too:

  git archive 1646704 | tar -x -C /tmp/akd_1646704
  PYTHONPATH=/tmp/akd_1646704 nice -n 10 python benchmarks/memory.py \\
      --num_candidates=20 --label=before

(an akd_tf without `--candidates_per_worker` never replaced its workers),
and those with TensorFlow's oneDNN kernels in the worker from

  nice -n 10 python benchmarks/memory.py --worker_onednn \\
      --num_candidates=20 --label=onednn

and those of glibc's malloc instead of jemalloc in the worker from

  nice -n 10 python benchmarks/memory.py --worker_allocator=system

With --controller=random and the same seed, runs see the same candidates:
started together, their median training seconds per candidate compare
under the same load.
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
    "label", None, "Name of this run in memory.json (default: the workers' "
    "allocator, 'jemalloc' or 'system', when the akd_tf imported has one; "
    "else 'after' when "
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


def summarize(samples, complete: bool) -> dict:
  """A run from its samples: growth from candidate 10 (or the first sample,
  in a run stopped before it) to the last."""
  first = next((s for s in samples if s["candidates"] == CHECKPOINTS[0]),
               samples[0])
  last = samples[-1]
  span = max(1, last["candidates"] - first["candidates"])
  run = {"complete": complete, "candidates": last["candidates"],
         "worker_processes": len({s["worker_pid"] for s in samples}),
         "growth_from": first["candidates"]}
  for who in ("worker", "driver"):
    run[f"{who}_growth"] = last[f"{who}_mb"] / first[f"{who}_mb"] - 1
    run[f"{who}_mb_per_candidate"] = (
        last[f"{who}_mb"] - first[f"{who}_mb"]) / span
  run["samples"] = samples
  return run


def write_run(label: str, run: dict) -> None:
  """Puts `run` under `label` in memory.json, keeping the other labels."""
  results = {}
  if os.path.exists(RESULTS):
    with open(RESULTS) as f:
      results = json.load(f)
  results[label] = run
  os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
  with open(RESULTS + ".tmp", "w") as f:
    json.dump(results, f, indent=2)
    f.write("\n")
  os.replace(RESULTS + ".tmp", RESULTS)


def measure_search(config, label: str, about: dict) -> dict:
  """Runs `config` in a fresh directory, reading RSS after each candidate.

  A candidate's progress line comes once its record is back from the
  worker, which then waits while the driver times the next candidate, so
  the worker is read between candidates. memory.json is written after
  every candidate, so a run stopped early keeps its figures
  ("complete": false).

  Returns:
    The run: its samples (every candidate's), growth and wall time.
  """
  from akd_tf.nas import loop  # pylint: disable=g-import-not-at-top
  driver = psutil.Process()
  samples = []
  start = time.perf_counter()

  def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
    if _CANDIDATE_LINE.match(message):
      worker = _worker(driver)
      samples.append({"candidates": len(samples) + 1,
                      "seconds": round(time.perf_counter() - start, 1),
                      "worker_mb": round(_rss_mb(worker), 1),
                      "driver_mb": round(_rss_mb(driver), 1),
                      "worker_pid": worker.pid})
      write_run(label, {**summarize(samples, complete=False), **about})

  result = loop.run_search(config, tempfile.mkdtemp(prefix="memory_"),
                           log=log)
  # One worker, one candidate at a time: records come in the samples' order.
  for sample, record in zip(samples, result.records):
    sample["train_seconds"] = record.timings.get("train")
  train_seconds = sorted(r.timings["train"] for r in result.records
                         if "train" in r.timings)
  run = {**summarize(samples, complete=True), **about,
         "failed": sum(not r.ok for r in result.records),
         "train_seconds_median": (train_seconds[len(train_seconds) // 2]
                                  if train_seconds else None)}
  write_run(label, run)
  return run


def print_run(label: str, run: dict) -> None:
  """The checkpoints' table and the growth lines of one run."""
  last = run["samples"][-1]
  print(f"\n{label}: {run['candidates']} candidates ({run['failed']} "
        f"failed) on {run['worker_processes']} worker process(es), "
        f"{last['seconds'] / 60:.1f} min, median training "
        f"{run['train_seconds_median']} s per candidate")
  print(f"{'after candidate':>15s} {'worker RSS MB':>14s} "
        f"{'driver RSS MB':>14s}")
  for sample in run["samples"]:
    if (sample["candidates"] in CHECKPOINTS or sample is last or
        sample["candidates"] == run["growth_from"]):
      print(f"{sample['candidates']:15d} {sample['worker_mb']:14.0f} "
            f"{sample['driver_mb']:14.0f}")
  for who in ("driver", "worker"):
    print(f"{who} RSS growth {run['growth_from']} -> {run['candidates']} = "
          f"{run[f'{who}_growth']:.1%} "
          f"({run[f'{who}_mb_per_candidate']:+.1f} MB per candidate)")


def main(argv):
  del argv
  config = flag_configs.search_config_from_flags()
  if config.num_workers != 1:
    raise app.UsageError("this benchmark measures one worker: "
                         "--num_workers=1")
  if "candidates_per_worker" in {f.name for f in dataclasses.fields(config)}:
    # The worker is measured, not replaced.
    config = dataclasses.replace(config, candidates_per_worker=0)
  has_release = importlib.util.find_spec("akd_tf.memory") is not None
  label = LABEL.value or getattr(config, "worker_allocator", None) or (
      "after" if has_release else "before")
  about = {"akd_tf": os.path.dirname(importlib.util.find_spec(
      "akd_tf").origin), "flags": _ARGS,
           "date": time.strftime("%Y-%m-%d %H:%M"),
           "machine": platform.node(), "cpus": os.cpu_count()}
  run = measure_search(config, label, about)
  print_run(label, run)
  print(f"wrote {RESULTS} ['{label}']")


if __name__ == "__main__":
  args = sys.argv[1:]
  if not any(a.startswith("--flagfile") for a in args):
    args = [f"--flagfile={PRESET}"] + DEFAULTS + args
  _ARGS.extend(args)
  app.run(main, argv=[sys.argv[0]] + args)
