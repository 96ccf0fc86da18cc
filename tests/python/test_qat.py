"""lowbit.qat (docs/qat.md): folding against torch's batch norm, observers, prepare and the integer
parameters, against the independent reference of the fake quant (reference.py)."""

import math

import pytest
import torch
import torch.nn.functional as F

import lowbit.nn as qnn
import lowbit.qat as qat
import reference as ref


def pow2_ref(t, bits, max_exponent=None):
    t = t.detach()
    return ref.fake_quant_pow2(t, t.min(), t.max(), bits, max_exponent)


def conv_bn(seed, bias=True):
    torch.manual_seed(seed)
    conv = torch.nn.Conv2d(3, 4, 3, padding=1, bias=bias)
    bn = torch.nn.BatchNorm2d(4)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
        bn.running_mean.uniform_(-0.2, 0.2)
        bn.running_var.uniform_(0.5, 2.0)
    return conv, bn


def test_without_quantization_a_folded_layer_trains_as_conv_then_batch_norm():
    conv, bn = conv_bn(0)
    f = qat.FoldedLayer(conv, bn, qat.QatOptions(quant_delay=10**9))
    x, r = torch.randn(5, 3, 6, 6), torch.randn(5, 4, 6, 6)
    y_ref = bn(conv(x))
    y = f(x)
    torch.testing.assert_close(y, y_ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(f.running_mean, bn.running_mean)
    torch.testing.assert_close(f.running_var, bn.running_var)
    (y_ref * r).sum().backward()
    (y * r).sum().backward()
    torch.testing.assert_close(f.weight.grad, conv.weight.grad, rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(f.gamma.grad, bn.weight.grad, rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(f.beta.grad, bn.bias.grad, rtol=1e-4, atol=1e-5)
    assert int(f.step) == 1


def test_eval_is_the_quantized_folded_convolution():
    conv, bn = conv_bn(1)
    f = qat.FoldedLayer(conv, bn).eval()
    x = torch.randn(2, 3, 5, 5)
    with torch.no_grad():
        s = bn.weight / (bn.running_var + 1e-5).sqrt()
        w_fold = conv.weight * s.view(-1, 1, 1, 1)
        b_fold = bn.bias + (conv.bias - bn.running_mean) * s
        wq, bq = pow2_ref(w_fold, 8, 3), pow2_ref(b_fold, 16, 3)
        y_ref = F.conv2d(x, wq, bq, padding=1)
        y = f(x)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-6)
    q = f.weight_quantization()
    ints = wq * 2.0 ** q.frac_bits
    assert torch.equal(ints, ints.round()) and -128 <= ints.min() and ints.max() <= 127
    m = float(w_fold.abs().max())
    assert 2.0 ** (6 - q.frac_bits) < m <= 2.0 ** (7 - q.frac_bits)  # the largest f that holds m


def test_quantized_training_has_batch_norms_gradient_through_straight_through_weights():
    conv, bn = conv_bn(7, bias=False)
    f = qat.FoldedLayer(conv, bn)
    x, r = torch.randn(6, 3, 5, 5), torch.randn(6, 4, 5, 5)
    y = f(x)
    (y * r).sum().backward()
    w = conv.weight.detach().clone().requires_grad_()
    gamma = bn.weight.detach().clone().requires_grad_()
    beta = bn.bias.detach().clone().requires_grad_()
    s = gamma / (bn.running_var + 1e-5).sqrt()
    w_fold = w * s.view(-1, 1, 1, 1)
    w_ste = w_fold + (pow2_ref(w_fold, 8, 3) - w_fold).detach()
    raw = F.conv2d(x, w_ste, padding=1) / s.view(1, -1, 1, 1)
    y_ref = F.batch_norm(raw, bn.running_mean.clone(), bn.running_var.clone(), gamma, beta,
                         training=True)
    (y_ref * r).sum().backward()
    assert float((y - y_ref).abs().max()) <= 1e-3  # the 16-bit bias moves it by tiny steps
    torch.testing.assert_close(f.weight.grad, w.grad, rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(f.gamma.grad, gamma.grad, rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(f.beta.grad, beta.grad, rtol=1e-4, atol=1e-5)


def test_after_the_freeze_training_uses_the_moving_statistics():
    conv, bn = conv_bn(2)
    f = qat.FoldedLayer(conv, bn, qat.QatOptions(freeze_bn_delay=0))
    x = torch.randn(4, 3, 5, 5)
    mean = f.running_mean.clone()
    y_train = f(x)
    assert torch.equal(f.running_mean, mean)
    with torch.no_grad():
        y_eval = f.eval()(x)
    torch.testing.assert_close(y_train.detach(), y_eval, rtol=1e-6, atol=1e-7)


def test_activation_quant_moving_average_and_quant_delay():
    a = qat.ActivationQuant(qat.QatOptions(quant_delay=2, ema_decay=0.9))
    x1, x2, x3 = torch.tensor([-0.5, 0.25, 1.5]), torch.tensor([0.1, 3.0]), torch.tensor(
        [-1.0, 0.3, 0.7])
    assert torch.equal(a(x1), x1)
    assert (float(a.min), float(a.max)) == (-0.5, 1.5)
    assert torch.equal(a(x2), x2)
    f32 = lambda v: torch.tensor(v, dtype=torch.float32)  # noqa: E731
    lo, hi = f32(-0.5) - (f32(-0.5) - 0) * f32(0.1), f32(1.5) - (f32(1.5) - 3) * f32(0.1)
    assert float(a.min) == pytest.approx(float(lo)) and float(a.max) == pytest.approx(float(hi))
    y3 = a(x3)
    lo, hi = a.min.clone(), a.max.clone()
    assert torch.equal(y3, ref.fake_quant_pow2(x3, lo, hi, 8))
    a.eval()
    y = a(torch.tensor([5.0, -7.0]))
    assert torch.equal(a.min, lo)  # eval does not observe
    assert torch.equal(y, ref.fake_quant_pow2(torch.tensor([5.0, -7.0]), lo, hi, 8))
    q = a.quantization()
    assert (q.frac_bits, q.max) == (6, 2.0 - 2.0 ** -6)  # range [-1.1, 1.8]: e = 1


def test_affine_activations_report_the_nudged_range_they_use():
    a = qat.ActivationQuant(qat.QatOptions(scheme="affine"))
    x = torch.linspace(-0.3, 2.0, 50)
    y = a(x)
    assert torch.equal(y, ref.fake_quant_with_min_max_vars(x, torch.tensor(-0.3),
                                                           torch.tensor(2.0), 8))
    q = a.quantization()
    codes = y / q.scale + q.zero_point  # every output is (q - zero_point) * scale
    torch.testing.assert_close(codes, codes.round(), rtol=0, atol=1e-3)
    assert q.qmin <= int(codes.round().min()) and int(codes.round().max()) <= q.qmax
    assert q.zero_point * q.scale == pytest.approx(-q.min, abs=1e-6)


def float_net():
    torch.manual_seed(4)
    return torch.nn.Sequential(
        qnn.QuantConv2d(1, 4, 3, padding=1, bias=False), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
        torch.nn.MaxPool2d(2), torch.nn.Conv2d(4, 8, 3, padding=1, bias=False),
        torch.nn.BatchNorm2d(8), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
        qnn.QuantLinear(8 * 3 * 3, 16, bias=False), torch.nn.BatchNorm1d(16), torch.nn.ReLU(),
        torch.nn.Dropout(0.0), torch.nn.Linear(16, 3))


def test_prepare_folds_and_quantizes_after_each_activation():
    net = float_net()
    q = qat.prepare(net, quant_delay=10**9)
    kinds = [type(m).__name__ for m in q]
    assert kinds == ["ActivationQuant", "FoldedLayer", "ReLU", "ActivationQuant", "MaxPool2d",
                     "FoldedLayer", "ReLU", "ActivationQuant", "MaxPool2d", "Flatten",
                     "FoldedLayer", "ReLU", "ActivationQuant", "Dropout", "FoldedLayer",
                     "ActivationQuant"]
    x = torch.randn(6, 1, 12, 12)
    torch.testing.assert_close(q(x), net(x), rtol=1e-4, atol=1e-5)


def test_prepare_reports_what_it_cannot_fold():
    larq = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.MaxPool2d(2),
                               torch.nn.BatchNorm2d(4))
    with pytest.raises(ValueError, match="module 2"):
        qat.prepare(larq)
    with pytest.raises(ValueError, match="has quantizers"):
        qat.prepare(torch.nn.Sequential(qnn.QuantLinear(4, 2, input_quantizer="ste_sign")))
    with pytest.raises(ValueError, match="not supported"):
        qat.prepare(torch.nn.Sequential(torch.nn.Linear(4, 2), torch.nn.Sigmoid()))
    with pytest.raises(ValueError, match="weight_bits"):
        qat.prepare(float_net(), weight_bits=1)
    with pytest.raises(ValueError, match="scheme"):
        qat.prepare(float_net(), scheme="int4")
    with pytest.raises(TypeError):
        qat.prepare(torch.nn.Linear(2, 2))


def test_prepare_keeps_quantized_layers_when_asked():
    torch.manual_seed(3)
    binary = dict(input_quantizer="ste_sign", kernel_quantizer="ste_sign")
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1, bias=False), torch.nn.BatchNorm2d(4),
        qnn.QuantConv2d(4, 8, 3, padding=1, bias=False, **binary), torch.nn.MaxPool2d(2),
        torch.nn.BatchNorm2d(8), torch.nn.Flatten(),
        qnn.QuantLinear(8 * 6 * 6, 16, bias=False, **binary), torch.nn.BatchNorm1d(16),
        torch.nn.Linear(16, 3))
    with pytest.raises(ValueError, match="has quantizers"):
        qat.prepare(net)
    q = qat.prepare(net, keep_quantized_layers=True)
    kinds = [type(m).__name__ for m in q]
    assert kinds == ["ActivationQuant", "FoldedLayer", "ActivationQuant", "QuantConv2d", "MaxPool2d",
                     "BatchNorm2d", "Flatten", "QuantLinear", "BatchNorm1d", "ActivationQuant",
                     "FoldedLayer", "ActivationQuant"]
    assert q[3] is net[2] and q[5] is net[4] and q[7] is net[6] and q[8] is net[7]
    # Trained a few steps, in eval it is: 8-bit first layer, sign, binary layers with their batch
    # norms, the 8-bit quantized batch norm output into the 8-bit classifier.
    q.train()
    for _ in range(3):
        q(torch.randn(8, 1, 12, 12))
    q.eval()
    x = torch.randn(5, 1, 12, 12)
    with torch.no_grad():
        h = q[2](q[1](q[0](x)))
        h = net[7](net[6](net[5](net[4](net[3](net[2](h))))))
        expected = q[11](q[10](q[9](h)))
        torch.testing.assert_close(q(x), expected, rtol=0, atol=0)
    # Without quantize_input the network's input stays float; only the kept layer's output is
    # quantized before a folded layer.
    plain = [type(m).__name__ for m in qat.prepare(net, keep_quantized_layers=True, quantize_input=False)]
    assert plain == kinds[1:]
    assert [type(m).__name__ for m in qat.prepare(float_net(), quantize_input=False)][0] == "FoldedLayer"
    layers = qat.integer_parameters(q)
    assert [l.name for l in layers] == ["1", "10"]
    assert layers[1].input == q[9].quantization() and layers[0].output == q[2].quantization()


@pytest.mark.parametrize("scheme", ["pow2", "affine"])
def test_integer_parameters_chain_layer_to_layer(scheme):
    q = qat.prepare(float_net(), scheme=scheme)
    for _ in range(3):
        q(torch.randn(8, 1, 12, 12))
    q.eval()
    layers = qat.integer_parameters(q)
    assert [l.type for l in layers] == ["conv2d", "conv2d", "linear", "linear"]
    assert [l.relu for l in layers] == [True, True, True, False]
    for prev, l in zip(layers, layers[1:]):
        assert l.input == prev.output
    for l in layers:
        assert l.input.bits == l.weight.bits == l.output.bits == 8
        assert l.bias.bits == (16 if scheme == "pow2" else 32)  # every folded layer has a bias
        if scheme == "affine":
            assert l.weight.qmin == 1  # narrow range


def test_integer_parameters_worked_values_of_the_spec():
    lin = torch.nn.Linear(2, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.3, -0.1], [0.05, 0.2]]))
        lin.bias.copy_(torch.tensor([5.0, -1.0]))
    f = qat.FoldedLayer(lin)
    w = f.weight_quantization()
    assert (w.frac_bits, w.min, w.max) == (8, -0.5, 0.49609375)
    assert f.bias_quantization().frac_bits == 12
    wq, bq = f.quantized_folded_parameters()
    assert float(wq[0, 0]) == pytest.approx(round(0.3 * 256) / 256)
    assert float(bq[0]) == 5.0
    assert math.isclose(w.scale, 2 ** -8)


def test_summary_counts_folded_weights_at_their_bits():
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4),
                              torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 3))
    s = qnn.summary(qat.prepare(net), (1, 1, 6, 6), print_fn=None)
    assert [r.type for r in s.rows] == ["FoldedLayer", "FoldedLayer"]
    # conv: 36 weights at 8 bits; bias, gamma, beta at 32; 4 * 36 outputs of 9 MACs each
    assert s.rows[0].params_by_bits == {8: 36, 32: 12}
    assert s.rows[0].macs_by_bits == {8: 4 * 36 * 9}
    assert s.rows[1].params_by_bits == {8: 432, 32: 3}
    assert s.total_macs == 4 * 36 * 9 + 432
