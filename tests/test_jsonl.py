"""Tests of akd_tf.jsonl: durable appends, torn lines, concurrent writers."""

import json
import multiprocessing
import sys

import pytest

from akd_tf import jsonl


def test_records_are_one_sorted_line_each(tmp_path):
  path = str(tmp_path / "log.jsonl")
  jsonl.append(path, {"b": 2, "a": [1, "x"]})
  jsonl.append(path, {"c": None})
  with open(path) as f:
    assert f.read() == '{"a": [1, "x"], "b": 2}\n{"c": null}\n'


def test_a_torn_last_line_is_cut_off_before_the_next_append(tmp_path):
  path = tmp_path / "log.jsonl"
  jsonl.append(str(path), {"step": 0})
  with open(path, "a") as f:
    f.write('{"step": 1, "acti')
  jsonl.append(str(path), {"step": 2})
  assert path.read_text() == '{"step": 0}\n{"step": 2}\n'


def test_a_file_holding_only_a_torn_line_starts_again(tmp_path):
  path = tmp_path / "log.jsonl"
  path.write_text('{"st')
  jsonl.append(str(path), {"step": 0})
  assert path.read_text() == '{"step": 0}\n'


def _append_many(path, writer, count):
  for i in range(count):
    jsonl.append(path, {"writer": writer, "i": i, "pad": "x" * 5000})


def test_concurrent_writers_never_interleave_lines(tmp_path):
  path = str(tmp_path / "log.jsonl")
  context = multiprocessing.get_context("spawn")
  writers = [context.Process(target=_append_many, args=(path, w, 50))
             for w in range(4)]
  for process in writers:
    process.start()
  for process in writers:
    process.join(timeout=120)
    assert process.exitcode == 0
  with open(path) as f:
    records = [json.loads(line) for line in f]
  assert sorted((r["writer"], r["i"]) for r in records) == [
      (w, i) for w in range(4) for i in range(50)]


if __name__ == "__main__":
  sys.exit(pytest.main([__file__]))
