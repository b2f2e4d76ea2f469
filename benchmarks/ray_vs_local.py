"""What evaluating candidates on Ray costs: the same search, local pool vs Ray.

  python benchmarks/ray_vs_local.py [--repeats=1] [any akd-search flag]

Runs one short AKD search with the quick Fashion-MNIST preset
(flags/fashion_mnist_quick.cfg unless --flagfile is given) twice per repeat
in this process, with the same seed and budget: once with --executor=local
(the local process pool) and once with --executor=ray (a local Ray instance
started by the search, as `akd-search --executor=ray` does). Repeats
alternate which executor goes first. Defaults: 6 candidates, 2 workers, all 6
in one controller step (so both executors evaluate the same six students:
with several steps, measured-latency noise changes the rewards and so the
later samples), a one-epoch final training and no export.

The wall time is the whole `search_and_export` call (teacher loading, the
pool's start, the candidate loop, plots, final training); the pool's start
and the candidate loop are also shown apart. Prints a table and the line
`ray / local wall time = X.XX` (the ratio of the two executors' shortest
wall times), and writes benchmarks/results/ray_vs_local.json.
"""

import dataclasses
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
RESULTS = os.path.join(ROOT, "benchmarks", "results", "ray_vs_local.json")
PRESET = os.path.join(ROOT, "flags", "fashion_mnist_quick.cfg")
DEFAULTS = ["--num_candidates=6", "--num_workers=2", "--candidates_per_step=6"]

REPEATS = flags.DEFINE_integer("repeats", 1, "Searches per executor.")
flag_configs.define_data_flags()
flag_configs.define_student_flags()
flag_configs.define_teacher_flags()
flag_configs.define_search_flags()


def run_once(config, executor: str) -> dict:
  """One search in a fresh directory; its times and outcome."""
  from akd_tf.deploy import pipeline  # pylint: disable=g-import-not-at-top
  model_dir = tempfile.mkdtemp(prefix=f"ray_vs_local_{executor}_")
  start = time.perf_counter()
  result = pipeline.search_and_export(
      dataclasses.replace(config, executor=executor), model_dir,
      log=lambda m: print(m, file=sys.stderr))
  wall = time.perf_counter() - start
  phases = result.phase_seconds
  return {
      "executor": executor, "wall_seconds": wall,
      "pool_start_seconds": phases.get("pool_start", 0.0),
      "loop_seconds": phases.get("loop", 0.0),
      "candidates": len(result.records),
      "failed": sum(not r.ok for r in result.records),
      "best_reward": None if result.best is None else result.best.reward,
      "actions": sorted(list(r.actions) for r in result.records),
  }


def main(argv):
  del argv
  config = flag_configs.search_config_from_flags()
  runs = []
  for repeat in range(REPEATS.value):
    order = ("local", "ray") if repeat % 2 == 0 else ("ray", "local")
    for executor in order:
      runs.append(dict(run_once(config, executor), repeat=repeat))
  print(f"\n{'executor':9s} {'repeat':>6s} {'wall s':>8s} {'pool start':>10s}"
        f" {'loop s':>8s} {'candidates':>10s} {'failed':>6s} {'best reward':>11s}")
  for run in runs:
    best = run["best_reward"]
    print(f"{run['executor']:9s} {run['repeat']:6d} {run['wall_seconds']:8.1f} "
          f"{run['pool_start_seconds']:10.1f} {run['loop_seconds']:8.1f} "
          f"{run['candidates']:10d} {run['failed']:6d} "
          f"{'-' if best is None else f'{best:.4f}':>11s}")
  best_of = {e: min(r["wall_seconds"] for r in runs if r["executor"] == e)
             for e in ("local", "ray")}
  loop_of = {e: min(r["loop_seconds"] + r["pool_start_seconds"]
                    for r in runs if r["executor"] == e)
             for e in ("local", "ray")}
  same = len({json.dumps(r["actions"]) for r in runs}) == 1
  ratio = best_of["ray"] / best_of["local"]
  loop_ratio = loop_of["ray"] / loop_of["local"]
  print(f"\nsame candidates in every run: {same}")
  print(f"ray / local pool start + candidate loop = {loop_ratio:.2f}")
  print(f"ray / local wall time = {ratio:.2f}")
  os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
  with open(RESULTS, "w") as f:
    json.dump({
        "date": time.strftime("%Y-%m-%d"), "machine": platform.node(),
        "cpus": os.cpu_count(), "ray_version": _ray_version(),
        "runs": [{k: v for k, v in r.items() if k != "actions"}
                 for r in runs],
        "same_candidates": same,
        "ray_over_local_wall": ratio,
        "ray_over_local_pool_start_and_loop": loop_ratio,
        "flags": sys.argv[1:],
    }, f, indent=2)
    f.write("\n")
  print(f"wrote {RESULTS}")


def _ray_version() -> str:
  from akd_tf.nas import ray_pool  # pylint: disable=g-import-not-at-top
  return ray_pool.import_ray().__version__


if __name__ == "__main__":
  args = sys.argv[1:]
  if not any(a.startswith("--flagfile") for a in args):
    args = [f"--flagfile={PRESET}"] + DEFAULTS + args
  # The winner's final training is the same for both executors: keep it
  # short (the built-in teacher still trains on the preset's data).
  args = args + ["--final_epochs=1", "--noexport"]
  app.run(main, argv=[sys.argv[0]] + args)
