"""lowbit.nn (docs/layers.md): quantizer specs, quantized layers, constraints, FlipRatio, Bop."""

import pytest
import torch
import torch.nn.functional as F

import lowbit
import lowbit.nn as qnn


def gen(seed):
    return torch.Generator().manual_seed(seed)


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=gen(seed))


def assert_equal(got, exp, what=""):
    assert got.shape == exp.shape, f"{what}: shape {tuple(got.shape)} != {tuple(exp.shape)}"
    if not torch.equal(got, exp):
        bad = (got != exp).nonzero()
        i = tuple(int(v) for v in bad[0])
        raise AssertionError(f"{what}: {len(bad)} of {got.numel()} differ; first at {i}: "
                             f"expected {float(exp[i])!r}, got {float(got[i])!r}")


def raises_naming(exc, word, fn):
    with pytest.raises(exc) as info:
        fn()
    assert word in str(info.value), f"message does not name {word!r}: {str(info.value)!r}"


# --------------------------------------------------------------------------------------------------
# quantizer specs


def test_all_forms_give_the_same_quantizer():
    forms = ["dorefa(k_bit=3, mode=weights)", " dorefa ( k_bit = 3 ,mode= weights ) ",
             {"name": "dorefa", "k_bit": 3, "mode": "weights"}]
    for spec in forms:
        q = qnn.make_quantizer(spec, role="kernel")
        assert isinstance(q, qnn.Quantizer) and isinstance(q, torch.nn.Module)
        assert q.name == "dorefa"
        assert q.options == {"k_bit": 3, "mode": "weights"}
        assert q.precision == 3


def test_a_name_alone_takes_the_operator_defaults():
    assert qnn.make_quantizer("ste_tern").options == {
        "threshold_value": 0.05, "ternary_weight_networks": False, "clip_value": 1.0}
    assert qnn.make_quantizer("dorefa").options == {"k_bit": 2, "mode": "activations"}
    assert qnn.make_quantizer("approx_sign()").options == {}


@pytest.mark.parametrize("text,options", [
    ("ste_sign(clip_value=none)", {"clip_value": None}),
    ("ste_sign(clip_value=None)", {"clip_value": None}),
    ("ste_sign(clip_value=0.5)", {"clip_value": 0.5}),
    ("ste_sign(clip_value=2)", {"clip_value": 2.0}),
    ("swish_sign(beta=.25)", {"beta": 0.25}),
    ("swish_sign(beta=-1e-1)", {"beta": -0.1}),
    ("magnitude_aware_sign(axis=-1, clip_value=3e0)", {"clip_value": 3.0, "axis": -1}),
    ("ste_tern(ternary_weight_networks=true, threshold_value=0.1)",
     {"threshold_value": 0.1, "ternary_weight_networks": True, "clip_value": 1.0}),
    ("ste_tern(ternary_weight_networks=False)",
     {"threshold_value": 0.05, "ternary_weight_networks": False, "clip_value": 1.0}),
])
def test_string_values(text, options):
    q = qnn.make_quantizer(text)
    assert q.options == options
    assert all(type(q.options[k]) is type(v) for k, v in options.items())


def test_ints_become_floats_but_not_the_reverse():
    assert type(qnn.make_quantizer("ste_sign(clip_value=2)").options["clip_value"]) is float
    raises_naming(TypeError, "k_bit", lambda: qnn.make_quantizer("dorefa(k_bit=2.0)"))


def test_none_means_no_quantization():
    x = randn(3, 4)
    for spec in (None, "none", {"name": "none"}):
        q = qnn.make_quantizer(spec)
        assert q.name == "none" and q.precision == 32
        assert q(x) is x
    layer = qnn.QuantLinear(4, 2, input_quantizer="none", kernel_quantizer=None)
    assert layer.input_quantizer is None and layer.kernel_quantizer is None
    assert layer.input_precision == 32 and layer.kernel_precision == 32


class ScaledSign:
    precision = 3

    def __call__(self, x):
        return 2.0 * torch.sign(x)


def test_objects_are_returned_as_they_are():
    q = qnn.make_quantizer("ste_sign")
    assert qnn.make_quantizer(q, role="kernel") is q
    obj = ScaledSign()
    assert qnn.make_quantizer(obj) is obj
    layer = qnn.QuantLinear(4, 2, bias=False, kernel_quantizer=obj, input_quantizer=q)
    assert layer.kernel_quantizer is obj and layer.input_quantizer is q
    assert layer.kernel_precision == 3 and layer.input_precision == 1
    x = randn(5, 4, seed=1)
    assert_equal(layer(x), F.linear(lowbit.ste_sign(x), 2.0 * torch.sign(layer.weight)))
    assert "kernel_quantizer=" in repr(layer)  # not a module, so it is shown in the layer's line


@pytest.mark.parametrize("spec,exc,word", [
    ("unknown_q", ValueError, "unknown_q"),
    ("unknown_q(k=1)", ValueError, "unknown_q"),
    ("dorefa(kbit=2)", ValueError, "kbit"),
    ("approx_sign(beta=1)", ValueError, "beta"),
    ("dorefa(k_bit=2.5)", TypeError, "k_bit"),
    ("dorefa(k_bit=true)", TypeError, "k_bit"),
    ("dorefa(k_bit=two)", TypeError, "k_bit"),
    ("dorefa(mode=2)", TypeError, "mode"),
    ("dorefa(mode=weight)", ValueError, "weight"),
    ("dorefa(k_bit=0)", ValueError, "k_bit"),
    ("dorefa(k_bit=33)", ValueError, "k_bit"),
    ("linear_mid_tread_half(bit=0)", ValueError, "bit"),
    ("linear_mid_tread_half(max_value=0)", ValueError, "max_value"),
    ("ste_sign(clip_value=abc)", TypeError, "clip_value"),
    ("swish_sign(beta=none)", TypeError, "beta"),
    ("ste_tern(ternary_weight_networks=1)", TypeError, "ternary_weight_networks"),
    ("magnitude_aware_sign(axis=0.0)", TypeError, "axis"),
    # syntax
    ("", ValueError, "name"),
    ("(k_bit=2)", ValueError, "name"),
    ("dorefa(k_bit=2", ValueError, "')'"),
    ("dorefa(k_bit)", ValueError, "'='"),
    ("dorefa(k_bit=)", ValueError, "k_bit"),
    ("dorefa(2)", ValueError, "option name"),
    ("dorefa(k_bit=2,)", ValueError, "option name"),
    ("dorefa(k_bit=2, k_bit=3)", ValueError, "twice"),
    ("dorefa(k_bit=2) extra", ValueError, "extra"),
    ("dorefa k_bit=2", ValueError, "k_bit=2"),
    ("dorefa(k_bit=2$)", ValueError, "2$"),
    ("dorefa(k_bit=1 2)", ValueError, "1 2"),
    ("dorefa(mode='weights')", ValueError, "'weights'"),
    # dicts
    ({"k_bit": 2}, ValueError, "name"),
    ({"name": "nope"}, ValueError, "nope"),
    ({"name": "dorefa", "kbit": 2}, ValueError, "kbit"),
    ({"name": "dorefa", "k_bit": "2"}, TypeError, "k_bit"),
    ({"name": "ste_sign", "clip_value": False}, TypeError, "clip_value"),
    ({"name": 3}, TypeError, "name"),
    # objects
    (5, TypeError, "int"),
    (lambda x: x, TypeError, "precision"),
])
def test_bad_specs_raise_naming_the_bad_part(spec, exc, word):
    raises_naming(exc, word, lambda: qnn.make_quantizer(spec))


def test_bad_role():
    raises_naming(ValueError, "role", lambda: qnn.make_quantizer("ste_sign", role="bias"))


def test_spec_string_round_trips():
    for spec, role in [("dorefa(k_bit=4, mode=weights)", "kernel"), ("ste_sign(clip_value=none)",
                       "input"), ("magnitude_aware_sign", "kernel"), ("ste_tern(ternary_weight_"
                       "networks=true)", "input"), ("ttq_weight(positive=2.5)", "kernel")]:
        q = qnn.make_quantizer(spec, role)
        again = qnn.make_quantizer(q.spec, "input")
        assert again.name == q.name and again.options == q.options, q.spec


# the table of docs/layers.md: name -> precision with default options
PRECISIONS = {
    "ste_sign": 1, "approx_sign": 1, "swish_sign": 1, "ste_heaviside": 1,
    "magnitude_aware_sign": 1, "ste_tern": 2, "dorefa": 2, "binary_mean_scaling": 1,
    "binary_channel_wise_mean_scaling": 1, "linear_mid_tread_half": 2, "twn_weight": 2,
    "ttq_weight": 2,
}


@pytest.mark.parametrize("name", sorted(PRECISIONS))
def test_precision_of_every_quantizer(name):
    for role in ("input", "kernel"):
        assert qnn.make_quantizer(name, role).precision == PRECISIONS[name]
        assert qnn.make_quantizer({"name": name}, role).precision == PRECISIONS[name]


@pytest.mark.parametrize("spec,bits", [
    ("dorefa(k_bit=1)", 1), ("dorefa(k_bit=5, mode=weights)", 5), ("dorefa(k_bit=32)", 32),
    ("linear_mid_tread_half(bit=3)", 3), ("linear_mid_tread_half(bit=32)", 32), ("none", 32)])
def test_precision_follows_the_bit_options(spec, bits):
    assert qnn.make_quantizer(spec).precision == bits


# each name calls its operator with the operator's defaults (input role): forward and gradient
OPERATOR_CALLS = {
    "ste_sign": lambda x: lowbit.ste_sign(x),
    "approx_sign": lambda x: lowbit.approx_sign(x),
    "swish_sign": lambda x: lowbit.swish_sign(x),
    "ste_heaviside": lambda x: lowbit.ste_heaviside(x),
    "magnitude_aware_sign": lambda x: lowbit.magnitude_aware_sign(x),
    "ste_tern": lambda x: lowbit.ste_tern(x),
    "dorefa": lambda x: lowbit.dorefa(x),
    "binary_mean_scaling": lambda x: lowbit.binary_mean_scaling(x),
    "binary_channel_wise_mean_scaling": lambda x: lowbit.binary_channel_wise_mean_scaling(x),
    "linear_mid_tread_half": lambda x: lowbit.linear_mid_tread_half(x),
    "twn_weight": lambda x: lowbit.twn_weight(x),
    "ttq_weight": lambda x: lowbit.ttq_weight(x, torch.tensor(1.0), torch.tensor(1.0)),
}


@pytest.mark.parametrize("name", sorted(OPERATOR_CALLS))
def test_quantizer_calls_its_operator(name):
    x = (randn(6, 5, seed=2) * 1.5).requires_grad_()
    g = randn(6, 5, seed=3)
    y = qnn.make_quantizer(name)(x)
    (gx,) = torch.autograd.grad(y, x, g)
    x2 = x.detach().clone().requires_grad_()
    y2 = OPERATOR_CALLS[name](x2)
    (gx2,) = torch.autograd.grad(y2, x2, g)
    assert_equal(y, y2, f"{name} forward")
    assert_equal(gx, gx2, f"{name} gradient")


def test_options_reach_the_operator():
    x = randn(4, 6, seed=4) * 2
    assert_equal(qnn.make_quantizer("dorefa(k_bit=3, mode=weights)")(x),
                 lowbit.dorefa(x, k_bit=3, mode="weights"))
    assert_equal(qnn.make_quantizer("linear_mid_tread_half(bit=3, max_value=1.5)")(x),
                 lowbit.linear_mid_tread_half(x, bit=3, max_value=1.5))
    assert_equal(qnn.make_quantizer("ste_tern(threshold_value=0.5)")(x),
                 lowbit.ste_tern(x, threshold_value=0.5))
    assert not torch.equal(lowbit.ste_tern(x, threshold_value=0.5), lowbit.ste_tern(x))


@pytest.mark.parametrize("name,op", [
    ("magnitude_aware_sign", lambda w, axis: lowbit.magnitude_aware_sign(w, axis=axis)),
    ("binary_channel_wise_mean_scaling",
     lambda w, axis: lowbit.binary_channel_wise_mean_scaling(w, axis=axis)),
])
def test_kernel_role_reduces_over_the_output_channel(name, op):
    w = randn(4, 3, 2, 2, seed=5)
    w[1] *= 5.0  # output channel 1 has its own, larger scale
    kernel = qnn.make_quantizer(name, role="kernel")
    inp = qnn.make_quantizer(name, role="input")
    assert kernel.options["axis"] == 0 and inp.options["axis"] == -1
    assert_equal(kernel(w), op(w, 0), "kernel role")
    assert_equal(inp(w), op(w, -1), "input role")
    assert not torch.equal(op(w, 0), op(w, -1))  # the two axes do give different results here
    # one scale per output channel
    assert torch.equal(kernel(w).abs().amax(dim=(1, 2, 3)), kernel(w).abs().amin(dim=(1, 2, 3)))
    # an explicit axis is kept in the kernel role
    explicit = qnn.make_quantizer(f"{name}(axis=-1)", role="kernel")
    assert_equal(explicit(w), op(w, -1), "explicit axis")
    # and layers use the kernel role
    conv = qnn.QuantConv2d(3, 4, 2, kernel_quantizer=name)
    assert_equal(conv.quantized_kernel(), op(conv.weight, 0), "layer kernel")


# --------------------------------------------------------------------------------------------------
# layers


LINEAR_CASES = [
    ("ste_sign", "ste_sign"),
    ("ste_sign", "magnitude_aware_sign"),
    ("approx_sign", "binary_channel_wise_mean_scaling"),
    ("dorefa(k_bit=2)", "dorefa(k_bit=2, mode=weights)"),
    ({"name": "linear_mid_tread_half", "bit": 3}, "twn_weight"),
    (None, "ste_tern(ternary_weight_networks=true)"),
    ("swish_sign", None),
]

INDEPENDENT = {  # the quantizers written as direct operator calls, kernels with axis=0
    "ste_sign": lowbit.ste_sign,
    "approx_sign": lowbit.approx_sign,
    "swish_sign": lowbit.swish_sign,
    "magnitude_aware_sign": lambda w: lowbit.magnitude_aware_sign(w, axis=0),
    "binary_channel_wise_mean_scaling":
        lambda w: lowbit.binary_channel_wise_mean_scaling(w, axis=0),
    "dorefa(k_bit=2)": lambda x: lowbit.dorefa(x, k_bit=2),
    "dorefa(k_bit=2, mode=weights)": lambda w: lowbit.dorefa(w, k_bit=2, mode="weights"),
    "twn_weight": lowbit.twn_weight,
    "ste_tern(ternary_weight_networks=true)": lambda w: lowbit.ste_tern(
        w, ternary_weight_networks=True),
    "binary_mean_scaling": lowbit.binary_mean_scaling,
    None: lambda x: x,
}


def independent(spec):
    if isinstance(spec, dict):
        return lambda x: lowbit.linear_mid_tread_half(x, bit=spec["bit"])
    return INDEPENDENT[spec]


def leaves(*tensors):
    return [t.detach().clone().requires_grad_() for t in tensors]


@pytest.mark.parametrize("iq,kq", LINEAR_CASES)
def test_quant_linear_matches_an_independent_computation(iq, kq):
    torch.manual_seed(0)
    layer = qnn.QuantLinear(6, 5, input_quantizer=iq, kernel_quantizer=kq)
    with torch.no_grad():
        layer.bias.copy_(randn(5, seed=6))
    x = (randn(7, 6, seed=7) * 1.2).requires_grad_()
    g = randn(7, 5, seed=8)
    y = layer(x)
    y.backward(g)

    x2, w2, b2 = leaves(x, layer.weight, layer.bias)
    y2 = F.linear(independent(iq)(x2), independent(kq)(w2), b2)
    y2.backward(g)
    assert_equal(y, y2, "forward")
    assert_equal(x.grad, x2.grad, "d/dx")
    assert_equal(layer.weight.grad, w2.grad, "d/dweight")
    assert_equal(layer.bias.grad, b2.grad, "d/dbias")
    assert x.grad.abs().sum() > 0 and layer.weight.grad.abs().sum() > 0


def test_bias_is_never_quantized():
    layer = qnn.QuantLinear(4, 3, input_quantizer="ste_sign", kernel_quantizer="ste_sign")
    with torch.no_grad():
        layer.bias.copy_(torch.tensor([0.25, -0.75, 2.5]))
    x = randn(2, 4, seed=9)
    y = layer(x)
    no_bias = F.linear(lowbit.ste_sign(x), lowbit.ste_sign(layer.weight))
    assert_equal(y - no_bias, torch.tensor([0.25, -0.75, 2.5]).expand(2, 3), "bias")
    conv = qnn.QuantConv2d(2, 3, 1, input_quantizer="ste_sign", kernel_quantizer="ste_sign")
    with torch.no_grad():
        conv.bias.copy_(torch.tensor([0.25, -0.75, 2.5]))
    xc = randn(1, 2, 3, 3, seed=10)
    diff = conv(xc) - F.conv2d(lowbit.ste_sign(xc), lowbit.ste_sign(conv.weight))
    bias = torch.tensor([0.25, -0.75, 2.5]).view(1, 3, 1, 1).expand(1, 3, 3, 3)
    assert torch.allclose(diff, bias, rtol=0, atol=1e-6)


def padded(x, ph, pw, value):
    """x padded by hand (no F.pad): a constant frame around it."""
    n, c, h, w = x.shape
    out = torch.full((n, c, h + 2 * ph, w + 2 * pw), value, dtype=x.dtype)
    out[:, :, ph:ph + h, pw:pw + w] = x
    return out


CONV_CASES = [
    dict(cin=3, cout=4, k=3, stride=1, padding=1, dilation=1, groups=1, iq="ste_sign",
         kq="magnitude_aware_sign", pad_values=0.0),
    dict(cin=3, cout=4, k=3, stride=1, padding=1, dilation=1, groups=1, iq="ste_sign",
         kq="ste_sign", pad_values=1.0),
    dict(cin=4, cout=6, k=(3, 2), stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2,
         iq="dorefa(k_bit=2)", kq="dorefa(k_bit=2, mode=weights)", pad_values=1.0),
    dict(cin=4, cout=4, k=3, stride=2, padding=2, dilation=2, groups=4, iq="approx_sign",
         kq="binary_channel_wise_mean_scaling", pad_values=-1.0),  # depthwise
    dict(cin=4, cout=8, k=(1, 3), stride=1, padding=(0, 1), dilation=1, groups=4, iq=None,
         kq="binary_mean_scaling", pad_values=0.5),  # depthwise, channel multiplier 2
    dict(cin=2, cout=3, k=2, stride=1, padding=0, dilation=1, groups=1, iq="swish_sign",
         kq="twn_weight", pad_values=1.0),
]


def pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


@pytest.mark.parametrize("c", CONV_CASES, ids=lambda c: f"{c['iq']}-{c['kq']}-g{c['groups']}")
def test_quant_conv2d_matches_an_independent_computation(c):
    torch.manual_seed(1)
    layer = qnn.QuantConv2d(c["cin"], c["cout"], c["k"], stride=c["stride"], padding=c["padding"],
                            dilation=c["dilation"], groups=c["groups"], input_quantizer=c["iq"],
                            kernel_quantizer=c["kq"], pad_values=c["pad_values"])
    kh, kw = pair(c["k"])
    assert layer.weight.shape == (c["cout"], c["cin"] // c["groups"], kh, kw)
    with torch.no_grad():
        layer.bias.copy_(randn(c["cout"], seed=11))
    x = (randn(2, c["cin"], 7, 6, seed=12) * 1.2).requires_grad_()
    y = layer(x)
    g = randn(*y.shape, seed=13)
    y.backward(g)

    x2, w2, b2 = leaves(x, layer.weight, layer.bias)
    ph, pw = pair(c["padding"])
    xq = independent(c["iq"])(x2)
    if c["pad_values"] == 0.0:  # PyTorch's own zero padding
        y2 = F.conv2d(xq, independent(c["kq"])(w2), b2, c["stride"], (ph, pw), c["dilation"],
                      c["groups"])
    else:
        y2 = F.conv2d(padded(xq, ph, pw, c["pad_values"]), independent(c["kq"])(w2), b2,
                      c["stride"], 0, c["dilation"], c["groups"])
    y2.backward(g)
    assert_equal(y, y2, "forward")
    assert_equal(x.grad, x2.grad, "d/dx")
    assert_equal(layer.weight.grad, w2.grad, "d/dweight")
    assert_equal(layer.bias.grad, b2.grad, "d/dbias")
    assert x.grad.abs().sum() > 0 and layer.weight.grad.abs().sum() > 0


def test_depthwise_channels_stay_separate():
    layer = qnn.QuantConv2d(3, 3, 3, padding=1, groups=3, bias=False, input_quantizer="ste_sign",
                            kernel_quantizer="ste_sign")
    x = randn(1, 3, 5, 5, seed=14)
    base = layer(x)
    x2 = x.clone()
    x2[:, 1] = -x2[:, 1]
    changed = (layer(x2) != base).flatten(2).any(dim=2)[0].tolist()
    assert changed == [False, True, False]


def test_pad_values_one_differs_from_zero_padding_exactly_at_the_border():
    torch.manual_seed(2)
    # no bias, so every output is a small integer and the differences are exact
    one = qnn.QuantConv2d(2, 3, 3, padding=1, bias=False, input_quantizer="ste_sign",
                          kernel_quantizer="ste_sign", pad_values=1.0)
    zero = qnn.QuantConv2d(2, 3, 3, padding=1, bias=False, input_quantizer="ste_sign",
                           kernel_quantizer="ste_sign")
    with torch.no_grad():
        one.weight.copy_(randn(3, 2, 3, 3, seed=15).abs() + 0.1)  # quantized kernel all +1
    zero.load_state_dict(one.state_dict())
    x = randn(2, 2, 5, 6, seed=16)
    y1, y0 = one(x), zero(x)
    # each padded tap adds +1 (pad) * +1 (kernel) per input channel: 3 taps on an edge, 5 in a
    # corner
    taps = torch.zeros(5, 6)
    taps[0, :] += 3
    taps[-1, :] += 3
    taps[:, 0] += 3
    taps[:, -1] += 3
    taps[0, 0] = taps[0, -1] = taps[-1, 0] = taps[-1, -1] = 5
    assert_equal(y1 - y0, (2 * taps).expand(2, 3, 5, 6), "difference")
    assert bool(((y1 != y0) == (taps > 0)).all())
    # equals padding the quantized input by hand with F.pad(value=1)
    xq = lowbit.ste_sign(x)
    manual = F.conv2d(F.pad(xq, (1, 1, 1, 1), value=1.0), lowbit.ste_sign(one.weight), one.bias)
    assert_equal(y1, manual, "F.pad(value=1)")
    # padding comes after the input quantizer: a pad value of 0.3 stays 0.3 (ste_sign would give 1)
    odd = qnn.QuantConv2d(2, 3, 3, padding=1, bias=False, input_quantizer="ste_sign",
                          kernel_quantizer="ste_sign", pad_values=0.3)
    odd.load_state_dict(one.state_dict())
    assert_equal(odd(x), F.conv2d(F.pad(xq, (1, 1, 1, 1), value=0.3), lowbit.ste_sign(one.weight),
                                  one.bias), "pad 0.3")


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("k,dilation", [(3, 1), (2, 1), (4, 2), ((2, 3), (1, 2))])
def test_same_padding_is_pytorchs(k, dilation):
    torch.manual_seed(3)
    ref = torch.nn.Conv2d(2, 3, k, padding="same", dilation=dilation)
    layer = qnn.QuantConv2d(2, 3, k, padding="same", dilation=dilation)
    layer.load_state_dict(ref.state_dict())
    x = randn(1, 2, 6, 7, seed=17)
    assert torch.allclose(layer(x), ref(x), rtol=0, atol=1e-6)
    # and "same-one": the same frame, filled with ones
    one = qnn.QuantConv2d(2, 3, k, padding="same", dilation=dilation, pad_values=1.0)
    one.load_state_dict(ref.state_dict())
    kh, kw = pair(k)
    dh, dw = pair(dilation)
    th, tw = dh * (kh - 1), dw * (kw - 1)
    manual = F.conv2d(F.pad(x, (tw // 2, tw - tw // 2, th // 2, th - th // 2), value=1.0),
                      ref.weight, ref.bias, dilation=dilation)
    assert_equal(one(x), manual, "same-one")


def test_padding_mode_other_than_zeros_is_an_error():
    for mode in ("reflect", "replicate", "circular"):
        raises_naming(ValueError, "padding_mode",
                      lambda: qnn.QuantConv2d(2, 2, 3, padding=1, padding_mode=mode))
    raises_naming(TypeError, "pad_values", lambda: qnn.QuantConv2d(2, 2, 3, pad_values="one"))


def test_layers_are_pytorch_layers():
    torch.manual_seed(4)
    ref = torch.nn.Linear(5, 3)
    torch.manual_seed(4)
    layer = qnn.QuantLinear(5, 3, input_quantizer="ste_sign", kernel_quantizer="ste_sign")
    assert isinstance(layer, torch.nn.Linear)
    assert list(layer.state_dict()) == list(ref.state_dict())
    assert torch.equal(layer.weight, ref.weight) and torch.equal(layer.bias, ref.bias)

    torch.manual_seed(5)
    cref = torch.nn.Conv2d(4, 6, (3, 1), stride=2, padding=(1, 0), groups=2, bias=False)
    torch.manual_seed(5)
    conv = qnn.QuantConv2d(4, 6, (3, 1), stride=2, padding=(1, 0), groups=2, bias=False,
                           kernel_quantizer="magnitude_aware_sign", pad_values=1.0)
    assert isinstance(conv, torch.nn.Conv2d)
    assert list(conv.state_dict()) == ["weight"] and torch.equal(conv.weight, cref.weight)
    conv.load_state_dict(cref.state_dict())


def test_extra_repr_is_readable():
    layer = qnn.QuantLinear(4, 3, input_quantizer="ste_sign",
                            kernel_quantizer="dorefa(k_bit=2, mode=weights)",
                            kernel_constraint="weight_clip")
    r = repr(layer)
    for part in ("in_features=4", "input_precision=1", "kernel_precision=2",
                 "kernel_constraint=weight_clip(clip_value=1.0)", "ste_sign(clip_value=1.0)",
                 "dorefa(k_bit=2, mode=weights)"):
        assert part in r, r
    conv = qnn.QuantConv2d(2, 2, 3, padding=1, kernel_quantizer="ste_sign", pad_values=1.0)
    assert "pad_values=1.0" in repr(conv) and "input_precision=32" in repr(conv)
    assert "pad_values" not in repr(qnn.QuantConv2d(2, 2, 3))


def test_ttq_parameters_receive_gradients():
    torch.manual_seed(6)
    layer = qnn.QuantLinear(6, 4, kernel_quantizer="ttq_weight(positive=2.0, negative=0.5)")
    names = dict(layer.named_parameters())
    assert set(names) == {"weight", "bias", "kernel_quantizer.positive",
                          "kernel_quantizer.negative"}
    q = layer.kernel_quantizer
    assert q.positive.shape == () and float(q.positive) == 2.0 and float(q.negative) == 0.5
    x = randn(5, 6, seed=18)
    g = randn(5, 4, seed=19)
    layer(x).backward(g)

    w2, b2, p2, n2 = leaves(layer.weight, layer.bias, q.positive, q.negative)
    F.linear(x, lowbit.ttq_weight(w2, p2, n2, threshold=0.05), b2).backward(g)
    assert_equal(q.positive.grad, p2.grad, "d/dpositive")
    assert_equal(q.negative.grad, n2.grad, "d/dnegative")
    assert_equal(layer.weight.grad, w2.grad, "d/dweight")
    assert float(q.positive.grad) != 0 and float(q.negative.grad) != 0
    before = float(q.positive)
    torch.optim.SGD(layer.parameters(), lr=0.1).step()
    assert float(q.positive) != before


def test_factory_dtype_reaches_ttq_parameters():
    layer = qnn.QuantLinear(3, 2, kernel_quantizer="ttq_weight", dtype=torch.float64)
    assert layer.weight.dtype == torch.float64
    assert layer.kernel_quantizer.positive.dtype == torch.float64
    assert layer(torch.randn(2, 3, dtype=torch.float64)).dtype == torch.float64


# --------------------------------------------------------------------------------------------------
# kernel constraint


def test_kernel_constraint_clamps_after_apply_constraints():
    w = torch.tensor([[-2.0, -0.5, 0.3], [1.5, 1.0, -1.0]])
    model = torch.nn.Sequential(
        torch.nn.Sequential(qnn.QuantLinear(3, 2, kernel_quantizer="ste_sign",
                                            kernel_constraint="weight_clip")),
        qnn.QuantLinear(3, 2, kernel_constraint="weight_clip(clip_value=0.5)"),
        qnn.QuantLinear(3, 2, kernel_constraint={"name": "weight_clip", "clip_value": 1.25}),
        qnn.QuantLinear(3, 2, kernel_quantizer="ste_sign"),
        qnn.QuantConv2d(1, 1, (2, 3), kernel_constraint="weight_clip"))
    layers = [model[0][0], model[1], model[2], model[3], model[4]]
    with torch.no_grad():
        for layer in layers:
            layer.weight.copy_(w.view_as(layer.weight))
        biases = [layer.bias.clone() for layer in layers]
        model[1].bias.fill_(3.0)
    assert_equal(layers[0].weight, w, "before")  # nothing happens before apply_constraints
    qnn.apply_constraints(model)
    assert_equal(layers[0].weight, torch.tensor([[-1.0, -0.5, 0.3], [1.0, 1.0, -1.0]]), "clip 1")
    assert_equal(layers[1].weight, torch.tensor([[-0.5, -0.5, 0.3], [0.5, 0.5, -0.5]]), "clip 0.5")
    assert_equal(layers[2].weight, torch.tensor([[-1.25, -0.5, 0.3], [1.25, 1.0, -1.0]]),
                 "clip 1.25")
    assert_equal(layers[3].weight, w, "no constraint")
    assert_equal(layers[4].weight, torch.tensor([[-1.0, -0.5, 0.3], [1.0, 1.0, -1.0]]).view(
        1, 1, 2, 3), "conv")
    assert float(model[1].bias[0]) == 3.0  # the bias is not constrained
    layers[0].weight.data.fill_(7.0)
    layers[0].apply_kernel_constraint()
    assert bool((layers[0].weight == 1.0).all())


def test_kernel_constraint_forms_and_errors():
    assert qnn.make_constraint(None) is None and qnn.make_constraint("none") is None
    assert qnn.make_constraint("weight_clip").clip_value == 1.0
    assert qnn.make_constraint("weight_clip(clip_value=2)").clip_value == 2.0
    raises_naming(ValueError, "max_norm", lambda: qnn.make_constraint("max_norm"))
    raises_naming(ValueError, "clip", lambda: qnn.make_constraint("weight_clip(clip=1)"))
    raises_naming(ValueError, "clip_value",
                  lambda: qnn.make_constraint("weight_clip(clip_value=-1)"))
    raises_naming(TypeError, "clip_value", lambda: qnn.make_constraint("weight_clip(clip_value=a)"))
    raises_naming(ValueError, "max_norm",
                  lambda: qnn.QuantLinear(2, 2, kernel_constraint="max_norm"))
    # a callable, as a Keras constraint
    layer = qnn.QuantLinear(2, 2, kernel_constraint=lambda w: w.round())
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.4, 1.6], [-2.7, 0.0]]))
    qnn.apply_constraints(layer)
    assert layer.weight.tolist() == [[0.0, 2.0], [-3.0, 0.0]]


# --------------------------------------------------------------------------------------------------
# flip ratio


def test_flip_ratio_counts_flips():
    lin = qnn.QuantLinear(3, 2, kernel_quantizer="ste_sign")
    conv = qnn.QuantConv2d(1, 1, 2, kernel_quantizer="ste_sign")
    plain = qnn.QuantLinear(3, 2, input_quantizer="ste_sign")  # no kernel quantizer
    model = torch.nn.Sequential(lin, conv, plain)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.5, -0.5, 0.2], [0.1, -0.3, 0.4]]))
        conv.weight.copy_(torch.tensor([[[[0.5, -0.5], [0.2, -0.2]]]]))
    flip = qnn.FlipRatio()
    assert flip.update(model) == {"0": 0.0, "1": 0.0}  # first call: nothing to compare with
    assert flip.overall == 0.0
    with torch.no_grad():
        # linear: two sign flips, one magnitude change, and 0.1 -> 0.0 (sign0(0) = +1: no flip)
        lin.weight.copy_(torch.tensor([[-0.1, -0.9, 0.2], [0.0, -0.3, -0.4]]))
        # conv: one flip (-0.2 -> 0.0 is a flip since sign0(0) = +1)
        conv.weight.copy_(torch.tensor([[[[0.7, -0.5], [0.2, 0.0]]]]))
        plain.weight.neg_()
    assert flip.update(model) == {"0": 2 / 6, "1": 1 / 4}
    assert flip.overall == 3 / 10
    assert flip.update(model) == {"0": 0.0, "1": 0.0}  # nothing changed since the last call
    assert flip.overall == 0.0
    with torch.no_grad():
        lin.weight.neg_()  # every sign flips except 0.0 -> -0.0 (both quantize to +1)
    assert flip.update(model) == {"0": 5 / 6, "1": 0.0}
    assert flip.overall == 5 / 10
    flip.reset()
    with torch.no_grad():
        lin.weight.neg_()
    assert flip.update(model) == {"0": 0.0, "1": 0.0}


# --------------------------------------------------------------------------------------------------
# Bop


def test_bop_sets_weights_to_their_sign():
    w = torch.nn.Parameter(torch.tensor([0.3, -0.2, 0.0, -0.0, 5.0]))
    qnn.Bop([w])
    assert w.tolist() == [1.0, -1.0, 1.0, 1.0, 1.0]


def test_bop_flips_exactly_what_its_rule_says():
    # threshold 0.25, gamma 0.5; dyadic values, so every m below is exact
    w = torch.nn.Parameter(torch.tensor([1.0, 1.0, -1.0, -1.0, 1.0, 1.0]))
    idle = torch.nn.Parameter(torch.tensor([1.0, -1.0]))  # never gets a gradient
    opt = qnn.Bop([w, idle], threshold=0.25, gamma=0.5)
    steps = [
        # gradient                             m after the step                      w after
        ([1.0, -1.0, -1.0, 0.25, 0.25, 0.5], [0.5, -0.5, -0.5, 0.125, 0.125, 0.25],
         [-1.0, 1.0, 1.0, -1.0, 1.0, 1.0]),
        ([1.0, -1.0, 0.0, 0.25, 0.5, 0.5], [0.75, -0.75, -0.25, 0.1875, 0.3125, 0.375],
         [-1.0, 1.0, 1.0, -1.0, -1.0, -1.0]),
        ([-1.0, 0.0, -1.0, 0.25, 0.0, 0.0], [-0.125, -0.375, -0.625, 0.21875, 0.15625, 0.1875],
         [-1.0, 1.0, 1.0, -1.0, -1.0, -1.0]),
    ]
    # step 1: w*m = [.5, -.5, .5, -.125, .125, .25]: 0 and 2 flip (agree, |m| > .25); 1 and 3
    #   disagree; 4 agrees below the threshold; 5 agrees AT the threshold (no flip, strict)
    # step 2: w*m = [-.75, -.75, -.25, -.1875, .3125, .375]: 4 and 5 flip; 0 has a large m that
    #   now disagrees with its flipped weight
    # step 3: w*m = [.125, -.375, -.625, -.21875, -.15625, -.1875]: 0 agrees but below: no flip
    for grad, m, after in steps:
        opt.zero_grad()
        w.grad = torch.tensor(grad)
        opt.step()
        assert opt.state[w]["m"].tolist() == m
        assert w.tolist() == after
    assert idle.tolist() == [1.0, -1.0] and idle not in opt.state


def test_bop_moving_average_is_larqs():
    w = torch.nn.Parameter(torch.ones(3))
    opt = qnn.Bop([w], threshold=10.0, gamma=0.25)
    m = torch.zeros(3)
    for grad in ([1.0, -2.0, 0.5], [3.0, 0.0, -1.0], [-0.5, 4.0, 2.0]):
        w.grad = torch.tensor(grad)
        opt.step()
        m = 0.75 * m + 0.25 * torch.tensor(grad)
        assert torch.allclose(opt.state[w]["m"], m, rtol=1e-6, atol=0)
    assert w.tolist() == [1.0, 1.0, 1.0]  # threshold never reached


def test_bop_rejects_bad_hyperparameters():
    w = torch.nn.Parameter(torch.ones(2))
    raises_naming(ValueError, "gamma", lambda: qnn.Bop([w], gamma=1.5))
    raises_naming(ValueError, "threshold", lambda: qnn.Bop([w], threshold=-1.0))


def test_split_binary_parameters():
    model = torch.nn.Sequential(
        qnn.QuantLinear(4, 4, kernel_quantizer="ste_sign"),
        qnn.QuantLinear(4, 4, input_quantizer="ste_sign", kernel_quantizer="magnitude_aware_sign"),
        qnn.QuantLinear(4, 4, kernel_quantizer="dorefa(k_bit=2, mode=weights)"),
        qnn.QuantLinear(4, 4, kernel_quantizer="ttq_weight"),
        qnn.QuantLinear(4, 4, input_quantizer="ste_sign"),
        torch.nn.Linear(4, 4),
        qnn.QuantConv2d(4, 4, 1, groups=4, kernel_quantizer="ste_sign", bias=False))
    binary, others = qnn.split_binary_parameters(model)
    assert [id(p) for p in binary] == [id(model[0].weight), id(model[1].weight),
                                       id(model[6].weight)]
    assert {id(p) for p in binary} | {id(p) for p in others} == {id(p) for p in model.parameters()}
    assert not {id(p) for p in binary} & {id(p) for p in others}
    assert len(others) == len(list(model.parameters())) - 3


def toy_problem():
    g = gen(0)
    x = torch.randn(256, 16, generator=g)
    teacher = torch.randn(16, generator=g).sign()
    return x, (x @ teacher > 0).float(), teacher


def train_toy(gamma, steps=200):
    x, y, teacher = toy_problem()
    torch.manual_seed(1)
    model = torch.nn.Sequential(qnn.QuantLinear(16, 1, kernel_quantizer="ste_sign"),
                                torch.nn.Linear(1, 1))  # a float scale and bias after the sign
    binary, others = qnn.split_binary_parameters(model)
    assert len(binary) == 1 and len(others) == 3
    bop = qnn.Bop(binary, threshold=1e-4, gamma=gamma)
    adam = torch.optim.Adam(others, lr=1e-2)

    def loss():
        return F.binary_cross_entropy_with_logits(model(x).squeeze(1), y)

    first = float(loss())
    for _ in range(steps):
        bop.zero_grad()
        adam.zero_grad()
        loss().backward()
        bop.step()
        adam.step()
    w = model[0].weight.detach()
    assert bool((w.abs() == 1).all())
    return first, float(loss()), abs(float((w[0] * teacher).mean()))


def test_bop_and_adam_train_a_tiny_binary_model():
    first, last, agreement = train_toy(gamma=1e-2)
    assert last < 0.5 * first, (first, last)
    assert agreement >= 0.875  # Bop found the teacher's kernel (up to the sign of the float scale)
    # without Bop (gamma 0: no flips) Adam alone cannot get there
    first0, last0, _ = train_toy(gamma=0.0)
    assert first0 == first and last0 > 0.8 * first
