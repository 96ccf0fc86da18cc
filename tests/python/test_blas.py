"""`lowbit train` names the reference BLAS when LibTorch's dense layers would run on it (Debian's
LibTorch gets libblas3 by default: matrix products 5-30x slower than OpenBLAS), and says nothing
when an optimised BLAS is in use."""
import os
import subprocess
from pathlib import Path

import pytest

import onnx_reference as ref
from test_datasets import SMALL, write_cifar10

LOWBIT = ref.ROOT / "build" / "lowbit"
REFERENCE_BLAS = Path("/usr/lib/x86_64-linux-gnu/blas/libblas.so.3")
WARNING = "reference BLAS"


def train(tmp_path, env=None):
    config = tmp_path / "small.yaml"
    config.write_text(SMALL)
    data = write_cifar10(tmp_path / "data", train=200, test=100)
    return subprocess.run(
        [str(LOWBIT), "train", "--model", "bnn", "--config", str(config), "--data", str(data),
         "--out", str(tmp_path / "run"), "--no-progress", "--threads", "1"],
        capture_output=True, text=True, env=dict(os.environ, **(env or {})), timeout=600)


@pytest.mark.skipif(not REFERENCE_BLAS.exists(), reason="Debian's reference BLAS (libblas3) is not installed")
def test_reference_blas_is_named_with_what_to_install(tmp_path):
    # Loaded first, its sgemm_ is the one LibTorch calls, whatever libblas.so.3 points to.
    result = train(tmp_path, {"LD_PRELOAD": str(REFERENCE_BLAS)})
    assert result.returncode == 0, result.stderr
    lines = [l for l in result.stderr.splitlines() if WARNING in l]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("lowbit: warning: ")
    assert str(REFERENCE_BLAS) in lines[0] and "libopenblas0-openmp" in lines[0]


def test_no_warning_on_an_optimised_blas(tmp_path):
    libblas = Path("/usr/lib/x86_64-linux-gnu/libblas.so.3").resolve()
    if "openblas" not in str(libblas) and "blis" not in str(libblas):
        pytest.skip(f"libblas.so.3 is {libblas}, not an optimised BLAS (scripts/setup installs OpenBLAS)")
    result = train(tmp_path)
    assert result.returncode == 0, result.stderr
    assert WARNING not in result.stderr
