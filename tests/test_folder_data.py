"""--dataset folder:PATH: a folder of images of any size, its labels.csv, classes.txt and test/, and the cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from autoal import folder_data
from autoal.data import load_dataset
from autoal.errors import UserError


def write_images(root: Path, names: list[str], *, grey: bool = False, seed: int = 0) -> None:
    """Tiny PNG/JPEG/TIFF files of different sizes: the loader must bring each to --size."""
    rng = np.random.default_rng(seed)
    for k, name in enumerate(names):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        shape = (10 + k % 5, 14 + k % 3) if grey else (10 + k % 5, 14 + k % 3, 3)
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(path)


def write_csv(path: Path, rows: list[tuple[str, str]]) -> None:
    path.write_text("file,label\n" + "".join(f"{f},{lab}\n" for f, lab in rows))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "slides"
    write_images(root, [f"a{i}.png" for i in range(6)] + ["deep/b.jpg", "c.tif"])
    write_csv(root / "labels.csv", [("a0.png", "tumour"), ("a1.png", "normal"), ("deep/b.jpg", "tumour")])
    return root


def test_a_folder_becomes_a_pool_with_known_and_unknown_labels(folder):
    data = load_dataset(f"folder:{folder}", size=16)
    assert data.train.images.shape == (8, 3, 16, 16) and data.train.images.dtype == torch.uint8
    assert data.classes == ("normal", "tumour")  # sorted label names
    assert data.pool_files == ("a0.png", "a1.png", "a2.png", "a3.png", "a4.png", "a5.png", "c.tif", "deep/b.jpg")
    labels = dict(zip(data.pool_files, data.train.labels.tolist()))
    assert labels["a0.png"] == 1 and labels["a1.png"] == 0 and labels["deep/b.jpg"] == 1
    assert labels["a2.png"] == folder_data.UNLABELED
    assert len(data.test) == 0 and data.n_classes == 2


def test_the_pixels_are_the_resized_file(folder):
    data = load_dataset(f"folder:{folder}", size=12)
    expected = np.asarray(Image.open(folder / "a3.png").convert("RGB").resize((12, 12), Image.Resampling.LANCZOS))
    np.testing.assert_array_equal(data.train.images[3].numpy().transpose(1, 2, 0), expected)


def test_classes_txt_gives_the_order_and_the_classes_no_label_uses(folder):
    (folder / "classes.txt").write_text("tumour\nnormal\nunclear tissue\n")
    data = load_dataset(f"folder:{folder}", size=16)
    assert data.classes == ("tumour", "normal", "unclear tissue") and data.n_classes == 3
    assert data.train.labels[0] == 0  # a0.png is tumour, class 0 in classes.txt's order


def test_channels_auto_grey_and_forced(tmp_path):
    root = tmp_path / "xray"
    write_images(root, [f"g{i}.png" for i in range(3)], grey=True)
    (root / "classes.txt").write_text("a\nb\n")
    assert load_dataset(f"folder:{root}", size=8).channels == 1  # every image grey
    assert load_dataset(f"folder:{root}", size=8, channels=3).channels == 3
    write_images(root, ["colour.png"])
    assert load_dataset(f"folder:{root}", size=8).channels == 3  # one colour image: RGB
    grey = load_dataset(f"folder:{root}", size=8, channels=1)
    assert grey.train.images.shape == (4, 1, 8, 8)


def test_sixteen_bit_images_use_their_own_range(tmp_path):
    root = tmp_path / "ct"
    root.mkdir()
    values = np.linspace(1000, 3000, 64).reshape(8, 8).astype(np.uint16)
    Image.fromarray(values).save(root / "scan.tif")
    Image.fromarray(values).save(root / "scan2.png")
    (root / "classes.txt").write_text("a\nb\n")
    data = load_dataset(f"folder:{root}", size=8)
    pixels = data.train.images[0, 0]
    assert data.channels == 1 and int(pixels.min()) == 0 and int(pixels.max()) == 255  # not clipped to 255


def test_test_subfolder_is_the_evaluation_split(folder):
    write_images(folder / "test", ["t0.png", "t1.png", "sub/t2.png"], seed=1)
    write_csv(folder / "test" / "labels.csv", [("t0.png", "normal"), ("t1.png", "tumour"), ("sub/t2.png", "normal")])
    data = load_dataset(f"folder:{folder}", size=16)
    assert len(data.train) == 8  # the test images are not in the pool
    assert data.test.labels.tolist() == [0, 0, 1]  # sub/t2.png, t0.png, t1.png
    assert data.test.images.shape == (3, 3, 16, 16)


@pytest.mark.parametrize("breakage, match", [
    (lambda root: (root / "a2.png").write_bytes(b"not an image"), r"cannot read .*a2\.png as an image"),
    (lambda root: (root / "a2.png").write_bytes((root / "a3.png").read_bytes()[:60]), r"a2\.png"),  # truncated
    (lambda root: write_csv(root / "labels.csv", [("a0.png", "x"), ("a0.png", "y")]), r"line 3: a0\.png is listed twice"),
    (lambda root: write_csv(root / "labels.csv", [("a0.png", "x"), ("gone.png", "y")]), r"line 3: no image gone\.png"),
    (lambda root: (root / "classes.txt").write_text("tumour\nstroma\n"), r"a1\.png has label 'normal', which is not in"),
    (lambda root: write_csv(root / "labels.csv", [("a0.png", "x")]), r"at least 2 classes, found 1 \(x\)"),
    (lambda root: (root / "classes.txt").write_text("tumour\nUnsure\n"), r"'unsure' cannot be a class"),
    (lambda root: (root / "classes.txt").write_text("a\nb\na\n"), r"class 'a' is listed twice"),
    (lambda root: (root / "labels.csv").write_text("name,class\na0.png,x\n"), r"header file,label"),
    (lambda root: (write_images(root / "test", ["t.png"]), write_csv(root / "test" / "labels.csv", [])),
     r"test/labels\.csv: 1 test images have no row \(first: t\.png\)"),
    (lambda root: write_images(root / "test", ["t.png"]), r"test/labels\.csv is missing"),
])
def test_bad_input_is_one_line_naming_the_file(folder, breakage, match):
    breakage(folder)
    with pytest.raises(UserError, match=match) as err:
        load_dataset(f"folder:{folder}", size=16)
    assert "\n" not in str(err.value)


def test_no_images_and_no_classes_are_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no PNG/JPEG/TIFF images"):
        load_dataset(f"folder:{tmp_path / 'empty'}", size=16)
    write_images(tmp_path / "bare", ["x.png", "y.png"])
    with pytest.raises(UserError, match=r"at least 2 classes, found none.*classes\.txt"):
        load_dataset(f"folder:{tmp_path / 'bare'}", size=16)
    with pytest.raises(UserError, match="is not a folder"):
        load_dataset(f"folder:{tmp_path / 'nowhere'}", size=16)


def test_images_are_decoded_once_then_memory_mapped(folder, monkeypatch):
    first = load_dataset(f"folder:{folder}", size=16)
    caches = list((folder / folder_data.CACHE).glob("*.npy"))
    assert len(caches) == 1 and not list((folder / folder_data.CACHE).glob("*.tmp"))

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again although the cache is current")

    monkeypatch.setattr(folder_data, "decode", no_decoding)
    second = load_dataset(f"folder:{folder}", size=16)
    assert torch.equal(first.train.images, second.train.images)
    assert isinstance(np.load(caches[0], mmap_mode="r"), np.memmap)
    write_csv(folder / "labels.csv", [("a0.png", "normal"), ("a1.png", "tumour")])  # labels are not cached
    assert load_dataset(f"folder:{folder}", size=16).train.labels[:2].tolist() == [0, 1]


def test_a_changed_file_is_decoded_again(folder):
    before = load_dataset(f"folder:{folder}", size=16)
    write_images(folder, ["a4.png"], seed=7)  # rewritten: another size and mtime
    after = load_dataset(f"folder:{folder}", size=16)
    assert not torch.equal(before.train.images[4], after.train.images[4])
    assert torch.equal(before.train.images[5], after.train.images[5])
    assert len(list((folder / folder_data.CACHE).glob("*.npy"))) == 1  # the stale cache is gone


def test_an_unwritable_folder_still_loads(folder, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(np.lib.format, "open_memmap", refuse)
    data = load_dataset(f"folder:{folder}", size=16)
    assert data.train.images.shape == (8, 3, 16, 16)


def test_the_channel_decision_and_the_statistics_are_remembered(folder, monkeypatch):
    from autoal.data import channel_stats

    first = load_dataset(f"folder:{folder}", size=16)
    mean, std = channel_stats(first.train.images)
    assert first.mean == pytest.approx(mean) and first.std == pytest.approx(std)

    def must_not_run(*args, **kwargs):
        raise AssertionError("recomputed although remembered")

    monkeypatch.setattr(folder_data, "_is_grey", must_not_run)
    monkeypatch.setattr(folder_data, "channel_stats", must_not_run)
    second = load_dataset(f"folder:{folder}", size=16)
    assert second.channels == 3 and (second.mean, second.std) == (first.mean, first.std)


def test_a_read_only_folder_caches_in_the_users_cache(folder, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("AUTOAL_CACHE_DIR", raising=False)
    folder.chmod(0o555)
    try:
        data = load_dataset(f"folder:{folder}", size=16)
        assert not (folder / folder_data.CACHE).exists()
        cached = list((tmp_path / "xdg" / "autoal").glob("folder-*/images-*.npy"))
        assert len(cached) == 1

        def no_decoding(*args, **kwargs):
            raise AssertionError("decoded again although the user cache is current")

        monkeypatch.setattr(folder_data, "decode", no_decoding)
        assert torch.equal(load_dataset(f"folder:{folder}", size=16).train.images, data.train.images)
    finally:
        folder.chmod(0o755)


def test_a_run_folder_inside_the_image_folder_is_not_part_of_the_pool(folder):
    before = load_dataset(f"folder:{folder}", size=16).pool_files
    run = folder / "runs" / "slides-entropy-seed0"
    write_images(run / "queries" / "round-000" / "images", ["0000.png", "0001.png"])
    (run / "config.json").write_text("{}")
    assert load_dataset(f"folder:{folder}", size=16).pool_files == before


def test_large_jpegs_decode_at_a_reduced_scale_that_still_covers_the_size(tmp_path):
    root = tmp_path / "photos"
    root.mkdir()
    gradient = np.tile(np.linspace(0, 255, 512, dtype=np.uint8), (512, 1))
    Image.fromarray(np.stack([gradient] * 3, axis=-1)).save(root / "big.jpg", quality=95)
    Image.fromarray(np.stack([gradient] * 3, axis=-1)).save(root / "big.png")
    (root / "classes.txt").write_text("a\nb\n")
    assert folder_data.open_as_8bit(root / "big.jpg", at_least=64).size == (64, 64)  # 1/8 of 512
    assert folder_data.open_as_8bit(root / "big.jpg", at_least=100).size == (128, 128)  # never below the size
    data = load_dataset(f"folder:{root}", size=64)
    jpeg, png = data.train.images[0].float(), data.train.images[1].float()
    assert (jpeg - png).abs().mean() < 3.0  # the same picture
