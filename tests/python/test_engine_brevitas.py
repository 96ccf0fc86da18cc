"""Quantized CNNs as Brevitas and FINN export them (QONNX: a Quant node on every weight, with a scale
per output channel, and on every activation; no lowbit export involved), written here with
onnx.helper from QONNX's operator definitions: the engine runs W4A4 and W8A8 on its integer
kernels, with the values of a reference computed in numpy from those definitions."""
import json
import subprocess

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnx_reference as ref

RUNNER = ref.ROOT / "build" / "lowbit-run"


def quant(x, scale, zero, bits, signed, narrow):
    """QONNX's Quant with rounding_mode ROUND (half to even), in float64."""
    if signed:
        lo, hi = -(2 ** (bits - 1)) + (1 if narrow else 0), 2 ** (bits - 1) - 1
    else:
        lo, hi = 0, 2**bits - (2 if narrow else 1)
    v = np.clip(x / scale + zero, lo, hi)
    return (np.round(v) - zero) * scale


def conv(x, w, b, pad, stride):
    """ONNX's Conv (group 1, square pads and strides), in float64."""
    n, c, h, wd = x.shape
    m, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh, ow = (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1
    y = np.zeros((n, m, oh, ow))
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride]
            y += np.einsum("nchw,mc->nmhw", patch, w[:, :, i, j])
    return y + b[None, :, None, None]


def model(domain, wbits, abits, rng):
    """x [N, 3, 12, 12] -> Quant (8-bit signed) -> Conv 3x3 (W: Quant, a scale per channel) -> Relu
    -> Quant (abits, unsigned) -> Conv 3x3 stride 2 -> Relu -> Quant -> Flatten -> Gemm -> [N, 10],
    the weights signed and narrow as Brevitas's Int*WeightPerChannelFloat quantizers write them."""
    shapes = {"w1": (8, 3, 3, 3), "w2": (16, 8, 3, 3), "w3": (10, 16 * 6 * 6)}
    inits = {"w1": rng.normal(size=shapes["w1"]) * 0.3, "w2": rng.normal(size=shapes["w2"]) * 0.1,
             "w3": rng.normal(size=shapes["w3"]) * 0.05,
             "b1": rng.normal(size=8) * 0.1, "b2": rng.normal(size=16) * 0.1, "b3": rng.normal(size=10),
             "s_in": 0.031, "s_a1": 0.047, "s_a2": 0.061, "zero": 0.0,
             "wbits": float(wbits), "abits": float(abits), "ibits": 8.0}
    for k in ("w1", "w2", "w3"):  # a scale per output channel: max |w| over the channel's grid
        w = inits[k]
        top = np.abs(w.reshape(w.shape[0], -1)).max(axis=1) / (2 ** (wbits - 1) - 1)
        inits["s_" + k] = top.reshape((-1,) + (1,) * (w.ndim - 1))
    nodes = []

    def q(x, scale, bits, signed, narrow, out):
        nodes.append(helper.make_node("Quant", [x, scale, "zero", bits], [out], domain=domain,
                                      signed=signed, narrow=narrow, rounding_mode="ROUND"))

    q("x", "s_in", "ibits", 1, 0, "qx")
    q("w1", "s_w1", "wbits", 1, 1, "qw1")
    nodes += [helper.make_node("Conv", ["qx", "qw1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
              helper.make_node("Relu", ["c1"], ["r1"])]
    q("r1", "s_a1", "abits", 0, 0, "q1")
    q("w2", "s_w2", "wbits", 1, 1, "qw2")
    nodes += [helper.make_node("Conv", ["q1", "qw2", "b2"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2]),
              helper.make_node("Relu", ["c2"], ["r2"])]
    q("r2", "s_a2", "abits", 0, 0, "q2")
    q("w3", "s_w3", "wbits", 1, 1, "qw3")
    nodes += [helper.make_node("Flatten", ["q2"], ["f"]),
              helper.make_node("Gemm", ["f", "qw3", "b3"], ["y"], transB=1)]
    g = helper.make_graph(
        nodes, "brevitas_cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 12, 12])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 10])],
        [numpy_helper.from_array(np.asarray(v, dtype=np.float32), k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(domain, 1)])
    return m, {k: np.asarray(v, dtype=np.float32).astype(np.float64) for k, v in inits.items()}


def reference(x, p, wbits, abits):
    """The model's value from QONNX's definitions, in float64."""
    qx = quant(x, p["s_in"], 0, 8, 1, 0)
    q1 = quant(np.maximum(conv(qx, quant(p["w1"], p["s_w1"], 0, wbits, 1, 1), p["b1"], 1, 1), 0),
               p["s_a1"], 0, abits, 0, 0)
    q2 = quant(np.maximum(conv(q1, quant(p["w2"], p["s_w2"], 0, wbits, 1, 1), p["b2"], 1, 2), 0),
               p["s_a2"], 0, abits, 0, 0)
    w3 = quant(p["w3"], p["s_w3"], 0, wbits, 1, 1)
    return q2.reshape(len(x), -1) @ w3.T + p["b3"]


@pytest.mark.parametrize("domain", ["onnx.brevitas", "qonnx.custom_op.general", "finn.custom_op.general"])
@pytest.mark.parametrize("wbits, abits", [(4, 4), (8, 8), (2, 3)])
def test_quantized_cnn_runs_on_integer_kernels_with_the_definitions_values(domain, wbits, abits, tmp_path):
    rng = np.random.default_rng(wbits * 10 + abits)
    m, params = model(domain, wbits, abits, rng)
    path = tmp_path / "cnn.onnx"
    onnx.save(m, path)
    x = rng.normal(size=(5, 3, 12, 12)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    r = subprocess.run([str(RUNNER), "run", str(path), "--input", str(tmp_path / "x.npy"),
                        "--output", str(tmp_path / "y.npy"), "--threads", "2"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    got = np.load(tmp_path / "y.npy")
    want = reference(x.astype(np.float64), params, wbits, abits)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    # Both convolutions and the dense layer on the 8-bit integer kernels, none in float.
    b = subprocess.run([str(RUNNER), "bench", str(path), "--batch", "1", "--runs", "2", "--seconds", "0",
                        "--json"], capture_output=True, text=True, check=True)
    kernels = [p["kernel"] for p in json.loads(b.stdout)["profile"]]
    assert sum(k.startswith("int8_conv2d_") for k in kernels) == 2, kernels
    assert sum(k.startswith("int8_gemm_") for k in kernels) == 1, kernels
    assert not any("f32" in k and ("conv" in k or "gemm" in k) for k in kernels), kernels
    # Activations of at most 4 bits: each layer's Relu and Quant fused into it as thresholds on its
    # sums (the next layer reads the codes); 8 bits: dequantized, Relu and Quant in float.
    fused = sum(k.startswith("int8_conv2d_") and k.endswith("+thresholds") for k in kernels)
    assert fused == (2 if abits <= 4 else 0), kernels
    assert any(k.startswith("quant_") for k in kernels[1:]) == (abits > 4), kernels
