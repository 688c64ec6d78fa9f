from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from training import data
from training.data import DataError, load, read_idx, resolve_data_dir


def write_idx(path: Path, array: np.ndarray, type_code: int = 0x08, *, gz: bool | None = None) -> Path:
    payload = struct.pack(">BBBB", 0, 0, type_code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload += array.astype(array.dtype.newbyteorder(">")).tobytes()
    gz = path.suffix == ".gz" if gz is None else gz
    path.write_bytes(gzip.compress(payload) if gz else payload)
    return path


def write_dataset(root: Path, name: str = "mnist", n_train: int = 20, n_test: int = 10) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", np.sort(rng.integers(0, 10, n).astype(np.uint8)))
    return folder


# -- the shared datasets -------------------------------------------------------


def test_reads_the_shared_mnist_files(datasets_dir):
    images = read_idx(datasets_dir / "mnist" / "train-images-idx3-ubyte.gz")
    labels = read_idx(datasets_dir / "mnist" / "train-labels-idx1-ubyte.gz")
    assert images.shape == (10_000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10_000,) and set(np.unique(labels)) == set(range(10))


def test_load_shuffles_training_data_with_the_seed(datasets_dir):
    split = load("mnist", datasets_dir, seed=7)
    assert split.x_train.shape == (10_000, 28, 28) and split.x_test.shape == (5_000, 28, 28)
    # The file is sorted by digit; a shuffled prefix has every digit.
    assert len(np.unique(split.y_train[:100])) == 10
    again = load("mnist", datasets_dir, seed=7)
    other = load("mnist", datasets_dir, seed=8)
    assert np.array_equal(split.y_train, again.y_train)
    assert not np.array_equal(split.y_train, other.y_train)
    # Images still match their labels after the shuffle: the multiset of pairs is unchanged.
    assert np.bincount(split.y_train).tolist() == np.bincount(read_idx(datasets_dir / "mnist" / "train-labels-idx1-ubyte.gz")).tolist()


def test_load_limits_train_and_test(datasets_dir):
    split = load("fashion-mnist", datasets_dir, seed=0, limit=100, test_limit=40)
    assert split.x_train.shape == (100, 28, 28) and split.y_train.shape == (100,)
    assert split.x_test.shape == (40, 28, 28)
    full = load("fashion-mnist", datasets_dir)
    assert np.array_equal(split.x_test, full.x_test[:40])  # the test part keeps its order


def test_to_float_scales_to_unit_range():
    x = data.to_float(np.array([[0, 255, 51]], dtype=np.uint8))
    assert x.dtype == np.float32 and np.allclose(x, [[0.0, 1.0, 0.2]])


# -- data directory resolution -------------------------------------------------


def test_data_dir_comes_from_the_argument_then_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "env"))
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_dir(None) == tmp_path / "env"
    monkeypatch.delenv("DATA_DIR")
    assert resolve_data_dir(None) is None


# -- small files written here ---------------------------------------------------


@pytest.mark.parametrize("name", ["x-idx3-ubyte", "x-idx3-ubyte.gz"])
def test_reads_plain_and_gzipped_files(tmp_path, name):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(read_idx(write_idx(tmp_path / name, array)), array)


def test_reads_wider_types_in_big_endian(tmp_path):
    array = np.array([1.5, -2.0, 1e6], dtype=np.float32)
    assert np.array_equal(read_idx(write_idx(tmp_path / "f-idx1", array, type_code=0x0D)), array)


def test_truncated_file_names_the_file_and_the_sizes(tmp_path):
    path = write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((5, 28, 28), np.uint8))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte: header says shape \[5, 28, 28\].*truncated"):
        read_idx(path)


def test_file_longer_than_its_header_is_rejected(tmp_path):
    path = write_idx(tmp_path / "labels-idx1-ubyte", np.zeros(5, np.uint8))
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(DataError, match="labels-idx1-ubyte: header says shape"):
        read_idx(path)


def test_wrong_magic_names_the_file(tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(b"\x1f\x8b\x08\x03" + bytes(100))  # e.g. a gzip file without .gz
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte: bad magic number 0x1f8b0803"):
        read_idx(path)


def test_unknown_type_code_is_a_bad_magic(tmp_path):
    path = tmp_path / "x-idx1-ubyte"
    path.write_bytes(bytes([0, 0, 0x42, 1]) + struct.pack(">I", 0))
    with pytest.raises(DataError, match="bad magic"):
        read_idx(path)


def test_corrupt_gzip_names_the_file(tmp_path):
    path = write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(1000, np.uint8))
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz: cannot read"):
        read_idx(path)


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(DataError, match="nope-idx1-ubyte: file not found"):
        read_idx(tmp_path / "nope-idx1-ubyte")


def test_load_reads_a_directory_of_small_files(tmp_path):
    write_dataset(tmp_path, n_train=20, n_test=10)
    split = load("mnist", tmp_path, seed=1)
    assert split.x_train.shape == (20, 28, 28) and split.x_test.shape == (10, 28, 28)


def test_load_names_a_missing_file_instead_of_falling_back(tmp_path):
    folder = write_dataset(tmp_path)
    (folder / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match=r"mnist/t10k-labels-idx1-ubyte\(\.gz\): file not found"):
        load("mnist", tmp_path)


def test_load_names_a_missing_dataset_folder(tmp_path):
    write_dataset(tmp_path, "mnist")
    with pytest.raises(DataError, match="fashion-mnist: dataset folder not found"):
        load("fashion-mnist", tmp_path)


def test_load_rejects_images_that_are_not_28x28(tmp_path):
    folder = write_dataset(tmp_path)
    write_idx(folder / "train-images-idx3-ubyte.gz", np.zeros((20, 28, 27), np.uint8))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz: expected uint8 images of shape \[N, 28, 28\]"):
        load("mnist", tmp_path)


def test_load_rejects_label_count_mismatch(tmp_path):
    folder = write_dataset(tmp_path)
    write_idx(folder / "train-labels-idx1-ubyte", np.zeros(19, np.uint8))
    with pytest.raises(DataError, match="train-labels-idx1-ubyte: 19 labels for 20 images"):
        load("mnist", tmp_path)


def test_load_rejects_out_of_range_labels(tmp_path):
    folder = write_dataset(tmp_path)
    write_idx(folder / "t10k-labels-idx1-ubyte", np.full(10, 10, np.uint8))
    with pytest.raises(DataError, match="label 10 is outside 0..9"):
        load("mnist", tmp_path)


# -- the validation split ------------------------------------------------------


def _rows(images: np.ndarray) -> set[bytes]:
    return {image.tobytes() for image in images}


def test_validation_size():
    assert data.validation_size(10_000, 0.1, 500) == 1000  # a tenth of the training images
    assert data.validation_size(1000, 0.1, 500, spare=9000) == 500  # at least 500 where unused images allow
    assert data.validation_size(1000, 0.1, 500) == 250  # else at most a quarter of the training images
    assert data.validation_size(20, 0.1, 500) == 5
    assert data.validation_size(10_000, 0.0, 500) == 0


def test_validation_comes_from_the_images_a_limit_leaves_unused(tmp_path):
    write_dataset(tmp_path, n_train=300)
    split = load("mnist", tmp_path, seed=4, limit=100, validation=0.1, min_validation=50)
    assert len(split.x_train) == 100 and len(split.x_val) == len(split.y_val) == 50
    assert not _rows(split.x_train) & _rows(split.x_val)  # disjoint from what is trained on
    assert not _rows(split.x_test) & _rows(split.x_val)  # and never the test set
    # The training images are those a load without a validation split trains on.
    assert np.array_equal(split.x_train, load("mnist", tmp_path, seed=4, limit=100).x_train)


def test_without_a_limit_validation_comes_off_the_training_images(tmp_path):
    write_dataset(tmp_path, n_train=400)
    split = load("mnist", tmp_path, seed=4, validation=0.1, min_validation=50)
    assert (len(split.x_train), len(split.x_val)) == (350, 50)
    assert not _rows(split.x_train) & _rows(split.x_val)
    assert _rows(split.x_train) | _rows(split.x_val) == _rows(load("mnist", tmp_path, seed=4).x_train)
    # Images keep their labels.
    full = load("mnist", tmp_path, seed=0)
    labels = {image.tobytes(): label for image, label in zip(full.x_train, full.y_train)}
    assert [labels[image.tobytes()] for image in split.x_val] == split.y_val.tolist()


def test_validation_split_is_seeded(tmp_path):
    write_dataset(tmp_path, n_train=300)
    a = load("mnist", tmp_path, seed=1, limit=100, validation=0.1, min_validation=50)
    assert np.array_equal(a.x_val, load("mnist", tmp_path, seed=1, limit=100, validation=0.1, min_validation=50).x_val)
    assert not np.array_equal(a.x_val, load("mnist", tmp_path, seed=2, limit=100, validation=0.1, min_validation=50).x_val)
    none = load("mnist", tmp_path, seed=1, limit=100)
    assert none.x_val.shape == (0, 28, 28) and none.y_val.shape == (0,)


def test_profiles_hold_out_at_least_500_shared_images(datasets_dir):
    from training.profiles import PROFILES

    for name, (train_size, validation_size) in {"default": (9000, 1000), "test": (1000, 500)}.items():
        profile = PROFILES[name]
        split = load(
            "mnist",
            datasets_dir,
            seed=profile.seed,
            limit=profile.limit,
            validation=profile.validation,
            min_validation=profile.min_validation,
        )
        assert (len(split.x_train), len(split.x_val)) == (train_size, validation_size)
