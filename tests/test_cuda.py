"""The CUDA path: skipped on machines without a GPU (CI here has none)."""

import pytest
import torch

from autoal import runlog
from autoal.loop import run
from autoal.models import resolve_backbone
from conftest import make_dataset, tiny_config

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def test_auto_backbone_is_resnet18_on_cuda():
    assert resolve_backbone("auto", torch.device("cuda")) == "resnet18"


@pytest.mark.parametrize("strategy", ["entropy", "bald", "kmeans", "autoal", "albl"])
def test_tiny_run_on_cuda_matches_the_run_contract(tmp_path, strategy):
    cfg = tiny_config(strategy=strategy, device="cuda", backbone="resnet18", candidates="entropy,bald,kmeans")
    summary = run(cfg, tmp_path, data=make_dataset())
    records = runlog.read_rounds(tmp_path)
    assert [r["labels"] for r in records] == [8, 12, 16]
    queried = [i for r in records for i in r["queried"]]
    assert len(queried) == len(set(queried)) == 8
    assert 0.0 <= summary["aubc"] <= 1.0


# --- the CUDA path of issue 10 (Scale): determinism, precision, layout, residency ---------------

@pytest.mark.parametrize("backbone", ["cnn", "resnet18"])
def test_deterministic_runs_on_cuda_repeat_exactly(tmp_path, backbone):
    """--deterministic: two runs give the same records (the CNN's 3x3 pool has no deterministic
    CUDA backward; autoal.accel swaps in its matmul form, else this raises)."""
    cfg = tiny_config(strategy="autoal", device="cuda", backbone=backbone, candidates="entropy,bald,kmeans",
                      deterministic=True)
    run(cfg, tmp_path / "a", data=make_dataset())
    run(cfg, tmp_path / "b", data=make_dataset())
    strip = lambda rs: [{k: v for k, v in r.items() if k not in ("seconds", "selector")} for r in rs]  # noqa: E731
    assert strip(runlog.read_rounds(tmp_path / "a")) == strip(runlog.read_rounds(tmp_path / "b"))


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_runs_on_cuda(tmp_path, precision):
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16")
    cfg = tiny_config(strategy="bald", device="cuda", backbone="resnet18", precision=precision)
    summary = run(cfg, tmp_path, data=make_dataset())
    assert 0.0 <= summary["aubc"] <= 1.0 and summary["final_acc"] is not None


def test_cuda_batches_come_from_the_resident_copy_in_channels_last():
    from autoal.accel import prepare_model
    from autoal.learner import Learner, TrainSettings

    data = make_dataset(channels=3)
    learner = Learner(data, TrainSettings(backbone="resnet18"), torch.device("cuda"))
    x, y = learner.batch(data.train, torch.arange(8))
    resident = learner._on_device(data.train)
    assert resident is not None and resident.is_cuda and torch.equal(resident.cpu(), data.train.images)
    assert x.is_cuda and y.is_cuda and x.is_contiguous(memory_format=torch.channels_last)
    model = learner.new_model(seed=0)
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert prepare_model(torch.nn.Linear(2, 2), torch.device("cuda")).weight.is_cuda


def test_deterministic_mode_swaps_the_cnn_pool_on_cuda():
    from autoal.accel import MatmulAdaptiveAvgPool2d
    from autoal.learner import Learner, TrainSettings
    from autoal.rng import deterministic_mode

    learner = Learner(make_dataset(), TrainSettings(backbone="cnn"), torch.device("cuda"))
    with deterministic_mode(True):
        model = learner.new_model(seed=0)
    assert any(isinstance(m, MatmulAdaptiveAvgPool2d) for m in model.modules())
