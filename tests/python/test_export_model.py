"""lowbit.export_onnx(model, example_input, path, format) (issue 15, part 3): models made by
lowbit.quantize, whatever their graph, exported in both formats, checked by ONNX's checker, and run
by lowbit's engine and onnxruntime with the PyTorch model's outputs."""

import subprocess
import zlib

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import numpy_helper

import lowbit
import lowbit.qat as qat
import onnx_reference as ref
from test_quantize import net, x_in

RUNNER = ref.ROOT / "build" / "lowbit-run"


def engine(path, x, tmp_path):
    np.save(tmp_path / "x.npy", x)
    subprocess.run([str(RUNNER), "run", str(path), "--input", str(tmp_path / "x.npy"), "--output",
                    str(tmp_path / "y.npy"), "--threads", "2"], check=True, capture_output=True)
    return np.load(tmp_path / "y.npy")


def trained(model, recipe, x, steps=3):
    """A quantized model after a few training steps (observers and batch norms have data)."""
    q = lowbit.quantize(model, recipe, (x[:1],))
    q.train()
    opt = torch.optim.SGD(q.parameters(), lr=0.01)
    g = torch.Generator().manual_seed(5)
    for _ in range(steps):
        q(torch.randn(8, *x.shape[1:], generator=g)).square().mean().backward()
        opt.step()
        opt.zero_grad()
        lowbit.nn.apply_constraints(q)
    return q.eval()


def check_runs_like_pytorch(q, x, path, fmt, tmp_path, step=None):
    """The engine's (and onnxruntime's) outputs equal PyTorch's. With `step` (the output grid's),
    at most 1% of the values may be one step off: a sum that lands on a rounding boundary of the
    output quantizer in one accumulation order and not in the other."""
    with torch.no_grad():
        y = q(x).numpy()
    assert lowbit.export_onnx(q, x, path, fmt) == path
    onnx.checker.check_model(onnx.load(str(path)))
    scale = max(1.0, float(np.abs(y).max()))
    outputs = [engine(path, x.numpy(), tmp_path)]
    if fmt == "standard":
        outputs.append(ref.run_ort_any(path, x.numpy(), tmp_path))
    for got in outputs:
        if step is None:
            np.testing.assert_allclose(got, y, rtol=0, atol=1e-5 * scale)
            assert (got.argmax(1) == y.argmax(1)).all()
            continue
        off = np.abs(got - y) > 1e-5 * scale
        assert off.mean() <= 0.01, f"{off.sum()} of {off.size} differ"
        np.testing.assert_allclose(got[off], y[off], rtol=0, atol=step * 1.001 + 1e-5 * scale)


@pytest.mark.parametrize("fmt", ["qonnx", "standard"])
@pytest.mark.parametrize("recipe", list(lowbit.recipes()))
def test_every_recipe_of_a_residual_depthwise_concat_model(recipe, fmt, tmp_path):
    if not ref.node_runner_available():
        pytest.fail("onnxruntime-node is not installed: run ./scripts/setup")
    x = x_in(seed=9, n=6)
    check_runs_like_pytorch(trained(net(), recipe, x), x, tmp_path / "m.onnx", fmt, tmp_path)


def test_binary_weights_are_packed_bits_and_integer_layers_codes(tmp_path):
    x = x_in(seed=9, n=2)
    q = trained(net(), "bnn", x)
    lowbit.export_onnx(q, x, tmp_path / "bnn.onnx", "qonnx")
    m = onnx.load(str(tmp_path / "bnn.onnx"))
    ops = [n.op_type for n in m.graph.node]
    assert ops.count("BipolarQuant") >= 4 + 4  # four binary layers: inputs and kernels
    packed = [numpy_helper.to_array(t) for t in m.graph.initializer if t.data_type == 2]  # uint8
    conv_b = q.block.conv_b.weight.numel()
    assert any(p.size == (conv_b + 7) // 8 for p in packed), [p.size for p in packed]
    q8 = trained(net(), "po2-int8", x)
    lowbit.export_onnx(q8, x, tmp_path / "int8.onnx", "standard")
    m8 = onnx.load(str(tmp_path / "int8.onnx"))
    int8 = [t for t in m8.graph.initializer if t.data_type == 3]  # int8 weight codes
    assert len(int8) >= 6


def test_what_cannot_be_exported_is_named(tmp_path):
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return torch.sigmoid(self.fc(x))

    with pytest.raises(ValueError, match=r"sigmoid.*no ONNX translation"):
        lowbit.export_onnx(Odd(), torch.randn(2, 4), tmp_path / "odd.onnx")
    with pytest.raises(ValueError, match="MaxPool1d has no ONNX translation"):
        lowbit.export_onnx(nn.Sequential(nn.Conv1d(2, 2, 3), nn.MaxPool1d(2)),
                           torch.randn(1, 2, 8), tmp_path / "c1.onnx")
    with pytest.raises(ValueError, match="example_input"):
        lowbit.export_onnx(net(), torch.randn(1, 3, 8, 8), tmp_path / "x.onnx")
    with pytest.raises(ValueError, match="format"):
        lowbit.export_onnx(net(), x_in(), tmp_path / "x.onnx", "tflite")
    with pytest.raises(OSError):
        lowbit.export_onnx(net(), x_in(), tmp_path / "no" / "such" / "x.onnx")
    assert not (tmp_path / "odd.onnx").exists() and not (tmp_path / "x.onnx").exists()


def test_plain_pytorch_pieces_a_user_writes(tmp_path):
    """Functional pooling, view(size(0), -1), mean over H and W, ReLU6 and a BN after a Linear."""

    class Plain(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3, padding="same")
            self.bn = nn.BatchNorm2d(4)
            self.fc = nn.Linear(4 * 4 * 4, 6)
            self.bn1 = nn.BatchNorm1d(6)
            self.out = nn.Linear(10, 3)

        def forward(self, x):
            h = F.relu6(self.bn(self.conv(x)))
            a = F.avg_pool2d(h, 2)
            g = a.mean([2, 3])
            f = self.bn1(self.fc(a.view(a.size(0), -1)))
            return self.out(torch.cat([f, g], 1))

    torch.manual_seed(0)
    x = torch.randn(3, 1, 8, 8)
    for recipe in ("float", "bnn", "po2-int8"):
        check_runs_like_pytorch(trained(Plain(), recipe, x), x, tmp_path / f"{recipe}.onnx",
                                "standard", tmp_path)


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v2"])
@pytest.mark.parametrize("recipe", ["bnn", "po2-int8"])
def test_torchvision_architectures_export_and_run(arch, recipe, tmp_path):
    models = pytest.importorskip("torchvision.models")
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    q = trained(getattr(models, arch)(num_classes=10), recipe, x, steps=1)
    for fmt in ("qonnx", "standard"):
        check_runs_like_pytorch(q, x, tmp_path / f"{fmt}.onnx", fmt, tmp_path)


@pytest.mark.parametrize("fmt", ["qonnx", "standard"])
@pytest.mark.parametrize("recipe", ["po2-int8", "tf-int8"])
def test_per_channel_weight_scales(recipe, fmt, tmp_path):
    x = x_in(seed=9, n=6)
    model = net()
    with torch.no_grad():  # channels of very different ranges: one scale each
        model.block.conv_a.weight[0] *= 30
    q = trained(model, {"recipe": recipe, "per_channel": True}, x)
    f = q.block.conv_a
    assert f.options.per_channel
    w, _ = f.quantized_folded_parameters()
    scales = [c.scale for c in f.channel_weight_quantization()]
    assert scales[0] >= 4 * max(scales[1:])
    for row, c in zip(w, f.channel_weight_quantization()):  # each channel on its own grid
        codes = row / c.scale + (c.zero_point if recipe == "tf-int8" else 0)
        torch.testing.assert_close(codes, codes.round(), rtol=0, atol=1e-3)
        assert float(codes.min()) >= c.qmin - 1e-3 and float(codes.max()) <= c.qmax + 1e-3
    check_runs_like_pytorch(q, x, tmp_path / "m.onnx", fmt, tmp_path)
    if fmt == "qonnx":
        m = onnx.load(str(tmp_path / "m.onnx"))
        shapes = [tuple(t.dims) for t in m.graph.initializer if t.name.endswith("weight.scale")]
        assert (8, 1, 1, 1) in shapes, shapes


CASES = [(kind, bn, bias, scheme, per_channel, bits)
         for kind in ("conv", "depthwise", "linear") for bn in (True, False) for bias in (True, False)
         for scheme in ("pow2", "affine") for per_channel in (False, True) for bits in (4, 8)]


@pytest.mark.parametrize("case", CASES[::3] + [CASES[-1]], ids=str)
def test_python_and_cpp_qat_layers_agree_case_by_case(case, tmp_path):
    """lowbit.qat (Python) and lowbit::qat (C++, which the exporter runs) are two implementations
    of the folded layer and the observer: one layer per case, after training steps in Python, must
    give the same outputs from the exported graph (C++'s folding and quantization) as in Python."""
    kind, bn, bias, scheme, per_channel, bits = case
    torch.manual_seed(zlib.crc32(repr(case).encode()))
    if kind == "linear":
        layer = nn.Linear(12, 6, bias=bias)
        body = [layer] + ([nn.BatchNorm1d(6)] if bn else []) + [nn.ReLU()]
        x = torch.randn(5, 12)
    else:
        groups = 6 if kind == "depthwise" else 1
        layer = nn.Conv2d(6, 6, 3, padding=1, groups=groups, bias=bias)
        body = [layer] + ([nn.BatchNorm2d(6)] if bn else []) + [nn.ReLU()]
        x = torch.randn(5, 6, 7, 7)
    with torch.no_grad():
        layer.weight[0] *= 8
    model = nn.Sequential(*body)
    config = {"qat": scheme, "quantize_first_layer": True, "quantize_last_layer": True,
              "weight_bits": bits, "activation_bits": bits, "per_channel": per_channel}
    q = trained(model, config, x, steps=4)
    step = max(a.quantization().scale for a in q.modules() if isinstance(a, qat.ActivationQuant))
    for fmt in ("qonnx", "standard"):
        check_runs_like_pytorch(q, x, tmp_path / f"{fmt}.onnx", fmt, tmp_path, step=step)


def test_mixed_precision_exports_and_runs(tmp_path):
    x = x_in(seed=9, n=6)
    cfg = {"recipe": "bnn", "quantize_first_layer": True, "quantize_last_layer": True,
           "layers": {"stem.0": {"qat": "pow2"}, "head": {"qat": "pow2"}}}
    q = trained(net(), cfg, x)
    for fmt in ("qonnx", "standard"):
        check_runs_like_pytorch(q, x, tmp_path / f"{fmt}.onnx", fmt, tmp_path)


@pytest.mark.parametrize("recipe", ["float", "bnn", "dorefa", "po2-int8"])
def test_conv1d_models_run_as_2d_convolutions_of_height_1(recipe, tmp_path):
    class Seq1d(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv1d(2, 8, 3, padding=1)
            self.bn_a = nn.BatchNorm1d(8)
            self.b = nn.Conv1d(8, 8, 3, stride=2, padding=2, dilation=2, groups=2, bias=False)
            self.bn_b = nn.BatchNorm1d(8)
            self.out = nn.Linear(8 * 6, 3)

        def forward(self, x):
            x = F.relu(self.bn_a(self.a(x)))
            return self.out(torch.flatten(self.bn_b(self.b(x)), 1))

    torch.manual_seed(0)
    x = torch.randn(4, 2, 12)
    cfg = {"recipe": recipe, "quantize_first_layer": True}
    q = trained(Seq1d(), cfg, x)
    for fmt in ("qonnx", "standard"):
        check_runs_like_pytorch(q, x, tmp_path / f"{fmt}.onnx", fmt, tmp_path)


def test_review_cases(tmp_path):
    """In-place ops on shared values and torch.add's alpha are refused; flatten from dim 2, models
    of lowbit's own layers and an all-zero weight channel export exactly."""
    class InPlace(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.relu = nn.Linear(4, 4), nn.ReLU(inplace=True)

        def forward(self, x):
            a = self.fc(x)
            return a + self.relu(a)

    with pytest.raises(ValueError, match="in-place"):
        lowbit.export_onnx(InPlace(), torch.randn(2, 4), tmp_path / "a.onnx")

    class Alpha(nn.Module):
        def forward(self, x):
            return torch.add(x, x, alpha=-1)

    with pytest.raises(ValueError, match="alpha"):
        lowbit.export_onnx(Alpha(), torch.randn(2, 4), tmp_path / "a.onnx")
    with pytest.raises(ValueError, match="rank other than 2"):
        lowbit.export_onnx(nn.Sequential(nn.Linear(4, 2)), torch.randn(2, 3, 4),
                           tmp_path / "a.onnx")

    class Flat2(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 3, 3, padding=1)
            self.fc = nn.Linear(3 * 16, 2)

        def forward(self, x):
            return self.fc(torch.flatten(torch.flatten(self.conv(x), 2), 1))

    x = torch.randn(2, 1, 4, 4)
    check_runs_like_pytorch(Flat2().eval(), x, tmp_path / "f.onnx", "standard", tmp_path)
    own = nn.Sequential(lowbit.nn.QuantConv2d(1, 4, 3, padding=1, kernel_quantizer="ste_sign"),
                        nn.Flatten(),
                        lowbit.nn.QuantLinear(64, 3, input_quantizer="ste_sign",
                                              kernel_quantizer="ste_sign")).eval()
    check_runs_like_pytorch(own, x, tmp_path / "own.onnx", "qonnx", tmp_path)
    model = net()
    q = trained(model, {"recipe": "tf-int8", "per_channel": True}, x_in(n=4))
    with torch.no_grad():
        q.block.conv_a.weight[2].zero_()
    check_runs_like_pytorch(q, x_in(n=4), tmp_path / "z.onnx", "qonnx", tmp_path)
