"""Whole-student latencies kept across processes: what, where, with what.

`LatencyCache` is a JSON-lines file of whole-student measurements keyed by
`cache_key` (architecture, timing settings, source, `machine_id`,
`software_id`), shared safely by processes, so a search never measures a
student twice.

Public names: LatencyCache, cache_key, machine_id, software_id.
"""

import functools
import hashlib
import importlib.metadata
import json
import os
import platform
from typing import Optional

from akd_tf import jsonl
from akd_tf.space import arch
from akd_tf.space import builder

__all__ = ["LatencyCache", "cache_key", "machine_id", "software_id"]


@functools.lru_cache(maxsize=None)
def machine_id() -> str:
  """Names this machine for cache keys: OS, architecture, CPU model, cores."""
  cpu = platform.processor()
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          cpu = line.split(":", 1)[1].strip()
          break
  except OSError:
    pass
  return (f"{platform.system()}-{platform.machine()}/{cpu}/"
          f"{os.cpu_count()}cpu")


@functools.lru_cache(maxsize=None)
def software_id() -> str:
  """Names the code that turns a student into a timed graph, for cache keys.

  The versions of TensorFlow (the converter), Keras (the layers), LiteRT
  (the interpreter and XNNPACK) and `builder.BUILDER_VERSION` (how block
  strings become layers): a latency measured by other code is not reused.
  """

  def version(package):
    try:
      return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
      return "?"

  return (f"tensorflow-{version('tensorflow')}/keras-{version('keras')}/"
          f"litert-{version('ai-edge-litert')}/"
          f"builder-{builder.BUILDER_VERSION}")


def cache_key(spec: arch.ArchSpec, settings: dict, source: str,
              machine: str, software: str) -> str:
  """Returns the cache key of one whole-student measurement.

  The key hashes the block strings, global params and input shape, the
  timing `settings` (threads, warm-up, runs, repeats, statistic,
  quantization: `LatencyConfig.timing_settings()`), the source ('measured',
  or 'command:<template>'), the machine (`machine_id()`) and the software
  that built, converted and timed it (`software_id()`).
  """
  description = spec.get_config()
  description.update(settings, source=source, machine=machine,
                     software=software)
  text = json.dumps(description, sort_keys=True)
  return hashlib.sha256(text.encode()).hexdigest()[:32]


class LatencyCache:
  """A JSON-lines file of measured latencies, shared by processes.

  Each `put` appends one line with `akd_tf.jsonl.append` (one `write` under
  an exclusive `flock`, fsync'd), so a killed search keeps every
  measurement it reported and concurrent searches never interleave lines.
  A torn last line left by a killed writer is skipped on reading and cut
  off before the next append. `get` re-reads lines other processes
  appended.

  Args:
    path: The cache file; created (with its directory) on the first `put`.
  """

  def __init__(self, path: str):
    self.path = os.fspath(path)
    self._entries = {}
    self._offset = 0

  def _refresh(self) -> None:
    try:
      with open(self.path, "rb") as f:
        f.seek(self._offset)
        data = f.read()
    except FileNotFoundError:
      return
    end = data.rfind(b"\n") + 1
    for line in data[:end].split(b"\n"):
      try:
        record = json.loads(line)
        self._entries[record["key"]] = record
      except (ValueError, KeyError, TypeError):
        continue  # Blank, or a torn line of a killed writer.
    self._offset += end

  def get(self, key: str) -> Optional[dict]:
    """Returns the record stored under `key`, or None."""
    if key not in self._entries:
      self._refresh()
    return self._entries.get(key)

  def put(self, key: str, record: dict) -> None:
    """Appends `record` (JSON-serializable) under `key`, durably."""
    record = dict(record, key=key)
    os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
    jsonl.append(self.path, record)
    self._entries[key] = record
