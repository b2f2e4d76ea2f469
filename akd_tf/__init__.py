"""akd_tf: Architecture-aware Knowledge Distillation on the MnasNet stack.

Modules, lowest first (each imports only those before it):
  config_checks the validation loop of every config dataclass
  arch          BlockArgs/GlobalParams/ArchSpec and MnasNet block strings
  search_space  the factorized hierarchical space: actions <-> blocks
  builder       Keras functional students and the named presets
  profile       parameter and MAC counts
"""

__version__ = "0.1.0"
