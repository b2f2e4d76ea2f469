"""Tests of akd_tf.latency.cache: the shared cache file and its keys."""

import sys

import pytest

from akd_tf.latency import cache as cache_lib
from akd_tf.latency import measurer as measurer_lib
from akd_tf.space import arch
from akd_tf.space import builder
from latency_testing import FAST, tiny_spec


def test_cache_skips_a_torn_line_and_cuts_it_off(tmp_path):
  path = tmp_path / "latency.jsonl"
  cache = cache_lib.LatencyCache(str(path))
  cache.put("a", {"value": 1})
  with open(path, "a") as f:
    f.write('{"key": "b", "val')
  assert cache_lib.LatencyCache(str(path)).get("b") is None
  cache.put("c", {"value": 3})
  reread = cache_lib.LatencyCache(str(path))
  assert reread.get("a")["value"] == 1 and reread.get("c")["value"] == 3
  assert reread.get("b") is None
  assert len(path.read_text().splitlines()) == 2


def test_cache_key_depends_on_shape_threads_machine_and_software():
  spec = tiny_spec()
  settings = FAST.timing_settings()
  key = cache_lib.cache_key(spec, settings, "measured", "m1", "s1")
  other_shape = arch.ArchSpec(spec.blocks, spec.global_params, (32, 32, 3))
  assert key == cache_lib.cache_key(spec, dict(settings), "measured", "m1",
                                    "s1")
  assert key != cache_lib.cache_key(other_shape, settings, "measured", "m1",
                                    "s1")
  assert key != cache_lib.cache_key(spec, dict(settings, threads=2),
                                    "measured", "m1", "s1")
  assert key != cache_lib.cache_key(spec, settings, "measured", "m2", "s1")
  assert key != cache_lib.cache_key(spec, settings, "measured", "m1", "s2")
  assert key != cache_lib.cache_key(spec, settings, "command:adb", "m1",
                                    "s1")


def test_software_id_names_converter_interpreter_and_builder_versions():
  software = cache_lib.software_id()
  for package in ("tensorflow", "keras", "litert"):
    assert f"{package}-" in software and f"{package}-?" not in software
  assert f"builder-{builder.BUILDER_VERSION}" in software


@pytest.fixture(name="fresh_software_id")
def fixture_fresh_software_id():
  cache_lib.software_id.cache_clear()
  yield
  cache_lib.software_id.cache_clear()


def test_cached_latency_is_remeasured_after_a_builder_change(
    tmp_path, monkeypatch, fresh_software_id):
  del fresh_software_id
  path = str(tmp_path / "latency.jsonl")
  first = measurer_lib.LatencyMeasurer(config=FAST, cache_path=path)
  assert not first.measure(tiny_spec()).cached
  same = measurer_lib.LatencyMeasurer(config=FAST, cache_path=path)
  assert same.measure(tiny_spec()).cached and same.num_conversions == 0
  monkeypatch.setattr(builder, "BUILDER_VERSION", builder.BUILDER_VERSION + 1)
  cache_lib.software_id.cache_clear()
  changed = measurer_lib.LatencyMeasurer(config=FAST, cache_path=path)
  assert not changed.measure(tiny_spec()).cached
  assert changed.num_conversions == 1


if __name__ == "__main__":
  sys.exit(pytest.main([__file__]))
