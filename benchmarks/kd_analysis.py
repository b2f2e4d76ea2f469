"""kd_bench.py's analysis: the premise, every proxy's fidelity, the noise.

From the stand-alone records (architecture, recipe, seed -> test accuracy)
and the proxy records (architecture, proxy, seed -> score):

  Q1 premise   Kendall tau and Spearman between the reference KD recipe's
               and each other recipe's rankings of the architectures, and
               the regret of picking by the other (the reference's test
               accuracy lost by taking its top-1, and the best of its
               top-5, instead of the reference's best); each set against
               the noise floor of the repeated seeds.
  Q2 fidelity  per proxy, Spearman and Kendall tau against the reference
               recipe's test accuracy, and its cost per candidate.
  Q3 noise     per multi-seed score, the std across seeds of one
               architecture against the std across architectures.

Noise floor and the word "noise" in the printed text:
  - seed-to-seed tau: Kendall tau between two seeds of one recipe on the
    repeated architectures; two recipes that rank alike cannot agree better
    than that. The ranking difference is called beyond noise only when a
    90% bootstrap interval (over the repeated architectures) of
    tau(seed, seed) - tau(recipe, other recipe) excludes 0.
  - seed std: sqrt(mean over repeated architectures of (a1 - a2)^2 / 2),
    one training's noise in test accuracy. A regret is called within noise
    when it is below sqrt(2) x seed std, the noise of a difference of two
    accuracies.

Public names: analyze, print_tables, plot, BOOTSTRAP_SAMPLES.
"""

import math
from typing import Dict, List, Optional, Sequence

import numpy as np

from akd_tf.analysis import rank_stats

BOOTSTRAP_SAMPLES = 2000
_TOP_K = 5


def _by_arch(records: Sequence[dict], field: str, what: str, name: str,
             seed: int) -> Dict[str, float]:
  """arch id -> record[field] of the ok records of one recipe/proxy, seed."""
  return {r["arch"]: float(r[field]) for r in records
          if r.get(what) == name and r["seed"] == seed and r["status"] == "ok"}


def _aligned(*maps: Dict[str, float], order: Sequence[str]):
  ids = [a for a in order if all(a in m for m in maps)]
  return ids, [np.array([m[a] for a in ids]) for m in maps]


def _finite(value) -> Optional[float]:
  return None if value is None or not math.isfinite(value) else float(value)


def _rank_pair(x, y) -> dict:
  if len(x) < 2:
    return {"n": len(x), "kendall_tau": None, "spearman": None}
  return {"n": len(x), "kendall_tau": _finite(rank_stats.kendall_tau(x, y)),
          "spearman": _finite(rank_stats.spearman(x, y))}


def seed_noise(first: Dict[str, float], second: Dict[str, float],
               order: Sequence[str]) -> dict:
  """Rank agreement and std between two seeds of one scoring."""
  ids, (a, b) = _aligned(first, second, order=order)
  result = _rank_pair(a, b)
  result["std"] = (float(np.sqrt(np.mean((a - b) ** 2) / 2))
                   if len(ids) else None)
  return result


def _bootstrap_tau_gap(ref0, ref1, other0, seed: int = 0):
  """90% interval of tau(ref0, ref1) - tau(ref0, other0) over archs."""
  rng = np.random.default_rng(seed)
  n = len(ref0)
  gaps = []
  for _ in range(BOOTSTRAP_SAMPLES):
    idx = rng.integers(0, n, n)
    if np.unique(idx).size < 2:
      continue
    gap = (rank_stats.kendall_tau(ref0[idx], ref1[idx]) -
           rank_stats.kendall_tau(ref0[idx], other0[idx]))
    if math.isfinite(gap):
      gaps.append(gap)
  if len(gaps) < BOOTSTRAP_SAMPLES // 2:
    return None
  return [float(np.percentile(gaps, 5)), float(np.percentile(gaps, 95))]


def premise(records, order, reference: str, others: Sequence[str],
            seeds: Sequence[int], run_recipes: Sequence[str]) -> List[dict]:
  """Q1: each other recipe against the reference recipe."""
  s0 = seeds[0]
  s1 = seeds[1] if len(seeds) > 1 else None
  acc = lambda recipe, seed: _by_arch(records, "test_accuracy", "recipe",
                                      recipe, seed)
  ref_noise = (seed_noise(acc(reference, s0), acc(reference, s1), order)
               if s1 is not None else None)
  rows = []
  for other in others:
    row = {"reference": reference, "other": other, "key": f"{other}/seed{s0}",
           "unit": "accuracy", "reference_noise": ref_noise}
    ids, (ref, oth) = _aligned(acc(reference, s0), acc(other, s0),
                               order=order)
    if len(ids) < 2:
      row["missing"] = (
          f"{other}: not run (--recipes={','.join(run_recipes)})"
          if other not in run_recipes else
          f"{other}: {len(ids)} architecture(s) with both recipes so far")
      rows.append(row)
      continue
    row.update(_rank_pair(ref, oth))
    row["regret_top1"] = rank_stats.top_k_regret(ref, oth, 1)
    row[f"regret_top{_TOP_K}"] = rank_stats.top_k_regret(
        ref, oth, min(_TOP_K, len(ids)))
    if s1 is not None:
      row["other_noise"] = seed_noise(acc(other, s0), acc(other, s1), order)
      rep, (r0, r1, o0) = _aligned(acc(reference, s0), acc(reference, s1),
                                   acc(other, s0), order=order)
      row["tau_gap_interval"] = (_bootstrap_tau_gap(r0, r1, o0)
                                 if len(rep) >= 3 else None)
    row["verdict"] = _premise_verdict(row)
    rows.append(row)
  return rows


def _premise_verdict(row: dict) -> str:
  noise = row.get("reference_noise") or {}
  tau, seed_tau, std = row["kendall_tau"], noise.get("kendall_tau"), (
      noise.get("std"))
  interval = row.get("tau_gap_interval")
  if tau is None:
    ranking = "rankings: undefined (a constant scoring)"
  elif seed_tau is None:
    ranking = ("rankings: no noise floor (no repeated architectures with "
               "two seeds yet)")
  elif tau >= seed_tau:
    ranking = (f"rankings agree as closely as two seeds of "
               f"{row['reference']} (tau {tau:.2f} >= seed-to-seed "
               f"{seed_tau:.2f}): no difference beyond training noise")
  elif interval is None or interval[0] <= 0:
    ranking = (f"tau {tau:.2f} is below the seed-to-seed {seed_tau:.2f}, "
               "but within the noise (90% bootstrap interval of the gap "
               f"{_interval_text(interval)} includes 0)")
  else:
    ranking = (f"tau {tau:.2f} is below the seed-to-seed {seed_tau:.2f} "
               f"beyond the noise (gap interval {_interval_text(interval)})")
  if std is None:
    regret = "regret: no noise floor"
  else:
    limit = math.sqrt(2) * std
    top1 = row["regret_top1"]
    regret = (f"top-1 regret {100 * top1:.2f} pp is "
              f"{'within' if top1 <= limit else 'beyond'} the noise "
              f"(sqrt(2) x seed std = {100 * limit:.2f} pp)")
  return f"{ranking}; {regret}"


def _interval_text(interval) -> str:
  return ("n/a" if interval is None else
          f"[{interval[0]:+.2f}, {interval[1]:+.2f}]")


def fidelity(records, proxy_records, order, reference: str,
             proxies: Dict[str, object], seeds: Sequence[int]) -> List[dict]:
  """Q2: each proxy's rank agreement with the reference's test accuracy."""
  s0 = seeds[0]
  truth = _by_arch(records, "test_accuracy", "recipe", reference, s0)
  rows = []
  if len(seeds) > 1:
    again = _by_arch(records, "test_accuracy", "recipe", reference, seeds[1])
    ids, (t, a) = _aligned(truth, again, order=order)
    rows.append(dict(_rank_pair(a, t), proxy=f"{reference} seed {seeds[1]}",
                     key=f"{reference}/seed{seeds[1]}", unit="accuracy",
                     description="stand-alone again, another seed (ceiling)",
                     seconds=_median([r.get("unit_seconds") for r in records
                                      if r.get("recipe") == reference and
                                      r["status"] == "ok"]),
                     reference_row=True))
  for name, proxy in proxies.items():
    scores = _by_arch(proxy_records, "score", "proxy", name, s0)
    ids, (t, p) = _aligned(truth, scores, order=order)
    costs = [r["seconds"] for r in proxy_records
             if r.get("proxy") == name and r["status"] == "ok"]
    failed = sum(1 for r in proxy_records
                 if r.get("proxy") == name and r["status"] != "ok")
    rows.append(dict(_rank_pair(p, t), proxy=name, key=f"{name}/seed{s0}",
                     unit=proxy.unit, description=proxy.description,
                     seconds=_median(costs), failed=failed,
                     regret_top1=(rank_stats.top_k_regret(t, p, 1)
                                  if len(ids) >= 2 else None)))
  return rows


def _median(values) -> Optional[float]:
  values = [v for v in values if v is not None]
  return float(np.median(values)) if values else None


def proxy_noise(records, proxy_records, order, reference: str,
                proxies: Dict[str, object], seeds: Sequence[int],
                recipes: Sequence[str]) -> List[dict]:
  """Q3: within-architecture (seed) std against across-architecture std."""
  rows = []
  sources = [(name, proxy_records, "proxy", "score", proxy.unit)
             for name, proxy in proxies.items() if proxy.noise_seeds]
  sources += [(recipe, records, "recipe", "test_accuracy", "accuracy")
              for recipe in recipes]
  for name, source, what, field, unit in sources:
    per_seed = [_by_arch(source, field, what, name, s) for s in seeds]
    across = np.array(list(per_seed[0].values()))
    repeated = [a for a in order
                if sum(a in m for m in per_seed) >= 2]
    variances = [np.var([m[a] for m in per_seed if a in m], ddof=1)
                 for a in repeated]
    row = {"score": name, "kind": what, "unit": unit,
           "archs_across": int(across.size), "archs_repeated": len(repeated),
           "seeds": len(seeds) if what == "proxy" else min(2, len(seeds)),
           "std_across": float(np.std(across, ddof=1))
                         if across.size >= 2 else None,
           "std_within": float(np.sqrt(np.mean(variances)))
                         if variances else None}
    pair_taus = [seed_noise(per_seed[i], per_seed[j], order)["kendall_tau"]
                 for i in range(len(seeds)) for j in range(i + 1, len(seeds))]
    pair_taus = [t for t in pair_taus if t is not None]
    row["seed_to_seed_tau"] = float(np.mean(pair_taus)) if pair_taus else None
    if row["std_across"] and row["std_within"]:
      ratio = row["std_across"] / row["std_within"]
      row["snr"] = ratio
      row["signal_fraction"] = max(0.0, 1.0 - ratio ** -2)
    else:
      row["snr"] = row["signal_fraction"] = None
    rows.append(row)
  return rows


def analyze(archs: Sequence[dict], records: Sequence[dict],
            proxy_records: Sequence[dict], recipes: Sequence[str],
            run_recipes: Sequence[str], proxies: Dict[str, object],
            seeds: Sequence[int]) -> dict:
  """The three questions' figures, and a per-architecture table.

  Args:
    archs: The benchmark's architectures (ids in order).
    records: Stand-alone records (one per architecture, recipe, seed).
    proxy_records: Proxy records (one per architecture, proxy, seed).
    recipes: Every recipe, the reference (KD from the search's teacher)
      first.
    run_recipes: The recipes this run trains.
    proxies: name -> kd_proxies.Proxy of the proxies scored.
    seeds: The seeds; the first trains every architecture.
  """
  order = [a["id"] for a in archs]
  reference = recipes[0]
  table = []
  for a in archs:
    row = {"id": a["id"], "blocks": a["blocks"], "lut_ms": a["lut_ms"],
           "stratum": a["stratum"]}
    latencies = [r["latency_ms"] for r in records
                 if r["arch"] == a["id"] and r["status"] == "ok"]
    row["latency_ms"] = float(np.median(latencies)) if latencies else None
    for r in records:
      if r["arch"] == a["id"] and r["status"] == "ok":
        row.setdefault("params", r["params"])
        row.setdefault("macs", r["macs"])
        row[f"{r['recipe']}/seed{r['seed']}"] = r["test_accuracy"]
    for r in proxy_records:
      if r["arch"] == a["id"] and r["status"] == "ok":
        row[f"{r['proxy']}/seed{r['seed']}"] = r["score"]
    table.append(row)
  unit_seconds = {}
  for r in list(records) + list(proxy_records):
    name = r.get("recipe") or r.get("proxy")
    if r.get("unit_seconds") is not None:
      unit_seconds.setdefault(name, []).append(r["unit_seconds"])
  total = sum(sum(v) for v in unit_seconds.values())
  return {
      "reference": reference,
      "truth_key": f"{reference}/seed{seeds[0]}",
      "q1_premise": premise(records, order, reference, recipes[1:], seeds,
                            run_recipes),
      "q2_fidelity": fidelity(records, proxy_records, order, reference,
                              proxies, seeds),
      "q3_noise": proxy_noise(records, proxy_records, order, reference,
                              proxies, seeds, run_recipes),
      "failed": {name: sum(1 for r in list(records) + list(proxy_records)
                           if (r.get("recipe") or r.get("proxy")) == name
                           and r["status"] != "ok")
                 for name in unit_seconds},
      "unit_seconds": {name: {"units": len(v), "mean": float(np.mean(v)),
                              "total": float(np.sum(v))}
                       for name, v in unit_seconds.items()},
      "compute_hours": total / 3600,
      "archs": table,
  }


def _num(value, scale=1.0, digits=2) -> str:
  return "-" if value is None else f"{scale * value:.{digits}f}"


def print_tables(result: dict) -> None:
  """Prints Q1, Q2 and Q3 as three tables with their verdicts."""
  reference = result["reference"]
  print(f"\nQ1 the premise: does the best student for {reference} differ "
        "from the best for another recipe? (test accuracy, pp)")
  print(f"{'other recipe':14s} {'n':>3s} {'tau':>6s} {'rho':>6s} "
        f"{'regret@1':>9s} {'regret@5':>9s} {'seed tau':>9s} "
        f"{'seed std':>9s}")
  for row in result["q1_premise"]:
    noise = row.get("reference_noise") or {}
    if "missing" in row:
      print(f"{row['other']:14s} missing: {row['missing']}")
      continue
    print(f"{row['other']:14s} {row['n']:3d} {_num(row['kendall_tau']):>6s} "
          f"{_num(row['spearman']):>6s} "
          f"{_num(row['regret_top1'], 100):>9s} "
          f"{_num(row['regret_top5'], 100):>9s} "
          f"{_num(noise.get('kendall_tau')):>9s} "
          f"{_num(noise.get('std'), 100):>9s}")
    print(f"  {row['verdict']}")
  noise = (result["q1_premise"][0].get("reference_noise") or {}
           if result["q1_premise"] else {})
  print(f"noise floor of {reference}: seed-to-seed tau "
        f"{_num(noise.get('kendall_tau'))}, Spearman "
        f"{_num(noise.get('spearman'))}, seed std "
        f"{_num(noise.get('std'), 100)} pp on {noise.get('n', 0)} repeated "
        "architectures")
  print(f"(regret = {reference} accuracy lost by picking the other recipe's "
        "top-1 / the best of its top-5 instead of its own best)")

  print(f"\nQ2 fidelity: each proxy against {reference} test accuracy")
  print(f"{'proxy':22s} {'n':>3s} {'rho':>6s} {'tau':>6s} {'regret@1':>9s} "
        f"{'s/cand.':>8s}  what")
  for row in result["q2_fidelity"]:
    print(f"{row['proxy']:22s} {row['n']:3d} {_num(row['spearman']):>6s} "
          f"{_num(row['kendall_tau']):>6s} "
          f"{_num(row.get('regret_top1'), 100):>9s} "
          f"{_num(row['seconds'], 1, 1):>8s}  {row['description']}"
          + (f" ({row['failed']} failed)" if row.get("failed") else ""))
  print("(s/cand.: median seconds per candidate on this machine, building "
        "included; regret@1 in pp)")

  print("\nQ3 the reward's noise: the same architecture under several seeds")
  print(f"{'score':22s} {'archs':>5s} {'seeds':>5s} {'std seeds':>9s} "
        f"{'std archs':>9s} {'SNR':>5s} {'signal':>6s} {'seed tau':>8s}")
  for row in result["q3_noise"]:
    scale = 100 if row["unit"] == "accuracy" else 1
    digits = 2 if row["unit"] == "accuracy" else 4
    print(f"{row['score']:22s} {row['archs_repeated']:5d} {row['seeds']:5d} "
          f"{_num(row['std_within'], scale, digits):>9s} "
          f"{_num(row['std_across'], scale, digits):>9s} "
          f"{_num(row['snr']):>5s} {_num(row['signal_fraction']):>6s} "
          f"{_num(row['seed_to_seed_tau']):>8s}")
  print("(std seeds: within one architecture, pooled; std archs: across all "
        "architectures at the first seed; accuracies in pp; SNR = std archs "
        "/ std seeds; signal = 1 - 1/SNR^2, the share of the score's "
        "variance that is the architecture's)")
  kd = next((r for r in result["q3_noise"] if r["score"] == "kd_proxy"),
            None)
  if kd and kd["snr"] is not None:
    print(f"the short-train KD reward: seed noise {100 * kd['std_within']:.2f}"
          f" pp against a spread of {100 * kd['std_across']:.2f} pp across "
          f"architectures (SNR {kd['snr']:.2f})")
  failed = {k: v for k, v in result["failed"].items() if v}
  if failed:
    print(f"failed units: {failed}")
  print(f"compute: {result['compute_hours']:.2f} worker-hours in the "
        "results so far")


def plot(result: dict, path: str, title: str) -> None:
  """Proxy score (x) against the reference's test accuracy (y), a panel
  per Q2 row (the first: the reference itself under another seed), then
  one per other recipe of Q1."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  reference, truth_key = result["reference"], result["truth_key"]
  panels = result["q2_fidelity"] + [
      dict(row, proxy=f"{row['other']} stand-alone")
      for row in result["q1_premise"] if "missing" not in row]
  columns = 4
  lines = max(1, -(-len(panels) // columns))
  fig, axes = plt.subplots(lines, columns, figsize=(3.2 * columns,
                                                    2.8 * lines),
                           squeeze=False)
  for ax, row in zip(axes.flat, panels):
    points = [(r[row["key"]], r[truth_key]) for r in result["archs"]
              if row["key"] in r and truth_key in r]
    if points:
      x, y = np.array(points).T
      ax.scatter(100 * x if row["unit"] == "accuracy" else x, 100 * y, s=14)
      if row["unit"] == "count":
        ax.set_xscale("log")
        # Minor ticks unlabelled: their labels overlap on a narrow panel.
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_title(f"{row['proxy']}\nrho {_num(row['spearman'])}, tau "
                 f"{_num(row['kendall_tau'])} (n={row['n']})", fontsize=8)
    ax.set_xlabel("accuracy (%)" if row["unit"] == "accuracy" else
                  row["proxy"], fontsize=7)
    ax.set_ylabel(f"{reference} test acc (%)", fontsize=7)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
  for ax in list(axes.flat)[len(panels):]:
    ax.axis("off")
  fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
