"""AKD vs NAS+KD vs random search: the paper's main claim on real data.

  python benchmarks/akd_vs_nas.py --quick      # < 20 min on 2 cores
  python benchmarks/akd_vs_nas.py              # the committed full run

Three methods search the MnasNet space for a student of one built-in teacher
under one latency target, each with the same candidate budget and for each
seed:

  AKD      REINFORCE controller, reward = KD-trained proxy accuracy x latency
  NAS+KD   REINFORCE controller, reward = plainly trained proxy accuracy x
           latency; the winner is distilled afterwards
  Random   random sampling, reward as AKD (the search's own baseline)

Every method's winner is then trained by KD with the same final recipe
(`--final_*` flags) and scored on the Fashion-MNIST test split, which no
search has seen. The search settings are flags/fashion_mnist_quick.cfg with
the overrides below; any akd-search flag can be given to change them.

Prints a table (method, seed-mean +- std of the final KD test accuracy and of
the winner's TFLite latency, candidates evaluated, wall time per search) and
writes benchmarks/results/akd_vs_nas[_quick].json and .png. Searches live in
--work_dir and are resumed, so a killed run continues where it stopped; each
search's wall time is recorded when it finishes.
"""

import dataclasses
import json
import os
import platform
import sys
import time

from absl import app
from absl import flags
import numpy as np

from akd_tf.cli import flag_configs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS_DIR = os.path.join(ROOT, "benchmarks", "results")
PRESET = os.path.join(ROOT, "flags", "fashion_mnist_quick.cfg")

# (method, reward accuracy, controller)
METHODS = (("AKD", "kd", "reinforce"), ("NAS+KD", "ce", "reinforce"),
           ("Random", "kd", "random"))
# The full run: 3 seeds x 8 candidates per method (what 2 cores give in about
# an hour), two single-threaded workers (the two cores), final KD training
# of 2 epochs on 20K images. On bigger machines raise --num_candidates.
FULL_ARGS = ["--num_candidates=8", "--num_workers=2", "--threads_per_worker=1",
             "--final_train_size=20000", "--final_epochs=2"]
# --quick: the same comparison on a budget that fits 20 minutes; its numbers
# are indicative only.
QUICK_ARGS = ["--num_candidates=4", "--num_workers=2", "--threads_per_worker=1",
              "--proxy_train_size=1500", "--proxy_epochs=1",
              "--final_train_size=4000", "--final_epochs=1"]

QUICK = flags.DEFINE_bool(
    "quick", False, "Small budget (< 20 min on 2 cores); numbers indicative.")
SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds of every method.")
WORK_DIR = flags.DEFINE_string(
    "work_dir", os.path.join(ROOT, "runs", "akd_vs_nas"),
    "Where the searches write (and resume); one sub-directory per method and "
    "seed.")
flag_configs.define_data_flags()
flag_configs.define_student_flags()
flag_configs.define_teacher_flags()
flag_configs.define_search_flags()


def method_config(base, reward_accuracy: str, controller: str, seed: int):
  """`base` with one method's reward and controller, seeded with `seed`.

  The teacher (its recipe's seed) and the mini-val hold-out stay fixed across
  methods and seeds: only the search and the students' training vary.
  """
  return dataclasses.replace(
      base, reward_accuracy=reward_accuracy, controller=controller,
      controller_config=dataclasses.replace(base.controller_config, seed=seed),
      proxy=dataclasses.replace(base.proxy, seed=seed),
      final=dataclasses.replace(base.final, seed=seed),
      teacher_recipe=dataclasses.replace(base.teacher_recipe, seed=0))


def run_one(config, model_dir: str) -> dict:
  """Runs (or resumes) one search with its final training; returns a row."""
  from akd_tf.deploy import pipeline  # pylint: disable=g-import-not-at-top
  done_path = os.path.join(model_dir, "benchmark_run.json")
  if os.path.exists(done_path):
    with open(done_path) as f:
      return json.load(f)
  result = pipeline.search_and_export(
      config, model_dir,
      log=lambda m: print(f"  [{os.path.basename(model_dir)}] {m}",
                          file=sys.stderr, flush=True))
  if result.final is None:
    raise RuntimeError(f"{model_dir}: every candidate failed")
  row = {
      "model_dir": model_dir,
      "test_accuracy": result.final.test_accuracy,
      "minival_accuracy": result.final.minival_accuracy,
      "latency_ms": result.final.latency_ms,
      "params": result.final.params,
      "blocks": list(result.final.blocks),
      "proxy_reward": result.best.reward,
      "proxy_accuracy": result.best.accuracy,
      "candidates": len(result.records),
      "evaluated": result.evaluated,
      "failed": sum(not r.ok for r in result.records),
      "search_seconds": result.phase_seconds.get("loop", 0.0),
      "wall_seconds": result.wall_seconds,
  }
  with open(done_path, "w") as f:
    json.dump(row, f, indent=2)
  return row


def summarize(rows: dict) -> dict:
  """Per method: mean and std (over seeds) of the reported figures."""
  summary = {}
  for method, runs in rows.items():
    def stats(key, runs=runs):
      values = np.array([r[key] for r in runs], dtype=float)
      return {"mean": float(values.mean()),
              "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0}
    summary[method] = {
        "seeds": len(runs),
        "test_accuracy": stats("test_accuracy"),
        "latency_ms": stats("latency_ms"),
        "proxy_accuracy": stats("proxy_accuracy"),
        "candidates": int(sum(r["candidates"] for r in runs) / len(runs)),
        "wall_minutes": stats("wall_seconds")["mean"] / 60,
    }
  return summary


def print_table(summary: dict, target_ms: float, quick: bool) -> None:
  """The three-way table."""
  print(f"\n{'method':8s} {'seeds':>5s} {'final KD test acc (%)':>22s} "
        f"{'latency (ms)':>16s} {'candidates':>10s} {'wall/search':>11s}")
  for method, s in summary.items():
    acc, lat = s["test_accuracy"], s["latency_ms"]
    print(f"{method:8s} {s['seeds']:5d} "
          f"{100 * acc['mean']:13.2f} +- {100 * acc['std']:4.2f} "
          f"{lat['mean']:8.3f} +- {lat['std']:5.3f} {s['candidates']:10d} "
          f"{s['wall_minutes']:8.1f} min")
  print(f"(latency target {target_ms} ms; mean +- std over seeds)")
  if quick:
    print("--quick: a small budget; these numbers are indicative only, not "
          "evidence for or against the paper's claim.")


def plot(rows: dict, target_ms: float, path: str, title: str) -> None:
  """Final KD test accuracy vs latency, one colour per method."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(6.4, 4.2))
  for (method, runs), marker in zip(rows.items(), "os^"):
    lat = np.array([r["latency_ms"] for r in runs])
    acc = 100 * np.array([r["test_accuracy"] for r in runs])
    points = ax.scatter(lat, acc, marker=marker, alpha=0.5, label=method)
    ax.errorbar(lat.mean(), acc.mean(), xerr=lat.std(), yerr=acc.std(),
                fmt=marker, color=points.get_facecolor()[0][:3], ms=10,
                mec="black", capsize=4)
  ax.axvline(target_ms, color="grey", ls="--", lw=1, label="latency target")
  ax.set_xlabel("TFLite latency of the winner (ms, 1 thread)")
  ax.set_ylabel("final KD test accuracy (%)")
  ax.set_title(title, fontsize=10)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8, loc="best")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main(argv):
  del argv
  base = flag_configs.search_config_from_flags()
  quick = QUICK.value
  work_dir = os.path.join(WORK_DIR.value, "quick" if quick else "full")
  seeds = [int(s) for s in SEEDS.value]
  rows = {method: [] for method, _, _ in METHODS}
  start = time.time()
  for seed in seeds:
    for method, reward_accuracy, controller in METHODS:
      name = f"{method.replace('+', '_').lower()}-seed{seed}"
      print(f"{time.strftime('%H:%M:%S')} {name}", file=sys.stderr, flush=True)
      config = method_config(base, reward_accuracy, controller, seed)
      rows[method].append(run_one(config, os.path.join(work_dir, name)))
  summary = summarize(rows)
  print_table(summary, base.reward.target_ms, quick)
  stem = "akd_vs_nas_quick" if quick else "akd_vs_nas"
  os.makedirs(RESULTS_DIR, exist_ok=True)
  title = (f"Fashion-MNIST, teacher {base.teacher}, {len(seeds)} seeds, "
           f"{base.num_candidates} candidates per search"
           + (" (--quick: indicative)" if quick else ""))
  plot(rows, base.reward.target_ms, os.path.join(RESULTS_DIR, stem + ".png"),
       title)
  with open(os.path.join(RESULTS_DIR, stem + ".json"), "w") as f:
    json.dump({
        "date": time.strftime("%Y-%m-%d"), "machine": platform.node(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(), "quick": quick,
        "indicative_only": quick, "teacher": base.teacher,
        "target_ms": base.reward.target_ms,
        "candidates_per_search": base.num_candidates, "seeds": seeds,
        "benchmark_minutes": (time.time() - start) / 60,
        "summary": summary, "runs": rows,
        "search_config": base.get_config(),
        "flags": sys.argv[1:],
    }, f, indent=2)
    f.write("\n")
  print(f"wrote {os.path.join(RESULTS_DIR, stem)}.json and .png")


def argv_with_defaults(argv):
  """`argv` behind the preset flagfile and the full (or --quick) budget."""
  user_args = argv[1:]
  preset = [] if any(a.startswith("--flagfile") for a in user_args) else [
      f"--flagfile={PRESET}"]
  budget = QUICK_ARGS if any(a in ("--quick", "--quick=true")
                             for a in user_args) else FULL_ARGS
  return argv[:1] + preset + budget + user_args


if __name__ == "__main__":
  app.run(main, argv=argv_with_defaults(sys.argv))
