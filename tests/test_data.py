"""Datasets: MedMNIST npz files in the official layout, npz:PATH, digits, and the bad-input messages."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from medmnist import INFO

from autoal import oracle
from autoal.data import MEDMNIST_2D, load_dataset
from autoal.errors import UserError
from conftest import synthetic_arrays, write_medmnist_npz


def _arrays(n_train=24, n_val=8, n_test=12, n_classes=4, size=8, channels=1) -> dict[str, np.ndarray]:
    arrays = {}
    for i, (split, n) in enumerate((("train", n_train), ("val", n_val), ("test", n_test))):
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = synthetic_arrays(n, n_classes, size, channels, i)
    return arrays


def _write(path, **arrays):
    np.savez_compressed(path, **arrays)
    return path


@pytest.mark.parametrize("flag,channels", [("pathmnist", 3), ("pneumoniamnist", 1), ("bloodmnist", 3)])
def test_medmnist_from_official_npz(tmp_path, flag, channels):
    write_medmnist_npz(tmp_path / f"{flag}.npz", n_train=20, n_val=6, n_test=10, n_classes=2, channels=channels)
    data = load_dataset(flag, tmp_path)
    assert data.name == flag
    assert data.channels == channels and data.image_size == 8
    assert data.train.images.shape == (20, channels, 8, 8) and data.train.images.dtype == torch.uint8
    assert (len(data.train), len(data.val), len(data.test)) == (20, 6, 10)
    assert data.train.labels.shape == (20,) and data.train.labels.dtype == torch.int64
    assert data.n_classes == len(INFO[flag]["label"])  # from the dataset, not from the labels seen
    assert data.classes == tuple(INFO[flag]["label"][str(k)] for k in range(data.n_classes))
    assert oracle.class_names(data) == list(data.classes)  # what a person labeling a batch chooses among


def test_rgb_layout_is_transposed_not_reshaped(tmp_path):
    arrays = _arrays(channels=3)
    _write(tmp_path / "pathmnist.npz", **arrays)
    data = load_dataset("pathmnist", tmp_path)
    expected = torch.from_numpy(arrays["train_images"]).permute(0, 3, 1, 2)
    assert torch.equal(data.train.images, expected)
    assert torch.equal(data.test.labels, torch.from_numpy(arrays["test_labels"][:, 0]))


def test_other_sizes_read_their_own_file(tmp_path):
    write_medmnist_npz(tmp_path / "dermamnist_64.npz", n_train=10, n_val=4, n_test=6, size=64, channels=3)
    data = load_dataset("dermamnist", tmp_path, size=64)
    assert data.image_size == 64 and data.name == "dermamnist_64"
    with pytest.raises(UserError, match="dermamnist.npz"):
        load_dataset("dermamnist", tmp_path, size=28)
    with pytest.raises(UserError, match="not a MedMNIST size"):
        load_dataset("dermamnist", tmp_path, size=32)


def test_normalisation_statistics_come_from_the_train_split(tmp_path):
    arrays = _arrays(channels=3)
    arrays["test_images"][:] = 255  # would move the statistics if the test split were used
    arrays["val_images"][:] = 0
    _write(tmp_path / "set.npz", **arrays)
    data = load_dataset(f"npz:{tmp_path / 'set.npz'}")
    train = arrays["train_images"].astype(np.float64) / 255.0  # (N, H, W, 3)
    np.testing.assert_allclose(data.mean, train.mean(axis=(0, 1, 2)), rtol=1e-6)
    np.testing.assert_allclose(data.std, train.std(axis=(0, 1, 2)), rtol=1e-5)
    normalised = data.normalise(data.train.images)
    torch.testing.assert_close(normalised.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(normalised.std(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-4, rtol=0)


def test_npz_path_any_name_classes_from_labels(tmp_path):
    path = write_medmnist_npz(tmp_path / "my_images.npz", n_train=30, n_classes=3)
    data = load_dataset(f"npz:{path}")
    assert data.name == "my_images" and data.n_classes == 3 and data.channels == 1
    assert data.classes is None  # an npz names no classes: a labeler sees the indices


def test_npz_without_val_split_gets_an_empty_one(tmp_path):
    arrays = _arrays()
    del arrays["val_images"], arrays["val_labels"]
    data = load_dataset(f"npz:{_write(tmp_path / 'noval.npz', **arrays)}")
    assert len(data.val) == 0 and len(data.train) == 24


def test_missing_medmnist_file_names_file_url_and_md5(tmp_path):
    with pytest.raises(UserError) as info:
        load_dataset("organamnist", tmp_path / "nowhere")
    message = str(info.value)
    assert str(tmp_path / "nowhere" / "organamnist.npz") in message
    assert INFO["organamnist"]["url"].removesuffix("?download=1") in message
    assert INFO["organamnist"]["MD5"] in message
    assert "--data-root" in message


def test_missing_medmnist_file_of_another_size(tmp_path):
    with pytest.raises(UserError) as info:
        load_dataset("pathmnist", tmp_path, size=128)
    message = str(info.value)
    assert "pathmnist_128.npz" in message and INFO["pathmnist"]["MD5_128"] in message


def test_missing_npz_path(tmp_path):
    with pytest.raises(UserError, match="no npz file at"):
        load_dataset(f"npz:{tmp_path / 'absent.npz'}")


def test_not_an_npz_file(tmp_path):
    path = tmp_path / "broken.npz"
    path.write_text("not a zip archive")
    with pytest.raises(UserError, match="cannot read"):
        load_dataset(f"npz:{path}")


def test_wrong_keys(tmp_path):
    arrays = _arrays()
    arrays["test_targets"] = arrays.pop("test_labels")
    with pytest.raises(UserError, match="lacks keys test_labels"):
        load_dataset(f"npz:{_write(tmp_path / 'keys.npz', **arrays)}")


def test_val_images_without_val_labels(tmp_path):
    arrays = _arrays()
    del arrays["val_labels"]
    with pytest.raises(UserError, match="val_labels"):
        load_dataset(f"npz:{_write(tmp_path / 'val.npz', **arrays)}")


@pytest.mark.parametrize("shape", [(24, 64), (24, 8, 8, 2), (24, 3, 8, 8), (24, 1, 8, 8, 1)])
def test_wrong_image_shapes(tmp_path, shape):
    arrays = _arrays()
    arrays["train_images"] = np.zeros(shape, dtype=np.uint8)
    with pytest.raises(UserError, match=r"train_images has shape .*expected \(N,H,W\) or \(N,H,W,3\)"):
        load_dataset(f"npz:{_write(tmp_path / 'shape.npz', **arrays)}")


def test_splits_with_different_image_shapes(tmp_path):
    arrays = _arrays()
    arrays["test_images"] = synthetic_arrays(12, 4, size=10)[0]
    with pytest.raises(UserError, match="different image shapes"):
        load_dataset(f"npz:{_write(tmp_path / 'mixed.npz', **arrays)}")


def test_wrong_image_dtype(tmp_path):
    arrays = _arrays()
    arrays["train_images"] = arrays["train_images"].astype(np.float32) / 255.0
    with pytest.raises(UserError, match="dtype float32; expected uint8"):
        load_dataset(f"npz:{_write(tmp_path / 'dtype.npz', **arrays)}")


@pytest.mark.parametrize("labels", [np.array([[0.5]] * 24), -np.ones((24, 1), dtype=np.int64)])
def test_labels_must_be_class_indices(tmp_path, labels):
    arrays = _arrays()
    arrays["train_labels"] = labels
    with pytest.raises(UserError, match="non-negative integer class indices"):
        load_dataset(f"npz:{_write(tmp_path / 'labels.npz', **arrays)}")


def test_multi_label_labels(tmp_path):
    arrays = _arrays()
    arrays["train_labels"] = np.zeros((24, 14), dtype=np.int64)
    with pytest.raises(UserError, match="multi-label"):
        load_dataset(f"npz:{_write(tmp_path / 'multi.npz', **arrays)}")


def test_mismatched_image_and_label_counts(tmp_path):
    arrays = _arrays()
    arrays["test_labels"] = arrays["test_labels"][:-2]
    with pytest.raises(UserError, match="12 images but 10 labels"):
        load_dataset(f"npz:{_write(tmp_path / 'counts.npz', **arrays)}")


def test_labels_beyond_the_medmnist_classes(tmp_path):
    write_medmnist_npz(tmp_path / "breastmnist.npz", n_classes=4)  # breastmnist has 2 classes
    with pytest.raises(UserError, match="breastmnist has 2 classes"):
        load_dataset("breastmnist", tmp_path)


def test_empty_train_split(tmp_path):
    arrays = _arrays()
    arrays["train_images"], arrays["train_labels"] = arrays["train_images"][:0], arrays["train_labels"][:0]
    with pytest.raises(UserError, match="must not be empty"):
        load_dataset(f"npz:{_write(tmp_path / 'empty.npz', **arrays)}")


def test_chestmnist_is_refused_clearly(tmp_path):
    write_medmnist_npz(tmp_path / "chestmnist.npz")
    with pytest.raises(UserError, match="multi-label") as info:
        load_dataset("chestmnist", tmp_path)
    assert "pathmnist" in str(info.value)  # and it says what to use instead


def test_3d_sets_are_refused(tmp_path):
    with pytest.raises(UserError, match="3D"):
        load_dataset("organmnist3d", tmp_path)


def test_unknown_dataset_lists_known_ones(tmp_path):
    with pytest.raises(UserError) as info:
        load_dataset("imagenet21k", tmp_path)
    message = str(info.value)
    assert "imagenet21k" in message and "digits" in message and "npz:PATH" in message
    assert all(flag in message for flag in MEDMNIST_2D)


def test_digits_loads_with_a_deterministic_split():
    a, b = load_dataset("digits"), load_dataset("digits")
    assert a.n_classes == 10 and a.channels == 1 and a.image_size == 8
    assert len(a.train) + len(a.val) + len(a.test) == 1797
    assert len(a.test) == 359 and len(a.val) == 180
    assert torch.equal(a.train.images, b.train.images) and torch.equal(a.test.labels, b.test.labels)
    assert int(a.train.images.max()) == 255 and a.train.images.dtype == torch.uint8
    assert set(a.train.labels.tolist()) == set(range(10))


# --- damaged files: one UserError, never a traceback, never an allocation of what a header claims ---

def _npz_bytes_with_member(tmp_path, name: str, member: bytes) -> bytes:
    """An uncompressed npz whose member ``name`` holds ``member`` (raw bytes) instead of a real .npy."""
    import zipfile

    path = _write(tmp_path / "base.npz", **_arrays())
    out = tmp_path / "crafted.npz"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            dst.writestr(info.filename, member if info.filename == name else src.read(info))
    return out


def test_corrupted_member_is_one_user_error(tmp_path):
    path = tmp_path / "stored.npz"
    np.savez(path, **_arrays())  # stored, not deflated: the bytes below are the array's own
    blob = bytearray(path.read_bytes())
    start = blob.index(b"train_images.npy") + 200
    blob[start:start + 64] = bytes(64)  # the CRC no longer matches
    path.write_bytes(bytes(blob))
    with pytest.raises(UserError, match="cannot read its arrays"):
        load_dataset(f"npz:{path}")


def test_compressed_member_corruption_is_one_user_error(tmp_path):
    path = _write(tmp_path / "deflated.npz", **_arrays())
    blob = bytearray(path.read_bytes())
    start = blob.index(b"train_images.npy") + 120
    blob[start:start + 32] = b"\xff" * 32
    path.write_bytes(bytes(blob))
    with pytest.raises(UserError, match=str(path)):
        load_dataset(f"npz:{path}")


def test_npy_renamed_npz(tmp_path):
    path = tmp_path / "single.npz"
    with open(path, "wb") as f:
        np.save(f, np.zeros((4, 8, 8), dtype=np.uint8))
    with pytest.raises(UserError, match="single .npy array, not an npz archive"):
        load_dataset(f"npz:{path}")


def test_header_declaring_a_huge_array_is_refused_before_allocating(tmp_path, monkeypatch):
    import io

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False,
                                                  "shape": (10**13 // 64, 8, 8)})
    path = _npz_bytes_with_member(tmp_path, "train_images.npy", header.getvalue() + bytes(64))

    def no_read(*args, **kwargs):
        raise AssertionError("the array was read before its declared size was checked")

    monkeypatch.setattr(np.lib.format, "read_array", no_read)
    with pytest.raises(UserError, match=r"declares .* array \(10,000,000,000,000 bytes\) but holds 64 bytes"):
        load_dataset(f"npz:{path}")


def test_a_pickle_inside_an_npz_is_never_run(tmp_path):
    import pickle

    marker = tmp_path / "ran"

    class Planted:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    arrays = _arrays()
    arrays["train_labels"] = np.array([Planted()] * 24, dtype=object)
    path = tmp_path / "planted.npz"
    np.savez(path, **arrays)
    assert pickle.loads(pickle.dumps(Planted())) and marker.exists()  # the payload does run when unpickled
    marker.unlink()
    with pytest.raises(UserError, match="cannot read its arrays"):
        load_dataset(f"npz:{path}")
    assert not marker.exists()


# --- labels ---

def test_a_stray_label_does_not_make_more_classes(tmp_path):
    arrays = _arrays()
    arrays["train_labels"][3] = 255
    with pytest.raises(UserError, match=r"labels go up to 255, but 251 of the classes 0..255 never occur"):
        load_dataset(f"npz:{_write(tmp_path / 'stray.npz', **arrays)}")


def test_a_huge_label_is_refused_without_allocating(tmp_path):
    arrays = _arrays()
    arrays["test_labels"][0] = 10**9
    with pytest.raises(UserError, match=r"up to 1000000000.*\(4, 5, 6, 7, 8, \.\.\.\)"):
        load_dataset(f"npz:{_write(tmp_path / 'huge.npz', **arrays)}")


def test_a_single_class_pool_is_refused(tmp_path):
    arrays = _arrays()
    arrays["train_labels"][:] = 0
    arrays["test_labels"][:] = 0
    arrays["val_labels"][:] = 0
    with pytest.raises(UserError, match="single class .*at least 2 classes"):
        load_dataset(f"npz:{_write(tmp_path / 'one.npz', **arrays)}")


def test_medmnist_keeps_its_class_count_when_the_file_lacks_a_class(tmp_path):
    # dermamnist has 7 classes; a file whose labels happen to be 0..3 is still a 7-class problem
    write_medmnist_npz(tmp_path / "dermamnist.npz", n_classes=4)
    assert load_dataset("dermamnist", tmp_path).n_classes == 7
