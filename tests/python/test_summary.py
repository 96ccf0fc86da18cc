"""lowbit.nn.summary (Larq's model summary): the same numbers as C++'s lowbit::nn::summary."""

import json

import pytest
import torch
from torch import nn

import lowbit.nn as qnn


def cpp_test_model():
    """The model of TEST(Summary, CountsParametersAndMacsByBitWidth) in tests/cpp/test_nn.cpp."""
    torch.manual_seed(0)
    return nn.Sequential(
        qnn.QuantConv2d(1, 8, 3, padding=1, kernel_quantizer="ste_sign"),
        nn.BatchNorm2d(8),
        qnn.QuantConv2d(8, 16, 3, bias=False, input_quantizer="ste_sign",
                        kernel_quantizer="ste_sign"),
        nn.Flatten(),
        qnn.QuantLinear(16 * 4 * 4, 10, input_quantizer="ste_sign", kernel_quantizer="ste_tern"))


def test_same_numbers_as_the_cpp_test():
    s = qnn.summary(cpp_test_model(), (2, 1, 6, 6), print_fn=None)
    assert isinstance(s, qnn.ModelSummary)
    assert [r.name for r in s.rows] == ["0", "1", "2", "4"]  # the Flatten has no parameters
    assert [r.type for r in s.rows] == ["QuantConv2d", "BatchNorm2d", "QuantConv2d", "QuantLinear"]
    assert [r.input_precision for r in s.rows] == [32, None, 1, 1]
    # conv1: 72 one-bit weights, 8 float biases; its MACs are 32-bit (float input): 6*6*8 * 9.
    r = s.rows[0]
    assert r.params_by_bits == {1: 72, 32: 8}
    assert r.macs_by_bits == {32: 6 * 6 * 8 * 9}
    assert r.output_shape == (2, 8, 6, 6)
    assert r.memory_kib == (72 + 32 * 8) / 8 / 1024
    # batch norm: 16 trainable + 16 running statistics (num_batches_tracked is not a parameter).
    assert s.rows[1].params_by_bits == {32: 32}
    assert s.rows[1].macs_by_bits == {}
    assert s.rows[1].output_shape == (2, 8, 6, 6)
    # conv2: binary input and kernel: 4*4*16 * 8*9 binarized MACs; no bias.
    assert s.rows[2].params_by_bits == {1: 16 * 8 * 9}
    assert s.rows[2].macs_by_bits == {1: 4 * 4 * 16 * 8 * 9}
    assert s.rows[2].output_shape == (2, 16, 4, 4)
    # linear: ternary kernel with a binary input: 2-bit MACs.
    assert s.rows[3].params_by_bits == {2: 2560, 32: 10}
    assert s.rows[3].macs_by_bits == {2: 2560}
    assert s.rows[3].output_shape == (2, 10)

    total = 72 + 8 + 32 + 1152 + 2560 + 10
    assert s.total_params == total == 3834
    assert s.non_trainable_params == 16
    assert s.trainable_params == total - 16
    bits = 72 + 1152 + 2.0 * 2560 + 32.0 * (8 + 32 + 10)
    assert s.model_size_kib == pytest.approx(bits / 8 / 1024, rel=1e-12)
    bits8 = 72 + 1152 + 2.0 * 2560 + 8.0 * (8 + 32 + 10)
    assert s.model_size_8bit_kib == pytest.approx(bits8 / 8 / 1024, rel=1e-12)
    assert s.float32_kib == pytest.approx(total * 4.0 / 1024, rel=1e-12)
    assert s.compression_ratio == pytest.approx(s.float32_kib / s.model_size_kib, rel=1e-12)
    macs = 2592 + 18432 + 2560
    assert s.total_macs == macs == 23584
    assert s.binarized_mac_ratio == pytest.approx(18432 / macs, rel=1e-12)
    assert s.ternarized_mac_ratio == pytest.approx(2560 / macs, rel=1e-12)


def test_text_has_the_cpp_headings_and_totals():
    s = qnn.summary(cpp_test_model(), (2, 1, 6, 6), print_fn=None)
    text = str(s)
    lines = text.splitlines()
    header = lines[0].split("  ")
    header = [h.strip() for h in header if h.strip()]
    assert header == ["Layer", "Input prec. (bit)", "Outputs", "# 1-bit", "# 2-bit", "# 32-bit",
                      "Memory (kB)", "1-bit MACs", "2-bit MACs", "32-bit MACs"]
    assert set(lines[1]) == {"-"} and len(lines[1]) == len(lines[0])
    assert lines[2].split() == ["0", "(QuantConv2d)", "32", "(-1,", "8,", "6,", "6)", "72", "0",
                                "8", "0.04", "0", "0", "2592"]
    assert lines[3].split()[:3] == ["1", "(BatchNorm2d)", "-"]
    assert "(-1, 16, 4, 4)" in text
    for line in ["Total params                   3834",
                 "Trainable params               3818",
                 "Non-trainable params           16",
                 "Model size                     0.97 KiB",
                 "Model size (8-bit FP weights)  0.82 KiB",
                 "Float-32 equivalent            14.98 KiB",
                 "Compression ratio of memory    15.44",
                 "Number of MACs                 23584",
                 "Ratio of MACs that are binarized   0.7815",
                 "Ratio of MACs that are ternarized  0.1085"]:
        assert line in lines, (line, text)
    assert text.endswith("\n")


def test_print_fn_gets_the_table_and_none_prints_nothing(capsys):
    got = []
    s = qnn.summary(cpp_test_model(), [2, 1, 6, 6], print_fn=got.append)
    assert got == [str(s).rstrip("\n")]
    qnn.summary(cpp_test_model(), [2, 1, 6, 6], print_fn=None)
    assert capsys.readouterr().out == ""
    qnn.summary(cpp_test_model(), [2, 1, 6, 6])  # the default prints
    assert "Ratio of MACs that are binarized" in capsys.readouterr().out


def test_to_dict_has_the_totals_and_rows():
    s = qnn.summary(cpp_test_model(), torch.Size([2, 1, 6, 6]), print_fn=None)
    d = s.to_dict()
    for key in ("total_params", "trainable_params", "non_trainable_params", "model_size_kib",
                "model_size_8bit_kib", "float32_kib", "compression_ratio", "total_macs",
                "binarized_mac_ratio", "ternarized_mac_ratio"):
        assert d[key] == getattr(s, key)
    assert len(d["rows"]) == 4
    assert d["rows"][2] == {"name": "2", "type": "QuantConv2d", "input_precision": 1,
                            "output_shape": [2, 16, 4, 4], "params_by_bits": {1: 1152},
                            "memory_kib": 1152 / 8 / 1024, "macs_by_bits": {1: 18432}}
    json.dumps(d)  # serialisable


class Shortcut(nn.Module):
    """Not a Sequential: a residual block with a shortcut, and a nested Sequential head."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.body = qnn.QuantConv2d(4, 4, 3, padding=1, input_quantizer="ste_sign",
                                    kernel_quantizer="ste_sign", bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Sequential(
            nn.Flatten(),
            qnn.QuantLinear(4 * 5 * 5, 3, kernel_quantizer="dorefa(k_bit=4, mode=weights)"))

    def forward(self, x):
        x = self.stem(x)
        x = x + self.bn(self.body(x))
        return self.head(x)


def test_a_model_that_is_not_sequential():
    s = qnn.summary(Shortcut(), (1, 3, 5, 5), print_fn=None)
    assert [(r.name, r.type) for r in s.rows] == [
        ("stem", "Conv2d"), ("body", "QuantConv2d"), ("bn", "BatchNorm2d"),
        ("head.1", "QuantLinear")]
    stem, body, bn, head = s.rows
    assert stem.output_shape == (1, 4, 5, 5) and stem.input_precision is None
    assert stem.params_by_bits == {32: 4 * 3 * 9 + 4}
    assert stem.macs_by_bits == {32: 4 * 5 * 5 * 3 * 9}
    assert body.params_by_bits == {1: 4 * 4 * 9}
    assert body.macs_by_bits == {1: 4 * 5 * 5 * 4 * 9}
    assert bn.params_by_bits == {32: 16} and bn.output_shape == (1, 4, 5, 5)
    assert head.input_precision == 32 and head.output_shape == (1, 3)
    assert head.params_by_bits == {4: 300, 32: 3}
    assert head.macs_by_bits == {32: 3 * 100}  # float input: max(32, 4)
    assert s.total_params == 112 + 144 + 16 + 303
    assert s.non_trainable_params == 8
    assert s.total_macs == 2700 + 3600 + 300
    assert s.binarized_mac_ratio == pytest.approx(3600 / 6600, rel=1e-12)
    assert s.ternarized_mac_ratio == 0.0
    assert "# 4-bit" in str(s) and "head.1 (QuantLinear)" in str(s)


def test_ttq_parameters_are_counted_at_32_bits_in_their_layer():
    linear = nn.Sequential(qnn.QuantLinear(6, 5, kernel_quantizer="ttq_weight"))
    s = qnn.summary(linear, (3, 6), print_fn=None)
    assert len(s.rows) == 1  # the quantizer (with its positive/negative) is not a row
    assert s.rows[0].params_by_bits == {2: 30, 32: 5 + 2}
    assert s.rows[0].macs_by_bits == {32: 5 * 6}
    assert s.total_params == 37 and s.non_trainable_params == 0
    conv = nn.Sequential(qnn.QuantConv2d(1, 2, 1, bias=False, kernel_quantizer="ttq_weight"))
    s = qnn.summary(conv, (1, 1, 3, 3), print_fn=None)
    assert [r.name for r in s.rows] == ["0"]
    assert s.rows[0].params_by_bits == {2: 2, 32: 2}
    assert s.model_size_kib == (2 * 2 + 32 * 2) / 8 / 1024


def test_a_quantizer_outside_a_layer_is_not_a_row():
    model = nn.Sequential(qnn.make_quantizer("ttq_weight", role="kernel"), nn.Linear(4, 2))
    s = qnn.summary(model, (1, 4), print_fn=None)
    assert [r.name for r in s.rows] == ["1"]


def test_float_linear_and_conv_macs():
    model = nn.Sequential(nn.Conv2d(4, 6, (3, 2), stride=2, groups=2, bias=False), nn.Flatten(),
                          nn.Linear(6 * 3 * 4, 5), nn.ReLU())
    s = qnn.summary(model, (2, 4, 7, 8), print_fn=None)
    conv, lin = s.rows
    assert conv.output_shape == (2, 6, 3, 4)
    assert conv.params_by_bits == {32: 6 * 2 * 3 * 2}
    assert conv.macs_by_bits == {32: 6 * 3 * 4 * (4 // 2) * 3 * 2}
    assert lin.params_by_bits == {32: 72 * 5 + 5}
    assert lin.macs_by_bits == {32: 5 * 72}
    assert [r.input_precision for r in s.rows] == [None, None]
    assert s.total_macs == 864 + 360
    assert s.binarized_mac_ratio == 0.0 and s.ternarized_mac_ratio == 0.0
    assert s.compression_ratio == pytest.approx(1.0, rel=1e-12)
    assert s.model_size_8bit_kib == pytest.approx(s.float32_kib / 4, rel=1e-12)
    assert "32-bit MACs" in str(s) and "1-bit MACs" not in str(s)


def test_training_flags_are_restored_and_nothing_changes():
    model = cpp_test_model()
    model.train()
    model[1].eval()  # a frozen batch norm inside a training model keeps its own flag
    state = {k: v.clone() for k, v in model.state_dict().items()}
    qnn.summary(model, (2, 1, 6, 6), print_fn=None)
    assert model.training and not model[1].training and model[0].training and model[4].training
    for k, v in model.state_dict().items():  # eval mode: running statistics untouched
        assert torch.equal(v, state[k]), k
    assert all(p.grad is None for p in model.parameters())
    assert not model[0]._forward_hooks  # hooks removed
    model.eval()
    qnn.summary(model, (2, 1, 6, 6), print_fn=None)
    assert not any(m.training for m in model.modules())


def test_flags_and_hooks_are_restored_when_the_forward_fails():
    model = cpp_test_model().train()
    with pytest.raises(RuntimeError):
        qnn.summary(model, (2, 3, 6, 6), print_fn=None)  # wrong channel count
    assert all(m.training for m in model.modules())
    assert not any(m._forward_hooks for m in model.modules())


@pytest.mark.parametrize("shape", [(), [], (0, 1, 6, 6), (-1, 1, 6, 6)])
def test_input_shape_needs_a_batch_dimension(shape):
    with pytest.raises(ValueError, match="input_shape"):
        qnn.summary(cpp_test_model(), shape, print_fn=None)


@pytest.mark.parametrize("shape", [6, "2,1,6,6", (2.0, 1, 6, 6)])
def test_input_shape_must_be_ints(shape):
    with pytest.raises(TypeError, match="input_shape"):
        qnn.summary(cpp_test_model(), shape, print_fn=None)


def test_exported():
    assert "summary" in qnn.__all__ and "ModelSummary" in qnn.__all__
