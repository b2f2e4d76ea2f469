"""Tests of akd_tf.nas.ray_pool: searches on real Ray, node loss, missing
Ray.

The node-loss test starts a Ray cluster of three nodes on this machine
(`ray.cluster_utils.Cluster`: a head without CPUs and two one-CPU worker
nodes), runs a small AKD search on scikit-learn's digits with two candidates
in flight, removes a worker node while it evaluates a candidate, and checks
that the search still records every candidate exactly once, with what any
executor records for it.
"""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import threading
import time

import pytest

from akd_tf.distill import candidate_training
from akd_tf.distill import data as data_lib
from akd_tf.latency import timing
from akd_tf.nas import config as config_lib
from akd_tf.nas import controller as controller_lib
from akd_tf.nas import history
from akd_tf.nas import loop
from akd_tf.nas import reward
from akd_tf.space import arch
from akd_tf.space import builder
from akd_tf.space import profile
from akd_tf.space import search_space
import search_testing

ray = pytest.importorskip("ray")
psutil = pytest.importorskip("psutil")
from ray import cluster_utils  # pylint: disable=g-import-not-at-top,g-bad-import-order

NUM_CANDIDATES = 2
TASK_TITLE = "ray::_evaluate_candidates"


def search_config(cache_dir, **changes):
  """A digits search whose candidates take seconds; one controller step."""
  return search_testing.tiny_search_config(
      cache_dir, num_candidates=NUM_CANDIDATES,
      candidates_per_step=NUM_CANDIDATES, num_workers=2, **changes)


def busy_worker(node):
  """The pid of a Ray worker of `node` evaluating a candidate, or None."""
  raylet = psutil.Process(node.all_processes["raylet"][0].process.pid)
  for child in raylet.children(recursive=True):
    try:
      if " ".join(child.cmdline()).startswith(TASK_TITLE):
        return child.pid
    except psutil.Error:
      continue
  return None


def remove_when_busy(cluster, node, removed, stop):
  """Removes `node` from `cluster` once it is evaluating a candidate."""
  while not stop.is_set():
    pid = busy_worker(node)
    if pid is not None:
      time.sleep(1.0)  # Well inside the candidate (it takes seconds).
      removed["pid"] = pid
      try:
        cluster.remove_node(node, allow_graceful=False)
      except Exception as error:  # pylint: disable=broad-except
        removed["error"] = repr(error)
      return
    time.sleep(0.1)


@pytest.fixture(name="cache_dir", scope="module")
def fixture_cache_dir(tmp_path_factory):
  """The built-in teacher's cache, shared by the searches of this module."""
  return str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(name="cluster")
def fixture_cluster():
  """A head node without CPUs and two worker nodes of one CPU each."""
  cluster = cluster_utils.Cluster(initialize_head=True,
                                  head_node_args={"num_cpus": 0})
  workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
  cluster.wait_for_nodes()
  ray.init(address=cluster.address)
  try:
    yield cluster, workers
  finally:
    ray.shutdown()
    cluster.shutdown()


def read_history(model_dir):
  return history.History(os.path.join(model_dir, "history.jsonl")).read()


def expected_candidates(config, input_shape=(8, 8, 1), num_classes=10):
  """{key: (actions, blocks, params, macs)} of a one-step search: the
  seeded controller's first samples, decoded, built and counted as a
  worker of either executor does."""
  space = search_space.SearchSpace()
  controller = controller_lib.make_controller(
      config.controller, space.num_choices, config.controller_config)
  global_params = dataclasses.replace(config.global_params,
                                      num_classes=num_classes)
  expected = {}
  for index in range(config.candidates_per_step):
    actions = controller.sample()
    blocks = space.decode(actions)
    size = profile.profile_model(builder.build_from_spec(
        arch.ArchSpec(blocks, global_params, input_shape)))
    expected[(0, index)] = (actions, arch.encode_blocks(blocks), size.params,
                            size.macs)
  return expected


@pytest.mark.slow
def test_lost_node_costs_a_retry_and_records_every_candidate_once(
    tmp_path, cache_dir, cluster):
  cluster, workers = cluster
  removed, stop = {}, threading.Event()
  remover = threading.Thread(target=remove_when_busy,
                             args=(cluster, workers[1], removed, stop))
  remover.start()
  config = search_config(cache_dir, executor="ray")
  try:
    result = loop.run_search(config, str(tmp_path / "ray"))
  finally:
    stop.set()
    remover.join()
  assert "pid" in removed, "the node was never seen evaluating a candidate"
  assert "error" not in removed, removed
  records = read_history(str(tmp_path / "ray"))
  keys = [r.key for r in records]
  assert sorted(keys) == [(0, i) for i in range(NUM_CANDIDATES)], keys
  assert all(r.ok for r in records), [r.error for r in records]
  # The removed node's candidate never reported; its retry did, elsewhere.
  assert not [r for r in records
              if r.worker.endswith(f":{removed['pid']}")], (removed, records)
  assert result.best is not None and result.evaluated == NUM_CANDIDATES
  expected = expected_candidates(config)
  for record in records:
    assert (record.actions, record.blocks, record.params, record.macs) == (
        expected[record.key])
    assert 0.0 <= record.accuracy <= 1.0 and record.latency_ms > 0


@pytest.fixture(name="three_on_one_worker", scope="module")
def fixture_three_on_one_worker(tmp_path_factory):
  """Three quick digits candidates on a started one-worker RayPool whose
  worker process is replaced after two: their tasks and records."""
  from akd_tf.nas import evaluate  # pylint: disable=g-import-not-at-top
  from akd_tf.nas import ray_pool  # pylint: disable=g-import-not-at-top
  space = search_space.SearchSpace()
  config = evaluate.EvalConfig(
      data=data_lib.DataConfig(dataset="digits", train_size=256,
                               minival_size=200),
      global_params=arch.GlobalParams(num_classes=10, batch_norm_momentum=0.9,
                                      head_size=32, depth_multiplier=0.25),
      space=space.get_config(),
      train=candidate_training.TrainConfig(epochs=1, batch_size=32,
                                           kd_alpha=0.0),
      reward=reward.RewardConfig(target_ms=0.05),
      latency=timing.LatencyConfig(runs=5, repeats=1, warmup=2),
      latency_cache_path=str(tmp_path_factory.mktemp("ray_pool") /
                             "latency.jsonl"))
  tasks = [evaluate.CandidateTask(0, i, search_testing.quick_actions(i))
           for i in range(3)]
  pool = ray_pool.RayPool(config, num_workers=1, candidates_per_worker=2)
  pool.start()
  try:
    records = list(pool.evaluate(tasks))
  finally:
    pool.shutdown()
  return tasks, records


def test_started_ray_pool_reuses_one_evaluator_per_worker_process(
    three_on_one_worker):
  tasks, records = three_on_one_worker
  assert not ray.is_initialized(), "the pool left its Ray instance running"
  assert [(r.key, r.actions) for r in records] == [
      ((t.step, t.index), t.actions) for t in tasks]
  assert all(r.ok for r in records), [r.error for r in records]
  assert records[0].worker == records[1].worker  # One process, set up once.
  assert records[1].latency_source == "measured"


def test_ray_pool_replaces_a_worker_after_candidates_per_worker(
    three_on_one_worker):
  _, records = three_on_one_worker
  assert all(r.ok for r in records), [r.error for r in records]
  assert records[2].worker != records[1].worker


def test_ray_worker_scores_with_the_supernet_of_the_object_store(
    oneshot_eval_config, tmp_path):
  # The cache moves away once the driver has put the pool's setup: a worker
  # node has no copy of it. Replaced after each candidate, the pool's second
  # worker process builds its scorer after that.
  from akd_tf.nas import ray_pool  # pylint: disable=g-import-not-at-top
  cache_dir = str(tmp_path / "cache")
  shutil.copytree(oneshot_eval_config.cache_dir, cache_dir)
  config = dataclasses.replace(oneshot_eval_config, cache_dir=cache_dir)
  tasks = search_testing.oneshot_tasks(4)
  pool = ray_pool.RayPool(config, num_workers=1, candidates_per_worker=1)
  try:
    (first,) = pool.evaluate(tasks[:1])
    shutil.rmtree(cache_dir)
    chunk = list(pool.evaluate(tasks))  # One chunk: one task.
  finally:
    pool.shutdown()
  assert [r.key for r in chunk] == [(0, i) for i in range(4)]
  assert all(r.ok for r in [first] + chunk), [
      r.error for r in [first] + chunk]
  assert {r.worker for r in chunk} != {first.worker}
  assert len({r.worker for r in chunk}) == 1
  assert chunk[0].accuracy == first.accuracy


def test_ray_executor_without_ray_names_the_install_command(tmp_path):
  code = ("import sys; sys.modules['ray'] = None; "
          "from akd_tf.cli import search; search.run()")
  result = subprocess.run(
      [sys.executable, "-c", code, "--executor=ray", "--dataset=digits",
       f"--model_dir={tmp_path}"], capture_output=True, text=True,
      timeout=300, check=False)
  assert result.returncode != 0
  assert "--executor=ray: Ray is not installed" in result.stderr
  assert "pip install -e .[ray]" in result.stderr
  assert not os.path.exists(tmp_path / "search_config.json")


def test_pool_without_ray_raises_the_install_hint(monkeypatch):
  from akd_tf.nas import ray_pool  # pylint: disable=g-import-not-at-top
  monkeypatch.setitem(sys.modules, "ray", None)
  with pytest.raises(ImportError, match=r"pip install -e \.\[ray\]"):
    ray_pool.RayPool(None, num_workers=1)


@pytest.mark.parametrize("changes, message", [
    ({"executor": "dask"}, "executor='dask' is not one of"),
    ({"ray_address": "auto"}, "apply to executor='ray' only"),
    ({"executor": "ray", "cpus_per_candidate": 0}, "cpus_per_candidate=0"),
    ({"executor": "ray", "gpus_per_candidate": -1}, "gpus_per_candidate=-1"),
])
def test_bad_executor_settings_are_clear_errors(tmp_path, changes, message):
  with pytest.raises(ValueError, match=message):
    search_config(str(tmp_path), **changes)


def test_ray_settings_are_resumable_changes(tmp_path):
  check = config_lib.check_resume_config
  path = tmp_path / "search_config.json"
  check(str(path), search_config(str(tmp_path)).get_config())
  on_ray = search_config(str(tmp_path), executor="ray", ray_address="auto",
                         gpus_per_candidate=0.5).get_config()
  check(str(path), on_ray)  # A local search resumed on Ray: accepted.
  saved = json.loads(path.read_text())
  assert (saved["executor"], saved["ray_address"],
          saved["gpus_per_candidate"]) == ("ray", "auto", 0.5)
  # What the search's outcome depends on still refuses the resume.
  other_seed = search_config(
      str(tmp_path), executor="ray", controller_config=(
          controller_lib.ControllerConfig(seed=9))).get_config()
  with pytest.raises(ValueError, match=r"other settings of "
                     r"\['controller_config'\]"):
    check(str(path), other_seed)


if __name__ == "__main__":
  sys.exit(pytest.main([__file__]))
