"""Tests of akd_tf.analysis.teacher_dependence on search histories written by
akd_tf.nas.history."""

import dataclasses
import json
import math
import sys
import time

import numpy as np
import pytest

from akd_tf.analysis import teacher_dependence as dependence
from akd_tf.distill import candidate_training
from akd_tf.distill import data
from akd_tf.nas import config as config_lib
from akd_tf.nas import history
from akd_tf.nas import reward
from akd_tf.space import arch
from akd_tf.space import search_space

SPACE = search_space.SearchSpace()
CONFIG = config_lib.SearchConfig(
    data=data.DataConfig(dataset="digits"), global_params=arch.GlobalParams(),
    proxy=candidate_training.TrainConfig(),
    final=candidate_training.TrainConfig(),
    reward=reward.RewardConfig(target_ms=1.0))


def biased_actions(rng, prefer_last, strength=0.7):
  """Actions whose every decision picks its first (or last) choice often."""
  actions = []
  for n in SPACE.num_choices:
    favourite = n - 1 if prefer_last else 0
    actions.append(favourite if rng.random() < strength
                   else int(rng.integers(n)))
  return tuple(actions)


def record(step, actions, reward_value, status=history.STATUS_OK, worker=""):
  return history.CandidateRecord(
      step=step, index=0, actions=actions,
      blocks=[b.encode() for b in SPACE.decode(actions)], status=status,
      accuracy=0.9 if status == history.STATUS_OK else None, latency_ms=1.0,
      reward=reward_value, worker=worker)


def write_search(model_dir, records, teacher="resnet_wide", seed=0,
                 reward_accuracy="kd"):
  """A model_dir as akd-search leaves it: search_config.json, history."""
  model_dir.mkdir(parents=True)
  config = dataclasses.replace(
      CONFIG, teacher=teacher, reward_accuracy=reward_accuracy,
      controller_config=dataclasses.replace(CONFIG.controller_config,
                                            seed=seed))
  (model_dir / "search_config.json").write_text(
      json.dumps(config.get_config()))
  log = history.History(str(model_dir / "history.jsonl"))
  for r in records:
    log.append(r)
  return str(model_dir)


def sampled_search(model_dir, seed, prefer_last, teacher, n=20):
  rng = np.random.default_rng(seed)
  records = [record(step, biased_actions(rng, prefer_last), rng.random())
             for step in range(n)]
  return dependence.load_search(write_search(model_dir, records, teacher, seed))


def test_load_search_reads_teacher_label_seed_and_records(tmp_path):
  records = [record(0, SPACE.sample(0), 0.5)]
  run = dependence.load_search(write_search(
      tmp_path / "s", records, teacher="/models/teachers/big.keras", seed=7,
      reward_accuracy="ce"))
  assert (run.teacher, run.seed, run.reward_accuracy) == ("big.keras", 7, "ce")
  assert run.group == "nas"
  assert run.records == tuple(records)
  builtin = dependence.load_search(write_search(tmp_path / "t", records))
  assert builtin.teacher == builtin.group == "resnet_wide"


def test_load_search_names_the_dir_when_files_are_missing_or_empty(tmp_path):
  with pytest.raises(FileNotFoundError, match="no such directory"):
    dependence.load_search(str(tmp_path / "nothing"))
  (tmp_path / "bare").mkdir()
  with pytest.raises(FileNotFoundError, match="bare has no search_config"):
    dependence.load_search(str(tmp_path / "bare"))
  model_dir = write_search(tmp_path / "fresh", [])
  with pytest.raises(FileNotFoundError, match="fresh has no history.jsonl"):
    dependence.load_search(model_dir)
  (tmp_path / "fresh" / "history.jsonl").write_text("")
  with pytest.raises(ValueError, match="history.jsonl holds no candidate"):
    dependence.load_search(model_dir)
  (tmp_path / "fresh" / "search_config.json").write_text('{"teacher": "x"}')
  with pytest.raises(ValueError, match="search_config.json is not a search"):
    dependence.load_search(model_dir)


def test_top_candidates_skip_failed_reused_and_repeated_architectures(
    tmp_path):
  a, b, c, d = (SPACE.sample(seed) for seed in range(4))
  records = [
      record(0, a, 0.90),
      record(1, a, 0.90, worker="reused:0/0"),
      record(2, b, 0.80),
      record(3, c, 0.99, status=history.STATUS_FAILED),
      record(4, b, 0.85),  # Evaluated again after a resume: one architecture.
      record(5, d, 0.10),
  ]
  run = dependence.load_search(write_search(tmp_path / "s", records))
  assert [r.step for r in dependence.top_candidates(run, 5)] == [0, 4, 5]
  assert [r.step for r in dependence.top_candidates(run, 2)] == [0, 4]
  with pytest.raises(ValueError, match="top_k=0"):
    dependence.top_candidates(run, 0)


def test_choice_distributions_share_each_choice_and_sum_to_one(tmp_path):
  runs = [sampled_search(tmp_path / "a", 1, False, "resnet_wide"),
          sampled_search(tmp_path / "b", 2, True, "cnn_deep")]
  result = dependence.choice_distributions(runs, top_k=5)
  assert json.loads(json.dumps(result)) == result
  assert list(result["groups"]) == ["resnet_wide", "cnn_deep"]
  for group in result["groups"].values():
    assert group["num_candidates"] == 5
    assert len(group["blocks"]) == len(SPACE.skeleton)
    for block in group["blocks"]:
      assert list(block) == list(dependence.DISTRIBUTION_DECISIONS)
      for shares in block.values():
        assert math.isclose(sum(shares.values()), 1.0)
  block0 = result["groups"]["resnet_wide"]["blocks"][0]
  assert list(block0["conv_op"]) == ["conv", "dwconv", "mbconv3", "mbconv6"]
  assert list(block0["expansion"]) == ["1", "3", "6"]
  assert block0["expansion"]["1"] == (block0["conv_op"]["conv"] +
                                      block0["conv_op"]["dwconv"])
  assert list(block0["filters"]) == ["12", "16", "20"]
  assert list(block0["layers"]) == ["1", "2"]
  assert list(result["groups"]["resnet_wide"]["blocks"][3]["layers"]) == [
      "3", "4", "5"]


def test_choice_distributions_count_the_top_candidates_exactly(tmp_path):
  base = [0] * SPACE.num_decisions
  wide_k5 = list(base)
  wide_k5[1] = 1  # block0/kernel: 5
  wide_k5[4] = 2  # block0/filters: x1.25
  records = [record(0, tuple(base), 0.9), record(1, tuple(wide_k5), 0.8),
             record(2, tuple(wide_k5), 0.7), record(3, SPACE.sample(3), 0.1)]
  run = dependence.load_search(write_search(tmp_path / "s", records))
  block0 = dependence.choice_distributions([run], 2)["groups"]["resnet_wide"][
      "blocks"][0]
  assert block0["kernel"] == {"3": 0.5, "5": 0.5}
  assert block0["filters"] == {"12": 0.5, "16": 0.0, "20": 0.5}


def test_statistic_is_the_mean_total_variation_per_decision(tmp_path):
  first = [0] * SPACE.num_decisions
  other = list(first)
  other[1] = other[8] = other[20] = 1
  run_a = dependence.load_search(write_search(
      tmp_path / "a", [record(0, tuple(first), 1.0)]))
  run_b = dependence.load_search(write_search(
      tmp_path / "b", [record(0, tuple(other), 1.0)], teacher="cnn_deep"))
  result = dependence.permutation_test([run_a], [run_b], top_k=1,
                                       num_permutations=100)
  assert math.isclose(result.statistic, 3 / SPACE.num_decisions)
  assert {n for n, v in result.distances.items() if v} == {
      "block0/kernel", "block1/se_ratio", "block3/se_ratio"}


def test_different_preferences_give_a_small_p_value(tmp_path):
  a = sampled_search(tmp_path / "a", 1, False, "resnet_wide")
  b = sampled_search(tmp_path / "b", 2, True, "cnn_deep")
  result = dependence.permutation_test([a], [b], top_k=10)
  assert result.level == "candidate"
  assert (result.n_a, result.n_b, result.num_permutations) == (10, 10, 10000)
  assert result.p_value < 0.01
  assert result.p_value >= 1 / 10001
  assert result.summary().startswith(
      "permutation test (resnet_wide vs cnn_deep): statistic ")


def test_same_preferences_give_a_large_p_value(tmp_path):
  a = sampled_search(tmp_path / "a", 1, False, "resnet_wide")
  b = sampled_search(tmp_path / "b", 2, False, "cnn_deep")
  result = dependence.permutation_test([a], [b], top_k=10)
  assert 0.1 < result.p_value <= 1.0


def test_identical_groups_give_p_one_and_the_test_is_seeded(tmp_path):
  a = sampled_search(tmp_path / "a", 1, False, "resnet_wide")
  b = sampled_search(tmp_path / "b", 1, False, "cnn_deep")
  result = dependence.permutation_test([a], [b], top_k=5, num_permutations=500)
  assert (result.statistic, result.p_value) == (0.0, 1.0)
  c = sampled_search(tmp_path / "c", 3, False, "cnn_deep")
  first = dependence.permutation_test([a], [c], 5, num_permutations=500, seed=4)
  again = dependence.permutation_test([a], [c], 5, num_permutations=500, seed=4)
  assert first == again


def test_search_level_permutes_whole_searches(tmp_path):
  def searches(name, prefer_last, seeds):
    return [sampled_search(tmp_path / f"{name}{s}", s, prefer_last, name)
            for s in seeds]
  wide = searches("resnet_wide", False, range(4))
  deep = searches("cnn_deep", True, range(4, 8))
  deep_alike = searches("cnn_deep_alike", False, range(8, 12))
  different = dependence.permutation_test(wide, deep, top_k=5)
  assert different.level == "search"  # 'auto': 4 vs 4 can reach p < 0.05.
  assert different.min_p_value == 2 / math.comb(8, 4)
  assert different.p_value < 0.05
  alike = dependence.permutation_test(wide, deep_alike, top_k=5, level="search")
  assert alike.p_value > 0.1
  failed = dependence.load_search(write_search(
      tmp_path / "failed", [record(0, SPACE.sample(0), 0.0,
                                   status=history.STATUS_FAILED)]))
  with_failed = dependence.permutation_test(wide + [failed], deep, top_k=5)
  assert (with_failed.searches_a, with_failed.statistic) == (
      4, different.statistic)
  assert with_failed.p_value == different.p_value
  with pytest.raises(ValueError, match="level='search' needs more than one"):
    dependence.permutation_test(wide[:1], deep[:1], top_k=5, level="search")


@pytest.mark.parametrize("level", ["search", "auto"])
def test_search_level_refuses_groups_that_share_controller_seeds(tmp_path,
                                                                 level):
  # Same-seed searches draw the same random numbers: they are pairs, and
  # permuting them as independent searches would be wrong.
  wide = [sampled_search(tmp_path / f"wide{s}", s, False, "resnet_wide")
          for s in range(4)]
  deep = [sampled_search(tmp_path / f"deep{s}", s + 2, True, "cnn_deep")
          for s in range(4)]
  with pytest.raises(ValueError, match=r"share controller seeds \[2, 3\]"):
    dependence.permutation_test(wide, deep, top_k=5, level=level)
  candidate = dependence.permutation_test(wide, deep, top_k=5,
                                          level="candidate")
  assert candidate.level == "candidate"


def test_ten_thousand_permutations_take_well_under_a_second(tmp_path):
  a = sampled_search(tmp_path / "a", 1, False, "resnet_wide", n=60)
  b = sampled_search(tmp_path / "b", 2, True, "cnn_deep", n=60)
  start = time.perf_counter()
  dependence.permutation_test([a], [b], top_k=50, num_permutations=10000)
  assert time.perf_counter() - start < 1.0


def test_groups_without_successful_candidates_are_named(tmp_path):
  failed = dependence.load_search(write_search(
      tmp_path / "f", [record(0, SPACE.sample(0), 0.0,
                              status=history.STATUS_FAILED)],
      teacher="cnn_deep"))
  ok = sampled_search(tmp_path / "ok", 1, False, "resnet_wide")
  with pytest.raises(ValueError, match="'cnn_deep' has no successful"):
    dependence.choice_distributions([ok, failed], 5)
  with pytest.raises(ValueError, match="'cnn_deep' has no successful"):
    dependence.permutation_test([ok], [failed], 5)


def test_top_choice_table(tmp_path):
  runs = [sampled_search(tmp_path / "a", 1, False, "resnet_wide"),
          sampled_search(tmp_path / "b", 2, True, "cnn_deep")]
  result = dependence.choice_distributions(runs, top_k=5)
  table = dependence.format_top_choices(result, "cnn_deep").splitlines()
  assert table[0].startswith("cnn_deep: 5 top candidates from 1 search(es)")
  assert table[1].split() == ["block"] + list(dependence.DISTRIBUTION_DECISIONS)
  block6 = result["groups"]["cnn_deep"]["blocks"][6]
  top_filters = max(block6["filters"], key=block6["filters"].get)
  assert f"{top_filters} {block6['filters'][top_filters]:.2f}" in table[8]


def test_clustered_searches_of_one_teacher_fool_only_the_candidate_level():
  # A converged controller's top candidates are variations of one student,
  # so candidates of one search are not independent: between two groups of
  # such searches from the same distribution, permuting candidates finds a
  # "difference" that permuting whole searches correctly does not.
  rng = np.random.default_rng(5)
  runs = []
  for seed in range(8):
    center = SPACE.sample(rng)
    records = [record(step, tuple(c if rng.random() < 0.6
                                  else int(rng.integers(n))
                                  for c, n in zip(center, SPACE.num_choices)),
                      rng.random()) for step in range(10)]
    runs.append(dependence.SearchRun("dir", "same_teacher", "kd", seed,
                                     tuple(records)))
  candidate = dependence.permutation_test(runs[:4], runs[4:], 5,
                                          level="candidate")
  search_level = dependence.permutation_test(runs[:4], runs[4:], 5,
                                             level="search")
  assert candidate.p_value < 0.01
  assert search_level.p_value > 0.1


if __name__ == "__main__":
  sys.exit(pytest.main([__file__]))
