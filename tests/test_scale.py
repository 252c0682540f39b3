"""Scale on one machine: the memory-mapped npz cache, bf16 on the CPU, the deterministic flag, the
deterministic pooling stand-in, the GPU-residency size check and the peak-memory record."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from autoal import accel, data as data_module, runlog
from autoal.data import CACHE_ENV, load_dataset, unpacked_npz
from autoal.errors import UserError
from autoal.learner import Learner, TrainSettings, accuracy
from autoal.loop import run
from autoal.rng import deterministic_mode
from conftest import make_dataset, tiny_config, write_medmnist_npz


@pytest.fixture
def user_cache(tmp_path, monkeypatch):
    """The user cache folder (used when the data folder is read-only), inside the test's folder."""
    folder = tmp_path / "user-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(folder))
    monkeypatch.delenv(CACHE_ENV, raising=False)
    return folder / "autoal"


def _entries(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir()) if root.is_dir() else []


def _mapped_files(tensor: torch.Tensor) -> list[str]:
    """Files of /proc/self/maps whose mapping holds the tensor's first byte."""
    address = tensor.data_ptr()
    found = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            parts = line.split()
            start, end = (int(x, 16) for x in parts[0].split("-"))
            if start <= address < end and len(parts) >= 6:
                found.append(parts[5])
    return found


# --- the npz cache ----------------------------------------------------------------------------

@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc/self/maps (Linux)")
def test_npz_images_are_memory_mapped_from_the_cache(tmp_path, user_cache):
    path = write_medmnist_npz(tmp_path / "set.npz", n_train=40, channels=3)
    data = load_dataset(f"npz:{path}")
    (entry,) = _entries(tmp_path / data_module.CACHE_FOLDER)
    assert sorted(p.name for p in entry.iterdir()) == sorted(
        [f"{s}_{k}.npy" for s in ("train", "val", "test") for k in ("images", "labels")] + ["source.json"])
    # the pool's pixels live in a mapping of the cache file, not in a heap copy
    assert str(entry / "train_images.npy") in _mapped_files(data.train.images)
    with np.load(path) as archive:  # and they are the archive's, as (N, C, H, W)
        assert np.array_equal(data.train.images.numpy(), archive["train_images"].transpose(0, 3, 1, 2))
        assert np.array_equal(data.test.labels.numpy(), archive["test_labels"].reshape(-1))


def test_a_second_load_reads_the_cache_without_opening_the_archive(tmp_path, user_cache, monkeypatch):
    path = write_medmnist_npz(tmp_path / "set.npz")
    first = load_dataset(f"npz:{path}")

    def no_unpack(*args):
        raise AssertionError("the archive was unpacked again")

    monkeypatch.setattr(data_module, "_unpack", no_unpack)
    again = load_dataset(f"npz:{path}")
    assert torch.equal(first.train.images, again.train.images) and first.mean == again.mean


def test_a_changed_file_gets_a_new_cache_and_the_old_one_goes(tmp_path, user_cache):
    path = write_medmnist_npz(tmp_path / "set.npz", seed=0)
    before = load_dataset(f"npz:{path}").train.images.clone()
    old_entries = _entries(tmp_path / data_module.CACHE_FOLDER)
    write_medmnist_npz(tmp_path / "set.npz", seed=5)
    os.utime(path, ns=(1, 1))  # a different mtime even on a coarse clock
    after = load_dataset(f"npz:{path}").train.images
    assert not torch.equal(before, after)
    new_entries = _entries(tmp_path / data_module.CACHE_FOLDER)
    assert len(new_entries) == 1 and new_entries != old_entries


def test_two_processes_unpacking_at_once_share_one_cache(tmp_path, user_cache, monkeypatch):
    """The other process wins the rename while this one is still unpacking: this one uses its cache."""
    path = write_medmnist_npz(tmp_path / "set.npz")
    real_unpack = data_module._unpack
    calls = []

    def unpack_while_another_finishes(source, out):
        calls.append(out)
        real_unpack(source, out)
        if len(calls) == 1:  # the "other process" builds and renames its copy first
            unpacked_npz(source)

    monkeypatch.setattr(data_module, "_unpack", unpack_while_another_finishes)
    entry = unpacked_npz(path)
    assert len(calls) == 2
    assert _entries(tmp_path / data_module.CACHE_FOLDER) == [entry]  # one cache, no temporary folder left
    assert load_dataset(f"npz:{path}").train.images.shape == (64, 1, 8, 8)


def test_a_read_only_data_folder_caches_in_the_user_folder(tmp_path, user_cache):
    folder = tmp_path / "shared"
    folder.mkdir()
    path = write_medmnist_npz(folder / "set.npz")
    folder.chmod(0o555)  # read-only for everyone; root too is expected to leave it alone
    try:
        data = load_dataset(f"npz:{path}")
    finally:
        folder.chmod(0o755)
    assert sorted(p.name for p in folder.iterdir()) == ["set.npz"]
    (digest,) = _entries(user_cache)
    (entry,) = _entries(digest)
    assert entry.name.startswith("set.npz-v")
    assert len(data.train) == 64


def test_the_labels_are_checked_on_every_load(tmp_path, user_cache):
    path = write_medmnist_npz(tmp_path / "set.npz")
    load_dataset(f"npz:{path}")
    (entry,) = _entries(tmp_path / data_module.CACHE_FOLDER)
    labels = np.load(entry / "train_labels.npy")
    labels[3] = 255
    np.save(entry / "train_labels.npy", labels)  # a damaged cache must not make 256 classes
    with pytest.raises(UserError, match="labels go up to 255"):
        load_dataset(f"npz:{path}")


def test_a_full_disk_while_unpacking_names_the_folder_and_leaves_nothing(tmp_path, user_cache, monkeypatch):
    path = write_medmnist_npz(tmp_path / "set.npz")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(np.lib.format, "open_memmap", full)
    with pytest.raises(UserError, match=rf"cannot unpack .*set.npz into .*{data_module.CACHE_FOLDER}.*No space left"):
        load_dataset(f"npz:{path}")
    assert _entries(tmp_path / data_module.CACHE_FOLDER) == []


def test_unpacking_streams_the_images_in_row_blocks(tmp_path, user_cache, monkeypatch):
    """Blocks of a few rows give the same arrays as one read of the whole member."""
    path = write_medmnist_npz(tmp_path / "set.npz", n_train=37, channels=3)
    monkeypatch.setattr(data_module, "UNPACK_CHUNK_BYTES", 5 * 8 * 8 * 3)  # 5 rows per block
    data = load_dataset(f"npz:{path}")
    with np.load(path) as archive:
        assert np.array_equal(data.train.images.numpy(), archive["train_images"].transpose(0, 3, 1, 2))


# --- precision and determinism ----------------------------------------------------------------

def test_bf16_training_and_inference_on_the_cpu():
    data = make_dataset(n_train=96, n_test=64)
    # 24 steps: bf16 convolutions are about 10x slower than fp32 on a CPU without bf16 units
    settings = TrainSettings(epochs=1, min_steps=24, batch_size=16, mc_samples=4, precision="bf16")
    learner = Learner(data, settings, torch.device("cpu"))
    model = learner.new_model(seed=0)
    conv_dtypes = []  # what the first convolution computed in, during training and inference
    model.backbone[0].register_forward_hook(lambda module, args, out: conv_dtypes.append(out.dtype))
    model = learner.fit(torch.arange(96), seed=0, model=model)
    assert set(conv_dtypes) == {torch.bfloat16}
    out = learner.infer(model, torch.arange(64), frozenset({"probs", "mc_probs", "embeddings"}), seed=0,
                        split=data.test)
    assert set(conv_dtypes) == {torch.bfloat16}
    # candidates see float32 at every precision, and the probabilities are probabilities
    assert out.probs.dtype == out.mc_probs.dtype == out.embeddings.dtype == torch.float32
    torch.testing.assert_close(out.probs.sum(dim=1), torch.ones(64), atol=1e-4, rtol=0)
    assert accuracy(out.probs, data.test.labels) >= 0.9  # the quadrant task is learned at bf16 as at fp32


def test_fp16_is_refused_on_the_cpu():
    with pytest.raises(UserError, match="fp16 needs CUDA"):
        Learner(make_dataset(), TrainSettings(precision="fp16"), torch.device("cpu"))


def test_deterministic_mode_sets_the_torch_flags_and_restores_them(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    torch.use_deterministic_algorithms(False)
    torch.backends.cudnn.benchmark = True
    try:
        with deterministic_mode(True):
            assert torch.are_deterministic_algorithms_enabled()
            assert not torch.is_deterministic_algorithms_warn_only_enabled()
            assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
            assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        assert not torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.benchmark
        assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
        with deterministic_mode(False):  # off changes nothing
            assert not torch.are_deterministic_algorithms_enabled()
    finally:
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = False
        torch.use_deterministic_algorithms(True)  # the session's setting (conftest)


def test_a_run_holds_deterministic_mode_while_it_computes(tmp_path, monkeypatch):
    seen = []
    real_fit = Learner.fit

    def fit(self, *args, **kwargs):
        seen.append(torch.are_deterministic_algorithms_enabled())
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(Learner, "fit", fit)
    torch.use_deterministic_algorithms(False)
    try:
        run(tiny_config(rounds=1, deterministic=True), tmp_path / "on", data=make_dataset())
        assert seen and all(seen) and not torch.are_deterministic_algorithms_enabled()
        seen.clear()
        run(tiny_config(rounds=1, deterministic=False), tmp_path / "off", data=make_dataset())
        assert seen and not any(seen)
    finally:
        torch.use_deterministic_algorithms(True)


@pytest.mark.parametrize("size_in,size_out", [(7, 3), (8, 3), (2, 3), (5, 5), (14, 4)])
def test_matmul_pooling_equals_adaptive_average_pooling(size_in, size_out):
    x = torch.randn(2, 3, size_in, size_in + 1, dtype=torch.float64, requires_grad=True)
    ours = accel.MatmulAdaptiveAvgPool2d(size_out)(x)
    torch_s = nn.AdaptiveAvgPool2d(size_out)(x)
    torch.testing.assert_close(ours, torch_s)
    weights = torch.randn_like(ours)
    (g_ours,) = torch.autograd.grad((ours * weights).sum(), x)
    (g_torch,) = torch.autograd.grad((torch_s * weights).sum(), x)
    torch.testing.assert_close(g_ours, g_torch)


def test_deterministic_pooling_swaps_only_non_global_pools():
    from autoal.models import build_classifier

    cnn = build_classifier("cnn", 1, 28, 10, generator=torch.Generator().manual_seed(0))
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        before = cnn.eval()(x)
        accel.deterministic_pooling(cnn)
        after = cnn(x)
    assert not any(isinstance(m, nn.AdaptiveAvgPool2d) for m in cnn.modules())
    torch.testing.assert_close(before, after)
    global_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1))
    accel.deterministic_pooling(global_pool)
    assert isinstance(global_pool[0], nn.AdaptiveAvgPool2d)  # torch computes a 1x1 pool as a mean


def test_the_gpu_residency_size_check():
    assert accel.fits_on_device(40, free_bytes=100)
    assert not accel.fits_on_device(60, free_bytes=100)  # half the free memory stays for the model
    assert accel.resident_copy(torch.zeros(4, 1, 8, 8, dtype=torch.uint8), torch.device("cpu")) is None


# --- memory record ----------------------------------------------------------------------------

def test_the_summary_records_peak_memory(tmp_path):
    summary = run(tiny_config(rounds=1), tmp_path, data=make_dataset())
    assert summary["peak_rss_mb"] == runlog.read_json(tmp_path / runlog.SUMMARY)["peak_rss_mb"]
    assert 10 < summary["peak_rss_mb"] <= accel.peak_rss_mb()


# --- Ray: a task's GPU is its cuda:0 ----------------------------------------------------------

def test_ray_task_device_maps_every_cuda_request_to_the_tasks_own_gpu():
    from experiments.compare import ray_task_device

    assert ray_task_device("cuda:1", [1]) == "cuda:0"  # Ray set CUDA_VISIBLE_DEVICES=1: torch sees it as 0
    assert ray_task_device("cuda", ["3"]) == "cuda:0"
    assert ray_task_device("cpu", []) == "cpu" and ray_task_device("auto", []) == "auto"
    with pytest.raises(UserError, match="reserved no GPU.*--gpus-per-run"):
        ray_task_device("cuda:1", [])


@pytest.mark.slow
def test_under_ray_a_task_on_the_second_gpu_computes_on_cuda0(monkeypatch):
    """Two GPUs declared as Ray resources (none need exist): the task Ray puts on GPU 1 sees only it."""
    ray = pytest.importorskip("ray")
    from experiments.compare import ray_task_device

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False)
    try:
        @ray.remote(num_gpus=1, num_cpus=1)
        def probe():
            import os
            import time

            time.sleep(2)  # both tasks hold their GPU at once, so Ray gives them different ones
            ids = ray.get_gpu_ids()
            return os.environ.get("CUDA_VISIBLE_DEVICES"), [int(i) for i in ids], ray_task_device("cuda:1", ids)

        results = sorted(ray.get([probe.remote(), probe.remote()]))
    finally:
        ray.shutdown()
    assert results == [("0", [0], "cuda:0"), ("1", [1], "cuda:0")]
