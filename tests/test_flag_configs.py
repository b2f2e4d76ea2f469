"""Tests of akd_tf.cli.flag_configs: akd-search's flags and the library's
config dataclasses have the same defaults."""

import dataclasses
import sys

from absl import flags
import pytest

from akd_tf.cli import flag_configs
from akd_tf.nas import config as config_lib

# Every flag search_config_from_flags reads -> the SearchConfig field it
# sets, as a dotted path.
FIELD_OF_FLAG = {
    "dataset": "data.dataset", "data_dir": "data.data_dir",
    "download": "data.download", "image_size": "data.image_size",
    "proxy_train_size": "data.train_size",
    "minival_size": "data.minival_size", "data_seed": "data.seed",
    "teacher": "teacher", "teacher_output": "teacher_output",
    "teacher_epochs": "teacher_recipe.epochs", "cache_dir": "cache_dir",
    "bn_momentum": "global_params.batch_norm_momentum",
    "width_multiplier": "global_params.depth_multiplier",
    "activation": "global_params.activation",
    "head_size": "global_params.head_size",
    "stem_strides": "global_params.stem_strides",
    "dropout_rate": "global_params.dropout_rate",
    "drop_connect_rate": "global_params.drop_connect_rate",
    "reward_accuracy": "reward_accuracy", "controller": "controller",
    "num_candidates": "num_candidates",
    "candidates_per_step": "candidates_per_step", "seed": "proxy.seed",
    "controller_learning_rate": "controller_config.learning_rate",
    "entropy_weight": "controller_config.entropy_weight",
    "baseline_decay": "controller_config.baseline_decay",
    "reward": "reward.kind", "target_ms": "reward.target_ms",
    "reward_alpha": "reward.alpha", "reward_beta": "reward.beta",
    "proxy_epochs": "proxy.epochs", "proxy_batch_size": "proxy.batch_size",
    "proxy_learning_rate": "proxy.learning_rate",
    "optimizer": "proxy.optimizer", "kd_alpha": "proxy.kd_alpha",
    "kd_temperature": "proxy.kd_temperature",
    "bn_recalibration_images": "proxy.bn_recalibration_images",
    "final_epochs": "final.epochs", "final_train_size": "final_train_size",
    "final_learning_rate": "final.learning_rate",
    "final_batch_size": "final.batch_size", "latency": "latency_mode",
    "latency_command": "latency_command",
    "latency_threads": "latency.threads", "latency_runs": "latency.runs",
    "latency_repeats": "latency.repeats",
    "latency_pause_ms": "latency.pause_ms", "num_workers": "num_workers",
    "threads_per_worker": "threads_per_worker", "executor": "executor",
    "ray_address": "ray_address",
    "cpus_per_candidate": "cpus_per_candidate",
    "gpus_per_candidate": "gpus_per_candidate", "export": "export",
    "candidates_per_worker": "candidates_per_worker",
    "worker_onednn": "worker_onednn", "worker_allocator": "worker_allocator",
    "strategy": "strategy", "tpu": "tpu", "proxy": "proxy_mode",
    "supernet_steps": "supernet_steps",
    "supernet_sampling": "supernet_sampling",
    "supernet_paths_per_step": "supernet_paths_per_step",
    "supernet_warmup_steps": "supernet_warmup_steps",
    "oneshot_calibration_images": "oneshot.calibration_images",
    "oneshot_candidates_per_task": "oneshot_candidates_per_task",
}
# Flags that set no SearchConfig field: akd-search applies them to the
# process before TensorFlow starts.
PROCESS_FLAGS = {"logical_cpus"}
# Fields whose own dataclass serves more than the search, so its default
# is not the search's flag's; SearchConfig's default sub-config carries the
# search's value (checked by the whole-tree test).
SHARED_FIELDS = {
    # DataConfig also reads akd-train's and akd-export's data: None is all
    # images and the dataset's own hold-out.
    "proxy_train_size": "data.train_size",
    "minival_size": "data.minival_size",
    # One TrainConfig.epochs for the proxy (1), final (5) and akd-train's
    # (--epochs=10) recipes.
    "proxy_epochs": "proxy.epochs", "final_epochs": "final.epochs",
    # GlobalParams is MnasNet's, as akd-arch's --bn_momentum=0.99; short
    # proxy runs need 0.9.
    "bn_momentum": "global_params.batch_norm_momentum",
    # RewardConfig has no default target: the latency budget is the user's.
    "target_ms": "reward.target_ms",
}


@pytest.fixture(name="from_flags", scope="module")
def fixture_from_flags() -> config_lib.SearchConfig:
  """The SearchConfig of akd-search run without flags."""
  values = flags.FlagValues()
  flag_configs.define_all_flags(values)
  values.mark_as_parsed()
  return flag_configs.search_config_from_flags(values)


def _holder(config, path: str):
  """The config object holding the field at dotted `path`."""
  for parent in path.split(".")[:-1]:
    config = getattr(config, parent)
  return config


def _own_default(cls, name: str, built):
  """The field's value in `cls` built with its defaults (a required field
  of another name, RewardConfig's target, taken from `built`)."""
  required = {f.name: getattr(built, f.name) for f in dataclasses.fields(cls)
              if f.default is dataclasses.MISSING and
              f.default_factory is dataclasses.MISSING}
  return getattr(cls(**required), name)


def test_every_flag_is_mapped_to_a_field():
  values = flags.FlagValues()
  flag_configs.define_all_flags(values)
  assert set(values) == set(FIELD_OF_FLAG) | PROCESS_FLAGS


def test_a_search_config_without_arguments_is_akd_search_without_flags(
    from_flags):
  expected = from_flags.get_config()
  # num_classes comes from the data; the flags leave a placeholder.
  del expected["global_params"]["num_classes"]
  actual = config_lib.SearchConfig().get_config()
  del actual["global_params"]["num_classes"]
  assert actual == expected


@pytest.mark.parametrize("flag", sorted(set(FIELD_OF_FLAG) -
                                        set(SHARED_FIELDS)))
def test_each_config_dataclass_default_is_its_flags_default(flag,
                                                            from_flags):
  built = _holder(from_flags, FIELD_OF_FLAG[flag])
  name = FIELD_OF_FLAG[flag].rsplit(".", 1)[-1]
  value, default = getattr(built, name), _own_default(type(built), name,
                                                      built)
  assert default == value, (f"--{flag} gives {value!r} but "
                            f"{type(built).__name__}.{name} defaults to "
                            f"{default!r}")


if __name__ == "__main__":
  sys.exit(pytest.main([__file__]))
