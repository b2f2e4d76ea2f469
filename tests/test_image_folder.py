"""Tests of the user's own images (akd_tf/distill/image_folder.py, 'folder:PATH'
in akd_tf/distill/data.py) on PNGs written from scikit-learn's digits."""

import os
import re
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from akd_tf.distill import data
from akd_tf.distill import image_folder
from akd_tf.distill import teacher as teacher_lib

PER_CLASS = 20


def _write_png(path, image):
  """Writes a uint8 (H, W) or (H, W, C) image as a PNG."""
  if image.ndim == 2:
    image = image[..., None]
  tf.io.write_file(str(path), tf.io.encode_png(image))


def _digits():
  """(uint8 8x8 images, labels) of the first PER_CLASS digits per class."""
  from sklearn import datasets  # pylint: disable=g-import-not-at-top
  digits = datasets.load_digits()
  images = np.round(digits.images * 255.0 / 16.0).astype(np.uint8)
  keep = np.concatenate([np.flatnonzero(digits.target == c)[:PER_CLASS]
                         for c in range(10)])
  return images[keep], digits.target[keep]


def _write_folder(root, images, labels, classes=None):
  for i, (image, label) in enumerate(zip(images, labels)):
    name = classes[label] if classes else f"digit_{label}"
    os.makedirs(root / name, exist_ok=True)
    _write_png(root / name / f"{i:04d}.png", image)


@pytest.fixture(name="digits_folder", scope="module")
def fixture_digits_folder(tmp_path_factory):
  root = tmp_path_factory.mktemp("digits") / "images"
  images, labels = _digits()
  _write_folder(root, images, labels)
  return root


def _load(root, **kwargs):
  return data.load_data(data.DataConfig(f"folder:{root}", **kwargs))


def test_folder_of_class_folders_loads_like_the_builtin_data(digits_folder):
  loaded = _load(digits_folder, minival_size=40)
  assert loaded.input_shape == (8, 8, 1)
  assert loaded.num_classes == 10
  assert (loaded.train.size, loaded.minival.size, loaded.test.size) == (
      120, 40, 40)
  assert loaded.train_pool_size == 160
  # The images are the digits' pixels, each in the folder of its class.
  images, labels = _digits()
  for split in (loaded.train, loaded.minival, loaded.test):
    assert split.images.dtype == np.float32
    for image, label in zip(split.images[:10], split.labels[:10]):
      match = np.flatnonzero(
          (np.abs(images / 255.0 - image[..., 0]) < 1e-6).all(axis=(1, 2)))
      assert match.size and labels[match[0]] == label


def test_minival_is_a_seeded_hold_out_and_test_is_fixed(digits_folder):
  first, again, other = (_load(digits_folder, minival_size=40, seed=s)
                         for s in (0, 0, 1))
  np.testing.assert_array_equal(first.minival.images, again.minival.images)
  assert first.fingerprint == again.fingerprint
  assert not np.array_equal(first.minival.indices, other.minival.indices)
  assert first.fingerprint != other.fingerprint
  np.testing.assert_array_equal(first.test.images, other.test.images)


def _last_five_of_each_class():
  return np.arange(10 * PER_CLASS) % PER_CLASS >= PER_CLASS - 5


@pytest.mark.parametrize("train_folder", ["train", "."])
def test_test_subfolder_is_the_test_split(tmp_path, train_folder):
  images, labels = _digits()
  test = _last_five_of_each_class()
  _write_folder(tmp_path / train_folder, images[~test], labels[~test])
  _write_folder(tmp_path / "test", images[test], labels[test])
  loaded = _load(tmp_path, minival_size=30)
  assert loaded.num_classes == 10
  assert loaded.test.size == 50
  assert loaded.train.size + loaded.minival.size == 150
  np.testing.assert_array_equal(np.sort(loaded.test.labels),
                                np.sort(labels[test]))


def test_teacher_checks_and_logit_cache_work_on_folder_data(digits_folder,
                                                            tmp_path):
  loaded = _load(digits_folder, minival_size=40)
  inputs = keras.Input(loaded.input_shape)
  features = keras.layers.Flatten()(inputs)
  wrong = keras.Model(inputs, keras.layers.Dense(3)(features))
  images = teacher_lib.sample_images(loaded.train)
  with pytest.raises(ValueError, match="teacher outputs 3 classes but "
                     f"folder:{re.escape(str(digits_folder))} has 10"):
    teacher_lib.check_teacher(wrong, loaded.input_shape, loaded.num_classes,
                              dataset=loaded.name, images=images)
  teacher = keras.Model(inputs, keras.layers.Dense(10)(features))
  teacher_lib.check_teacher(teacher, loaded.input_shape, loaded.num_classes,
                            dataset=loaded.name, images=images)
  logits = teacher_lib.teacher_logits(teacher, loaded.train,
                                      cache_dir=str(tmp_path))
  cached = os.listdir(tmp_path / "teacher_logits")
  reloaded = _load(digits_folder, minival_size=40)
  np.testing.assert_array_equal(
      teacher_lib.teacher_logits(teacher, reloaded.train,
                                 cache_dir=str(tmp_path)), logits)
  assert os.listdir(tmp_path / "teacher_logits") == cached


def test_image_size_resizes_images_of_mixed_sizes(tmp_path):
  images, labels = _digits()
  _write_folder(tmp_path, images[:100], labels[:100])
  big = np.kron(images[100], np.ones((2, 2), np.uint8))
  _write_png(tmp_path / f"digit_{labels[0]}" / "big.png", big)
  with pytest.raises(ValueError, match=r"differ in size \(8x8 in .*, 16x16 "
                     r"in .*big.png\).*--image_size"):
    _load(tmp_path)
  loaded = _load(tmp_path, image_size=12)
  assert loaded.input_shape == (12, 12, 1)


def test_grayscale_and_color_images_mix_as_rgb(tmp_path):
  images, labels = _digits()
  _write_folder(tmp_path, images[:60], labels[:60])
  _write_png(tmp_path / f"digit_{labels[0]}" / "rgb.png",
             np.stack([images[0]] * 3, axis=-1))
  loaded = _load(tmp_path, minival_size=10)
  assert loaded.input_shape == (8, 8, 3)


@pytest.mark.parametrize("layout, error, message", [
    ("missing", FileNotFoundError, "no such folder"),
    ("empty", ValueError, "no class sub-folders"),
    ("one_class", ValueError, r"only one class \('digit_0'\)"),
    ("class_without_images", ValueError,
     r"class folder\(s\) \['digit_9'\] .* hold no images"),
    ("unreadable", ValueError, r"cannot read .*broken.png as an image"),
    ("unknown_test_class", ValueError, r"test classes \['cat'\]"),
])
def test_bad_folders_are_clear_errors(tmp_path, layout, error, message):
  images, labels = _digits()
  root = tmp_path / "images"
  if layout != "missing":
    root.mkdir()
  if layout == "one_class":
    _write_folder(root, images[:5], [0] * 5)
  elif layout in ("class_without_images", "unreadable", "unknown_test_class"):
    _write_folder(root, images[:40], labels[:40])
  if layout == "class_without_images":
    (root / "digit_9").mkdir()
    (root / "digit_9" / "notes.txt").write_text("no images here")
  if layout == "unreadable":
    (root / "digit_0" / "broken.png").write_bytes(b"not a png at all")
  if layout == "unknown_test_class":
    _write_folder(root / "test", images[40:45], [0] * 5, classes=["cat"])
  with pytest.raises(error, match=f"dataset 'folder:{re.escape(str(root))}'"
                     f": {message}"):
    _load(root)


def test_folder_prefix_without_a_path_is_refused():
  with pytest.raises(ValueError, match="names no folder"):
    data.DataConfig("folder:")
  assert image_folder.folder_path("folder:~/x") == os.path.expanduser("~/x")


if __name__ == "__main__":
  sys.exit(pytest.main([__file__]))
