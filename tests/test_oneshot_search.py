"""A search with --proxy=oneshot: a supernet trained once, candidates scored."""

import os
import sys

import pytest
import search_testing

from akd_tf.nas import history
from akd_tf.nas import loop

# Six candidates in two controller steps; a supernet of 12 sandwich updates
# (the trace costs more than the training).
ONESHOT = dict(proxy_mode="oneshot", supernet_steps=12,
               supernet_paths_per_step=3, num_candidates=6,
               candidates_per_step=3)


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
  cache_dir = str(tmp_path_factory.mktemp("cache"))
  model_dir = str(tmp_path_factory.mktemp("search"))
  config = search_testing.tiny_search_config(cache_dir, **ONESHOT)
  lines = []
  result = loop.run_search(config, model_dir, log=lines.append)
  return config, model_dir, result, lines


def test_oneshot_search_scores_every_candidate_without_training_it(searched):
  _, _, result, _ = searched
  assert len(result.records) == 6
  assert all(r.status == history.STATUS_OK for r in result.records), [
      r.error for r in result.records]
  for record in result.records:
    assert "train" not in record.timings and "score" in record.timings
    assert 0.0 <= record.accuracy <= 1.0 and record.params > 0
    assert record.latency_ms > 0
  assert len({r.accuracy for r in result.records}) > 1
  assert result.best is not None


def test_latencies_are_kept_for_the_machine_not_the_search(searched):
  config, model_dir, _, _ = searched
  assert os.path.exists(os.path.join(config.cache_dir, "latency",
                                     "students.jsonl"))
  assert not [f for f in os.listdir(model_dir) if "latency" in f]


def test_oneshot_search_trains_the_supernet_once_into_the_cache(searched):
  config, _, result, lines = searched
  assert result.phase_seconds["supernet"] > 0
  files = os.listdir(os.path.join(config.cache_dir, "supernets"))
  assert sum(f.endswith(".weights.h5") for f in files) == 1
  assert not any(f.endswith(".checkpoints") for f in files)
  assert any(line.startswith("supernet: ") and "trained in" in line
             for line in lines)


def test_a_second_oneshot_search_loads_the_cached_supernet(searched,
                                                           tmp_path):
  config, _, _, _ = searched
  lines = []
  again = loop.run_search(
      search_testing.tiny_search_config(
          config.cache_dir, **dict(ONESHOT, num_candidates=1)),
      str(tmp_path / "again"), log=lines.append)
  assert again.records[0].ok
  assert any(line.startswith("supernet: ") and "cached" in line
             for line in lines)


def test_oneshot_needs_a_sandwich_of_two_paths(tmp_path):
  with pytest.raises(ValueError, match="paths_per_step=1 must be >= 1"):
    search_testing.tiny_search_config(
        str(tmp_path), proxy_mode="oneshot", supernet_paths_per_step=1)


def test_unknown_proxy_mode_is_named(tmp_path):
  with pytest.raises(ValueError, match="proxy_mode='x' is not one of"):
    search_testing.tiny_search_config(str(tmp_path), proxy_mode="x")


if __name__ == "__main__":
  sys.exit(pytest.main([__file__]))
