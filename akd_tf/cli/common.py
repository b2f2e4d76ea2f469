"""Flags shared by the akd_tf apps and their conversion to config objects.

Every app that takes an architecture (`akd-arch`, `akd-latency`, `akd-train`)
imports this module, which defines the flags once:
  --preset | --blocks | --arch_json   where the architecture comes from
  --image_size, --channels, --num_classes, --width_multiplier,
  --bn_momentum, --activation         how it is built
"""

import json

from absl import app
from absl import flags

from akd_tf.space import arch
from akd_tf.space import builder

PRESET = flags.DEFINE_enum(
    "preset", None, sorted(builder.PRESETS),
    "Named architecture. Exactly one of --preset, --blocks, --arch_json.")
BLOCKS = flags.DEFINE_list(
    "blocks", None,
    "Comma-separated MnasNet block strings, e.g. "
    "'r1_k3_s11_e1_i32_o16,r2_k3_s22_e6_i16_o24_se0.25'.")
ARCH_JSON = flags.DEFINE_string(
    "arch_json", None,
    "Path of an arch.json written by akd-search (blocks, global params, "
    "input shape). --image_size/--channels/--num_classes override it only "
    "when given explicitly.")
IMAGE_SIZE = flags.DEFINE_integer("image_size", 224,
                                  "Input height and width in pixels.")
CHANNELS = flags.DEFINE_integer("channels", 3, "Input channels.")
NUM_CLASSES = flags.DEFINE_integer("num_classes", 1000, "Output classes.")
WIDTH_MULTIPLIER = flags.DEFINE_float(
    "width_multiplier", 1.0, "Depth multiplier applied to every filter count.")
BN_MOMENTUM = flags.DEFINE_float(
    "bn_momentum", 0.99,
    "BatchNormalization momentum; use 0.9 for short proxy training.")
ACTIVATION = flags.DEFINE_enum(
    "activation", None, list(arch.ACTIVATIONS),
    "Activation; default: the preset's, or relu.")


def _usage(flag_name, error):
  raise app.UsageError(f"--{flag_name}: {error}")


def arch_spec_from_flags() -> arch.ArchSpec:
  """Returns the `ArchSpec` the architecture flags describe.

  Raises:
    app.UsageError: not exactly one source is given, or its content is
      invalid; the message names the flag.
  """
  given = [name for name, flag in (("preset", PRESET), ("blocks", BLOCKS),
                                   ("arch_json", ARCH_JSON))
           if flag.value is not None]
  if len(given) != 1:
    raise app.UsageError("give exactly one of --preset, --blocks, --arch_json"
                         f" (got {', '.join('--' + g for g in given) or 'none'})")
  overrides = {}
  for name, flag, key in (("width_multiplier", WIDTH_MULTIPLIER,
                           "depth_multiplier"),
                          ("bn_momentum", BN_MOMENTUM, "batch_norm_momentum"),
                          ("num_classes", NUM_CLASSES, "num_classes"),
                          ("activation", ACTIVATION, "activation")):
    if flags.FLAGS[name].present or (given[0] != "arch_json" and
                                     flag.value is not None):
      overrides[key] = flag.value
  input_shape = (IMAGE_SIZE.value, IMAGE_SIZE.value, CHANNELS.value)
  if given[0] == "arch_json":
    try:
      spec = arch.ArchSpec.from_json(ARCH_JSON.value)
    except (OSError, ValueError) as error:
      _usage("arch_json", error)
    shape = list(spec.input_shape)
    if flags.FLAGS["image_size"].present:
      shape[:2] = [IMAGE_SIZE.value] * 2
    if flags.FLAGS["channels"].present:
      shape[2] = CHANNELS.value
    config = spec.global_params.get_config()
    config.update(overrides)
    try:
      return arch.ArchSpec(spec.blocks, arch.GlobalParams(**config), shape)
    except ValueError as error:
      _usage("arch_json", error)
  if given[0] == "preset":
    block_strings = builder.preset_block_strings(PRESET.value)
    make_params = lambda: builder.preset_global_params(PRESET.value,
                                                       **overrides)
  else:
    block_strings = BLOCKS.value
    make_params = lambda: arch.GlobalParams(**overrides)
  try:
    blocks = arch.decode_blocks(block_strings)
  except ValueError as error:
    _usage(given[0], error)
  try:
    return arch.ArchSpec(blocks, make_params(), input_shape)
  except ValueError as error:
    _usage("image_size" if "input_shape" in str(error) else given[0], error)


def print_json_line(record: dict) -> None:
  """Prints `record` as one JSON line on stdout."""
  print(json.dumps(record, sort_keys=True), flush=True)
