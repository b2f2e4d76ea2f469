"""Tests of akd_tf.latency.measurer: the search's latency in its three modes,
with the cache and the table."""

import dataclasses
import json
import subprocess
import sys
import textwrap

import pytest

from akd_tf.latency import measurer as measurer_lib
from akd_tf.latency import timing
from latency_testing import FAKE_COMMAND, FAST, tiny_spec


def test_cache_hit_does_not_convert_again(tmp_path):
  cache = str(tmp_path / "latency.jsonl")
  measurer = measurer_lib.LatencyMeasurer("measured", FAST, cache_path=cache)
  first = measurer.measure(tiny_spec())
  second = measurer.measure(tiny_spec())
  assert measurer.num_conversions == 1
  assert (first.cached, second.cached) == (False, True)
  assert second.latency_ms == first.latency_ms
  assert second.stats == first.stats


def test_cache_survives_a_new_process(tmp_path):
  cache = str(tmp_path / "latency.jsonl")
  spec = tiny_spec()
  first = measurer_lib.LatencyMeasurer("measured", FAST,
                                       cache_path=cache).measure(spec)
  spec_path = tmp_path / "arch.json"
  spec.to_json(str(spec_path))
  script = textwrap.dedent(f"""
      import json
      from akd_tf.latency import measurer as measurer_lib
      from akd_tf.latency import timing
      from akd_tf.space import arch
      config = timing.LatencyConfig(warmup=2, runs=10, repeats=2)
      measurer = measurer_lib.LatencyMeasurer("measured", config,
                                              cache_path={cache!r})
      result = measurer.measure(arch.ArchSpec.from_json({str(spec_path)!r}))
      print(json.dumps([result.latency_ms, result.cached,
                        measurer.num_conversions]))
  """)
  child = subprocess.run([sys.executable, "-c", script], capture_output=True,
                         text=True, timeout=120, check=False)
  assert child.returncode == 0, child.stderr
  assert json.loads(child.stdout.splitlines()[-1]) == [first.latency_ms, True,
                                                       0]


def test_command_path_parses_benchmark_model_output(tmp_path):
  measurer = measurer_lib.LatencyMeasurer(
      "command", cache_path=str(tmp_path / "c.jsonl"), command=FAKE_COMMAND)
  result = measurer.measure(tiny_spec())
  assert result.source == "command" and not result.cached
  assert result.latency_ms == pytest.approx(1.05025)
  stats = result.stats
  assert (stats.min_ms, stats.max_ms, stats.median_ms) == pytest.approx(
      (1.002, 1.561, 1.044))
  assert stats.cv == pytest.approx(38 / 1050.25)
  assert stats.samples == 952
  assert measurer.measure(tiny_spec()).cached


def test_lut_mode_measures_then_answers_from_the_table(tmp_path):
  path = str(tmp_path / "lut.json")
  measurer = measurer_lib.LatencyMeasurer("lut", FAST, lut_path=path,
                                          lut_calibration=1)
  first = measurer.measure(tiny_spec())
  assert first.source == "lut" and not first.cached
  conversions = measurer.num_conversions
  assert conversions == 1 + 5 + 1  # overhead, parts, one whole student
  reloaded = measurer_lib.LatencyMeasurer("lut", FAST, lut_path=path,
                                          lut_calibration=1)
  second = reloaded.measure(tiny_spec())
  assert second.cached and reloaded.num_conversions == 0
  assert second.latency_ms == pytest.approx(first.latency_ms)
  assert second.latency_ms == pytest.approx(
      reloaded.lut.calibration[0][1])
  with pytest.raises(ValueError, match="measured with"):
    measurer_lib.LatencyMeasurer("lut", timing.LatencyConfig(threads=2),
                                 lut_path=path)


def test_searches_on_one_machine_share_its_table_under_the_cache_dir(
    tmp_path):
  path = measurer_lib.default_lut_path(str(tmp_path), FAST)
  assert path.startswith(str(tmp_path / "latency"))
  first = measurer_lib.LatencyMeasurer("lut", FAST, lut_path=path,
                                       lut_calibration=1)
  first.measure(tiny_spec())
  again = measurer_lib.LatencyMeasurer(
      "lut", FAST, lut_path=measurer_lib.default_lut_path(str(tmp_path), FAST),
      lut_calibration=1)
  assert again.measure(tiny_spec()).cached and again.num_conversions == 0
  two_threads = dataclasses.replace(FAST, threads=2)
  other = measurer_lib.default_lut_path(str(tmp_path), two_threads)
  assert other != path
  assert not measurer_lib.LatencyMeasurer("lut", two_threads,
                                          lut_path=other).lut.entries


def test_lut_mode_measures_students_whose_weights_overflow_the_cache():
  measurer = measurer_lib.LatencyMeasurer("lut", FAST, lut_max_weight_mb=0.01)
  result = measurer.measure(tiny_spec())
  assert result.source == "measured" and result.stats is not None
  assert measurer.num_conversions == 1 and not measurer.lut.entries


def test_unknown_mode_is_rejected_by_name():
  with pytest.raises(ValueError, match="mode 'fast'"):
    measurer_lib.LatencyMeasurer("fast")


def test_command_mode_rejects_a_template_without_placeholder():
  with pytest.raises(ValueError, match=r"no \{tflite\} placeholder"):
    measurer_lib.LatencyMeasurer("command", command="adb shell benchmark_model")


if __name__ == "__main__":
  sys.exit(pytest.main([__file__]))
