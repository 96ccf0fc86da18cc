"""lowbit.quantize (issue 15): a float PyTorch model to a quantized one by a torch.fx rewrite;
checked against forwards written out with torch's functional ops and lowbit's operators."""

import operator

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import lowbit
import lowbit.nn as qnn
import lowbit.qat as qat
from lowbit.convert import CommonScale


class Residual(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv_a = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn_a = nn.BatchNorm2d(c)
        self.conv_b = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn_b = nn.BatchNorm2d(c)

    def forward(self, x):
        y = F.relu(self.bn_a(self.conv_a(x)))
        return F.relu(self.bn_b(self.conv_b(y)) + x)


class Net(nn.Module):
    """A residual CNN, a depthwise convolution and a Concat, as a user writes them."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.block = Residual(8)
        self.depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.pointwise = nn.Conv2d(16, 8, 1)
        self.head = nn.Linear(8 * 4 * 4, 5)

    def forward(self, x):
        x = self.block(self.stem(x))
        x = torch.cat([x, self.depthwise(x)], 1)
        x = F.max_pool2d(F.relu(self.pointwise(x)), 2)
        return self.head(torch.flatten(x, 1))


def net(seed=0):
    torch.manual_seed(seed)
    m = Net()
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.3, 0.3)
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 2.0)
    return m


def x_in(seed=1, n=3):
    return torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


def sign(t):
    return torch.where(t >= 0, 1.0, -1.0)


def test_the_original_model_is_untouched():
    m = net()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    q = lowbit.quantize(m, "bnn", (x_in(),))
    q.train()
    q(x_in()).sum().backward()
    assert all(torch.equal(v, before[k]) for k, v in m.state_dict().items())
    assert type(m.block.conv_a) is nn.Conv2d and m.block.conv_a.weight.grad is None


def test_bnn_is_the_forward_written_out():
    """First and last layers (execution order) stay float; the others get ste_sign inputs and
    kernels, +1 padding and their own weights; every ReLU is gone (recipe activation none)."""
    m = net().eval()
    q = lowbit.quantize(m, "bnn", (x_in(),)).eval()
    plans = {p.name: p for p in q.lowbit_layers}
    assert [p.name for p in q.lowbit_layers] == ["stem.0", "block.conv_a", "block.conv_b",
                                                 "depthwise", "pointwise", "head"]
    assert plans["stem.0"].skip and plans["head"].skip and not plans["depthwise"].skip
    assert type(q.get_submodule("stem.0")) is nn.Conv2d and type(q.head) is nn.Linear
    assert isinstance(q.block.conv_a, qnn.QuantConv2d) and q.depthwise.groups == 8
    assert torch.equal(q.block.conv_a.weight, m.block.conv_a.weight)
    assert q.pointwise.kernel_constraint.clip_value == 1.0

    def bconv(mod, x, pad):
        xs = F.pad(sign(x), (pad,) * 4, value=1.0)
        return F.conv2d(xs, sign(mod.weight), mod.bias, groups=mod.groups)

    x = x_in()
    with torch.no_grad():
        h = m.stem[1](m.stem[0](x))  # no ReLU
        y = m.block.bn_a(bconv(m.block.conv_a, h, 1))
        h = m.block.bn_b(bconv(m.block.conv_b, y, 1)) + h
        h = torch.cat([h, bconv(m.depthwise, h, 1)], 1)
        h = F.max_pool2d(bconv(m.pointwise, h, 0), 2)
        ref = m.head(torch.flatten(h, 1))
        got = q(x)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


def test_every_recipe_converts_trains_and_summarises():
    x = x_in()
    for name in lowbit.recipes():
        q = lowbit.quantize(net(), name, (x,))
        q.train()
        q(x).sum().backward()
        s = lowbit.summary(q, (1, 1, 8, 8))
        assert s.total_params > 0, name


def test_conv1d_grouped_and_overrides_by_pattern():
    class Seq1d(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv1d(2, 4, 3, padding=1)
            self.b = nn.Conv1d(4, 4, 3, padding="same", groups=2)
            self.c = nn.Conv1d(4, 4, 1)
            self.out = nn.Linear(4 * 6, 3)

        def forward(self, x):
            return self.out(torch.flatten(self.c(self.b(self.a(x))), 1))

    torch.manual_seed(0)
    m = Seq1d()
    cfg = {"recipe": "dorefa", "quantize_first_layer": True,
           "layers": {"b": {"bits": 4}, "c": {"skip": True}}}
    q = lowbit.quantize(m, cfg).eval()
    assert isinstance(q.a, qnn.QuantConv1d) and isinstance(q.b, qnn.QuantConv1d)
    assert type(q.c) is nn.Conv1d and type(q.out) is nn.Linear
    assert q.b.input_quantizer.options["k_bit"] == 4 and q.b.kernel_precision == 4
    assert q.a.input_precision == 2
    x = torch.randn(2, 2, 6)
    with torch.no_grad():
        h = F.conv1d(lowbit.dorefa(x, 2), lowbit.dorefa(m.a.weight, 2, "weights"), m.a.bias,
                     padding=1)
        h = F.conv1d(F.pad(lowbit.dorefa(h, 4), (1, 1)), lowbit.dorefa(m.b.weight, 4, "weights"),
                     m.b.bias, groups=2)
        ref = m.out(torch.flatten(m.c(h), 1))
        torch.testing.assert_close(q(x), ref, rtol=1e-5, atol=1e-6)


def test_a_yaml_config_and_a_list_of_rules(tmp_path):
    path = tmp_path / "mixed.yaml"
    path.write_text("recipe: bnn\n"
                    "layers:\n"
                    "  - match: 'block.*'\n"
                    "    input_quantizer: approx_sign\n"
                    "  - match: block.conv_b\n"
                    "    kernel_quantizer: magnitude_aware_sign\n")
    q = lowbit.quantize(net(), str(path))
    assert q.block.conv_a.input_quantizer.name == "approx_sign"
    assert q.block.conv_a.kernel_quantizer.name == "ste_sign"
    assert q.block.conv_b.kernel_quantizer.name == "magnitude_aware_sign"
    assert q.block.conv_b.kernel_quantizer.options["axis"] == 0  # the kernel role's default
    assert q.depthwise.input_quantizer.name == "ste_sign"


@pytest.mark.parametrize("config,exc,words", [
    ("nosuch", ValueError, ["nosuch", "bnn"]),
    ({"recipe": "bnn", "kernel_quantiser": "ste_sign"}, ValueError, ["kernel_quantiser"]),
    ({"recipe": "bnn", "layers": {"blok.*": {"skip": True}}}, ValueError, ["blok.*", "block.conv_a"]),
    ({"recipe": "bnn", "layers": {"block.conv_a": {"kernel_quantizer": "dorefa(k_bit=40)"}}},
     ValueError, ["block.conv_a", "kernel_quantizer", "k_bit"]),
    ({"recipe": "bnn", "layers": {"depthwise": {"bits": 2}}}, ValueError, ["depthwise", "bits"]),
    ({"recipe": "bnn", "layers": {"depthwise": {"colour": 2}}}, ValueError, ["depthwise", "colour"]),
    ({"recipe": "po2-int8", "layers": {"head": {"weight_bits": 1}}}, ValueError,
     ["head", "weight_bits"]),
    ({"recipe": "po2-int8", "kernel_quantizer": "ste_sign"}, ValueError, ["stem.0", "kernel_quantizer"]),
    ({"qat": "int4"}, ValueError, ["qat"]),
    ({"recipe": "po2-int8", "ema_decay": "slow"}, ValueError, ["ema_decay"]),
    ({"recipe": "po2-int8", "quant_delay": -1}, ValueError, ["quant_delay"]),
    ({"recipe": "po2-int8", "per_channel": 1}, ValueError, ["per_channel"]),
    ({"layers": {"head": {"skip": "yes"}}}, ValueError, ["head", "skip"]),
    (3, TypeError, ["config"]),
    ("missing/file.yaml", ValueError, ["missing/file.yaml"]),
])
def test_errors_name_the_module_and_the_option(config, exc, words):
    with pytest.raises(exc) as info:
        lowbit.quantize(net(), config)
    for w in words:
        assert w in str(info.value), (w, str(info.value))


def test_models_it_cannot_take():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return self.fc(x) if x.sum() > 0 else x

    with pytest.raises(ValueError, match="torch.fx"):
        lowbit.quantize(Branchy(), "bnn")
    with pytest.raises(ValueError, match="already a lowbit QuantLinear"):
        lowbit.quantize(nn.Sequential(qnn.QuantLinear(4, 4)), "bnn")
    with pytest.raises(ValueError, match="example_inputs"):
        lowbit.quantize(net(), "bnn", (torch.randn(1, 3, 8, 8),))


def test_integer_qat_without_quantization_trains_as_the_float_model():
    """Batch norms found in the graph and folded: in training, before quant_delay, every folded
    layer equals its conv + batch norm, so the model equals the float one in training mode."""
    m, x = net(), x_in(n=6)
    q = lowbit.quantize(m, {"recipe": "po2-int8", "quant_delay": 10**9})
    assert not any(isinstance(mod, nn.BatchNorm2d) for mod in q.modules())
    assert sum(isinstance(mod, qat.FoldedLayer) for mod in q.modules()) == 6
    assert {p.name: p.batch_norm for p in q.lowbit_layers}["block.conv_a"] == "block.bn_a"
    m.train()
    q.train()
    torch.testing.assert_close(q(x), m(x), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(q.block.conv_b.running_var, m.block.bn_b.running_var)


def quant_inputs(q):
    """{layer name: how its input is quantized}, read from the graph."""
    out = {}
    for node in q.graph.nodes:
        if node.op == "call_module" and isinstance(q.get_submodule(node.target), qat.FoldedLayer):
            src = node.args[0]
            while src.op != "call_module" and src.target is not operator.getitem and \
                    src.target is not torch.cat:
                src = src.args[0]  # max pool, flatten, relu
            if src.target is operator.getitem or src.target is torch.cat:
                out[node.target] = "common"
            else:
                out[node.target] = type(q.get_submodule(src.target)).__name__
    return out


@pytest.mark.parametrize("recipe", ["po2-int8", "tf-int8"])
def test_integer_qat_quantizes_every_layer_input_and_shares_scales_at_add_and_concat(recipe):
    q = lowbit.quantize(net(), recipe, (x_in(),))
    inputs = quant_inputs(q)
    assert set(inputs) == {"stem.0", "block.conv_a", "block.conv_b", "depthwise", "pointwise",
                           "head"}
    assert all(v in ("ActivationQuant", "common") for v in inputs.values()), inputs
    scales = [m for m in q.modules() if isinstance(m, CommonScale)]
    assert len(scales) == 2  # the residual Add and the Concat
    q.train()
    for _ in range(3):
        q(x_in(seed=2, n=8)).sum().backward()
    q.eval()
    seen = {}
    hooks = [s.register_forward_hook(lambda mod, i, o: seen.setdefault(id(mod), o))
             for s in scales]
    with torch.no_grad():
        q(x_in(seed=3))
    for h in hooks:
        h.remove()
    for s in scales:
        outs = seen[id(s)]
        tq = s.quant.quantization()
        for o in outs:  # both inputs on the one grid of the shared range
            if recipe == "po2-int8":
                codes = o * 2.0 ** tq.frac_bits
            else:
                codes = o / tq.scale + tq.zero_point
            torch.testing.assert_close(codes, codes.round(), rtol=0, atol=1e-3)
            assert float(codes.min()) >= tq.qmin - 1e-3 and float(codes.max()) <= tq.qmax + 1e-3


def test_per_layer_bits_in_integer_qat():
    q = lowbit.quantize(net(), {"recipe": "po2-int8", "layers": {"head": {"bits": 4}}})
    assert q.head.options.weight_bits == 4 and q.head.options.activation_bits == 4
    assert q.pointwise.options.weight_bits == 8
    s = lowbit.summary(q, (1, 1, 8, 8))
    assert {r.name: r.input_precision for r in s.rows if r.name in ("head", "pointwise")} == {
        "head": 4, "pointwise": 8}


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v2"])
@pytest.mark.parametrize("recipe", ["bnn", "po2-int8"])
def test_torchvision_architectures_convert_forward_and_backward(arch, recipe):
    """Debian's python3-torchvision, untrained weights: the mechanics on real architectures."""
    models = pytest.importorskip("torchvision.models")
    torch.manual_seed(0)
    m = getattr(models, arch)(num_classes=10)
    x = torch.randn(2, 3, 32, 32)
    q = lowbit.quantize(m, recipe, (x,))
    convs = [mod for mod in m.modules() if isinstance(mod, (nn.Conv2d, nn.Linear))]
    plans = q.lowbit_layers
    assert len(plans) == len(convs) and plans[0].name in ("conv1", "features.0.0")
    if recipe == "bnn":
        quantized = [mod for mod in q.modules() if isinstance(mod, qnn.QuantLayer)]
        assert len(quantized) == len(convs) - 2
        assert not any(isinstance(mod, (nn.ReLU, nn.ReLU6)) for mod in q.modules())
    else:
        assert sum(isinstance(mod, qat.FoldedLayer) for mod in q.modules()) == len(convs)
        assert not any(isinstance(mod, nn.BatchNorm2d) for mod in q.modules())
        assert any(isinstance(mod, CommonScale) for mod in q.modules())  # residual adds
    q.train()
    y = q(x)
    assert y.shape == (2, 10) and torch.isfinite(y).all()
    y.square().sum().backward()
    grads = [p.grad for p in q.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    q.eval()
    with torch.no_grad():
        assert torch.isfinite(q(x)).all()


def test_mixed_precision_is_one_config():
    """8-bit power-of-2 first and last layers, binary in between: the integer layers are folded
    and quantize their inputs; the binary ones keep ste_sign."""
    cfg = {"recipe": "bnn", "quantize_first_layer": True, "quantize_last_layer": True,
           "layers": {"stem.0": {"qat": "pow2"}, "head": {"qat": "pow2"}}}
    q = lowbit.quantize(net(), cfg, (x_in(),))
    assert isinstance(q.get_submodule("stem.0"), qat.FoldedLayer)
    assert isinstance(q.head, qat.FoldedLayer)
    assert isinstance(q.block.conv_a, qnn.QuantConv2d)
    assert q.block.conv_a.input_quantizer.name == "ste_sign"
    assert quant_inputs(q) == {"stem.0": "ActivationQuant", "head": "ActivationQuant"}
    q.train()
    q(x_in()).sum().backward()
    with pytest.raises(ValueError, match="block.conv_a.*input_quantizer"):
        lowbit.quantize(net(), {"recipe": "bnn", "layers": {
            "block.conv_a": {"qat": "pow2", "input_quantizer": "ste_sign"}}})


def test_graphs_that_need_care():
    """A module called twice under integer QAT is refused; F.dropout(x, p, self.training) follows
    eval(); Concat with keyword tensors; Adds of float values get no common scale."""
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.c, self.bn = nn.Conv2d(1, 1, 3, padding=1), nn.BatchNorm2d(1)

        def forward(self, x):
            return self.bn(self.c(self.bn(self.c(x))))

    with pytest.raises(ValueError, match="module 'c'.*called 2 times"):
        lowbit.quantize(Twice(), "po2-int8")
    lowbit.quantize(Twice(), {"recipe": "bnn", "quantize_first_layer": True})  # shared: fine

    class Drop(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 4), nn.Linear(8, 2)

        def forward(self, x):
            h = F.dropout(self.a(x), 0.5, self.training)
            return self.b(torch.cat(tensors=[h, x], dim=1))

    q = lowbit.quantize(Drop(), "po2-int8", (torch.randn(2, 4),))
    assert any(isinstance(m, nn.Dropout) for m in q.modules())
    x = torch.randn(3, 4)
    q.eval()
    assert torch.equal(q(x), q(x))
    # the Concat reads the model's input, not an integer layer: the next layer quantizes its result
    assert not any(isinstance(m, CommonScale) for m in q.modules())
    assert quant_inputs(q) == {"a": "ActivationQuant", "b": "ActivationQuant"}
    cfg = {"recipe": "bnn", "quantize_first_layer": True, "quantize_last_layer": True,
           "layers": {"stem.0": {"qat": "pow2"}, "head": {"qat": "pow2"}}}
    q = lowbit.quantize(net(), cfg)  # the residual Add inside the binary part stays float
    assert not any(isinstance(m, CommonScale) for m in q.modules())
