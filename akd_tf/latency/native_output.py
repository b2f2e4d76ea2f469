"""The C++ log of TensorFlow's converter and of LiteRT, captured and quoted.

  captured_native_output()  sends file descriptors 1 and 2 to a temporary
                            file while active (the converter prints about
                            150 lines per model)
  captured_tail(capture)    the last lines of that file, for an error message
  tail(text)                the last non-blank lines of a tool's output

Public names: captured_native_output, captured_tail, tail.
"""

import contextlib
import os
import sys
import tempfile
from typing import Iterator

__all__ = ["captured_native_output", "captured_tail", "tail"]

_TAIL_LINES = 15


@contextlib.contextmanager
def captured_native_output() -> Iterator:
  """Sends file descriptors 1 and 2 to a temporary file while active.

  TensorFlow's converter and LiteRT log from C++ straight to the file
  descriptors, so replacing `sys.stderr` does not silence them. The captured
  text is readable inside the block (`capture.seek(0); capture.read()`), so
  errors can quote it. Process-wide: do not print from other threads meanwhile.

  Yields:
    The binary temporary file holding the captured output.
  """
  sys.stdout.flush()
  sys.stderr.flush()
  with tempfile.TemporaryFile() as capture:
    saved = (os.dup(1), os.dup(2))
    try:
      os.dup2(capture.fileno(), 1)
      os.dup2(capture.fileno(), 2)
      yield capture
    finally:
      sys.stdout.flush()
      sys.stderr.flush()
      for fd, saved_fd in enumerate(saved, start=1):
        os.dup2(saved_fd, fd)
        os.close(saved_fd)


def tail(text: str, lines: int = _TAIL_LINES) -> str:
  """The last `lines` non-blank lines of `text`."""
  kept = [line for line in text.strip().splitlines() if line.strip()]
  return "\n".join(kept[-lines:])


def captured_tail(capture) -> str:
  """The last lines captured so far by `captured_native_output`."""
  capture.flush()
  capture.seek(0)
  return tail(capture.read().decode(errors="replace"))
