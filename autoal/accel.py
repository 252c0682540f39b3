"""How a run uses its hardware: mixed precision, channels_last, pinned transfers, images kept on
the GPU when they fit, a deterministic stand-in for adaptive average pooling, and peak memory.

Everything here is a no-op on the CPU except the precision (bf16 autocast works there too) and
the memory figures, so the CUDA path differs from the tested CPU path only where it must.
"""

from __future__ import annotations

import contextlib
import math
import resource
import sys
from typing import ContextManager

import torch
from torch import Tensor, nn

from autoal.errors import UserError

#: --precision: fp32 (no autocast), bf16 or fp16 autocast of training and inference forwards.
PRECISIONS = ("fp32", "bf16", "fp16")
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
#: A split is copied to the GPU when it takes at most this fraction of the free GPU memory: the
#: rest is left to the model, its optimiser and the activations of a ResNet-18 batch.
RESIDENT_FRACTION = 0.5


# --- precision --------------------------------------------------------------------------------

def check_precision(precision: str, device: torch.device) -> None:
    """Refuse a precision the device cannot run, with the fix."""
    if precision not in PRECISIONS:
        raise UserError(f"--precision {precision!r} is not a precision; use one of {', '.join(PRECISIONS)}")
    if precision == "fp16" and device.type != "cuda":
        raise UserError(f"--precision fp16 needs CUDA (its loss scaling is CUDA's); on {device.type} "
                        f"use --precision bf16 or fp32")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise UserError("--precision bf16: this GPU has no bfloat16 support; use --precision fp16 or fp32")


def autocast(device: torch.device, precision: str) -> ContextManager:
    """Autocast of forwards at ``precision`` on ``device`` (fp32: nothing). Losses and softmaxes
    are computed from ``.float()`` logits by the callers, so only the network runs in 16 bits."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=AUTOCAST_DTYPES[precision])


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """Loss scaling for fp16 on CUDA (fp16 gradients underflow without it); disabled otherwise
    (bf16 has fp32's exponent range), where its calls pass through unchanged."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16" and device.type == "cuda")


# --- models -----------------------------------------------------------------------------------

def pooling_matrix(size_in: int, size_out: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """(size_out, size_in): row i averages the window adaptive average pooling uses for output i,
    [floor(i * in / out), ceil((i + 1) * in / out))."""
    m = torch.zeros(size_out, size_in, dtype=dtype, device=device)
    for i in range(size_out):
        start, end = (i * size_in) // size_out, math.ceil((i + 1) * size_in / size_out)
        m[i, start:end] = 1.0 / (end - start)
    return m


class MatmulAdaptiveAvgPool2d(nn.Module):
    """nn.AdaptiveAvgPool2d as two matrix products, P_h x P_w^T: the same values, and a backward
    that is a matrix product too. CUDA's adaptive_avg_pool2d backward accumulates with atomics and
    raises under torch.use_deterministic_algorithms(True); matrix products do not."""

    def __init__(self, output_size: int | tuple[int, int]):
        super().__init__()
        self.output_size = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)

    def forward(self, x: Tensor) -> Tensor:  # (N, C, H, W) -> (N, C, oh, ow)
        out_h = self.output_size[0] if self.output_size[0] is not None else x.shape[-2]
        out_w = self.output_size[1] if self.output_size[1] is not None else x.shape[-1]
        p_h = pooling_matrix(x.shape[-2], out_h, x.device, x.dtype)
        p_w = pooling_matrix(x.shape[-1], out_w, x.device, x.dtype)
        return torch.matmul(torch.matmul(p_h, x), p_w.T)


def deterministic_pooling(model: nn.Module) -> nn.Module:
    """Replace (in place) every nn.AdaptiveAvgPool2d whose output is not 1x1 by MatmulAdaptiveAvgPool2d.

    A 1x1 output (ResNet-18's global pool) is computed as a mean by torch itself, which is
    deterministic; the small CNN's 3x3 grid is not. The replacement holds no parameters or
    buffers, so state dicts load either way.
    """
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.AdaptiveAvgPool2d):
                size = child.output_size
                sizes = (size, size) if isinstance(size, int) else tuple(size)
                if sizes != (1, 1):
                    setattr(parent, name, MatmulAdaptiveAvgPool2d(sizes))
    return model


def has_conv2d(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def prepare_model(model: nn.Module, device: torch.device) -> nn.Module:
    """A model on ``device`` ready for it: on CUDA, deterministic pooling when deterministic
    algorithms are on, and channels_last weights for convolutional models (cuDNN's fast layout,
    used with ``to_device`` batches in the same layout). Elsewhere the model is only moved."""
    if device.type == "cuda":
        if torch.are_deterministic_algorithms_enabled():
            deterministic_pooling(model)
        if has_conv2d(model):
            model = model.to(memory_format=torch.channels_last)
    return model.to(device)


# --- data movement ----------------------------------------------------------------------------

def to_device(images: Tensor, device: torch.device) -> Tensor:
    """Host rows -> ``device``: through pinned memory without blocking on CUDA, a plain move elsewhere."""
    if device.type == "cuda" and images.device.type == "cpu":
        return images.pin_memory().to(device, non_blocking=True)
    return images.to(device)


def channels_last(x: Tensor, device: torch.device) -> Tensor:
    """A 4-D batch in channels_last layout on CUDA (matching ``prepare_model``), else as it is."""
    return x.contiguous(memory_format=torch.channels_last) if device.type == "cuda" and x.dim() == 4 else x


def fits_on_device(nbytes: int, free_bytes: int, fraction: float = RESIDENT_FRACTION) -> bool:
    """Whether an array of ``nbytes`` may live on a device with ``free_bytes`` free."""
    return nbytes <= fraction * free_bytes


def resident_copy(images: Tensor, device: torch.device, chunk_rows: int = 4096) -> Tensor | None:
    """The whole uint8 image array on the GPU when it fits (``fits_on_device``), copied in chunks
    of rows (a memory-mapped array is read once, never materialised on the host); None on other
    devices or when it does not fit: batches are then cut on the host and moved one by one."""
    if device.type != "cuda" or len(images) == 0:
        return None
    free, _ = torch.cuda.mem_get_info(device)
    if not fits_on_device(images.numel() * images.element_size(), free):
        return None
    out = torch.empty(images.shape, dtype=images.dtype, device=device)
    for start in range(0, len(images), chunk_rows):
        out[start:start + chunk_rows].copy_(to_device(images[start:start + chunk_rows], device), non_blocking=True)
    torch.cuda.synchronize(device)
    return out


# --- memory -----------------------------------------------------------------------------------

def peak_rss_mb() -> float:
    """This process's peak resident set size in MiB (getrusage: KiB on Linux, bytes on macOS).

    It counts the pages of memory-mapped images that were resident at the peak; those are file
    pages the kernel drops under pressure, not memory the run holds."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


def rss_breakdown_mb() -> dict[str, float]:
    """The current resident memory split into anonymous (heap, tensors) and file-backed (mapped
    files such as the image cache) pages, in MiB, from /proc/self/status; empty where there is none."""
    fields = {"RssAnon": "anon", "RssFile": "file", "VmHWM": "peak"}
    out: dict[str, float] = {}
    try:
        with open("/proc/self/status") as status:
            for line in status:
                key, _, value = line.partition(":")
                if key in fields:
                    out[fields[key]] = round(int(value.split()[0]) / 1024, 1)
    except OSError:
        return {}
    return out
