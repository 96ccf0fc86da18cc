"""Re-runs the size and boundary tests with each kernel set this CPU supports (LOWBIT_ISA), in a
subprocess since the set is chosen once per process."""

import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON_DIR = os.path.normpath(os.path.join(HERE, "..", "..", "python"))
SELECTED = [
    "test_common.py::test_sizes",
    "test_common.py::test_non_contiguous",
    "test_fake_quant.py::test_large_and_odd_sizes",
    "test_fake_quant.py::test_per_channel_shapes",
    "test_fake_quant.py::test_gradient_closed_nudged_interval",
    "test_larq.py::test_dorefa_activations",
    "test_blueoil.py::test_linear_mid_tread_half",
]


def _env(isa):
    env = dict(os.environ)
    env["LOWBIT_ISA"] = isa
    env["PYTHONPATH"] = PYTHON_DIR + os.pathsep + HERE + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.mark.skipif(os.environ.get("LOWBIT_ISA") is not None, reason="already pinned to one ISA")
@pytest.mark.parametrize("isa", ["ref", "avx2", "avx2_nt", "avx512", "avx512_nt"])
def test_kernel_set(isa):
    probe = subprocess.run(
        [sys.executable, "-c", "import torch, lowbit; lowbit.ste_sign(torch.ones(3))"],
        env=_env(isa), capture_output=True, text=True, timeout=120)
    if probe.returncode != 0:
        if "not a kernel set this CPU supports" in probe.stderr:
            pytest.skip(f"{isa} is not supported on this CPU")
        raise AssertionError(f"LOWBIT_ISA={isa}: import failed:\n{probe.stderr[-3000:]}")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider"] + SELECTED,
        cwd=HERE, env=_env(isa), capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, f"LOWBIT_ISA={isa}:\n{run.stdout[-5000:]}\n{run.stderr[-2000:]}"


def test_large_outputs_take_the_streaming_path_with_the_same_results():
    """From 2^22 output elements on, the operators write with non-temporal stores (the "_nt" kernel
    sets); the values must equal those of the ordinary path, computed here on two smaller halves."""
    import torch

    import lowbit

    n = (1 << 22) + 17
    g = torch.Generator().manual_seed(5)
    x = torch.randn(n, generator=g) * 4
    gy = torch.randn(n, generator=g)
    half = n // 2
    lo, hi = torch.tensor(-3.0), torch.tensor(2.5)

    def halves(f):
        return torch.cat([f(x[:half]), f(x[half:])])

    quant = lambda t: lowbit.fake_quant_with_min_max_vars(t, lo, hi, num_bits=5)
    assert torch.equal(quant(x), halves(quant))
    sign = lambda t: lowbit.ste_sign(t, clip_value=1.5)
    assert torch.equal(sign(x), halves(sign))

    xg = x.clone().requires_grad_()
    (dx,) = torch.autograd.grad(quant(xg), xg, gy)
    dx_halves = torch.cat([
        lowbit.fake_quant_with_min_max_vars_gradient(gy[:half], x[:half], lo, hi, 5)[0],
        lowbit.fake_quant_with_min_max_vars_gradient(gy[half:], x[half:], lo, hi, 5)[0]])
    assert torch.equal(dx, dx_halves)
