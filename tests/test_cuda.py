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
