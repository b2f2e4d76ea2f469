"""The MnasNet factorized hierarchical search space.

The network is the MobileNetV2 skeleton of seven blocks. For every block the
controller makes six decisions, each an integer index into a short list:

  conv_op      regular conv | depthwise-separable conv | MBConv e3 | MBConv e6
  kernel       3 | 5
  se_ratio     0 | 0.25
  skip         identity residual | no skip
  filters      x0.75 | x1.0 | x1.25 of the skeleton's output filters
  layers       -1 | 0 | +1 layers relative to the skeleton's repeat count;
               for skeleton blocks of one layer the choices are 0 | +1, since
               a block of zero layers would not exist.

The actions of an architecture are the 42 integers in block-major order
(block 0's six decisions, then block 1's, ...). `decode` turns actions into
`BlockArgs`, `encode` turns such blocks back into actions.

Public names: SearchSpace, SkeletonBlock, MOBILENET_V2_SKELETON, DECISIONS.
"""

import dataclasses
import math
from typing import List, Sequence, Tuple

import numpy as np

from akd_tf.space import arch

__all__ = ["DECISIONS", "MOBILENET_V2_SKELETON", "SearchSpace",
           "SkeletonBlock"]

DECISIONS = ("conv_op", "kernel", "se_ratio", "skip", "filters", "layers")
CONV_OPS = ("conv", "dwconv", "mbconv3", "mbconv6")
_CONV_OP_TO_ARGS = {
    "conv": ("regular", 1),
    "dwconv": ("depthwise", 1),
    "mbconv3": ("depthwise", 3),
    "mbconv6": ("depthwise", 6),
}
KERNELS = (3, 5)
SE_RATIOS = (None, 0.25)
SKIPS = (True, False)
FILTER_MULTIPLIERS = (0.75, 1.0, 1.25)


@dataclasses.dataclass(frozen=True)
class SkeletonBlock:
  """One block of the skeleton: MobileNetV2's (t, c, n, s)."""

  expand_ratio: int
  output_filters: int
  num_repeat: int
  stride: int


MOBILENET_V2_SKELETON = (
    SkeletonBlock(1, 16, 1, 1),
    SkeletonBlock(6, 24, 2, 2),
    SkeletonBlock(6, 32, 3, 2),
    SkeletonBlock(6, 64, 4, 2),
    SkeletonBlock(6, 96, 3, 1),
    SkeletonBlock(6, 160, 3, 2),
    SkeletonBlock(6, 320, 1, 1),
)


def _layer_deltas(num_repeat: int) -> Tuple[int, ...]:
  return (-1, 0, 1) if num_repeat > 1 else (0, 1)


class SearchSpace:
  """Maps controller actions to MnasNet blocks and back.

  Args:
    skeleton: The blocks searched over; MobileNetV2's by default.
    stem_size: Input filters of the first block (the stem's output).
  """

  def __init__(self,
               skeleton: Sequence[SkeletonBlock] = MOBILENET_V2_SKELETON,
               stem_size: int = 32):
    if not skeleton:
      raise ValueError("the skeleton needs at least one block")
    self.skeleton = tuple(skeleton)
    self.stem_size = int(stem_size)
    self._choices = []
    for block in self.skeleton:
      self._choices.extend([
          len(CONV_OPS), len(KERNELS), len(SE_RATIOS), len(SKIPS),
          len(FILTER_MULTIPLIERS), len(_layer_deltas(block.num_repeat))])

  def get_config(self) -> dict:
    return {
        "skeleton": [dataclasses.astuple(b) for b in self.skeleton],
        "stem_size": self.stem_size,
    }

  @classmethod
  def from_config(cls, config: dict) -> "SearchSpace":
    return cls(skeleton=[SkeletonBlock(*b) for b in config["skeleton"]],
               stem_size=config["stem_size"])

  @property
  def num_decisions(self) -> int:
    """Number of integers in one architecture's actions."""
    return len(self._choices)

  @property
  def num_choices(self) -> Tuple[int, ...]:
    """Number of options of every decision, in action order."""
    return tuple(self._choices)

  def decision_names(self) -> List[str]:
    """Readable names of the decisions, e.g. 'block3/kernel'."""
    return [f"block{b}/{name}" for b in range(len(self.skeleton))
            for name in DECISIONS]

  def choice_labels(self) -> List[Tuple[str, ...]]:
    """Per decision, in action order, a readable label of every choice:
    conv_op 'conv' | 'dwconv' | 'mbconv3' | 'mbconv6', kernel '3' | '5',
    se_ratio '0' | '0.25', skip 'skip' | 'noskip', filters the block's
    output filters ('24') and layers its layer count ('2')."""
    labels = []
    for block in self.skeleton:
      labels += [
          CONV_OPS,
          tuple(str(k) for k in KERNELS),
          tuple(f"{s or 0:g}" for s in SE_RATIOS),
          tuple("skip" if s else "noskip" for s in SKIPS),
          tuple(str(int(round(block.output_filters * m)))
                for m in FILTER_MULTIPLIERS),
          tuple(str(block.num_repeat + d)
                for d in _layer_deltas(block.num_repeat))]
    return labels

  @property
  def log10_size(self) -> float:
    """log10 of the number of distinct architectures in the space."""
    return float(sum(math.log10(n) for n in self._choices))

  def sample(self, seed=None) -> Tuple[int, ...]:
    """Draws actions uniformly at random.

    Args:
      seed: An int seed or a `numpy.random.Generator`; None for fresh entropy.
    """
    rng = seed if isinstance(seed, np.random.Generator) else (
        np.random.default_rng(seed))
    return tuple(int(rng.integers(n)) for n in self._choices)

  def validate_actions(self, actions: Sequence[int]) -> Tuple[int, ...]:
    """Checks the length and range of `actions`.

    Returns:
      The actions as a tuple of ints.

    Raises:
      ValueError: wrong length, a non-integer, or an index out of range; the
        message names the decision.
    """
    actions = tuple(actions)
    if len(actions) != self.num_decisions:
      raise ValueError(f"expected {self.num_decisions} actions "
                       f"({len(self.skeleton)} blocks x {len(DECISIONS)} "
                       f"decisions), got {len(actions)}")
    names = self.decision_names()
    checked = []
    for i, (value, n) in enumerate(zip(actions, self._choices)):
      if isinstance(value, bool) or not float(value).is_integer():
        raise ValueError(f"action {i} ({names[i]}) = {value!r} is not an "
                         "integer")
      if not 0 <= int(value) < n:
        raise ValueError(f"action {i} ({names[i]}) = {value} is out of range "
                         f"[0, {n - 1}]")
      checked.append(int(value))
    return tuple(checked)

  def decode(self, actions: Sequence[int]) -> Tuple[arch.BlockArgs, ...]:
    """Turns actions into blocks.

    Raises:
      ValueError: see `validate_actions`.
    """
    actions = self.validate_actions(actions)
    blocks = []
    input_filters = self.stem_size
    per_block = len(DECISIONS)
    for b, skeleton_block in enumerate(self.skeleton):
      op, kernel, se, skip, filters, layers = actions[b * per_block:
                                                      (b + 1) * per_block]
      conv_type, expand_ratio = _CONV_OP_TO_ARGS[CONV_OPS[op]]
      output_filters = int(round(skeleton_block.output_filters *
                                 FILTER_MULTIPLIERS[filters]))
      stride = skeleton_block.stride
      blocks.append(arch.BlockArgs(
          kernel_size=KERNELS[kernel],
          num_repeat=(skeleton_block.num_repeat +
                      _layer_deltas(skeleton_block.num_repeat)[layers]),
          input_filters=input_filters,
          output_filters=output_filters,
          expand_ratio=expand_ratio,
          id_skip=SKIPS[skip],
          strides=(stride, stride),
          se_ratio=SE_RATIOS[se],
          conv_type=conv_type))
      input_filters = output_filters
    return tuple(blocks)

  def encode(self, blocks: Sequence[arch.BlockArgs]) -> Tuple[int, ...]:
    """Turns blocks of this space back into actions.

    Raises:
      ValueError: a block is not in the space; the message names the block
        and the field that has no matching choice.
    """
    blocks = tuple(blocks)
    if len(blocks) != len(self.skeleton):
      raise ValueError(f"the space has {len(self.skeleton)} blocks, got "
                       f"{len(blocks)}")
    actions = []
    input_filters = self.stem_size
    for b, (block, skeleton_block) in enumerate(zip(blocks, self.skeleton)):
      text = block.encode()

      def index(options, value, field, text=text, b=b):
        if value not in options:
          raise ValueError(f"block {b} '{text}': {field} {value!r} is not one "
                           f"of the space's choices {options}")
        return options.index(value)

      op = index(tuple(_CONV_OP_TO_ARGS.values()),
                 (block.conv_type, block.expand_ratio), "(conv type, expansion)")
      multipliers = tuple(int(round(skeleton_block.output_filters * m))
                          for m in FILTER_MULTIPLIERS)
      deltas = _layer_deltas(skeleton_block.num_repeat)
      repeats = tuple(skeleton_block.num_repeat + d for d in deltas)
      stride = (skeleton_block.stride, skeleton_block.stride)
      index((stride,), block.strides, "strides")
      index((input_filters,), block.input_filters, "input filters")
      actions.extend([
          op,
          index(KERNELS, block.kernel_size, "kernel size"),
          index(SE_RATIOS, block.se_ratio, "SE ratio"),
          index(SKIPS, block.id_skip, "skip"),
          index(multipliers, block.output_filters, "output filters"),
          index(repeats, block.num_repeat, "repeat count"),
      ])
      input_filters = block.output_filters
    return tuple(actions)
