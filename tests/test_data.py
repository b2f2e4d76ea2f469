"""Tests of akd_tf.distill.data: the embedded sets, the tfds path, the
pipelines."""

import gzip
import os
import sys

import numpy as np
import pytest

from akd_tf.distill import data

FASHION = os.path.join(data.FASHION_MNIST_DIR, "train-images-idx3-ubyte.gz")
needs_fashion = pytest.mark.skipif(
    not os.path.exists(FASHION),
    reason="apt-get install dataset-fashion-mnist")


@pytest.fixture(scope="module")
def fashion():
  return data.load_data(data.DataConfig("fashion_mnist", train_size=2000,
                                        minival_size=500, test_size=300))


def test_digits_shapes_dtypes_and_label_range(digits):
  assert digits.input_shape == (8, 8, 1)
  assert digits.num_classes == 10
  for split in (digits.train, digits.minival, digits.test):
    assert split.images.shape == (split.size, 8, 8, 1)
    assert split.images.dtype == np.float32
    assert 0.0 <= split.images.min() and split.images.max() <= 1.0
    assert split.labels.dtype == np.int32
    assert set(np.unique(split.labels)) <= set(range(10))
  assert digits.train.size + digits.minival.size + digits.test.size == 1797


def test_minival_is_held_out_from_train(digits):
  train, minival = set(digits.train.indices), set(digits.minival.indices)
  assert not train & minival
  # The default minival is 10% of the training pool.
  assert digits.minival.size == (digits.train.size + digits.minival.size) // 10


def test_seed_moves_minival_and_changes_fingerprint(digits):
  other = data.load_data(data.DataConfig("digits", seed=1))
  assert set(other.minival.indices) != set(digits.minival.indices)
  assert other.fingerprint != digits.fingerprint
  assert other.test.fingerprint == digits.test.fingerprint
  again = data.load_data(data.DataConfig("digits"))
  assert again.fingerprint == digits.fingerprint


@needs_fashion
def test_fashion_mnist_shapes_sizes_and_disjoint_minival(fashion):
  assert fashion.input_shape == (28, 28, 1)
  assert fashion.num_classes == 10
  assert (fashion.train.size, fashion.minival.size, fashion.test.size) == (
      2000, 500, 300)
  assert not set(fashion.train.indices) & set(fashion.minival.indices)
  assert fashion.train.images.max() <= 1.0
  assert fashion.train.images.max() > 0.99
  assert set(np.unique(fashion.train.labels)) == set(range(10))


@needs_fashion
def test_image_size_resizes_into_unit_range():
  resized = data.load_data(data.DataConfig(
      "fashion_mnist", image_size=16, train_size=64, minival_size=16,
      test_size=16))
  assert resized.input_shape == (16, 16, 1)
  assert resized.train.images.shape == (64, 16, 16, 1)
  assert 0.0 <= resized.train.images.min()
  assert resized.train.images.max() <= 1.0


def test_missing_fashion_mnist_says_how_to_install(tmp_path):
  with pytest.raises(FileNotFoundError,
                     match="apt-get install dataset-fashion-mnist"):
    data.load_data(data.DataConfig("fashion_mnist", data_dir=str(tmp_path)))


def test_missing_tfds_data_dir_is_a_clear_error(tmp_path):
  missing = str(tmp_path / "nowhere")
  with pytest.raises(FileNotFoundError, match="data_dir .*nowhere does not "
                     "exist.*tfds build"):
    data.load_data(data.DataConfig("imagenet2012", data_dir=missing))


def test_idx_reader_rejects_a_file_that_is_not_idx(tmp_path):
  path = tmp_path / "bad.gz"
  with gzip.open(path, "wb") as f:
    f.write(b"not an idx file")
  with pytest.raises(ValueError, match="not an unsigned-byte idx file"):
    data._read_idx(str(path))  # pylint: disable=protected-access


def test_config_rejects_bad_sizes():
  with pytest.raises(ValueError, match="train_size=0"):
    data.DataConfig(train_size=0)
  with pytest.raises(ValueError, match="minival_size=2000 leaves no"):
    data.load_data(data.DataConfig("digits", minival_size=2000))


def test_pipeline_batches_and_reshuffles(digits):
  ds = data.make_dataset(digits.train, 100, shuffle=True, seed=3)
  first = [y.numpy() for _, y in ds]
  second = [y.numpy() for _, y in ds]
  assert [len(b) for b in first][:-1] == [100] * (len(first) - 1)
  assert sum(len(b) for b in first) == digits.train.size
  assert not np.array_equal(first[0], second[0])
  x, _ = next(iter(data.make_dataset(digits.train, 8, augment=True)))
  assert x.shape == (8, 8, 8, 1)


def test_cached_logits_stay_with_their_images_after_shuffle(digits):
  split = digits.train
  # Logit 0 of every example is its position, so it names its image.
  logits = np.zeros((split.size, 10), np.float32)
  logits[:, 0] = np.arange(split.size)
  ds = data.make_dataset(split, 64, shuffle=True, teacher_logits=logits)
  x, y = next(iter(ds))
  positions = x[data.TEACHER_LOGITS_KEY][:, 0].numpy().astype(int)
  np.testing.assert_array_equal(x[data.IMAGES_KEY].numpy(),
                                split.images[positions])
  np.testing.assert_array_equal(y.numpy(), split.labels[positions])


def test_pipeline_rejects_bad_logits_and_augmented_cache(digits):
  with pytest.raises(ValueError, match="do not match the 1295 examples"):
    data.make_dataset(digits.train, 8, teacher_logits=np.zeros((5, 10)))
  with pytest.raises(ValueError, match="run the teacher online"):
    data.make_dataset(digits.train, 8, augment=True,
                      teacher_logits=np.zeros((digits.train.size, 10)))


def test_take_keeps_the_first_examples_with_a_new_fingerprint(digits):
  small = data.take(digits.train, 100)
  assert small.size == 100
  np.testing.assert_array_equal(small.images, digits.train.images[:100])
  assert small.fingerprint != digits.train.fingerprint
  assert data.take(digits.train, 10**6) is digits.train


@pytest.fixture(name="tiny_tfds", scope="module")
def fixture_tiny_tfds(tmp_path_factory):
  """The data_dir of 'akd_tiny_images', a tensorflow-datasets dataset of 50
  training and 20 test 6x6x1 images, each of them different."""
  pytest.importorskip("importlib_resources")  # tfds needs it to prepare.
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  def images(n, seed):
    rng = np.random.default_rng(seed)
    return tf.data.Dataset.from_tensor_slices({
        "image": rng.integers(0, 256, (n, 6, 6, 1), dtype=np.uint8),
        "label": np.arange(n) % 3})

  data_dir = str(tmp_path_factory.mktemp("tfds"))
  tfds.dataset_builders.store_as_tfds_dataset(
      name="akd_tiny_images", version="1.0.0",
      features=tfds.features.FeaturesDict({
          "image": tfds.features.Image(shape=(6, 6, 1)),
          "label": tfds.features.ClassLabel(num_classes=3)}),
      split_datasets={"train": images(50, 0), "test": images(20, 1)},
      data_dir=data_dir)
  return data_dir


def test_tfds_dataset_loads_offline_with_minival_from_train(tiny_tfds):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  loaded = data.load_data(data.DataConfig(
      "akd_tiny_images", data_dir=tiny_tfds, minival_size=10,
      image_size=8))
  assert loaded.input_shape == (8, 8, 1)
  assert loaded.num_classes == 3
  assert (loaded.train.size, loaded.minival.size, loaded.test.size) == (
      40, 10, 20)
  assert loaded.train_pool_size == 50
  x, y = next(iter(data.make_dataset(loaded.train, 40)))
  assert x.shape == (40, 8, 8, 1) and x.dtype == tf.float32
  assert 0.0 <= float(tf.reduce_min(x)) and float(tf.reduce_max(x)) <= 1.0
  assert set(y.numpy()) <= {0, 1, 2}
  with pytest.raises(FileNotFoundError, match="not prepared.*tfds build"):
    data.load_data(data.DataConfig("mnist", data_dir=tiny_tfds))


def _image_set(split):
  images, _ = data.arrays(split)
  return {image.tobytes() for image in images}


def test_tfds_minival_is_a_seeded_random_hold_out(tiny_tfds):
  def config(seed, **changes):
    return data.DataConfig("akd_tiny_images", data_dir=tiny_tfds,
                           minival_size=10, seed=seed, **changes)

  first, again, other = (data.load_data(config(s)) for s in (0, 0, 1))
  minival, train = _image_set(first.minival), _image_set(first.train)
  assert len(minival) == 10 and len(train) == 40
  assert not minival & train
  assert minival == _image_set(again.minival)
  assert first.fingerprint == again.fingerprint
  assert minival != _image_set(other.minival)
  assert first.minival.fingerprint != other.minival.fingerprint
  assert first.fingerprint != other.fingerprint
  assert _image_set(first.test) == _image_set(other.test)
  # train_size takes training images only.
  small = data.load_data(config(1, train_size=15))
  assert small.train.size == 15
  assert not _image_set(small.train) & _image_set(other.minival)


if __name__ == "__main__":
  sys.exit(pytest.main([__file__]))
