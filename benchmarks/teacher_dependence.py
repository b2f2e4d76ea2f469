"""Does the best student depend on the teacher? AKD with both built-in teachers.

  python benchmarks/teacher_dependence.py [--seeds=0,1,2,3] [--quick]

Runs the AKD arm of benchmarks/akd_vs_nas.py (the same settings and budget,
full or --quick) with every built-in teacher for every seed, then applies
akd-analyze: per teacher, the distribution of the top candidates'
architecture choices, and a permutation test of whether the two teachers'
searches prefer different architectures, permuting whole searches (the
search-level test; with 4 seeds per teacher its smallest possible p-value is
0.029). The searches of the default teacher are shared with akd_vs_nas.py's
AKD runs (same directories under --work_dir), so after that benchmark only
the other teacher's searches and the extra seeds run.

Every teacher searches with its own seeds: the i-th teacher's search for
--seeds entry s uses seed s + i * SEED_OFFSET (controller, proxy and final
training alike; the default teacher, i = 0, keeps s). The permutation test
treats searches as independent, and two searches with one controller seed
are not: they draw the same random numbers, start from the same student and
stay alike, a pair rather than two samples
(akd_tf.analysis.teacher_dependence refuses such groups). Runs before this
change gave both teachers the same seeds; their search-level p-value
(0.887 in results/teacher_dependence.json of 2026-11-26) assumed an
independence those searches did not have.

Prints each teacher's most frequent choices, the test's line and the final
KD test accuracy of each teacher's winners; writes
benchmarks/results/teacher_dependence[_quick].json and .png. The same
analysis from the command line:

  akd-analyze --model_dirs=<the searches> --permute=search
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

import akd_vs_nas  # Shares its flags, budget and search runner.
from akd_tf.cli import flag_configs
from akd_tf.distill import teacher as teacher_lib

SEED_OFFSET = 1000  # Teacher i searches with seed + i * SEED_OFFSET.

TOP_K = flags.DEFINE_integer(
    "top_k", 3, "Distinct successful students taken from every search.")
PERMUTATIONS = flags.DEFINE_integer(
    "permutations", 10000, "Random permutations of the test.")
TEACHERS = flags.DEFINE_list(
    "teachers", None, "Built-in teachers to search with (default: all, "
    "--teacher first); the test compares the first two.")


def teacher_seed(teacher_index: int, seed: int) -> int:
  """The seed of the `teacher_index`-th teacher's search for --seeds `seed`."""
  return seed + teacher_index * SEED_OFFSET


def search_dir(work_dir: str, base_teacher: str, teacher: str,
               seed: int) -> str:
  """akd_vs_nas.py's AKD directory for the default teacher, else its own."""
  name = (f"akd-seed{seed}" if teacher == base_teacher
          else f"akd-{teacher}-seed{seed}")
  return os.path.join(work_dir, name)


def main(argv):
  del argv
  # pylint: disable=g-import-not-at-top
  from akd_tf.analysis import plots
  from akd_tf.analysis import teacher_dependence
  # pylint: enable=g-import-not-at-top
  base = flag_configs.search_config_from_flags()
  quick = akd_vs_nas.QUICK.value
  work_dir = os.path.join(akd_vs_nas.WORK_DIR.value,
                          "quick" if quick else "full")
  seeds = [int(s) for s in akd_vs_nas.SEEDS.value]
  teachers = TEACHERS.value or [base.teacher] + [
      t for t in teacher_lib.TEACHERS if t != base.teacher]
  unknown = [t for t in teachers if t not in teacher_lib.TEACHERS]
  if unknown:
    raise app.UsageError(f"--teachers: {unknown} are not built-in teachers "
                         f"{teacher_lib.TEACHERS}")
  finals = {teacher: [] for teacher in teachers}
  model_dirs = []
  start = time.time()
  for base_seed in seeds:
    for index, teacher in enumerate(teachers):
      seed = teacher_seed(index, base_seed)
      model_dir = search_dir(work_dir, base.teacher, teacher, seed)
      print(f"{time.strftime('%H:%M:%S')} {os.path.basename(model_dir)}",
            file=sys.stderr, flush=True)
      config = akd_vs_nas.method_config(
          dataclasses.replace(base, teacher=teacher), "kd",
          "reinforce", seed)
      finals[teacher].append(akd_vs_nas.run_one(config, model_dir))
      model_dirs.append(model_dir)
  if len(teachers) < 2:
    print(f"searched with {teachers} only: no comparison (give two "
          "--teachers)")
    return
  runs = [teacher_dependence.load_search(d) for d in model_dirs]
  groups = teacher_dependence.group_by_teacher(runs)
  distributions = teacher_dependence.choice_distributions(runs, TOP_K.value)
  tests = {
      level: teacher_dependence.permutation_test(
          groups[teachers[0]], groups[teachers[1]], TOP_K.value,
          num_permutations=PERMUTATIONS.value, level=level)
      for level in ("search", "candidate")}
  print()
  for teacher in teachers:
    print(teacher_dependence.format_top_choices(distributions, teacher))
    accuracy = 100 * np.array([r["test_accuracy"] for r in finals[teacher]])
    print(f"{teacher}: final KD test accuracy of the winners "
          f"{accuracy.mean():.2f} % (min {accuracy.min():.2f}, max "
          f"{accuracy.max():.2f}) over {len(accuracy)} seed(s)\n")
  for level, test in tests.items():
    print(f"{test.summary()}  [{level} level]")
  search_test = tests["search"]
  print(f"teacher dependence, search-level p-value = "
        f"{search_test.p_value:.4f} (smallest possible "
        f"{search_test.min_p_value:.4f})")
  if quick:
    print("--quick: a small budget; indicative only.")
  stem = "teacher_dependence_quick" if quick else "teacher_dependence"
  os.makedirs(akd_vs_nas.RESULTS_DIR, exist_ok=True)
  plots.plot_choice_distributions(
      distributions, os.path.join(akd_vs_nas.RESULTS_DIR, stem + ".png"),
      title=(f"AKD top {TOP_K.value} per search, {len(seeds)} seeds per "
             f"teacher; search-level p = {search_test.p_value:.3f}"))
  with open(os.path.join(akd_vs_nas.RESULTS_DIR, stem + ".json"), "w") as f:
    json.dump({
        "date": time.strftime("%Y-%m-%d"), "machine": platform.node(),
        "cpus": os.cpu_count(), "quick": quick, "seeds": seeds,
        "teacher_seeds": {t: [teacher_seed(i, s) for s in seeds]
                          for i, t in enumerate(teachers)},
        "teachers": teachers, "top_k": TOP_K.value,
        "candidates_per_search": base.num_candidates,
        "benchmark_minutes": (time.time() - start) / 60,
        "permutation_tests": {k: t.get_config() for k, t in tests.items()},
        "finals": finals, "distributions": distributions,
        "model_dirs": model_dirs, "flags": sys.argv[1:],
    }, f, indent=2)
    f.write("\n")
  print(f"wrote {os.path.join(akd_vs_nas.RESULTS_DIR, stem)}.json and .png")


if __name__ == "__main__":
  args = akd_vs_nas.argv_with_defaults(sys.argv)
  if not any(a.startswith("--seeds") for a in sys.argv[1:]):
    args.append("--seeds=0,1,2,3")
  app.run(main, argv=args)
