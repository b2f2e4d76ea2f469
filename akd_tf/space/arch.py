"""Architecture records and the MnasNet block-string format.

A student architecture is a list of `BlockArgs` plus one `GlobalParams`. Each
block is written as a MnasNet block string, e.g.
`r2_k3_s22_e6_i16_o24_se0.25_noskip`, so a searched student can be rebuilt
anywhere from a short JSON file (`ArchSpec.to_json`).

Block-string grammar (tokens joined by `_`, in this canonical order):
  r<int>     number of repeated layers (>= 1)
  k<int>     kernel size (odd, >= 1)
  s<int><int> strides (height, width), each 1 or 2
  e<int>     expansion ratio (>= 1); 1 means no 1x1 expansion conv
  i<int>     input filters of the first layer
  o<int>     output filters
  se<float>  squeeze-and-excitation ratio in (0, 1]; absent means no SE
  conv       optional: a regular kxk convolution instead of a depthwise one
  noskip     optional: no identity residual connection

Public names: BlockArgs, GlobalParams, ArchSpec, decode_block_string,
encode_block_string, decode_blocks, encode_blocks, CONV_TYPES.
"""

import dataclasses
import json
import re
from typing import Optional, Sequence, Tuple

from akd_tf import config_checks

__all__ = [
    "ArchSpec",
    "BlockArgs",
    "CONV_TYPES",
    "GlobalParams",
    "decode_block_string",
    "decode_blocks",
    "encode_block_string",
    "encode_blocks",
]

CONV_TYPES = ("depthwise", "regular")
ACTIVATIONS = ("relu", "relu6", "swish")
_INT_KEYS = ("r", "k", "e", "i", "o")
_FLAG_TOKENS = {"noskip": "noskip", "conv": "conv"}
_TOKEN_RE = re.compile(r"^([a-z]+)(.*)$")


@dataclasses.dataclass(frozen=True)
class BlockArgs:
  """One MnasNet block: `num_repeat` layers of the same operation.

  Attributes:
    kernel_size: Spatial kernel size of the main convolution.
    num_repeat: Number of layers in the block.
    input_filters: Input channels of the first layer.
    output_filters: Output channels of every layer.
    expand_ratio: Channel expansion of the inverted bottleneck.
    id_skip: Whether layers with matching shapes get an identity residual.
    strides: (height, width) strides of the first layer.
    se_ratio: Squeeze-and-excitation ratio, or None for no SE.
    conv_type: 'depthwise' (MBConv) or 'regular' (a full kxk convolution).
  """

  kernel_size: int
  num_repeat: int
  input_filters: int
  output_filters: int
  expand_ratio: int
  id_skip: bool = True
  strides: Tuple[int, int] = (1, 1)
  se_ratio: Optional[float] = None
  conv_type: str = "depthwise"

  def __post_init__(self):
    object.__setattr__(self, "strides", tuple(self.strides))
    _validate_block(self, self.encode())

  def encode(self) -> str:
    """Returns the canonical block string of this block."""
    tokens = [
        f"r{self.num_repeat}",
        f"k{self.kernel_size}",
        "s" + "".join(str(s) for s in self.strides),
        f"e{self.expand_ratio}",
        f"i{self.input_filters}",
        f"o{self.output_filters}",
    ]
    if self.se_ratio is not None:
      tokens.append(f"se{self.se_ratio:g}")
    if self.conv_type == "regular":
      tokens.append("conv")
    if not self.id_skip:
      tokens.append("noskip")
    return "_".join(tokens)

  @classmethod
  def decode(cls, block_string: str) -> "BlockArgs":
    """Parses a block string; see `decode_block_string`."""
    return decode_block_string(block_string)


def _validate_block(block: BlockArgs, text: str) -> None:
  """Raises ValueError naming the field if `block` is not a valid block."""

  def fail(message):
    raise ValueError(f"block '{text}': {message}")

  if block.num_repeat < 1:
    fail(f"repeat count r{block.num_repeat} must be >= 1")
  if block.kernel_size < 1 or block.kernel_size % 2 == 0:
    fail(f"kernel size k{block.kernel_size} must be a positive odd integer")
  if len(block.strides) != 2 or any(s not in (1, 2) for s in block.strides):
    fail(f"strides {block.strides} must be two digits, each 1 or 2 (e.g. s22)")
  if block.expand_ratio < 1:
    fail(f"expansion ratio e{block.expand_ratio} must be >= 1")
  if block.input_filters < 1:
    fail(f"input filters i{block.input_filters} must be >= 1")
  if block.output_filters < 1:
    fail(f"output filters o{block.output_filters} must be >= 1")
  if block.se_ratio is not None and not 0.0 < block.se_ratio <= 1.0:
    fail(f"SE ratio se{block.se_ratio:g} must be in (0, 1]")
  if block.conv_type not in CONV_TYPES:
    fail(f"conv type '{block.conv_type}' is not one of {CONV_TYPES}")


def decode_block_string(block_string: str, index: Optional[int] = None
                        ) -> BlockArgs:
  """Parses one MnasNet block string into a `BlockArgs`.

  Args:
    block_string: e.g. 'r2_k3_s22_e6_i16_o24_se0.25'.
    index: Position of the block in its list, used in error messages.

  Returns:
    The decoded `BlockArgs`.

  Raises:
    ValueError: the string has an unknown or repeated key, lacks a required
      key, or a value is malformed or out of range. The message names the
      block and the field.
  """
  where = f"block {index} " if index is not None else "block "
  if not isinstance(block_string, str) or not block_string.strip():
    raise ValueError(f"{where}{block_string!r}: empty block string")
  text = block_string.strip()

  def fail(message):
    raise ValueError(f"{where}'{text}': {message}")

  options = {}
  flags = set()
  for token in text.split("_"):
    if token in _FLAG_TOKENS:
      if token in flags:
        fail(f"token '{token}' appears twice")
      flags.add(token)
      continue
    match = _TOKEN_RE.match(token)
    if not match or not match.group(2):
      fail(f"unknown token '{token}' (expected one of r,k,s,e,i,o,se followed "
           "by a number, or 'conv', 'noskip')")
    key, value = match.groups()
    if key not in _INT_KEYS + ("s", "se"):
      fail(f"unknown key '{key}' in token '{token}'")
    if key in options:
      fail(f"key '{key}' appears twice")
    options[key] = value

  for key, name in (("r", "repeat count"), ("k", "kernel size"),
                    ("s", "stride"), ("e", "expansion ratio"),
                    ("i", "input filters"), ("o", "output filters")):
    if key not in options:
      fail(f"missing {name} ('{key}' field)")
  ints = {}
  for key in _INT_KEYS:
    if not options[key].isdigit():
      fail(f"field '{key}' needs a non-negative integer, got '{options[key]}'")
    ints[key] = int(options[key])
  if not re.fullmatch(r"\d\d", options["s"]):
    fail(f"stride 's{options['s']}' must be two digits (height, width), e.g. "
         "s11 or s22")
  se_ratio = None
  if "se" in options:
    try:
      se_ratio = float(options["se"])
    except ValueError:
      fail(f"SE ratio 'se{options['se']}' is not a number")
  try:
    return BlockArgs(
        kernel_size=ints["k"],
        num_repeat=ints["r"],
        input_filters=ints["i"],
        output_filters=ints["o"],
        expand_ratio=ints["e"],
        id_skip="noskip" not in flags,
        strides=(int(options["s"][0]), int(options["s"][1])),
        se_ratio=se_ratio,
        conv_type="regular" if "conv" in flags else "depthwise")
  except ValueError as error:
    raise ValueError(f"{where}{str(error)[len('block '):]}") from None


def encode_block_string(block: BlockArgs) -> str:
  """Returns the canonical MnasNet block string of `block`."""
  return block.encode()


def decode_blocks(block_strings: Sequence[str]) -> Tuple[BlockArgs, ...]:
  """Decodes a list of block strings and checks that they chain.

  Args:
    block_strings: Block strings in network order.

  Returns:
    A tuple of `BlockArgs`.

  Raises:
    ValueError: a string is malformed, the list is empty, or a block's input
      filters differ from the previous block's output filters.
  """
  if isinstance(block_strings, str):
    raise ValueError(f"expected a list of block strings, got the single string "
                     f"{block_strings!r}")
  if not block_strings:
    raise ValueError("an architecture needs at least one block string")
  blocks = tuple(
      decode_block_string(s, index=i) for i, s in enumerate(block_strings))
  for i in range(1, len(blocks)):
    if blocks[i].input_filters != blocks[i - 1].output_filters:
      raise ValueError(
          f"block {i} '{block_strings[i]}': input filters "
          f"i{blocks[i].input_filters} do not match the output filters "
          f"o{blocks[i - 1].output_filters} of block {i - 1}")
  return blocks


def encode_blocks(blocks: Sequence[BlockArgs]) -> Tuple[str, ...]:
  """Returns the canonical block strings of `blocks`."""
  return tuple(block.encode() for block in blocks)


@dataclasses.dataclass(frozen=True)
class GlobalParams:
  """Network-wide settings of a student (the MnasNet `GlobalParams`).

  Attributes:
    num_classes: Number of output logits.
    batch_norm_momentum: BatchNormalization momentum. Short proxy training
      needs about 0.9; the MnasNet default 0.99 leaves BN statistics at their
      initial values after a few hundred steps.
    batch_norm_epsilon: BatchNormalization epsilon.
    dropout_rate: Dropout before the classifier.
    drop_connect_rate: Stochastic-depth rate of the last block, scaled
      linearly from 0 over the blocks.
    depth_multiplier: Width multiplier applied to every filter count.
    depth_divisor: Filters are rounded to a multiple of this when
      `depth_multiplier` is not 1.
    min_depth: Lower bound of a rounded filter count (default: the divisor).
    stem_size: Filters of the 3x3 stride-2 stem convolution.
    stem_strides: Stride of the stem (2 in MnasNet; 1 suits tiny images).
    head_size: Filters of the final 1x1 convolution (1280 in MnasNet).
    activation: 'relu' (MnasNet), 'relu6' (MobileNetV2) or 'swish'.
  """

  num_classes: int = 1000
  batch_norm_momentum: float = 0.99
  batch_norm_epsilon: float = 1e-3
  dropout_rate: float = 0.2
  drop_connect_rate: float = 0.0
  depth_multiplier: float = 1.0
  depth_divisor: int = 8
  min_depth: Optional[int] = None
  stem_size: int = 32
  stem_strides: int = 2
  head_size: int = 1280
  activation: str = "relu"

  def __post_init__(self):
    checks = (
        (self.num_classes >= 1, f"num_classes={self.num_classes} must be >= 1"),
        (0.0 <= self.batch_norm_momentum < 1.0,
         f"batch_norm_momentum={self.batch_norm_momentum} must be in [0, 1)"),
        (self.batch_norm_epsilon > 0,
         f"batch_norm_epsilon={self.batch_norm_epsilon} must be > 0"),
        (0.0 <= self.dropout_rate < 1.0,
         f"dropout_rate={self.dropout_rate} must be in [0, 1)"),
        (0.0 <= self.drop_connect_rate < 1.0,
         f"drop_connect_rate={self.drop_connect_rate} must be in [0, 1)"),
        (self.depth_multiplier > 0,
         f"depth_multiplier={self.depth_multiplier} must be > 0"),
        (self.depth_divisor >= 1,
         f"depth_divisor={self.depth_divisor} must be >= 1"),
        (self.stem_size >= 1, f"stem_size={self.stem_size} must be >= 1"),
        (self.stem_strides in (1, 2),
         f"stem_strides={self.stem_strides} must be 1 or 2"),
        (self.head_size >= 1, f"head_size={self.head_size} must be >= 1"),
        (self.activation in ACTIVATIONS,
         f"activation='{self.activation}' is not one of {ACTIVATIONS}"),
    )
    config_checks.require(checks, "GlobalParams")

  def get_config(self) -> dict:
    """Returns the fields as a flat JSON-serializable dict."""
    return dataclasses.asdict(self)

  @classmethod
  def from_config(cls, config: dict) -> "GlobalParams":
    """Builds from `get_config()` output; rejects unknown keys by name."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(config) - known)
    if unknown:
      raise ValueError(f"GlobalParams: unknown keys {unknown}; known keys are "
                       f"{sorted(known)}")
    return cls(**config)


@dataclasses.dataclass(frozen=True)
class ArchSpec:
  """Everything needed to rebuild a student: blocks, globals, input shape.

  Attributes:
    blocks: The blocks in network order.
    global_params: Network-wide settings.
    input_shape: (height, width, channels) of one input image.
  """

  blocks: Tuple[BlockArgs, ...]
  global_params: GlobalParams
  input_shape: Tuple[int, int, int]

  def __post_init__(self):
    object.__setattr__(self, "blocks", tuple(self.blocks))
    object.__setattr__(self, "input_shape",
                       tuple(int(d) for d in self.input_shape))
    if len(self.input_shape) != 3 or min(self.input_shape) < 1:
      raise ValueError(f"input_shape {self.input_shape} must be three positive "
                       "integers (height, width, channels)")
    decode_blocks(encode_blocks(self.blocks))

  @property
  def block_strings(self) -> Tuple[str, ...]:
    return encode_blocks(self.blocks)

  def get_config(self) -> dict:
    """Returns a flat JSON-serializable description."""
    return {
        "blocks": list(self.block_strings),
        "global_params": self.global_params.get_config(),
        "input_shape": list(self.input_shape),
    }

  @classmethod
  def from_config(cls, config: dict) -> "ArchSpec":
    """Builds from `get_config()` output.

    Raises:
      ValueError: a key is missing or a block string is malformed.
    """
    missing = {"blocks", "input_shape"} - set(config)
    if missing:
      raise ValueError(f"architecture description lacks keys {sorted(missing)}")
    return cls(
        blocks=decode_blocks(config["blocks"]),
        global_params=GlobalParams.from_config(config.get("global_params", {})),
        input_shape=config["input_shape"])

  def to_json(self, path: str) -> None:
    """Writes the description to `path` as indented JSON."""
    with open(path, "w") as f:
      json.dump(self.get_config(), f, indent=2)
      f.write("\n")

  @classmethod
  def from_json(cls, path: str) -> "ArchSpec":
    """Reads a description written by `to_json`.

    Raises:
      FileNotFoundError: `path` does not exist.
      ValueError: the file is not valid JSON or not an architecture.
    """
    with open(path) as f:
      try:
        config = json.load(f)
      except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(config, dict):
      raise ValueError(f"{path}: expected a JSON object with 'blocks'")
    try:
      return cls.from_config(config)
    except ValueError as error:
      raise ValueError(f"{path}: {error}") from None
