"""Where a search's time goes: per-phase timings of short searches.

  python benchmarks/search_speed.py [--num_candidates=6]
      [--proxies=train,oneshot] [--oneshot_candidates=300]
      [any akd-search flag]

Runs one short AKD search per proxy (--proxies) with the quick
Fashion-MNIST preset (flags/fashion_mnist_quick.cfg unless --flagfile is
given; `run_search` alone: no final training or export): --num_candidates
trained candidates (train), --oneshot_candidates scored through the
supernet (oneshot: each worker scores its share of a controller step in
one pool task; oneshot_unchunked: one candidate per pool task, as before
chunking; the supernet trained with the --supernet_* flags, or loaded from
the cache). For each it prints candidates per minute, counting the
supernet's training, and the pool's wall time per scored candidate (what
waiting for the workers cost the driver), and splits the candidate loop's
wall time into phases: sampling,
teacher logits, building, conversion and latency, KD training, evaluation,
controller update, bookkeeping (history, TensorBoard, progress), and the
workers' remaining time (process start, data loading, profiling). KD
training and evaluation are the useful work; everything else is overhead:

  overhead / candidate time = (pool start + teacher logits + loop
                               - training - evaluation)
                              / (pool start + teacher logits + loop)

Worker processes start while the teacher loads: what of their start is not
hidden behind it shows up in the loop (waiting for the first result).

Teacher training is excluded (it is cached across searches). Prints a table
and the line `overhead / candidate time = X.XX`, and writes
benchmarks/results/search_speed.json.
"""

import json
import os
import platform
import sys
import tempfile
import time

from absl import app
from absl import flags

from akd_tf.cli import flag_configs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results", "search_speed.json")
PRESET = os.path.join(ROOT, "flags", "fashion_mnist_quick.cfg")

MODEL_DIR = flags.DEFINE_string(
    "model_dir", None, "Where the search writes (default: a fresh temporary "
    "directory, so nothing is resumed).")
flag_configs.define_data_flags()
flag_configs.define_student_flags()
flag_configs.define_teacher_flags()
flag_configs.define_search_flags()
PROXIES = flags.DEFINE_list(
    "proxies", ["train", "oneshot"], "The proxies to run a search with, in "
    "order: train, oneshot, oneshot_unchunked (one-shot, one candidate per "
    "pool task).")
# --proxies names -> how their search differs from the preset's.
_PROXY_SETTINGS = {
    "train": {"proxy_mode": "train"},
    "oneshot": {"proxy_mode": "oneshot"},
    "oneshot_unchunked": {"proxy_mode": "oneshot",
                          "oneshot_candidates_per_task": 1},
}
ONESHOT_CANDIDATES = flags.DEFINE_integer(
    "oneshot_candidates", 300, "Candidates of the --proxy=oneshot search.")


def phase_table(result) -> dict:
  """Seconds per phase of the candidate loop, from driver and workers."""
  driver = result.phase_seconds
  worker = {"build": 0.0, "train": 0.0, "eval": 0.0, "score": 0.0,
            "total": 0.0}
  for record in result.records:
    for name in worker:
      worker[name] += record.timings.get(name, 0.0)
  in_workers = driver.get("wait_for_workers", 0.0)
  return {
      "sampling": driver.get("sample", 0.0),
      "teacher logits": driver.get("teacher_logits", 0.0),
      "supernet training": driver.get("supernet", 0.0),
      "building": worker["build"],
      "conversion + latency": driver.get("latency", 0.0),
      "KD training": worker["train"],
      "evaluation": worker["eval"],
      "one-shot scoring": worker["score"],
      "controller update": driver.get("controller_update", 0.0),
      "bookkeeping": driver.get("bookkeeping", 0.0),
      "worker start, data, other": driver.get("pool_start", 0.0) + max(
          0.0, in_workers - worker["total"]) + (
              worker["total"] - worker["build"] - worker["train"] -
              worker["eval"] - worker["score"]),
  }


def run_one(config, proxy: str) -> dict:
  """Runs one search with `proxy`; prints and returns its figures."""
  import dataclasses  # pylint: disable=g-import-not-at-top
  from akd_tf.nas import loop  # pylint: disable=g-import-not-at-top
  if proxy not in _PROXY_SETTINGS:
    raise app.UsageError(f"--proxies: '{proxy}' is not one of "
                         f"{sorted(_PROXY_SETTINGS)}")
  config = dataclasses.replace(config, **_PROXY_SETTINGS[proxy])
  if config.proxy_mode == "oneshot":
    config = dataclasses.replace(config,
                                 num_candidates=ONESHOT_CANDIDATES.value)
  model_dir = (os.path.join(MODEL_DIR.value, proxy) if MODEL_DIR.value
               else tempfile.mkdtemp(prefix=f"search_speed_{proxy}_"))
  result = loop.run_search(config, model_dir,
                           log=lambda m: print(m, file=sys.stderr))
  phases = phase_table(result)
  total = (result.phase_seconds["loop"] + phases["teacher logits"] +
           phases["supernet training"] +
           result.phase_seconds.get("pool_start", 0.0))
  useful = (phases["KD training"] + phases["evaluation"] +
            phases["one-shot scoring"])
  ratio = (total - useful) / total
  candidates = len(result.records)
  per_minute = candidates / (total / 60.0)
  pool_seconds = result.phase_seconds.get("wait_for_workers", 0.0)
  print(f"\n{proxy}: {candidates} candidates, {total:.1f} s with "
        f"the supernet's training ({total / candidates:.2f} s per candidate, "
        f"{per_minute:.1f} candidates per minute); the pool "
        f"{pool_seconds / candidates:.3f} s per candidate\n")
  print(f"{'phase':28s} {'seconds':>9s} {'per cand.':>9s} {'share':>7s}")
  for name, seconds in phases.items():
    print(f"{name:28s} {seconds:9.2f} {seconds / candidates:9.2f} "
          f"{seconds / total:7.1%}")
  print(f"(not counted: teacher {result.phase_seconds.get('teacher', 0):.2f} s, "
        "loaded from the cache or trained once per teacher)")
  print(f"overhead / candidate time = {ratio:.2f}")
  return {"candidates": candidates, "loop_seconds": total,
          "candidates_per_minute": per_minute,
          "pool_seconds_per_candidate": pool_seconds / candidates,
          "phases": phases,
          "overhead_over_candidate_time": ratio}


def main(argv):
  del argv
  config = flag_configs.search_config_from_flags()
  runs = {proxy: run_one(config, proxy) for proxy in PROXIES.value}
  if len(runs) > 1:
    print("\ncandidates per minute: " + ", ".join(
        f"{p} {r['candidates_per_minute']:.1f}" for p, r in runs.items()))
    print("pool seconds per candidate: " + ", ".join(
        f"{p} {r['pool_seconds_per_candidate']:.3f}"
        for p, r in runs.items()))
  os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
  with open(RESULTS, "w") as f:
    json.dump({
        "date": time.strftime("%Y-%m-%d"), "machine": platform.node(),
        "cpus": os.cpu_count(), "proxies": runs,
        "flags": [a for a in sys.argv[1:]],
    }, f, indent=2)
    f.write("\n")
  print(f"wrote {RESULTS}")


if __name__ == "__main__":
  args = sys.argv[1:]
  if not any(a.startswith("--flagfile") for a in args):
    args = [f"--flagfile={PRESET}", "--num_candidates=6"] + args
  app.run(main, argv=[sys.argv[0]] + args)
