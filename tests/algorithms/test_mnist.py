"""The MNIST loader on tiny IDX files written by the test (no download needed)."""

import hashlib

import numpy as np
import pytest

from winning_ticket.algorithms import mnist


def _idx(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in arr.shape)
    return header + arr.astype(np.uint8).tobytes()


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    arrays = {"train_images": rng.integers(0, 256, (60, 28, 28)), "train_labels": np.arange(60) % 10,
              "test_images": rng.integers(0, 256, (20, 28, 28)), "test_labels": np.arange(20) % 10}
    files = {}
    for key, arr in arrays.items():
        fname = mnist.FILES[key][0]
        data = _idx(arr)
        (tmp_path / fname).write_bytes(data)
        files[key] = (fname, hashlib.md5(data).hexdigest(), arr.shape)
    monkeypatch.setattr(mnist, "FILES", files)
    return tmp_path, arrays


def test_parse_and_load(tiny):
    path, arrays = tiny
    data = mnist.load_mnist(path)
    for key, arr in arrays.items():
        assert data[key].dtype == np.uint8 and np.array_equal(data[key], arr)


def test_environment_variable_overrides_the_data_dir(tiny, monkeypatch):
    path, arrays = tiny
    monkeypatch.setenv(mnist.ENV_VAR, str(path))
    assert mnist.default_data_dir() == path
    assert np.array_equal(mnist.load_mnist()["test_labels"], arrays["test_labels"])


def test_missing_file_names_file_checksum_and_remedy(tiny):
    path, _ = tiny
    (path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(mnist.MNISTError) as err:
        mnist.load_mnist(path)
    msg = str(err.value)
    assert "t10k-labels-idx1-ubyte" in msg and mnist.FILES["test_labels"][1] in msg
    assert "npm ci" in msg and mnist.ENV_VAR in msg


def test_corrupt_file_reports_both_checksums(tiny):
    path, _ = tiny
    f = path / "train-labels-idx1-ubyte"
    data = bytearray(f.read_bytes())
    data[-1] ^= 1
    f.write_bytes(bytes(data))
    with pytest.raises(mnist.MNISTError, match="corrupt.*expected " + mnist.FILES["train_labels"][1]):
        mnist.load_mnist(path)


def test_malformed_idx():
    with pytest.raises(mnist.MNISTError, match="magic"):
        mnist.parse_idx(b"\x01\x00\x08\x01\x00\x00\x00\x01\x05")
    with pytest.raises(mnist.MNISTError, match="payload"):
        mnist.parse_idx(b"\x00\x00\x08\x01\x00\x00\x00\x03\x05")
    with pytest.raises(mnist.MNISTError, match="unsigned byte"):
        mnist.parse_idx(b"\x00\x00\x0d\x01\x00\x00\x00\x01\x05")


def test_official_checksums_are_the_published_ones():
    assert mnist.FILES["train_images"][1] == "6bbc9ace898e44ae57da46a324031adb"
    assert mnist.FILES["test_labels"][1] == "27ae3e4e09519cfbb04c329615203637"


def test_balanced_subset():
    labels = np.repeat(np.arange(10), 50)
    a = mnist.balanced_subset(labels, 203, seed=3)
    assert len(a) == 203 and len(set(a.tolist())) == 203 and np.all(np.diff(a) > 0)
    counts = np.bincount(labels[a], minlength=10)
    assert counts.max() - counts.min() <= 1
    assert np.array_equal(a, mnist.balanced_subset(labels, 203, seed=3))
    assert not np.array_equal(a, mnist.balanced_subset(labels, 203, seed=4))
    with pytest.raises(ValueError, match="N = 501"):
        mnist.balanced_subset(labels, 501, seed=0)


def test_to_float():
    x = mnist.to_float(np.full((2, 28, 28), 255, dtype=np.uint8), normalize=False)
    assert x.shape == (2, 784) and x.dtype == np.float32 and np.all(x == 1.0)
