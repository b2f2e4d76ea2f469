"""Tests of benchmarks/kd_bench.py's proxies, run as the benchmark runs them.

One tiny run on digits (two architectures, their stand-alone KD training,
the oneshot proxy's supernet of a few progressive updates) in its own
process, as `python benchmarks/kd_bench.py` runs.
"""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The settings of the tiny run: digits students a quarter wide, trained for
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
_SUPERNET = ["--supernet_sampling=progressive", "--supernet_steps=4",
             "--supernet_warmup_steps=1", "--supernet_paths_per_step=2"]


def _kd_bench(tmp_path, *args):
  flagfile = tmp_path / "tiny.cfg"
  flagfile.write_text(_TINY_FLAGS + f"--cache_dir={tmp_path / 'cache'}\n")
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3",
             CUDA_VISIBLE_DEVICES="")
  return subprocess.run(
      [sys.executable, os.path.join(ROOT, "benchmarks", "kd_bench.py"),
       f"--flagfile={flagfile}", f"--results_dir={tmp_path / 'results'}",
       *args], env=env, capture_output=True, text=True, timeout=900,
      check=False, cwd=ROOT)


def _jsonl(path):
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="module")
def oneshot_run(tmp_path_factory):
  tmp_path = tmp_path_factory.mktemp("kd_bench")
  proc = _kd_bench(tmp_path, *_SELECTION, "--proxies=oneshot", *_SUPERNET)
  assert proc.returncode == 0, proc.stderr[-4000:]
  return tmp_path, proc


@pytest.mark.slow
def test_oneshot_proxy_scores_every_architecture_through_the_supernet(
    oneshot_run):
  tmp_path, _ = oneshot_run
  results = tmp_path / "results"
  records = _jsonl(results / "proxy_scores_quick.jsonl")
  assert sorted(r["arch"] for r in records) == ["a00", "a01"]
  for record in records:
    assert record["proxy"] == "oneshot" and record["status"] == "ok", record
    assert 0.0 <= record["score"] <= 1.0
    # The score of a path does not depend on when it is taken.
    assert record["details"]["first_score_accuracy"] == pytest.approx(
        record["score"], abs=1e-6)
    # Its cost is one score's: the trace of the first is left out.
    assert 0.0 < record["seconds"] < record["details"]["first_score_seconds"]


@pytest.mark.slow
def test_oneshot_supernet_is_trained_once_by_the_supernet_flags(oneshot_run):
  tmp_path, _ = oneshot_run
  with open(tmp_path / "results" / "kd_bench_setup_quick.json") as f:
    prepared = json.load(f)["proxy_prepare"]["oneshot"]
  assert prepared["seconds"] > 0 and not prepared["cached"]
  recipe = prepared["recipe"]
  assert (recipe["sampling"], recipe["steps"], recipe["warmup_steps"],
          recipe["paths_per_step"]) == ("progressive", 4, 1, 2)
  assert recipe["kd_alpha"] > 0
  supernets = os.listdir(tmp_path / "cache" / "supernets")
  assert [f for f in supernets if f.endswith(".weights.h5")] == [
      f"{prepared['key']}.weights.h5"]


@pytest.mark.slow
def test_oneshot_proxy_gets_its_row_in_proxy_fidelity(oneshot_run):
  tmp_path, proc = oneshot_run
  with open(tmp_path / "results" / "proxy_fidelity_quick.json") as f:
    fidelity = json.load(f)
  row, = [r for r in fidelity["q2_fidelity"] if r["proxy"] == "oneshot"]
  assert row["n"] == 2 and row["spearman"] in (-1.0, 1.0)
  assert row["seconds"] > 0 and row["failed"] == 0
  assert fidelity["proxy_prepare"]["oneshot"]["recipe"]["steps"] == 4
  assert "oneshot" in proc.stdout


def test_a_supernet_flag_out_of_range_is_named(tmp_path):
  proc = _kd_bench(tmp_path, *_SELECTION, "--proxies=oneshot",
                   "--supernet_sampling=progressive",
                   "--supernet_paths_per_step=1")
  assert proc.returncode != 0
  assert "--supernet_* (the oneshot proxy's supernet)" in proc.stderr
  assert "paths_per_step=1 must be >= 1" in proc.stderr
  assert not os.path.exists(tmp_path / "results" /
                            "kd_bench_setup_quick.json")


if __name__ == "__main__":
  sys.exit(pytest.main([__file__]))
