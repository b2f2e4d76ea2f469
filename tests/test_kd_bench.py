"""Tests of benchmarks/kd_bench.py's proxies, run as the benchmark runs them.

Tiny runs on digits in their own processes, as `python
benchmarks/kd_bench.py` runs: one with the oneshot proxy (two architectures,
their stand-alone KD training, a supernet of two updates), and one whose
supernet cannot be built. They share one cache (teacher, latency table).
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The settings of the tiny runs: digits students a quarter wide, trained for
# one epoch on 320 images; a one-epoch teacher; latencies timed briefly.
_TINY_FLAGS = """\
--dataset=digits
--teacher=resnet_wide
--teacher_epochs=1
--proxy_train_size=320
--minival_size=300
--proxy_epochs=1
--proxy_batch_size=32
--final_train_size=320
--final_epochs=1
--final_batch_size=32
--bn_momentum=0.9
--head_size=32
--width_multiplier=0.25
--target_ms=0.05
--latency=lut
--latency_runs=5
--latency_repeats=1
"""
# Two architectures, one stratum as wide as any digits student's latency.
_SELECTION = ["--quick", "--num_archs=2", "--num_repeats=0", "--pool_size=2",
              "--num_strata=1", "--latency_span=0.01,100"]
# Every --supernet_* flag off its default; the step is traced once (about
# 100 s on 2 busy cores) whatever the number of paths per update.
_SUPERNET = ["--supernet_sampling=uniform", "--supernet_steps=2",
             "--supernet_warmup_steps=1", "--supernet_paths_per_step=1"]
# The proxies of main's kd_bench.py, which a run without --proxies scores.
_DEFAULT_PROXIES = ["kd_proxy", "kd_proxy_2x", "kd_proxy_4x", "ce_proxy",
                    "params", "macs", "diswot"]


def _kd_bench(run_dir, cache_dir, *args, extra_flags=""):
  flagfile = run_dir / "tiny.cfg"
  flagfile.write_text(_TINY_FLAGS + extra_flags +
                      f"--cache_dir={cache_dir}\n")
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3",
             CUDA_VISIBLE_DEVICES="")
  return subprocess.run(
      [sys.executable, os.path.join(ROOT, "benchmarks", "kd_bench.py"),
       f"--flagfile={flagfile}", f"--results_dir={run_dir / 'results'}",
       *args], env=env, capture_output=True, text=True, timeout=900,
      check=False, cwd=ROOT)


def _jsonl(path):
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def _latest(records):
  """The last record of each unit, as a resumed run reads them."""
  return {(r["arch"], r["proxy"]): r for r in records}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
  return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def oneshot_run(tmp_path_factory, cache_dir):
  run_dir = tmp_path_factory.mktemp("oneshot")
  proc = _kd_bench(run_dir, cache_dir, *_SELECTION, "--proxies=oneshot",
                   *_SUPERNET)
  assert proc.returncode == 0, proc.stderr[-4000:]
  return run_dir / "results", proc


@pytest.fixture(scope="module")
def unbuildable_run(tmp_path_factory, cache_dir):
  """A run whose supernet cannot be built (it has no stochastic depth): the
  oneshot proxy's prepare raises once the teacher is ready."""
  run_dir = tmp_path_factory.mktemp("unbuildable")
  run = lambda *args: _kd_bench(
      run_dir, cache_dir, *_SELECTION, "--recipes=", *args, *_SUPERNET,
      extra_flags="--drop_connect_rate=0.1\n")
  return run_dir / "results", run("--proxies=oneshot,params"), run


@pytest.mark.slow
def test_oneshot_proxy_scores_every_architecture_through_the_supernet(
    oneshot_run):
  results, _ = oneshot_run
  records = _jsonl(results / "proxy_scores_quick.jsonl")
  assert sorted(r["arch"] for r in records) == ["a00", "a01"]
  # One process for every architecture: the scoring function traced once.
  assert len({r["worker"] for r in records}) == 1, records
  for record in records:
    assert record["proxy"] == "oneshot" and record["status"] == "ok", record
    assert 0.0 <= record["score"] <= 1.0
    # The score of a path does not depend on when it is taken.
    assert record["details"]["first_score_accuracy"] == pytest.approx(
        record["score"], abs=1e-6)
    # Its cost is one score's: the trace of the first is left out.
    assert 0.0 < record["seconds"] < record["details"]["first_score_seconds"]


@pytest.mark.slow
def test_oneshot_supernet_is_trained_once_by_the_supernet_flags(
    oneshot_run, cache_dir):
  results, _ = oneshot_run
  with open(results / "kd_bench_setup_quick.json") as f:
    prepared = json.load(f)["proxy_prepare"]["oneshot"]
  assert prepared["seconds"] > 0 and not prepared["cached"]
  recipe = prepared["recipe"]
  assert (recipe["sampling"], recipe["steps"], recipe["warmup_steps"],
          recipe["paths_per_step"]) == ("uniform", 2, 1, 1)
  assert recipe["kd_alpha"] > 0
  supernets = os.listdir(cache_dir / "supernets")
  assert [f for f in supernets if f.endswith(".weights.h5")] == [
      f"{prepared['key']}.weights.h5"]


@pytest.mark.slow
def test_oneshot_proxy_gets_its_row_in_proxy_fidelity(oneshot_run):
  results, proc = oneshot_run
  with open(results / "proxy_fidelity_quick.json") as f:
    fidelity = json.load(f)
  row, = [r for r in fidelity["q2_fidelity"] if r["proxy"] == "oneshot"]
  assert row["n"] == 2 and row["spearman"] in (-1.0, 1.0)
  assert row["seconds"] > 0 and row["failed"] == 0
  assert fidelity["proxy_prepare"]["oneshot"]["recipe"]["steps"] == 2
  assert "oneshot" in proc.stdout


@pytest.mark.slow
def test_a_run_without_proxies_flag_leaves_the_oneshot_proxy_out(
    oneshot_run, cache_dir, tmp_path):
  results, _ = oneshot_run
  shutil.copytree(results, tmp_path / "results")
  proc = _kd_bench(tmp_path, cache_dir, *_SELECTION, "--analyze_only")
  assert proc.returncode == 0, proc.stderr[-4000:]
  with open(tmp_path / "results" / "proxy_fidelity_quick.json") as f:
    assert list(json.load(f)["proxies"]) == _DEFAULT_PROXIES


@pytest.mark.slow
def test_a_failed_prepare_fails_its_proxys_units_and_the_run_goes_on(
    unbuildable_run):
  results, proc, _ = unbuildable_run
  assert proc.returncode == 0, proc.stderr[-4000:]
  records = _latest(_jsonl(results / "proxy_scores_quick.jsonl"))
  assert sorted(records) == [("a00", "oneshot"), ("a00", "params"),
                             ("a01", "oneshot"), ("a01", "params")]
  for arch in ("a00", "a01"):
    failed = records[arch, "oneshot"]
    assert failed["status"] == "failed"
    assert failed["error"].startswith("preparing proxy oneshot failed: ")
    assert "drop_connect_rate=0.1 is not supported" in failed["error"]
    assert records[arch, "params"]["status"] == "ok"
  with open(results / "proxy_fidelity_quick.json") as f:
    fidelity = json.load(f)
  assert "drop_connect_rate" in fidelity["proxy_prepare"]["oneshot"]["error"]
  row, = [r for r in fidelity["q2_fidelity"] if r["proxy"] == "oneshot"]
  assert row["failed"] == 2


@pytest.mark.slow
def test_retry_failed_prepares_the_failed_proxy_again(unbuildable_run):
  results, _, run = unbuildable_run
  before = _latest(_jsonl(results / "proxy_scores_quick.jsonl"))
  proc = run("--proxies=oneshot,params", "--retry_failed")
  assert proc.returncode == 0, proc.stderr[-4000:]
  assert "preparing proxy oneshot FAILED" in proc.stderr
  after = _latest(_jsonl(results / "proxy_scores_quick.jsonl"))
  for arch in ("a00", "a01"):
    assert after[arch, "oneshot"]["status"] == "failed"
    assert after[arch, "oneshot"]["run_id"] != before[arch, "oneshot"][
        "run_id"]
    assert after[arch, "params"] == before[arch, "params"]


def test_a_supernet_flag_out_of_range_is_named(tmp_path):
  proc = _kd_bench(tmp_path, tmp_path / "cache", *_SELECTION,
                   "--proxies=oneshot", "--supernet_sampling=progressive",
                   "--supernet_paths_per_step=1")
  assert proc.returncode != 0
  assert "--supernet_* (the oneshot proxy's supernet)" in proc.stderr
  assert "paths_per_step=1 must be >= 1" in proc.stderr
  assert not os.path.exists(tmp_path / "results" /
                            "kd_bench_setup_quick.json")


if __name__ == "__main__":
  sys.exit(pytest.main([__file__]))
