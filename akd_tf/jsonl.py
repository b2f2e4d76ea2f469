"""Crash-safe appends to JSON-lines files, shared by processes.

`append` is the one writer of the project's append-only stores: the
search's history (`akd_tf.nas.history`) and the latency cache
(`akd_tf.latency.cache`). Each reads its file its own way.
`write_json_atomic` replaces a whole JSON file at once (the info files
beside cached teachers and supernets).

Public names: append, write_json_atomic.
"""

import fcntl
import json
import os

__all__ = ["append", "write_json_atomic"]


def append(path: str, record: dict) -> None:
  """Appends `record` to the JSON-lines file `path` as one line, durably.

  The line (keys sorted) is written in one `write` under an exclusive
  `flock` and fsync'd before this returns, so concurrent writers never
  interleave lines and a killed process keeps every record it appended. A
  torn last line, left by a writer killed in the middle of its write, is
  cut off first: under the lock no writer is still at it, and it was never
  acknowledged.

  Args:
    path: The file; created if missing (its directory must exist).
    record: A JSON-serializable dict.
  """
  line = (json.dumps(record, sort_keys=True) + "\n").encode()
  fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX)
    _drop_torn_tail(fd)
    os.write(fd, line)
    os.fsync(fd)
  finally:
    os.close(fd)


def _drop_torn_tail(fd: int) -> None:
  """Truncates the file after its last complete line."""
  size = os.fstat(fd).st_size
  if not size or os.pread(fd, 1, size - 1) == b"\n":
    return
  data = os.pread(fd, size, 0)
  os.ftruncate(fd, data.rfind(b"\n") + 1)


def write_json_atomic(path: str, record: dict) -> None:
  """Writes `record` as the JSON file `path`, replacing it in one step.

  The record (keys sorted, indented) goes to a file of its own beside
  `path`, which then replaces `path`: a reader sees the old file or the
  new one, never a part.
  """
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump(record, f, indent=2, sort_keys=True)
    f.write("\n")
  os.replace(tmp, path)
