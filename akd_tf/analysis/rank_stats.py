"""Rank agreement between two scorings of the same architectures (numpy only).

How well a cheap score (a proxy) ranks architectures as an expensive one
(stand-alone accuracy) does:

  rankdata(x)                 average ranks, 1-based, ties share their mean
  spearman(x, y)              Spearman's rho: Pearson correlation of ranks
  kendall_tau(x, y)           Kendall's tau-b (tie-corrected, as scipy's
                              default)
  top_k_regret(truth, proxy)  what picking by `proxy` costs in `truth`

Both coefficients are NaN when one scoring is constant (no ranking to agree
with). Everything is O(n^2) at most: meant for tens to hundreds of
architectures.

Public names: rankdata, spearman, kendall_tau, top_k_regret.
"""

import numpy as np

__all__ = ["kendall_tau", "rankdata", "spearman", "top_k_regret"]


def _as_vector(values, name: str) -> np.ndarray:
  array = np.asarray(values, dtype=np.float64)
  if array.ndim != 1:
    raise ValueError(f"{name} must be one-dimensional, got shape "
                     f"{array.shape}")
  if not np.all(np.isfinite(array)):
    raise ValueError(f"{name} holds NaN or infinite values; drop the "
                     "architectures without a score first")
  return array


def _pair(x, y):
  x, y = _as_vector(x, "x"), _as_vector(y, "y")
  if x.size != y.size:
    raise ValueError(f"x and y score different numbers of architectures "
                     f"({x.size} vs {y.size})")
  if x.size < 2:
    raise ValueError(f"a rank correlation needs at least 2 architectures, "
                     f"got {x.size}")
  return x, y


def rankdata(values) -> np.ndarray:
  """Ranks 1..n of `values`; tied values get the mean of their ranks.

  Args:
    values: A 1-D sequence of finite numbers.

  Returns:
    float64 array of ranks, e.g. [10, 20, 20, 5] -> [2, 3.5, 3.5, 1].

  Raises:
    ValueError: not 1-D, or NaN / infinite values.
  """
  values = _as_vector(values, "values")
  order = np.argsort(values, kind="stable")
  sorted_values = values[order]
  ranks = np.empty(values.size, dtype=np.float64)
  start = 0
  while start < values.size:
    end = start
    while end + 1 < values.size and sorted_values[end + 1] == (
        sorted_values[start]):
      end += 1
    ranks[order[start:end + 1]] = (start + end) / 2 + 1
    start = end + 1
  return ranks


def spearman(x, y) -> float:
  """Spearman's rank correlation rho of two scorings (average ranks for ties).

  Raises:
    ValueError: different lengths, fewer than 2 values, or non-finite ones.
  """
  x, y = _pair(x, y)
  rx, ry = rankdata(x), rankdata(y)
  dx, dy = rx - rx.mean(), ry - ry.mean()
  norm = np.sqrt(np.sum(dx * dx) * np.sum(dy * dy))
  return float(np.sum(dx * dy) / norm) if norm > 0 else float("nan")


def kendall_tau(x, y) -> float:
  """Kendall's tau-b: (C - D) / sqrt((P - Tx) (P - Ty)).

  C and D count concordant and discordant pairs, P all pairs, Tx (Ty) the
  pairs tied in x (y); a pair tied in both counts in both. Without ties it
  is the plain tau (C - D) / P.

  Raises:
    ValueError: different lengths, fewer than 2 values, or non-finite ones.
  """
  x, y = _pair(x, y)
  upper = np.triu_indices(x.size, k=1)
  sx = np.sign(x[:, None] - x[None, :])[upper]
  sy = np.sign(y[:, None] - y[None, :])[upper]
  pairs = sx.size
  untied_x = pairs - np.sum(sx == 0)
  untied_y = pairs - np.sum(sy == 0)
  if untied_x == 0 or untied_y == 0:
    return float("nan")
  return float(np.sum(sx * sy) / np.sqrt(float(untied_x) * untied_y))


def top_k_regret(truth, proxy, k: int = 1) -> float:
  """How much `truth` is lost by taking the best of `proxy`'s top k.

  Returns max(truth) - max(truth[i] for i in the k highest by proxy): 0 when
  the truly best architecture is among the proxy's top k. Ties in `proxy`
  are broken by position (the earlier architecture first).

  Raises:
    ValueError: different lengths, non-finite values, or k outside
      [1, number of architectures].
  """
  truth, proxy = _as_vector(truth, "truth"), _as_vector(proxy, "proxy")
  if truth.size != proxy.size:
    raise ValueError(f"truth and proxy score different numbers of "
                     f"architectures ({truth.size} vs {proxy.size})")
  if not 1 <= k <= truth.size:
    raise ValueError(f"k={k} must be in [1, {truth.size}]")
  top = np.argsort(-proxy, kind="stable")[:k]
  return float(truth.max() - truth[top].max())
