"""REINFORCE vs random search on a toy reward and on a small, noisy one.

Toy reward (as before): the fraction of an architecture's actions equal to 0
over the real MnasNet space's 42 decisions (a uniform policy scores about
0.41). For every seed and controller, the mean reward of each window of
samples, with the median time per sample and per update.

Noisy reward (the realistic case): the true signal is a scale x that
fraction, and the controller sees it plus Gaussian noise of sigma 0.005,
0.01 and 0.02 by default (`--noise_sigmas`, in the signal's units: accuracy
as a fraction; each run draws its own noise). The scale is SIGNAL_SCALE
(0.01) by default, or the one that makes the signal's standard deviation
across uniformly sampled architectures equal `--signal_std`, e.g. the
spread of accuracies across architectures measured on the real proxy task.
Under a uniform policy decision i picks 0 with probability p_i = 1 / (its
number of choices), independently, so the fraction of zeros over the 42
decisions has variance sum_i p_i (1 - p_i) / 42^2 (standard deviation
0.0743 in this space: SIGNAL_SCALE gives a signal std of 0.000743), and the
scale is `--signal_std` / 0.0743. The JSON records the scale and the
signal's std, and checks the latter against the std of random search's
sampled signals.

For every sigma and seed, REINFORCE (the search's default
`ControllerConfig`, one candidate per step, and 4 per step) and random
search each pick, after every sample, their best so far by the *observed*
reward (first on ties), as a real search picks its winner; the curve is
that pick's *true* signal against the samples seen.

Samples needed, for one sigma, one REINFORCE batch size and one seed: the
smallest n such that, at every sample count from n to the budget, REINFORCE's
best-so-far true signal is strictly above random search's (same seed); "not
reached" when REINFORCE is not above at the budget. The table gives the
median over seeds (mean of the middle two; not reached counts as infinite,
so a median is "not reached within budget" when half the seeds or more do
not reach it) and the quartiles (the 3rd and 8th of 10 sorted values,
`numpy.percentile(method="inverted_cdf")`). It also gives where the median
curves (over seeds) cross for good, by the same rule.

The result depends on the scale itself, not only on noise / signal (the
controller is left as the search uses it): its EMA baseline follows the
reward (scale-free) and Adam normalizes the gradient's size, but the
entropy bonus (entropy_weight 1e-3 x the policy's entropy) is added to a
policy-gradient term proportional to the advantages, so its weight
relative to the reward's is roughly 1e-3 / (the advantages' size,
sqrt(signal std^2 + sigma^2)): about 0.1 at the default scale and sigma
0.01, 1.3 there without noise (the bonus then outweighs the signal), about
0.013 at `--signal_std=0.071` with sigma 0.0266 and 0.014 without noise.
The tanh_constant (2.5) bounds the logits whatever the scale.

Prints both tables, writes benchmarks/results/controller.json (toy curves
under "runs", the noisy case under "noise", the whole run's wall and CPU
time) and benchmarks/results/controller_noise.png (`--output`, `--plot`).
`--seeds=0` skips the toy reward.

  nice -n 10 .venv/bin/python benchmarks/controller.py
  .venv/bin/python benchmarks/controller.py --noise_seeds=2 \
      --noise_budget=500 --output=/tmp/controller.json   # a quick look
  nice -n 10 .venv/bin/python benchmarks/controller.py --seeds=0 \
      --signal_std=0.071 --noise_sigmas=0.0266,0 --noise_budget=2000 \
      --jobs=1 --output=benchmarks/results/controller_measured.json \
      --plot=benchmarks/results/controller_measured.png   # measured scale
"""

import concurrent.futures
import json
import multiprocessing
import os
import time

from absl import app
from absl import flags
import numpy as np

from akd_tf.nas import controller as controller_lib
from akd_tf.space import search_space

SIGNAL_SCALE = 0.01
RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                           "results")

_SEEDS = flags.DEFINE_integer(
    "seeds", 5, "Toy reward: seeds (0, 1, ...); 0 skips the toy reward.")
_BUDGET = flags.DEFINE_integer("budget", 500, "Toy reward: samples per run.")
_WINDOW = flags.DEFINE_integer("window", 50, "Toy reward: samples per curve "
                               "point.")
_BATCH_SIZES = flags.DEFINE_list("batch_sizes", ["1", "4"],
                                 "REINFORCE batch sizes to compare.")
_SIGMAS = flags.DEFINE_list(
    "noise_sigmas", ["0.005", "0.01", "0.02"],
    "Noisy reward: standard deviations of the noise, in the signal's units "
    "(accuracy as a fraction); 0 gives a noise-free reference.")
_SIGNAL_STD = flags.DEFINE_float(
    "signal_std", None,
    "Noisy reward: the true signal's standard deviation across uniformly "
    "sampled architectures (accuracy as a fraction, e.g. 0.071 for 7.1 "
    "percentage points); sets the signal's scale. Default: the scale "
    f"{SIGNAL_SCALE} x the fraction of actions 0 (a std of about 0.00074).")
flags.register_validator(
    "signal_std", lambda value: value is None or value > 0,
    "--signal_std must be > 0 (a standard deviation of accuracy, as a "
    "fraction)")
_NOISE_SEEDS = flags.DEFINE_integer("noise_seeds", 10,
                                    "Noisy reward: seeds (0, 1, ...).")
_NOISE_BUDGET = flags.DEFINE_integer("noise_budget", 5000,
                                     "Noisy reward: samples per run.")
_CURVE_EVERY = flags.DEFINE_integer(
    "curve_every", 50, "Noisy reward: samples between stored curve points.")
_JOBS = flags.DEFINE_integer(
    "jobs", 2, "Noisy reward: runs at once (worker processes).")
_OUTPUT = flags.DEFINE_string(
    "output", os.path.join(RESULTS_DIR, "controller.json"),
    "JSON results file.")
_PLOT = flags.DEFINE_string(
    "plot", os.path.join(RESULTS_DIR, "controller_noise.png"),
    "Plot of the noisy case.")


def fraction_of_zeros(actions) -> float:
  return sum(a == 0 for a in actions) / len(actions)


def uniform_std_of_fraction_of_zeros(num_choices) -> float:
  """Std of `fraction_of_zeros` over uniformly sampled actions, exactly.

  Decision i is 0 with probability p_i = 1 / num_choices[i], independently:
  the variance is sum_i p_i (1 - p_i) / len(num_choices)^2.
  """
  p = 1.0 / np.asarray(num_choices, float)
  return float(np.sqrt(np.sum(p * (1.0 - p))) / len(p))


def signal_scale(signal_std, num_choices) -> float:
  """The scale of `fraction_of_zeros` giving a signal of std `signal_std`.

  Args:
    signal_std: The true signal's standard deviation across uniformly
      sampled architectures; None keeps SIGNAL_SCALE.
    num_choices: Choices per decision of the search space.

  Returns:
    The factor the true signal multiplies the fraction of actions 0 by.
  """
  if signal_std is None:
    return SIGNAL_SCALE
  return signal_std / uniform_std_of_fraction_of_zeros(num_choices)


def make(kind, seed, num_choices):
  return controller_lib.make_controller(
      kind, num_choices, controller_lib.ControllerConfig(seed=seed))


def toy_run(kind, batch_size, seed, num_choices):
  """Returns per-sample rewards and the median seconds per sample and update.

  Medians leave out the first calls, which trace the tf.functions.
  """
  controller = make(kind, seed, num_choices)
  rewards, sample_s, update_s = [], [], []
  for _ in range(_BUDGET.value // batch_size):
    start = time.perf_counter()
    batch = [controller.sample() for _ in range(batch_size)]
    sample_s.append((time.perf_counter() - start) / batch_size)
    batch = [(actions, fraction_of_zeros(actions)) for actions in batch]
    start = time.perf_counter()
    controller.update(batch)
    update_s.append(time.perf_counter() - start)
    rewards.extend(r for _, r in batch)
  return rewards, float(np.median(sample_s)), float(np.median(update_s))


def toy_benchmark(num_choices, variants) -> dict:
  window = _WINDOW.value
  results = {"num_choices": list(num_choices), "budget": _BUDGET.value,
             "window": window, "runs": []}
  curves = {}
  for kind, batch_size in variants:
    for seed in range(_SEEDS.value):
      rewards, sample_s, update_s = toy_run(kind, batch_size, seed,
                                            num_choices)
      curve = [float(np.mean(rewards[i:i + window]))
               for i in range(0, len(rewards), window)]
      curves.setdefault((kind, batch_size), []).append(curve)
      results["runs"].append({
          "controller": kind, "batch_size": batch_size, "seed": seed,
          "curve": curve, "ms_per_sample": 1e3 * sample_s,
          "ms_per_update": 1e3 * update_s})
      print(f"{kind:9s} batch {batch_size} seed {seed}: last window "
            f"{curve[-1]:.3f}, {1e3 * sample_s:.2f} ms/sample, "
            f"{1e3 * update_s:.2f} ms/update", flush=True)
  names = [f"{k} b{b}" for k, b in variants]
  print("\ntoy reward: mean reward per window of samples (mean +- sd over "
        f"{_SEEDS.value} seeds)")
  print("samples  " + "".join(f"{n:>18s}" for n in names))
  for i in range(len(next(iter(curves.values()))[0])):
    row = [np.asarray(curves[v])[:, i] for v in variants]
    print(f"{(i + 1) * window:7d}  " + "".join(
        f"{r.mean():12.3f}+-{r.std():.3f}" for r in row))
  return results


def noisy_run(kind, batch_size, seed, sigma, method_id, budget, scale):
  """One search on the noisy reward (runs in a worker process).

  The true signal is `scale` x the fraction of actions 0.

  Returns:
    The true signal and the observed reward of every sample, in order, and
    the run's wall seconds.
  """
  start = time.perf_counter()
  controller = make(kind, seed, search_space.SearchSpace().num_choices)
  noise = np.random.default_rng([seed, round(sigma * 1e6), method_id])
  signals, observed = [], []
  while len(signals) < budget:
    size = min(batch_size, budget - len(signals))
    batch = [controller.sample() for _ in range(size)]
    true = [scale * fraction_of_zeros(a) for a in batch]
    seen = [t + float(noise.normal(0.0, sigma)) for t in true]
    controller.update(list(zip(batch, seen)))
    signals.extend(true)
    observed.extend(seen)
  return (np.asarray(signals), np.asarray(observed),
          time.perf_counter() - start)


def _one_thread():
  """Worker initializer: one TensorFlow thread (the ops are tiny)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.threading.set_intra_op_parallelism_threads(1)
  tf.config.threading.set_inter_op_parallelism_threads(1)


def best_so_far_signal(signals, observed) -> np.ndarray:
  """The true signal of the best-by-observed-reward sample after each one."""
  previous_max = np.concatenate([[-np.inf],
                                 np.maximum.accumulate(observed)[:-1]])
  is_new_best = observed > previous_max
  best_index = np.maximum.accumulate(
      np.where(is_new_best, np.arange(len(observed)), 0))
  return signals[best_index]


def samples_needed(reinforce_curve, random_curve) -> float:
  """First n from which REINFORCE stays strictly above; inf: not reached."""
  above = reinforce_curve > random_curve
  if not above[-1]:
    return np.inf
  below = np.flatnonzero(~above)
  return float(below[-1] + 2) if below.size else 1.0


def summarize(values) -> dict:
  """Median (mean of the middle two) and quartiles; inf is 'not reached'."""
  values = np.asarray(values, float)
  q1, q3 = np.percentile(values, [25, 75], method="inverted_cdf")
  return {"median": float(np.median(values)), "q1": float(q1),
          "q3": float(q3), "per_seed": values.tolist(),
          "reached": int(np.isfinite(values).sum())}


def _text(value: float) -> str:
  return f"{value:.0f}" if np.isfinite(value) else "not reached"


def noise_benchmark(batch_sizes, num_choices) -> dict:
  budget, every = _NOISE_BUDGET.value, _CURVE_EVERY.value
  scale = signal_scale(_SIGNAL_STD.value, num_choices)
  signal_std = scale * uniform_std_of_fraction_of_zeros(num_choices)
  seeds = range(_NOISE_SEEDS.value)
  sigmas = [float(s) for s in _SIGMAS.value]
  methods = [("random", 1)] + [("reinforce", b) for b in batch_sizes]
  tasks = [(kind, batch_size, seed, sigma, method_id, budget, scale)
           for sigma in sigmas
           for method_id, (kind, batch_size) in enumerate(methods)
           for seed in seeds]
  tasks.sort(key=lambda t: (t[0] == "random", t[1]))  # Longest runs first.
  grid = np.arange(every, budget + 1, every)
  runs, summary, curves, random_signals = [], [], {}, []
  with concurrent.futures.ProcessPoolExecutor(
      _JOBS.value, mp_context=multiprocessing.get_context("spawn"),
      initializer=_one_thread) as pool:
    futures = {pool.submit(noisy_run, *task): task for task in tasks}
    for future in concurrent.futures.as_completed(futures):
      kind, batch_size, seed, sigma = futures[future][:4]
      signals, observed, seconds = future.result()
      if kind == "random":
        random_signals.append(signals)
      curve = best_so_far_signal(signals, observed)
      curves[sigma, kind, batch_size, seed] = curve
      windows = signals[:len(grid) * every].reshape(len(grid), every)
      runs.append({
          "sigma": sigma, "controller": kind, "batch_size": batch_size,
          "seed": seed, "seconds": seconds,
          "best_so_far_fraction": (curve[grid - 1] / scale).tolist(),
          "window_mean_fraction": (windows.mean(axis=1) /
                                   scale).tolist()})
      print(f"sigma {sigma:g} {kind:9s} b{batch_size} seed {seed}: best so "
            f"far {curve[-1] / scale:.3f} of actions 0, mean of the "
            f"last {every} samples {runs[-1]['window_mean_fraction'][-1]:.3f}"
            f" ({seconds:.0f} s)", flush=True)
  runs.sort(key=lambda r: (r["sigma"], r["controller"], r["batch_size"],
                           r["seed"]))
  for sigma in sigmas:
    for batch_size in batch_sizes:
      needed = [samples_needed(curves[sigma, "reinforce", batch_size, s],
                               curves[sigma, "random", 1, s]) for s in seeds]
      median_curves = [
          np.median([curves[sigma, kind, b, s] for s in seeds], axis=0)
          for kind, b in (("reinforce", batch_size), ("random", 1))]
      summary.append({
          "sigma": sigma, "batch_size": batch_size, **summarize(needed),
          "median_curves_cross": samples_needed(*median_curves),
          "final_median_fraction": {
              "reinforce": float(median_curves[0][-1] / scale),
              "random": float(median_curves[1][-1] / scale)},
          "last_window_median_fraction": float(np.median([
              r["window_mean_fraction"][-1] for r in runs
              if (r["sigma"], r["controller"], r["batch_size"]) ==
              (sigma, "reinforce", batch_size)]))})
  sampled_std = float(np.std(np.concatenate(random_signals)))
  print(f"\nnoisy reward ({scale:.4g} x fraction of actions 0, std "
        f"{signal_std:.4g} over uniform architectures ({sampled_std:.4g} in "
        f"random search's samples), + N(0, sigma)): samples REINFORCE "
        f"needs before its best-so-far pick stays truly better than random "
        f"search's; {len(seeds)} seeds, budget {budget}")
  print("columns: median and quartiles over seeds of the samples needed, "
        "seeds that reach it, where the median curves cross for good, the "
        "median true fraction of 0 actions of the final pick (REINFORCE / "
        f"random) and of REINFORCE's last {every} samples (random: 0.41)")
  print(f"{'sigma':>6s} {'batch':>5s} {'median':>12s} {'quartiles':>26s} "
        f"{'reached':>8s} {'median curves':>14s} {'final pick':>12s} "
        f"{'policy':>7s}")
  for row in summary:
    final = row["final_median_fraction"]
    print(f"{row['sigma']:6g} {row['batch_size']:5d} "
          f"{_text(row['median']):>12s} "
          f"{_text(row['q1']) + ' - ' + _text(row['q3']):>26s} "
          f"{row['reached']:>5d}/{len(seeds)} "
          f"{_text(row['median_curves_cross']):>14s} "
          f"{final['reinforce']:>6.3f}/{final['random']:.3f} "
          f"{row['last_window_median_fraction']:7.3f}")
  return {"signal_scale": scale, "signal_std": signal_std,
          "signal_std_of_random_samples": sampled_std, "budget": budget,
          "seeds": len(seeds), "curve_every": every,
          "controller_config": controller_lib.ControllerConfig().get_config(),
          "summary": _inf_as_none(summary), "runs": runs}


def _inf_as_none(value):
  """`value` with every infinite float (not reached) replaced by None."""
  if isinstance(value, dict):
    return {k: _inf_as_none(v) for k, v in value.items()}
  if isinstance(value, list):
    return [_inf_as_none(v) for v in value]
  if isinstance(value, float) and not np.isfinite(value):
    return None
  return value


def plot(noise: dict, path: str) -> None:
  """Best-so-far picks (top) and the samples' mean (bottom) per sigma."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot  # pylint: disable=g-import-not-at-top
  sigmas = sorted({r["sigma"] for r in noise["runs"]})
  methods = sorted({(r["controller"], r["batch_size"]) for r in noise["runs"]},
                   key=lambda m: (m[0] != "random", m[1]))  # random first
  colors = dict(zip(methods, ("tab:blue", "tab:orange", "tab:green",
                              "tab:red", "tab:purple")))
  figure, axes = pyplot.subplots(2, len(sigmas), sharex=True, sharey="row",
                                 figsize=(4.2 * len(sigmas), 7.0),
                                 squeeze=False)
  grid = noise["curve_every"] * np.arange(
      1, len(noise["runs"][0]["best_so_far_fraction"]) + 1)
  for column, sigma in enumerate(sigmas):
    for kind, batch_size in methods:
      runs = [r for r in noise["runs"]
              if (r["sigma"], r["controller"], r["batch_size"]) ==
              (sigma, kind, batch_size)]
      label = "random" if kind == "random" else f"REINFORCE b{batch_size}"
      for row, key in enumerate(("best_so_far_fraction",
                                 "window_mean_fraction")):
        q1, median, q3 = np.percentile([r[key] for r in runs], [25, 50, 75],
                                       axis=0)
        ax = axes[row, column]
        ax.plot(grid, median, color=colors[kind, batch_size], label=label)
        ax.fill_between(grid, q1, q3, color=colors[kind, batch_size],
                        alpha=0.15)
      for summary in noise["summary"]:
        if ((summary["sigma"], summary["batch_size"]) == (sigma, batch_size)
            and kind == "reinforce" and summary["median"] is not None):
          axes[0, column].axvline(summary["median"], linestyle=":",
                                  color=colors[kind, batch_size])
    axes[0, column].set_title(f"sigma {sigma:g}")
    axes[1, column].set_xlabel("samples")
  axes[0, 0].set_ylabel("true fraction of 0 actions,\nbest-so-far pick")
  axes[1, 0].set_ylabel(f"mean true fraction of 0 actions,\nper "
                        f"{noise['curve_every']} samples")
  axes[0, 0].legend(loc="upper left", fontsize="small")
  figure.suptitle(f"noisy reward (true signal std {noise['signal_std']:.3g}"
                  "): median and quartiles over "
                  f"{noise['seeds']} seeds; dotted: median samples needed",
                  fontsize="medium")
  figure.tight_layout()
  figure.savefig(path, dpi=110)
  pyplot.close(figure)


def _cpu_seconds() -> float:
  """CPU seconds of this process and its finished worker processes."""
  times = os.times()
  return (times.user + times.system + times.children_user +
          times.children_system)


def main(argv):
  del argv
  start, cpu_start = time.time(), _cpu_seconds()
  num_choices = search_space.SearchSpace().num_choices
  batch_sizes = [int(b) for b in _BATCH_SIZES.value]
  variants = [("random", 1)] + [("reinforce", b) for b in batch_sizes]
  results = toy_benchmark(num_choices, variants) if _SEEDS.value else {}
  noise = noise_benchmark(batch_sizes, num_choices)
  results.update(noise=noise, wall_minutes=(time.time() - start) / 60,
                 cpu_minutes=(_cpu_seconds() - cpu_start) / 60,
                 date=time.strftime("%Y-%m-%d"), cpus=os.cpu_count())
  os.makedirs(os.path.dirname(_OUTPUT.value), exist_ok=True)
  with open(_OUTPUT.value, "w") as f:
    json.dump(results, f, indent=1)
  plot(results["noise"], _PLOT.value)
  print(f"whole run: {results['wall_minutes']:.1f} min wall, "
        f"{results['cpu_minutes']:.1f} CPU-min; wrote "
        f"{_OUTPUT.value} and {_PLOT.value}")


if __name__ == "__main__":
  app.run(main)
