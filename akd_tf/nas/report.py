"""Plots and summaries of a search's history.

Figures are drawn on their own Agg canvas (`agg_figure`), never through
pyplot: matplotlib's global backend, a notebook's included, is left as
the user set it, and no figure is registered with pyplot to be shown.

Public names: pareto_front, moving_average, plot_pareto, plot_rewards,
best_record, top_table, agg_figure.
"""

from typing import List, Optional, Sequence, Tuple

from matplotlib import figure as figure_lib
from matplotlib.backends import backend_agg
import numpy as np

from akd_tf.nas import history

__all__ = ["agg_figure", "best_record", "moving_average", "pareto_front",
           "plot_pareto", "plot_rewards", "top_table"]


def agg_figure(figsize: Tuple[float, float]) -> figure_lib.Figure:
  """A figure of `figsize` inches on an Agg canvas of its own, for
  `savefig`, whatever backend matplotlib uses."""
  figure = figure_lib.Figure(figsize=figsize)
  backend_agg.FigureCanvasAgg(figure)
  return figure


def best_record(records: Sequence[history.CandidateRecord]
                ) -> Optional[history.CandidateRecord]:
  """Returns the successful record with the highest reward (first on ties)."""
  ok = [r for r in records if r.ok]
  return max(ok, key=lambda r: r.reward) if ok else None


def top_table(records: Sequence[history.CandidateRecord], k: int = 5) -> str:
  """The `k` successful records of highest reward as a text table.

  One row per record, best first (the history's order on ties): its rank,
  step/index, reward, accuracy, latency, parameters, MACs and block
  strings; a candidate evaluated twice (sampled again) appears once.
  """
  ok = {}
  for record in records:
    if record.ok:
      ok.setdefault(record.actions, record)
  top = sorted(ok.values(), key=lambda r: -r.reward)[:k]
  failed = sum(not r.ok for r in records)
  lines = [f"top {len(top)} of {len(ok)} distinct candidates by reward "
           f"({failed} failed evaluations):",
           f"{'rank':>4} {'step/cand':>9} {'reward':>7} {'accuracy':>8} "
           f"{'lat ms':>7} {'params':>8} {'MACs':>8}  blocks"]
  for rank, r in enumerate(top, start=1):
    lines.append(
        f"{rank:>4} {f'{r.step}/{r.index}':>9} {r.reward:>7.4f} "
        f"{r.accuracy:>8.4f} {r.latency_ms:>7.3f} {_count(r.params):>8} "
        f"{_count(r.macs):>8}  {' '.join(r.blocks)}")
  return "\n".join(lines)


def _count(n: int) -> str:
  """1234567 -> '1.23M', 45600 -> '45.6K'."""
  if n >= 1e6:
    return f"{n / 1e6:.2f}M"
  if n >= 1e3:
    return f"{n / 1e3:.1f}K"
  return str(n)


def pareto_front(records: Sequence[history.CandidateRecord]
                 ) -> List[history.CandidateRecord]:
  """Successful records no other record beats in both accuracy and latency.

  Returns:
    The front sorted by latency.
  """
  ok = sorted((r for r in records if r.ok and r.latency_ms is not None),
              key=lambda r: (r.latency_ms, -r.accuracy))
  front = []
  for record in ok:
    if not front or record.accuracy > front[-1].accuracy:
      front.append(record)
  return front


def moving_average(values: Sequence[float], decay: float = 0.9) -> np.ndarray:
  """Exponential moving average, initialized at the first value."""
  out = np.zeros(len(values))
  for i, value in enumerate(values):
    out[i] = value if i == 0 else decay * out[i - 1] + (1 - decay) * value
  return out


def plot_pareto(records: Sequence[history.CandidateRecord], target_ms: float,
                path: str, title: str = "") -> None:
  """Writes accuracy vs latency of every candidate, front and target marked."""
  ok = [r for r in records if r.ok and r.latency_ms is not None]
  front = pareto_front(records)
  figure = agg_figure((6.4, 4.8))
  axes = figure.subplots()
  if ok:
    axes.scatter([r.latency_ms for r in ok], [r.accuracy for r in ok], s=14,
                 c=[r.step for r in ok], cmap="viridis", label="candidates")
    axes.plot([r.latency_ms for r in front], [r.accuracy for r in front],
              "r.-", label="Pareto front")
    best = best_record(records)
    axes.scatter([best.latency_ms], [best.accuracy], marker="*", s=160,
                 c="red", edgecolors="black", label="best reward", zorder=3)
  axes.axvline(target_ms, color="gray", linestyle="--",
               label=f"target {target_ms:g} ms")
  axes.set_xlabel("latency (ms)")
  axes.set_ylabel("mini-val accuracy")
  axes.set_title(title or f"{len(ok)} candidates ({len(records) - len(ok)} "
                 "failed)")
  axes.legend(loc="best", fontsize="small")
  figure.tight_layout()
  figure.savefig(path, dpi=110)


def plot_rewards(records: Sequence[history.CandidateRecord], path: str) -> None:
  """Writes the reward of every candidate in order with its moving average.

  The moving average runs over the successful candidates; failed ones have
  no reward and are marked with a red x at the lowest reward.
  """
  ok = [(i, r.reward) for i, r in enumerate(records) if r.ok]
  failed = [i for i, r in enumerate(records) if not r.ok]
  figure = agg_figure((6.4, 4.0))
  axes = figure.subplots()
  if ok:
    index, rewards = zip(*ok)
    axes.plot(index, rewards, ".", alpha=0.6, label="reward")
    axes.plot(index, moving_average(rewards), "-",
              label="moving average (0.9)")
  if failed:
    lowest = min(rewards) if ok else 0.0
    axes.plot(failed, [lowest] * len(failed), "x", color="red",
              label="failed (no reward)")
  axes.set_xlabel("candidate")
  axes.set_ylabel("reward")
  axes.legend(loc="lower right", fontsize="small")
  figure.tight_layout()
  figure.savefig(path, dpi=110)
