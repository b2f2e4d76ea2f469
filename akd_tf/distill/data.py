"""Datasets for distillation and search: splits, fingerprints, tf.data.

Every dataset is loaded as three splits:
  train    what students and teachers are trained on;
  minival  held out FROM THE TRAINING SET (as MnasNet held out 50K ImageNet
           training images), the accuracy a search rewards;
  test     the dataset's own test split, never used by a search, only to
           report final accuracy.

Images are float32 in [0, 1] with shape (height, width, channels); labels
are int32 class indices. A student trained on these pipelines, and the model
exported from it, therefore expects float32 images scaled to [0, 1].

Sources (`DataConfig.dataset`):
  'fashion_mnist'  Debian's `dataset-fashion-mnist` idx files, read offline
                   from /usr/share/datasets/fashion-mnist (or `data_dir`);
                   28x28x1, 10 classes, 60K train + 10K test images.
  'digits'         scikit-learn's bundled 8x8x1 digits, 10 classes, 1797
                   images (the fastest tests); a fixed 20% is the test split.
  'folder:PATH'    the user's images, one sub-folder per class, read into
                   memory (`akd_tf.distill.image_folder`); a test/ sub-folder or a
                   fixed 20% is the test split.
  any other name   a tensorflow-datasets dataset (e.g. 'imagenet2012') from
                   `data_dir`, with `download=False` unless asked, since an
                   offline download hangs for minutes before failing.

The mini-val split is a seeded random sample of the training set
(`DataConfig.seed`): single images for data held in memory, up to 100
blocks of consecutive images for tensorflow-datasets (streamed from disk;
tfds shuffles a dataset when it prepares it, so blocks are random samples,
and a pass over them reads the files that hold them, not the whole split).

Public names: DataConfig, Split, Data, load_data, make_dataset, take,
arrays, IMAGES_KEY, TEACHER_LOGITS_KEY, FASHION_MNIST_DIR.
"""

import dataclasses
import gzip
import hashlib
import os
from typing import Callable, Optional, Tuple

import numpy as np
import tensorflow as tf

from akd_tf import config_checks
from akd_tf.distill import image_folder

__all__ = ["DataConfig", "Data", "FASHION_MNIST_DIR", "IMAGES_KEY", "Split",
           "TEACHER_LOGITS_KEY", "arrays", "load_data", "make_dataset", "take"]

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
# Keys of the input dict of a batch that carries cached teacher logits.
IMAGES_KEY = "images"
TEACHER_LOGITS_KEY = "teacher_logits"
_EMBEDDED = ("fashion_mnist", "digits")
_FASHION_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_MAX_DEFAULT_MINIVAL = 10000
# The most blocks a streamed dataset's mini-val split is made of.
_MINIVAL_BLOCKS = 100


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """Which data to load and how much of it.

  Attributes:
    dataset: 'fashion_mnist', 'digits', 'folder:PATH' (a folder of class
      sub-folders) or a tensorflow-datasets name.
    data_dir: Where the data lies: the idx files for 'fashion_mnist' (default
      /usr/share/datasets/fashion-mnist), the tfds data_dir for tfds names
      (default: tfds' own, ~/tensorflow_datasets). Unused for 'digits' and
      folders.
    image_size: Resize images to image_size x image_size; None keeps the
      native size (required for datasets whose images vary in size).
    train_size: At most this many training images (None: all that remain
      after the minival split is carved out).
    minival_size: Images held out from the training set for minival. None:
      10% of the training set, at most 10000.
    test_size: At most this many test images (None: the whole test split).
    seed: Seeds which training images go to minival and to train.
    download: Let tensorflow-datasets download and prepare a missing dataset
      (needs network). Ignored by the embedded datasets.
  """

  dataset: str = "fashion_mnist"
  data_dir: Optional[str] = None
  image_size: Optional[int] = None
  train_size: Optional[int] = None
  minival_size: Optional[int] = None
  test_size: Optional[int] = None
  seed: int = 0
  download: bool = False

  def __post_init__(self):
    checks = [(bool(self.dataset) and isinstance(self.dataset, str),
               f"dataset must be a name, got {self.dataset!r}")]
    if isinstance(self.dataset, str):
      checks.append((self.dataset.strip() != image_folder.FOLDER_PREFIX,
                     f"dataset '{self.dataset}' names no folder: write "
                     f"'{image_folder.FOLDER_PREFIX}PATH'"))
    for name in ("image_size", "train_size", "test_size", "minival_size"):
      value = getattr(self, name)
      checks.append((value is None or value >= 1,
                     f"{name}={value} must be >= 1 or None"))
    config_checks.require(checks, "DataConfig")


@dataclasses.dataclass(frozen=True, eq=False)
class Split:
  """One split: a fixed-order sequence of (image, label) examples.

  Attributes:
    name: 'train', 'minival' or 'test'.
    size: Number of examples.
    fingerprint: Hex digest that changes whenever the examples do; the key
      of every cache computed from this split (teacher logits).
    images: (size, H, W, C) float32 in [0, 1] for in-memory datasets
      (embedded ones), else None.
    labels: (size,) int32 for in-memory datasets, else None.
    indices: Positions of the examples in the source split they were drawn
      from (in-memory datasets), else None.
  """

  name: str
  size: int
  fingerprint: str
  images: Optional[np.ndarray] = None
  labels: Optional[np.ndarray] = None
  indices: Optional[np.ndarray] = None
  source: Optional[Callable[[], tf.data.Dataset]] = dataclasses.field(
      default=None, repr=False)

  def num_batches(self, batch_size: int, drop_remainder: bool = False) -> int:
    """Batches of `batch_size` in one pass over the split."""
    if drop_remainder:
      return self.size // batch_size
    return -(-self.size // batch_size)

  def dataset(self) -> tf.data.Dataset:
    """Returns the unbatched (image, label) examples, always in one order."""
    if self.images is not None:
      return tf.data.Dataset.from_tensor_slices((self.images, self.labels))
    return self.source()


@dataclasses.dataclass(frozen=True, eq=False)
class Data:
  """A loaded dataset: its three splits and what a model must match.

  Attributes:
    name: The dataset name of the config.
    train, minival, test: The splits.
    input_shape: (height, width, channels) of every image.
    num_classes: Number of classes (labels are 0..num_classes-1).
    fingerprint: Hex digest of the whole loaded data (config and examples).
    config: The `DataConfig` it was loaded with.
    train_pool_size: Training images before the mini-val split was held
      out and `train_size` applied: what `train_size=None` would train on,
      plus the mini-val split.
  """

  name: str
  train: Split
  minival: Split
  test: Split
  input_shape: Tuple[int, int, int]
  num_classes: int
  fingerprint: str
  config: DataConfig
  train_pool_size: Optional[int] = None


def _digest(*parts) -> str:
  h = hashlib.blake2b(digest_size=16)
  for part in parts:
    if isinstance(part, np.ndarray):
      h.update(str((part.dtype, part.shape)).encode())
      h.update(np.ascontiguousarray(part).tobytes())
    else:
      h.update(repr(part).encode())
    h.update(b"|")
  return h.hexdigest()


def _read_idx(path: str) -> np.ndarray:
  """Reads a gzipped idx file (the MNIST format) into a uint8 array."""
  with gzip.open(path, "rb") as f:
    raw = f.read()
  if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
    raise ValueError(f"{path}: not an unsigned-byte idx file (bad magic "
                     f"{raw[:4].hex()})")
  ndim = raw[3]
  dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4).astype(int)
  data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
  if data.size != int(np.prod(dims)):
    raise ValueError(f"{path}: header says {tuple(dims)} but holds "
                     f"{data.size} bytes")
  return data.reshape(tuple(dims))


def _load_fashion_mnist(data_dir: Optional[str]):
  directory = data_dir or FASHION_MNIST_DIR
  arrays = {}
  for split, (image_file, label_file) in _FASHION_FILES.items():
    paths = [os.path.join(directory, f) for f in (image_file, label_file)]
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
      raise FileNotFoundError(
          f"Fashion-MNIST not found: {missing[0]} does not exist. Install "
          "Debian's copy with `sudo apt-get install dataset-fashion-mnist` "
          f"(files land in {FASHION_MNIST_DIR}) or point data_dir at a "
          f"folder holding {image_file} and {label_file}.")
    images, labels = (_read_idx(p) for p in paths)
    arrays[split] = (images[..., None], labels.astype(np.int32))
  return arrays, 255.0


def _load_digits():
  try:
    from sklearn import datasets  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ImportError(
        "the 'digits' dataset comes from scikit-learn, which is not "
        "installed: pip install scikit-learn (or the test extra: pip install "
        "-e '.[test]')") from None
  digits = datasets.load_digits()
  images = digits.images.astype(np.float32)[..., None]
  labels = digits.target.astype(np.int32)
  # A fixed 20% test split, the same for every config seed, so no seed can
  # move test images into training.
  order = np.random.default_rng(0).permutation(len(labels))
  n_test = len(labels) // 5
  test, train = order[:n_test], order[n_test:]
  return {"train": (images[train], labels[train]),
          "test": (images[test], labels[test])}, 16.0


def _resize(images: np.ndarray, image_size: Optional[int]) -> np.ndarray:
  if image_size is None or images.shape[1:3] == (image_size, image_size):
    return images
  chunks = [tf.image.resize(images[i:i + 4096], (image_size, image_size),
                            antialias=True).numpy()
            for i in range(0, len(images), 4096)]
  return np.clip(np.concatenate(chunks), 0.0, 1.0).astype(np.float32)


def _minival_size(pool_size: int, config: DataConfig) -> int:
  """The minival size `config` asks for, checked against the pool."""
  minival_size = config.minival_size
  if minival_size is None:
    minival_size = max(1, min(_MAX_DEFAULT_MINIVAL, pool_size // 10))
  if minival_size >= pool_size:
    raise ValueError(f"DataConfig: minival_size={minival_size} leaves no "
                     f"training images of {config.dataset}'s {pool_size}")
  return minival_size


def _partition(pool_size: int, config: DataConfig):
  """Returns (train indices, minival indices) into the training pool."""
  minival_size = _minival_size(pool_size, config)
  order = np.random.default_rng(config.seed).permutation(pool_size)
  minival, train = order[:minival_size], order[minival_size:]
  if config.train_size is not None:
    train = train[:config.train_size]
  return np.sort(train), np.sort(minival)


def _block_partition(pool_size: int, config: DataConfig):
  """Returns (train ranges, minival ranges) of a streamed training split,
  each a list of [start, end) ranges in order.

  The mini-val split is up to _MINIVAL_BLOCKS blocks of consecutive images
  at places drawn with `config.seed`; training takes the images between
  them, the first `train_size` of them when that is set.
  """
  minival_size = _minival_size(pool_size, config)
  blocks = min(_MINIVAL_BLOCKS, minival_size)
  while pool_size // -(-minival_size // blocks) < blocks:
    blocks -= 1
  slot = -(-minival_size // blocks)
  starts = np.sort(np.random.default_rng(config.seed).choice(
      pool_size // slot, blocks, replace=False)) * slot
  sizes = np.full(blocks, minival_size // blocks)
  sizes[:minival_size % blocks] += 1
  minival = [(int(a), int(a + n)) for a, n in zip(starts, sizes)]
  train, start, left = [], 0, config.train_size or pool_size
  for a, b in minival + [(pool_size, pool_size)]:
    take = min(a - start, left)
    if take > 0:
      train.append((start, start + take))
      left -= take
    start = b
  return train, minival


def _split_spec(split: str, ranges) -> str:
  """A tfds split string reading `ranges` of `split` in order."""
  return "+".join(f"{split}[{a}:{b}]" for a, b in ranges)


def _load_in_memory(config: DataConfig) -> Data:
  if config.dataset == "fashion_mnist":
    arrays, scale = _load_fashion_mnist(config.data_dir)
  elif config.dataset == "digits":
    arrays, scale = _load_digits()
  else:
    arrays, _ = image_folder.load_folder(
        image_folder.folder_path(config.dataset), config.image_size)
    scale = 255.0
  pool_images, pool_labels = arrays["train"]
  train_idx, minival_idx = _partition(len(pool_labels), config)
  test_images, test_labels = arrays["test"]
  test_idx = np.arange(len(test_labels))[:config.test_size]

  def split(name, images, labels, idx):
    x = _resize(images[idx].astype(np.float32) / scale, config.image_size)
    y = labels[idx]
    return Split(name=name, size=len(y), fingerprint=_digest(
        config.dataset, name, x, y), images=x, labels=y, indices=idx)

  train = split("train", pool_images, pool_labels, train_idx)
  minival = split("minival", pool_images, pool_labels, minival_idx)
  test = split("test", test_images, test_labels, test_idx)
  num_classes = int(max(pool_labels.max(), test_labels.max())) + 1
  return Data(name=config.dataset, train=train, minival=minival, test=test,
              input_shape=tuple(int(d) for d in train.images.shape[1:]),
              num_classes=num_classes,
              fingerprint=_digest(train.fingerprint, minival.fingerprint,
                                  test.fingerprint),
              config=config, train_pool_size=len(pool_labels))


def _tfds_builder(config: DataConfig):
  if config.data_dir is not None and not os.path.isdir(config.data_dir):
    raise FileNotFoundError(
        f"data_dir {config.data_dir} does not exist. Point it at a "
        "tensorflow-datasets folder that holds "
        f"{config.dataset}/ (prepare one with `tfds build {config.dataset} "
        "--data_dir=DIR`, or pass download=True / --download where the "
        "machine has network).")
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  try:
    builder = tfds.builder(config.dataset, data_dir=config.data_dir)
  except tfds.core.registered.DatasetNotFoundError as error:
    raise ValueError(f"unknown dataset '{config.dataset}': choose "
                     f"'fashion_mnist', 'digits' or a tensorflow-datasets "
                     f"name ({str(error).splitlines()[0]})") from None
  if not builder.is_prepared():
    if not config.download:
      raise FileNotFoundError(
          f"dataset '{config.dataset}' is not prepared in {builder.data_dir}. "
          f"Prepare it with `tfds build {config.dataset} --data_dir=DIR` "
          "(ImageNet needs its archives placed in DIR/downloads/manual "
          "first) and pass that data_dir, or pass download=True / --download"
          " where the machine has network.")
    builder.download_and_prepare()
  return builder


def _load_tfds(config: DataConfig) -> Data:
  builder = _tfds_builder(config)
  info = builder.info
  image_key, label_key = info.supervised_keys or ("image", "label")
  features = info.features
  if (image_key not in features or label_key not in features or
      not hasattr(features[label_key], "num_classes")):
    raise ValueError(f"dataset '{config.dataset}' is not an image "
                     f"classification set: it lacks an '{image_key}' image "
                     f"and a '{label_key}' class label (features: "
                     f"{sorted(features.keys())})")
  image_shape = tuple(features[image_key].shape)
  num_classes = int(features[label_key].num_classes)
  if config.image_size is None and None in image_shape[:2]:
    raise ValueError(f"dataset '{config.dataset}' has images of varying size "
                     f"{image_shape}: set image_size (--image_size)")
  size = config.image_size
  input_shape = ((size, size, image_shape[2]) if size else image_shape)
  test_name = "test" if "test" in info.splits else "validation"
  pool = info.splits["train"].num_examples
  train_ranges, minival_ranges = _block_partition(pool, config)
  test_end = info.splits[test_name].num_examples
  if config.test_size is not None:
    test_end = min(test_end, config.test_size)
  specs = {"train": _split_spec("train", train_ranges),
           "minival": _split_spec("train", minival_ranges),
           "test": f"{test_name}[:{test_end}]"}
  sizes = {"train": sum(b - a for a, b in train_ranges),
           "minival": sum(b - a for a, b in minival_ranges),
           "test": test_end}

  def preprocess(example):
    image, label = example[image_key], example[label_key]
    image = tf.cast(image, tf.float32) / 255.0
    if size:
      image = tf.image.resize(image, (size, size), antialias=True)
      image = tf.clip_by_value(image, 0.0, 1.0)
    return tf.ensure_shape(image, input_shape), tf.cast(label, tf.int32)

  def source(spec):
    return lambda: builder.as_dataset(split=spec, shuffle_files=False).map(
        preprocess, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

  version = str(info.version)
  splits = {}
  for name, spec in specs.items():
    n = sizes[name]
    splits[name] = Split(name=name, size=n, source=source(spec),
                         fingerprint=_digest(config.dataset, version, spec,
                                             n, size))
  return Data(name=config.dataset, input_shape=input_shape,
              num_classes=num_classes, config=config,
              fingerprint=_digest(*(s.fingerprint for s in splits.values())),
              train_pool_size=pool, **splits)


def load_data(config: DataConfig) -> Data:
  """Loads the train, minival and test splits `config` describes.

  Raises:
    FileNotFoundError: the data is not where `config` says; the message
      says how to get it.
    ImportError: 'digits' without scikit-learn installed.
    ValueError: an unknown dataset name or sizes that do not fit.
  """
  if (config.dataset in _EMBEDDED or
      image_folder.is_folder_dataset(config.dataset)):
    return _load_in_memory(config)
  return _load_tfds(config)


def take(split: Split, size: int) -> Split:
  """Returns the first `size` examples of `split` (all when it has fewer).

  A search's proxy task trains on such a subset of the training split; the
  subset gets its own fingerprint, so caches keyed by it stay exact.
  """
  if size < 1:
    raise ValueError(f"take: size={size} must be >= 1")
  if size >= split.size:
    return split
  fingerprint = _digest(split.fingerprint, "take", size)
  if split.images is not None:
    return dataclasses.replace(
        split, size=size, fingerprint=fingerprint,
        images=split.images[:size], labels=split.labels[:size],
        indices=None if split.indices is None else split.indices[:size])
  source = split.source
  return dataclasses.replace(split, size=size, fingerprint=fingerprint,
                             source=lambda: source().take(size))


def arrays(split: Split, size: Optional[int] = None,
           seed: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray]:
  """`size` examples of `split` as (float32 images, int32 labels) arrays.

  Args:
    split: The split.
    size: How many (None or more than the split holds: all).
    seed: Draw a seeded random subset (kept in split order); None takes the
      first `size` examples.
  """
  size = split.size if size is None else min(size, split.size)
  if split.images is not None:
    index = (np.sort(np.random.default_rng(seed).choice(
        split.size, size, replace=False)) if seed is not None
             else np.arange(size))
    return split.images[index], split.labels[index]
  pairs = list(split.dataset().take(size).as_numpy_iterator())
  return (np.stack([p[0] for p in pairs]).astype(np.float32),
          np.array([p[1] for p in pairs], dtype=np.int32))


def _augment(image, label):
  """Random horizontal flip and a random shift of up to 1/8 of the size."""
  shape = tf.shape(image)
  pad = tf.maximum(1, shape[0] // 8)
  image = tf.image.random_flip_left_right(image)
  padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
  return tf.image.random_crop(padded, shape), label


def make_dataset(split: Split,
                 batch_size: int,
                 *,
                 shuffle: bool = False,
                 seed: int = 0,
                 augment: bool = False,
                 teacher_logits: Optional[np.ndarray] = None,
                 drop_remainder: bool = False,
                 repeat: bool = False) -> tf.data.Dataset:
  """Turns a split into a batched, prefetched tf.data pipeline.

  Args:
    split: The split.
    batch_size: Examples per batch (the global batch under a strategy).
    shuffle: Reshuffle the examples every epoch, seeded by `seed`.
    seed: Seed of the shuffle and of the augmentation.
    augment: Random flips and shifts (training only). Cannot be combined
      with `teacher_logits`: cached logits belong to unaugmented images, so
      with augmentation the teacher must run online.
    teacher_logits: (split.size, num_classes) logits of a teacher on this
      split, in its order. Each element then is
      ({IMAGES_KEY: images, TEACHER_LOGITS_KEY: logits}, labels);
      otherwise (images, labels).
    drop_remainder: Drop a last, smaller batch.
    repeat: Repeat forever (then pass steps_per_epoch to `fit`).

  Raises:
    ValueError: bad batch size, logits that do not match the split, or
      augmentation with cached logits.
  """
  if batch_size < 1:
    raise ValueError(f"batch_size={batch_size} must be >= 1")
  ds = split.dataset()
  if teacher_logits is not None:
    if augment:
      raise ValueError("cached teacher logits belong to unaugmented images: "
                       "with augment=True run the teacher online instead")
    teacher_logits = np.asarray(teacher_logits, dtype=np.float32)
    if teacher_logits.ndim != 2 or len(teacher_logits) != split.size:
      raise ValueError(f"teacher_logits of shape {teacher_logits.shape} do "
                       f"not match the {split.size} examples of split "
                       f"'{split.name}' (expected ({split.size}, classes))")
    def with_logits(example, logits):
      image, label = example
      return {IMAGES_KEY: image, TEACHER_LOGITS_KEY: logits}, label

    ds = tf.data.Dataset.zip(
        ds, tf.data.Dataset.from_tensor_slices(teacher_logits)).map(
            with_logits)
  if shuffle:
    ds = ds.shuffle(min(split.size, 50000), seed=seed,
                    reshuffle_each_iteration=True)
  if augment:
    ds = ds.map(_augment, num_parallel_calls=tf.data.AUTOTUNE)
  if repeat:
    ds = ds.repeat()
  ds = ds.batch(batch_size, drop_remainder=drop_remainder)
  return ds.prefetch(tf.data.AUTOTUNE)
