"""The engine's operators against onnxruntime: a small graph per operator and attribute combination,
written with onnx.helper from ONNX's operator definitions, checked by ONNX's checker and shape
inference, run by `lowbit-run run --input --output` and by onnxruntime (npm's onnxruntime-node, one
thread, no graph rewrites) on the same random input."""
import json
import subprocess

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnx_reference as ref

RUNNER = ref.ROOT / "build" / "lowbit-run"
X4 = [2, 3, 6, 5]  # [batch, channels, height, width]
RNG = np.random.default_rng(11)


def const(shape, low=-1.0, high=1.0):
    return RNG.uniform(low, high, size=shape).astype(np.float32)


def node(op, inputs, output="y", **attrs):
    return helper.make_node(op, inputs, [output], **attrs)


# name: (nodes, input shape, initializers, opset)
CASES = {
    "sigmoid": ([node("Sigmoid", ["x"])], X4, {}, 13),
    "tanh": ([node("Tanh", ["x"])], X4, {}, 13),
    "leaky_relu": ([node("LeakyRelu", ["x"], alpha=0.1)], X4, {}, 13),
    "leaky_relu_default": ([node("LeakyRelu", ["x"])], X4, {}, 13),
    "elu": ([node("Elu", ["x"], alpha=0.7)], X4, {}, 13),
    "hard_sigmoid": ([node("HardSigmoid", ["x"], alpha=0.3, beta=0.4)], X4, {}, 13),
    "hard_swish": ([node("HardSwish", ["x"])], X4, {}, 14),
    "softplus": ([node("Softplus", ["x"])], X4, {}, 13),
    "neg_exp_sqrt": ([node("Neg", ["x"], "n"), node("Exp", ["n"], "e"), node("Sqrt", ["e"])], X4, {}, 13),
    "erf": ([node("Erf", ["x"])], X4, {}, 13),
    "relu_clip": ([node("Relu", ["x"], "r"), node("Clip", ["r", "lo", "hi"])], X4,
                  {"lo": np.float32(0.1), "hi": np.float32(0.6)}, 13),
    "clip_6_attributes": ([node("Clip", ["x"], min=-0.2, max=0.3)], X4, {}, 6),
    "clip_6_defaults": ([node("Clip", ["x"])], X4, {}, 6),
    "prelu": ([node("PRelu", ["x", "slope"])], X4, {"slope": const([3, 1, 1])}, 13),
    "dropout": ([helper.make_node("Dropout", ["x"], ["y", "mask"])], X4, {}, 13),
    "softmax_13_last": ([node("Softmax", ["x"])], X4, {}, 13),
    "softmax_13_axis1": ([node("Softmax", ["x"], axis=1)], X4, {}, 13),
    "softmax_11_flattens": ([node("Softmax", ["x"], axis=2)], X4, {}, 11),
    "batch_norm": ([node("BatchNormalization", ["x", "s", "b", "m", "v"], epsilon=1e-3)], X4,
                   {"s": const([3]), "b": const([3]), "m": const([3]), "v": const([3], 0.5, 2)}, 15),
    "constant": ([helper.make_node("Constant", [], ["k"], value=numpy_helper.from_array(const([3, 1, 1]))),
                  node("Mul", ["x", "k"])], X4, {}, 13),
    # two activations: residuals, and a squeeze-and-excitation's per-channel scaling
    "residual_add": ([node("Relu", ["x"], "r"), node("Add", ["x", "r"])], X4, {}, 13),
    "residual_sub_div": ([node("Sigmoid", ["x"], "s"), node("Sub", ["x", "s"], "d"), node("Div", ["d", "s"])], X4, {}, 13),
    "se_scale": ([node("GlobalAveragePool", ["x"], "g"), node("Sigmoid", ["g"], "s"), node("Mul", ["x", "s"])], X4, {}, 13),
    "broadcast_both": ([node("ReduceMean", ["x"], "h", axes=[2], keepdims=1),
                        node("ReduceMax", ["x"], "w", axes=[3], keepdims=1), node("Add", ["h", "w"])], X4, {}, 13),
    "min_max": ([node("Relu", ["x"], "r"), node("Min", ["x", "r"], "m"), node("Max", ["m", "k"])], X4,
                {"k": const([5], -0.5, 0)}, 13),
    "sum_mean": ([node("Neg", ["x"], "n"), node("Sum", ["x", "n", ], "s"), node("Mean", ["s", "x"])], X4, {}, 13),
    "pow": ([node("Abs", ["x"], "a"), node("Pow", ["a", "e"])], X4, {"e": np.float32(1.5)}, 13),
    # layout
    "concat_channels": ([node("Relu", ["x"], "r"), node("Concat", ["x", "r"], axis=1)], X4, {}, 13),
    "concat_last": ([node("Tanh", ["x"], "t"), node("Concat", ["t", "x", "t"], axis=-1)], X4, {}, 13),
    "transpose_nhwc": ([node("Transpose", ["x"], perm=[0, 2, 3, 1])], X4, {}, 13),
    "transpose_constant": ([node("Transpose", ["k"], "t", perm=[2, 0, 1]), node("Add", ["x", "t"])], X4,
                           {"k": const([6, 5, 3])}, 13),
    "unsqueeze_squeeze_13": ([node("Unsqueeze", ["x", "a"], "u"), node("Sigmoid", ["u"], "s"),
                              node("Squeeze", ["s", "a"])], X4, {"a": np.array([2], np.int64)}, 13),
    "unsqueeze_squeeze_11": ([node("Unsqueeze", ["x"], "u", axes=[-1]), node("Squeeze", ["u"], axes=[4])], X4, {}, 11),
    "reshape_activation": ([node("Reshape", ["x", "s"])], X4, {"s": np.array([0, 3, -1], np.int64)}, 13),
    "reshape_fixed_batch": ([node("Reshape", ["x", "s"])], X4, {"s": np.array([2, 90], np.int64)}, 13),
    # PyTorch's x.view(x.size(0), -1): Shape, Gather, Unsqueeze, Concat, Reshape
    "flatten_by_shape": ([node("Shape", ["x"], "sh"), node("Gather", ["sh", "i0"], "b", axis=0),
                          node("Unsqueeze", ["b", "a0"], "bu"), node("Concat", ["bu", "m1"], "s", axis=0),
                          node("Reshape", ["x", "s"])], X4,
                         {"i0": np.array(0, np.int64), "a0": np.array([0], np.int64),
                          "m1": np.array([-1], np.int64)}, 13, 2),
    "shape_channels": ([node("Shape", ["x"], "sh"), node("Gather", ["sh", "i1"], "c", axis=0),
                        node("Cast", ["c"], "cf", to=TensorProto.FLOAT), node("Div", ["x", "cf"])], X4,
                       {"i1": np.array(1, np.int64)}, 13),
    # padding
    "pad_constant": ([node("Pad", ["x", "p", "v"])], X4, {"p": np.array([0, 0, 1, 2, 0, 0, 3, 0], np.int64),
                                                      "v": np.float32(0.5)}, 13),
    "pad_reflect": ([node("Pad", ["x", "p"], mode="reflect")], X4, {"p": np.array([0, 0, 2, 1, 0, 0, 1, 3], np.int64)}, 13),
    "pad_edge": ([node("Pad", ["x", "p"], mode="edge")], X4, {"p": np.array([0, 0, 3, 0, 0, 0, 1, 4], np.int64)}, 13),
    "pad_2_attributes": ([node("Pad", ["x"], mode="constant", pads=[0, 0, 1, 1, 0, 0, 2, 0], value=-1.0)], X4, {}, 2),
    # pooling and reductions
    "avgpool_2x2": ([node("AveragePool", ["x"], kernel_shape=[2, 2], strides=[2, 2])], X4, {}, 13),
    "avgpool_pads_exclude": ([node("AveragePool", ["x"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])], X4, {}, 13),
    "avgpool_pads_include_ceil": ([node("AveragePool", ["x"], kernel_shape=[3, 2], strides=[2, 2], pads=[1, 0, 1, 1],
                                        count_include_pad=1, ceil_mode=1)], X4, {}, 13),
    "avgpool_same_upper": ([node("AveragePool", ["x"], kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER")],
                           X4, {}, 13),
    "global_pools": ([node("GlobalMaxPool", ["x"], "m"), node("GlobalAveragePool", ["x"], "a"),
                      node("Sub", ["m", "a"])], X4, {}, 13),
    "reduce_mean_axes_keep0": ([node("ReduceMean", ["x"], axes=[1, -1], keepdims=0)], X4, {}, 13),
    "reduce_sum_axes_input": ([node("ReduceSum", ["x", "ax"], keepdims=1)], X4, {"ax": np.array([2], np.int64)}, 13),
    "reduce_min_image": ([node("ReduceMin", ["x"], "r", axes=[1, 2, 3], keepdims=1), node("Add", ["x", "r"])],
                         X4, {}, 13),
    "maxpool_same_lower": ([node("MaxPool", ["x"], kernel_shape=[2, 3], strides=[2, 2], auto_pad="SAME_LOWER")],
                           X4, {}, 13),
    # convolutions
    "conv_same_upper_stride2": ([node("Conv", ["x", "w"], auto_pad="SAME_UPPER", strides=[2, 2])], X4,
                                {"w": const([4, 3, 3, 3])}, 13),
    "conv_valid": ([node("Conv", ["x", "w", "b"], auto_pad="VALID")], X4,
                   {"w": const([2, 3, 2, 3]), "b": const([2])}, 13),
    "conv_depthwise_dilated": ([node("Conv", ["x", "w"], group=3, dilations=[2, 1], pads=[2, 1, 2, 1])], X4,
                               {"w": const([6, 1, 3, 3])}, 13),
    # signs (the standard format's Where(x >= 0, 1, -1)) into a grouped convolution of binary weights
    # (s[o] * ±1): the binary kernel group by group
    "conv_grouped_signs": ([node("GreaterOrEqual", ["x", "zero"], "ge"), node("Where", ["ge", "one", "minus"], "s"),
                            node("Conv", ["s", "w", "b"], group=2, pads=[1, 1, 1, 1])], [2, 32, 6, 5],
                           {"zero": np.float32(0), "one": np.float32(1), "minus": np.float32(-1),
                            "w": (np.sign(const([4, 16, 3, 3])) * np.array([0.5, 0.25, 2.0, 1.0],
                                                                         np.float32)[:, None, None, None]
                                  ).astype(np.float32),
                            "b": const([4])}, 13),
    "conv_transpose_stride2": ([node("ConvTranspose", ["x", "w", "b"], strides=[2, 2], pads=[1, 1, 1, 1],
                                     output_padding=[1, 0])], X4, {"w": const([3, 4, 3, 3]), "b": const([4])}, 13),
    "conv_transpose_groups": ([node("ConvTranspose", ["x", "w"], group=3, dilations=[1, 2])], X4,
                              {"w": const([3, 2, 2, 2])}, 13),
    "gemm_alpha_beta": ([node("Flatten", ["x"], "f"), node("Gemm", ["f", "w", "c"], alpha=0.75, beta=-2.5)], X4,
                        {"w": const([90, 6]), "c": const([1, 6])}, 13),
    "gemm_scalar_c_trans_b": ([node("Flatten", ["x"], "f"), node("Gemm", ["f", "w", "c"], transB=1, alpha=2.0)],
                              X4, {"w": const([6, 90]), "c": const([])}, 11),
    "matmul_rows": ([node("MatMul", ["x", "w"])], X4, {"w": const([5, 7])}, 13),
    "matmul_vectors": ([node("Flatten", ["x"], "f"), node("MatMul", ["f", "w"])], X4, {"w": const([90, 4])}, 13),
    # pixels
    "depth_to_space_dcr": ([node("DepthToSpace", ["x"], blocksize=2)], [2, 8, 3, 4], {}, 13),
    "depth_to_space_crd": ([node("DepthToSpace", ["x"], blocksize=2, mode="CRD")], [2, 8, 3, 4], {}, 13),
    "space_to_depth": ([node("SpaceToDepth", ["x"], blocksize=2)], [2, 3, 6, 4], {}, 13),
    "resize_nearest_scales": ([node("Resize", ["x", "", "sc"])], X4,
                              {"sc": np.array([1, 1, 2, 1.5], np.float32)}, 13),
    "resize_nearest_asymmetric_floor": ([node("Resize", ["x", "", "sc"], coordinate_transformation_mode="asymmetric",
                                              nearest_mode="floor")], X4,
                                        {"sc": np.array([1, 1, 3, 2], np.float32)}, 13),
    "resize_nearest_sizes_ceil": ([node("Resize", ["x", "", "", "sz"], nearest_mode="round_prefer_ceil")], X4,
                                  {"sz": np.array([2, 3, 9, 4], np.int64)}, 13),
    "resize_linear_half_pixel": ([node("Resize", ["x", "", "sc"], mode="linear")], X4,
                                 {"sc": np.array([1, 1, 2, 2], np.float32)}, 13),
    "resize_linear_align_corners": ([node("Resize", ["x", "", "", "sz"], mode="linear",
                                          coordinate_transformation_mode="align_corners")], X4,
                                    {"sz": np.array([2, 3, 11, 7], np.int64)}, 13),
    "resize_linear_pytorch": ([node("Resize", ["x", "", "sc"], mode="linear",
                                    coordinate_transformation_mode="pytorch_half_pixel")], X4,
                              {"sc": np.array([1, 1, 0.5, 1.6], np.float32)}, 13),
    "resize_11_roi": ([node("Resize", ["x", "roi", "sc"], mode="linear", coordinate_transformation_mode="asymmetric")],
                      X4, {"roi": np.array([], np.float32), "sc": np.array([1, 1, 2, 3], np.float32)}, 11),
}


def build(name):
    # The output's rank where shape inference cannot find it (shapes computed from the data).
    nodes, shape, inits, opset, *rank = CASES[name]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", *shape[1:]])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    g = helper.make_graph(nodes, name, inputs, outputs,
                          [numpy_helper.from_array(v if isinstance(v, np.ndarray) and v.dtype != np.float64
                                                   else np.asarray(v, dtype=np.float32), k)
                           for k, v in inits.items()])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    out_type = model.graph.output[0].type.tensor_type
    if not out_type.HasField("shape"):
        for i in range(rank[0]):
            out_type.shape.dim.add().dim_param = f"d{i}"
    onnx.checker.check_model(model)
    return model


@pytest.fixture(scope="module")
def ort_available():
    if not ref.node_runner_available():
        pytest.fail("onnxruntime-node is not installed: run ./scripts/setup (npm ci in tests/onnx)")


@pytest.mark.parametrize("name", sorted(CASES))
def test_operator_equals_onnxruntime(ort_available, name, tmp_path):
    path = tmp_path / f"{name}.onnx"
    onnx.save(build(name), path)
    shape = CASES[name][1]
    x = RNG.normal(size=shape).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    r = subprocess.run([str(RUNNER), "run", str(path), "--input", str(tmp_path / "x.npy"),
                        "--output", str(tmp_path / "y.npy")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    got = np.load(tmp_path / "y.npy")
    expected = ref.run_ort_any(path, x, tmp_path)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert json.loads(r.stdout)["output_shape"] == list(expected.shape)


# Graphs the engine does not run: an error naming the node and what stops it, never an answer.
UNSUPPORTED = {
    "reduce_all_axes": ([node("ReduceMean", ["x"])], {}, 13, "(ReduceMean): reduces every axis"),
    "softmax_batch": ([node("Softmax", ["x"], axis=0)], {}, 13, "(Softmax): axis 0 is the batch"),
    "transpose_batch": ([node("Transpose", ["x"], perm=[1, 0, 2, 3])], {}, 13, "perm moves the batch axis 0"),
    "concat_batch": ([node("Concat", ["x", "x"], axis=0)], {}, 13, "(Concat): axis 0 is the batch"),
    "unknown": ([node("LpNormalization", ["x"])], {}, 13, "(LpNormalization): the engine does not know this operator"),
    "dropout_mask_read": ([helper.make_node("Dropout", ["x"], ["d", "mask"]), node("Cast", ["mask"], "y", to=1)], {},
                          13, "output 1 ('mask') is read"),
    "resize_cubic": ([node("Resize", ["x", "", "sc"], mode="cubic")], {"sc": np.array([1, 1, 2, 2], np.float32)}, 13,
                     "mode cubic is not supported"),
    "batch_size_in_arithmetic": ([node("Shape", ["x"], "sh"), node("Cast", ["sh"], "f", to=1),
                                  node("ReduceSum", ["f"], "n", keepdims=0), node("Mul", ["x", "n"])], {}, 13,
                                 "holds the batch size"),
    "gemm_trans_a": ([node("Flatten", ["x"], "f"), node("Gemm", ["f", "w"], transA=1)], {"w": const([2, 4])}, 13,
                     "only transA = 0 is supported"),
}


@pytest.mark.parametrize("name", sorted(UNSUPPORTED))
def test_unsupported_graphs_are_errors_naming_the_node(name, tmp_path):
    nodes, inits, opset, message = UNSUPPORTED[name]
    g = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", *X4[1:]])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(v, k) for k, v in inits.items()])
    path = tmp_path / f"{name}.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)]), path)
    np.save(tmp_path / "x.npy", np.zeros(X4, np.float32))
    r = subprocess.run([str(RUNNER), "run", str(path), "--input", str(tmp_path / "x.npy"),
                        "--output", str(tmp_path / "y.npy")], capture_output=True, text=True)
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert f"{path}: node " in r.stderr
    assert not (tmp_path / "y.npy").exists()


# ---- QONNX's Trunc against its documentation's sample implementations (float32 here) ------------

def trunc_v1(x, scale, zero, in_bits, out_bits, rounding):
    y = np.round(x / scale + zero) / np.float32(2.0 ** (in_bits - out_bits))
    return ((rounding(y) - zero) * scale).astype(np.float32)


def trunc_v2(x, scale, zero, in_bits, out_scale, out_bits, rounding, signed, narrow):
    y = np.round(x / scale + zero)
    t = np.float32(2.0 ** np.round(np.log2(out_scale / scale)))
    y = y / t
    lo = -(2 ** (out_bits - 1)) + narrow if signed else 0
    hi = 2 ** (out_bits - 1) - 1 if signed else 2 ** out_bits - 1 - narrow
    y = np.clip(y, np.float32(lo), np.float32(hi))
    return ((rounding(y) - zero / t) * out_scale).astype(np.float32)


@pytest.mark.parametrize("version, mode, domain", [(1, "FLOOR", "qonnx.custom_op.general"), (1, "ROUND", "finn.custom_op.general"),
                                                   (2, "CEIL", "qonnx.custom_op.general"), (2, "floor", "onnx.brevitas")])
def test_qonnx_trunc_equals_its_definition(version, mode, domain, tmp_path):
    x = (RNG.normal(size=X4) * 40).astype(np.float32)
    scale, zero = np.float32(0.25), np.float32(2)
    inputs = ["x", "s", "z", "ib"] + (["os", "ob"] if version == 2 else ["ob"])
    inits = {"s": scale, "z": zero, "ib": np.float32(10), "os": np.float32(2.0), "ob": np.float32(4)}
    n = helper.make_node("Trunc", inputs, ["y"], domain=domain, rounding_mode=mode, **({"signed": 1} if version == 2 else {}))
    g = helper.make_graph([n], "trunc", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", *X4[1:]])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", *X4[1:]])],
                          [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits.items() if k in inputs])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(domain, 1)])
    onnx.save(model, tmp_path / "t.onnx")
    np.save(tmp_path / "x.npy", x)
    subprocess.run([str(RUNNER), "run", str(tmp_path / "t.onnx"), "--input", str(tmp_path / "x.npy"),
                    "--output", str(tmp_path / "y.npy")], check=True, capture_output=True)
    rounding = {"FLOOR": np.floor, "ROUND": np.round, "CEIL": np.ceil}[mode.upper()]
    want = (trunc_v1(x, scale, zero, 10, 4, rounding) if version == 1
            else trunc_v2(x, scale, zero, 10, np.float32(2.0), 4, rounding, True, 0))
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), want)
