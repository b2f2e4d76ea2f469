"""What goes wrong when a latency is measured.

Every failure of conversion, timing or an on-device command is a
`LatencyError`, so a caller (a search candidate, akd-latency) catches one
class and reports its message, which says what failed and quotes the end of
the tool's own output.

Public names: LatencyError, ConversionError, CommandError.
"""

__all__ = ["CommandError", "ConversionError", "LatencyError"]


class LatencyError(RuntimeError):
  """A latency could not be obtained; the message says why."""


class ConversionError(LatencyError):
  """A Keras model could not be converted to TFLite."""


class CommandError(LatencyError):
  """An on-device command failed or printed no timing."""
