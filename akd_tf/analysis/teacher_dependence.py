"""Teacher dependence of searched students (the paper's structural knowledge).

AKD's claim is that the best student depends on the teacher. This module
reads finished searches, takes the top candidates of each and compares the
architecture choices the searches with different teachers prefer:

  load_search(model_dir)          one search's config and history
  top_candidates(run, top_k)      its top_k distinct successful students
  choice_distributions(runs, k)   per teacher, block and decision: the share
                                  of every choice among the top candidates
  permutation_test(a, b, k)       do two teachers' searches prefer different
                                  architectures?
  format_top_choices(d, group)    the most frequent choice per block, a table

`akd_tf.analysis.plots.plot_choice_distributions` draws the distributions.

Searches are grouped by `SearchRun.group`: the teacher's label for AKD
searches (reward_accuracy 'kd'), 'nas' for the NAS+KD baseline ('ce'), whose
reward does not involve the teacher.

The test statistic is the mean, over the 42 decisions of the space, of the
total-variation distance between the two groups' choice distributions
(0: identical choices, 1: disjoint). Its null distribution comes from
permuting group labels, at one of two levels:

  'search'     whole searches are reassigned. The top candidates of one
               search are not independent (one controller trajectory, often
               near-copies of one architecture), but separate searches are,
               so this is the test of a teacher effect. It needs several
               searches (seeds) per teacher: with n_a and n_b searches there
               are only C(n_a + n_b, n_a) assignments, so p can go no lower
               than 1 / C (2 / C when n_a == n_b). Separate means distinct
               controller seeds: two searches with one seed draw the same
               random numbers (their first candidate is the same student and
               later ones stay alike), so they form a pair, not two
               independent searches, and a test that permutes them freely is
               wrong. The test refuses groups that share a seed; give every
               teacher's searches their own seeds
               (benchmarks/teacher_dependence.py does).
  'candidate'  the pooled top candidates are reassigned one by one, as if
               independent. With one search per teacher this is the only
               test there is, and it answers a narrower question: are the
               top candidates of these particular searches different? Two
               seeds of the same teacher can differ this way too, so a small
               p does not by itself attribute the difference to the teacher.
  'auto'       'search' when that can reach p <= 0.05, else 'candidate'.

Public names: SearchRun, PermutationResult, load_search, group_by_teacher,
top_candidates, choice_distributions, permutation_test, format_top_choices,
LEVELS, DISTRIBUTION_DECISIONS, NAS_GROUP.
"""

import dataclasses
import json
import math
import os
from typing import Dict, List, Sequence, Tuple

import numpy as np

from akd_tf.nas import history
from akd_tf.space import search_space

__all__ = ["DISTRIBUTION_DECISIONS", "LEVELS", "NAS_GROUP",
           "PermutationResult", "SearchRun", "choice_distributions",
           "format_top_choices",
           "group_by_teacher", "load_search", "permutation_test",
           "top_candidates"]

LEVELS = ("auto", "search", "candidate")
# The six decisions of a block, plus the expansion ratio that conv_op fixes.
DISTRIBUTION_DECISIONS = ("conv_op", "expansion", "kernel", "se_ratio",
                          "skip", "filters", "layers")
NAS_GROUP = "nas"
_CHUNK = 2000  # Permutations per vectorized batch (bounds memory).


@dataclasses.dataclass(frozen=True)
class SearchRun:
  """One finished (or partly finished) search.

  Attributes:
    model_dir: The search's --model_dir.
    teacher: The teacher's label: the built-in name, or the basename of the
      teacher's path.
    reward_accuracy: 'kd' (AKD) or 'ce' (NAS+KD baseline).
    seed: The controller's seed.
    records: Every record of history.jsonl, in file order.
    controller: 'reinforce' or 'random'.
    stem_size: The stem's filters (the search space's input filters).
  """

  model_dir: str
  teacher: str
  reward_accuracy: str
  seed: int
  records: Tuple[history.CandidateRecord, ...]
  controller: str = "reinforce"
  stem_size: int = 32

  @property
  def group(self) -> str:
    """The teacher for AKD searches; 'nas' for NAS ('ce') searches."""
    return self.teacher if self.reward_accuracy == "kd" else NAS_GROUP


@dataclasses.dataclass(frozen=True)
class PermutationResult:
  """A permutation test of two groups' top-candidate architectures.

  Attributes:
    group_a: Label of the first group.
    group_b: Label of the second group.
    statistic: Mean total-variation distance per decision, observed.
    p_value: (1 + #{permuted statistic >= observed}) / (1 + permutations).
    num_permutations: Random label permutations drawn.
    n_a: Top candidates of the first group.
    n_b: Top candidates of the second group.
    searches_a: Searches of the first group with a successful candidate.
    searches_b: Searches of the second group with a successful candidate.
    level: What was permuted: 'search' or 'candidate'.
    min_p_value: The smallest p-value the level can give (exact test).
    distances: Observed total-variation distance per decision
      ('block3/kernel': 0.4, ...), in action order.
  """

  group_a: str
  group_b: str
  statistic: float
  p_value: float
  num_permutations: int
  n_a: int
  n_b: int
  searches_a: int
  searches_b: int
  level: str
  min_p_value: float
  distances: Dict[str, float]

  def get_config(self) -> dict:
    return dataclasses.asdict(self)

  def summary(self) -> str:
    """The one-line result, e.g. for a CLI."""
    return (f"permutation test ({self.group_a} vs {self.group_b}): "
            f"statistic {self.statistic:.3f}, p = {self.p_value:.4f} "
            f"({self.num_permutations} permutations, {self.n_a} / {self.n_b} "
            "top candidates)")


def load_search(model_dir: str) -> SearchRun:
  """Reads a search's search_config.json and history.jsonl.

  Raises:
    FileNotFoundError: `model_dir`, its search_config.json or its
      history.jsonl does not exist.
    ValueError: the config is not a search's, or the history holds no
      records or a corrupt line; the message names the file.
  """
  if not os.path.isdir(model_dir):
    raise FileNotFoundError(f"{model_dir}: no such directory")
  config_path = os.path.join(model_dir, "search_config.json")
  history_path = os.path.join(model_dir, "history.jsonl")
  if not os.path.exists(config_path):
    raise FileNotFoundError(f"{model_dir} has no search_config.json: not an "
                            "akd-search --model_dir")
  try:
    with open(config_path) as f:
      config = json.load(f)
    teacher = str(config["teacher"])
    run_kwargs = dict(
        reward_accuracy=str(config["reward_accuracy"]),
        seed=int(config["controller_config"]["seed"]),
        controller=str(config.get("controller", "reinforce")),
        stem_size=int(config["global_params"]["stem_size"]))
  except (ValueError, KeyError, TypeError) as error:
    raise ValueError(f"{config_path} is not a search config "
                     f"({type(error).__name__}: {error})") from None
  if not os.path.exists(history_path):
    raise FileNotFoundError(f"{model_dir} has no history.jsonl: the search "
                            "has not finished a candidate yet")
  records = history.History(history_path).read()
  if not records:
    raise ValueError(f"{history_path} holds no candidate records")
  return SearchRun(model_dir=model_dir,
                   teacher=os.path.basename(os.path.normpath(teacher)),
                   records=tuple(records), **run_kwargs)


def group_by_teacher(runs: Sequence[SearchRun]) -> Dict[str, List[SearchRun]]:
  """Groups runs by `SearchRun.group`, in order of first appearance."""
  groups = {}
  for run in runs:
    groups.setdefault(run.group, []).append(run)
  return groups


def top_candidates(run: SearchRun, top_k: int
                   ) -> List[history.CandidateRecord]:
  """The `top_k` distinct successful architectures of `run` by reward.

  Reused records (worker 'reused:...', a resample of an evaluated student)
  and later evaluations of the same actions are skipped, so every
  architecture counts once. Ties go to the earlier candidate.

  Raises:
    ValueError: `top_k` < 1.
  """
  if top_k < 1:
    raise ValueError(f"top_k={top_k} must be >= 1")
  ok = [r for r in run.records
        if r.ok and not r.worker.startswith("reused:")]
  ok.sort(key=lambda r: (-r.reward, r.step, r.index))
  seen, top = set(), []
  for record in ok:
    if record.actions not in seen:
      seen.add(record.actions)
      top.append(record)
    if len(top) == top_k:
      break
  return top


def _space(runs: Sequence[SearchRun]) -> search_space.SearchSpace:
  if not runs:
    raise ValueError("no searches given")
  return search_space.SearchSpace(stem_size=runs[0].stem_size)


def _one_hot(space, runs, top_k) -> Tuple[np.ndarray, np.ndarray]:
  """Top candidates as one-hot rows over all choices, and their search ids.

  Raises:
    ValueError: a record's actions do not fit the space (names the search).
  """
  offsets = np.cumsum((0,) + space.num_choices[:-1])
  rows, search_ids = [], []
  for i, run in enumerate(runs):
    for record in top_candidates(run, top_k):
      try:
        actions = space.validate_actions(record.actions)
      except ValueError as error:
        raise ValueError(f"{run.model_dir}: candidate {record.step}."
                         f"{record.index}: {error}") from None
      row = np.zeros(sum(space.num_choices))
      row[offsets + np.asarray(actions)] = 1.0
      rows.append(row)
      search_ids.append(i)
  return (np.asarray(rows).reshape(len(rows), sum(space.num_choices)),
          np.asarray(search_ids, dtype=int))


def _choice_labels(space) -> List[Dict[str, List[str]]]:
  """Per block, per distribution decision: the label of every choice
  (`SearchSpace.choice_labels`, and the expansion ratio of every conv_op)."""
  per_block = len(search_space.DECISIONS)
  choice_labels = space.choice_labels()
  labels = []
  for b in range(len(space.skeleton)):
    block_labels = {name: list(choice_labels[b * per_block + d])
                    for d, name in enumerate(search_space.DECISIONS)}
    block_labels["expansion"] = []
    for choice in range(space.num_choices[b * per_block]):
      actions = [0] * space.num_decisions
      actions[b * per_block] = choice
      block_labels["expansion"].append(
          str(space.decode(actions)[b].expand_ratio))
    labels.append({name: block_labels[name]
                   for name in DISTRIBUTION_DECISIONS})
  return labels


def choice_distributions(runs: Sequence[SearchRun], top_k: int) -> dict:
  """Shares of every architecture choice among each group's top candidates.

  Args:
    runs: The searches; grouped by `SearchRun.group`.
    top_k: Top candidates taken from every search.

  Returns:
    A JSON-serializable dict:
      top_k, decisions (DISTRIBUTION_DECISIONS),
      skeleton: per block {output_filters, num_repeat} of the skeleton,
      groups: {label: {model_dirs, seeds, num_candidates,
                       blocks: [per block {decision: {choice: share}}]}}.
    Choices are labelled by value: conv_op by name (conv, dwconv, mbconv3,
    mbconv6), expansion by the ratio conv_op implies, kernel by size,
    se_ratio by ratio, skip as skip/noskip, filters by the block's output
    filters (width) and layers by its repeat count (depth). Every decision's
    shares sum to 1.

  Raises:
    ValueError: no runs, a group has no successful candidate, or top_k < 1.
  """
  space = _space(runs)
  labels = _choice_labels(space)
  per_block = len(search_space.DECISIONS)
  offsets = np.cumsum((0,) + space.num_choices[:-1])
  groups = {}
  for group, members in group_by_teacher(runs).items():
    one_hot, _ = _one_hot(space, members, top_k)
    if not len(one_hot):
      raise ValueError(f"group '{group}' has no successful candidate in "
                       f"{[r.model_dir for r in members]}")
    shares = one_hot.mean(axis=0)
    blocks = []
    for b, block_labels in enumerate(labels):
      block = {}
      for d, name in enumerate(search_space.DECISIONS):
        start = offsets[b * per_block + d]
        values = shares[start:start + len(block_labels[name])]
        block[name] = {label: float(v)
                       for label, v in zip(block_labels[name], values)}
        if name == "conv_op":
          block["expansion"] = {}
          for label, v in zip(block_labels["expansion"], values):
            block["expansion"][label] = (block["expansion"].get(label, 0.0) +
                                         float(v))
      blocks.append({name: block[name] for name in DISTRIBUTION_DECISIONS})
    groups[group] = {"model_dirs": [r.model_dir for r in members],
                     "seeds": [r.seed for r in members],
                     "num_candidates": len(one_hot), "blocks": blocks}
  return {"top_k": top_k, "decisions": list(DISTRIBUTION_DECISIONS),
          "skeleton": [{"output_filters": s.output_filters,
                        "num_repeat": s.num_repeat} for s in space.skeleton],
          "groups": groups}


def _label_of(runs: Sequence[SearchRun]) -> str:
  return "+".join(group_by_teacher(runs))


def _statistics(masks, counts, sizes, total_counts, total_size, starts):
  """Mean TV distance per decision for every row of `masks` (vectorized)."""
  counts_a = masks @ counts
  size_a = masks @ sizes
  share_a = counts_a / size_a[:, None]
  share_b = (total_counts - counts_a) / (total_size - size_a)[:, None]
  per_decision = 0.5 * np.add.reduceat(np.abs(share_a - share_b), starts,
                                       axis=1)
  return per_decision.mean(axis=1), per_decision


def permutation_test(runs_a: Sequence[SearchRun], runs_b: Sequence[SearchRun],
                     top_k: int, num_permutations: int = 10000, seed: int = 0,
                     level: str = "auto") -> PermutationResult:
  """Tests whether two groups of searches prefer different architectures.

  The statistic is the mean over the space's decisions of the
  total-variation distance between the groups' choice distributions of
  their top candidates. The null distribution permutes group labels of
  whole searches or of single candidates (see the module docstring for
  when each is valid).

  Args:
    runs_a: The searches of one teacher.
    runs_b: The searches of the other.
    top_k: Top candidates taken from every search.
    num_permutations: Random permutations of the labels.
    seed: Seed of the permutations.
    level: 'search', 'candidate' or 'auto' (see the module docstring).

  Returns:
    A `PermutationResult`.

  Raises:
    ValueError: a group is empty or has no successful candidate,
      num_permutations < 1, an unknown level, or level='search' (also
      chosen by 'auto') with one search per group (both assignments give
      the same statistic) or with a controller seed in both groups (paired
      searches, not independent ones).
  """
  _check_test_arguments(runs_a, runs_b, num_permutations, level)
  runs = list(runs_a) + list(runs_b)
  space = _space(runs)
  one_hot, search_ids = _one_hot(space, runs, top_k)
  candidates = _candidate_units(one_hot, search_ids, runs_a, runs_b)
  searches = _search_units(one_hot, search_ids, len(runs_a))
  if level == "auto":
    level = "search" if searches.min_p <= 0.05 else "candidate"
  if level == "search":
    _check_independent_searches(runs_a, runs_b, searches)
  units = searches if level == "search" else candidates
  starts = np.cumsum((0,) + space.num_choices[:-1])
  observed, distances, exceed = _permute(units, starts, num_permutations,
                                         seed)
  return PermutationResult(
      group_a=_label_of(runs_a), group_b=_label_of(runs_b),
      statistic=observed, p_value=(1 + exceed) / (1 + num_permutations),
      num_permutations=num_permutations, n_a=candidates.in_a,
      n_b=candidates.in_b, searches_a=searches.in_a,
      searches_b=searches.in_b, level=level, min_p_value=float(units.min_p),
      distances={n: float(v)
                 for n, v in zip(space.decision_names(), distances)})


@dataclasses.dataclass(frozen=True)
class _Units:
  """What a permutation test reassigns between the two groups.

  Attributes:
    counts: Per unit, how often each choice occurs among its candidates.
    sizes: Per unit, its number of candidates.
    in_a: Units of the first group (they come first).
    in_b: Units of the second group.
  """

  counts: np.ndarray
  sizes: np.ndarray
  in_a: int
  in_b: int

  @property
  def min_p(self) -> float:
    """The smallest p-value an exact test of these units can give."""
    return ((2 if self.in_a == self.in_b else 1) /
            math.comb(self.in_a + self.in_b, self.in_a))


def _check_test_arguments(runs_a, runs_b, num_permutations, level) -> None:
  if level not in LEVELS:
    raise ValueError(f"level='{level}' is not one of {LEVELS}")
  if num_permutations < 1:
    raise ValueError(f"num_permutations={num_permutations} must be >= 1")
  if not runs_a or not runs_b:
    raise ValueError("permutation_test needs searches in both groups")


def _candidate_units(one_hot, search_ids, runs_a, runs_b) -> _Units:
  """Every top candidate a unit of its own.

  Raises:
    ValueError: a group has no successful candidate.
  """
  in_a = search_ids < len(runs_a)
  n_a, n_b = int(in_a.sum()), int((~in_a).sum())
  if not n_a or not n_b:
    raise ValueError(f"group '{_label_of(runs_a if not n_a else runs_b)}' "
                     "has no successful candidate")
  return _Units(one_hot, np.ones(len(one_hot)), n_a, n_b)


def _search_units(one_hot, search_ids, num_runs_a: int) -> _Units:
  """Every search a unit; searches without a successful candidate carry no
  information and are left out."""
  sizes = np.bincount(search_ids,
                      minlength=search_ids.max() + 1).astype(float)
  kept = np.flatnonzero(sizes > 0)
  counts = np.stack([one_hot[search_ids == i].sum(axis=0) for i in kept])
  return _Units(counts, sizes[kept], int(np.sum(kept < num_runs_a)),
                int(np.sum(kept >= num_runs_a)))


def _check_independent_searches(runs_a, runs_b, searches: _Units) -> None:
  """Raises ValueError when whole searches cannot be permuted: one search
  per group, or searches of both groups sharing a controller seed."""
  if searches.in_a == searches.in_b == 1:
    raise ValueError("level='search' needs more than one search in a "
                     "group: with one each, p is always 1")
  shared = sorted({r.seed for r in runs_a} & {r.seed for r in runs_b})
  if shared:
    raise ValueError(
        f"level='search': searches of '{_label_of(runs_a)}' and "
        f"'{_label_of(runs_b)}' share controller seeds {shared}; same-seed "
        "searches are paired, not independent as this test assumes: run "
        "one group with other seeds, or permute candidates")


def _permute(units: _Units, starts, num_permutations: int, seed: int):
  """The observed statistic, its per-decision distances, and how many of
  `num_permutations` random reassignments reach it."""
  total = units.in_a + units.in_b
  args = (units.counts, units.sizes, units.counts.sum(axis=0),
          units.sizes.sum(), starts)
  observed_mask = np.zeros((1, total))
  observed_mask[0, :units.in_a] = 1.0
  observed, per_decision = _statistics(observed_mask, *args)
  rng = np.random.default_rng(seed)
  exceed = 0
  for begin in range(0, num_permutations, _CHUNK):
    rows = min(_CHUNK, num_permutations - begin)
    masks = (rng.random((rows, total)).argsort(axis=1) <
             units.in_a).astype(float)
    permuted, _ = _statistics(masks, *args)
    exceed += int(np.sum(permuted >= observed[0] - 1e-12))
  return float(observed[0]), per_decision[0], exceed


def format_top_choices(distributions: dict, group: str) -> str:
  """A table of the most frequent choice (and its share) per block.

  Raises:
    KeyError: `group` is not in `distributions`.
  """
  entry = distributions["groups"][group]
  decisions = distributions["decisions"]
  lines = [f"{group}: {entry['num_candidates']} top candidates from "
           f"{len(entry['model_dirs'])} search(es), top "
           f"{distributions['top_k']} each",
           ("block  " + "".join(f"{name:<15}" for name in decisions)).rstrip()]
  for b, block in enumerate(entry["blocks"]):
    cells = []
    for name in decisions:
      label, share = max(block[name].items(), key=lambda item: item[1])
      cells.append(f"{label} {share:.2f}".ljust(15))
    lines.append(f"{b:<7}" + "".join(cells).rstrip())
  return "\n".join(lines)
