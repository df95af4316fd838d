"""Device and dtype choice (edtalk.runtime): one rule for training and generation."""
import pytest
import torch

from edtalk.errors import InputError
from edtalk.runtime import default_batch_size, resolve_device, resolve_dtype


def test_cpu_and_auto_without_accelerators(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("edtalk.runtime.mps_available", lambda: False)
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cpu")
    assert default_batch_size("cpu") == 2 and default_batch_size("cuda") == 8


def test_auto_prefers_cuda_then_mps_and_training_skips_mps(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("edtalk.runtime.mps_available", lambda: True)
    assert resolve_device("auto") == torch.device("mps")
    assert resolve_device("auto", auto_mps=False) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("auto", local_rank=1) == torch.device("cuda", 1)  # a distributed rank's own GPU
    assert resolve_device("cuda:0", local_rank=1) == torch.device("cuda", 0)  # an explicit index stays


def test_unknown_or_absent_devices_are_one_line_naming_the_setting(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InputError, match="unknown device 'gpu'"):
        resolve_device("gpu")
    with pytest.raises(InputError, match="^--device cuda was requested"):
        resolve_device("cuda")
    with pytest.raises(InputError, match="^train.device cuda was requested"):
        resolve_device("cuda", option="train.device")


def test_dtypes():
    assert resolve_dtype("bf16", torch.device("cpu")) == torch.bfloat16
    with pytest.raises(InputError, match="fp16 needs a GPU"):
        resolve_dtype("fp16", torch.device("cpu"))
    with pytest.raises(InputError, match="unknown dtype"):
        resolve_dtype("int8", torch.device("cpu"))
