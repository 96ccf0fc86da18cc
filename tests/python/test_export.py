"""ONNX export: every recipe, both formats, checked by ONNX's checker and run by onnxruntime (npm's
onnxruntime-node, through tests/onnx/run_ort.js) against LibTorch's eval-mode logits."""
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import lowbit
import onnx_reference as ref

LOWBIT = ref.ROOT / "build" / "lowbit"
RECIPES = ["float", "bnn", "xnor", "birealnet", "blueoil-a2w1", "ternary", "dorefa", "po2-int8", "tf-int8"]
INT8 = {"po2-int8", "tf-int8"}
QONNX = "qonnx.custom_op.general"

# A small network of every recipe, trained one epoch on 2000 images: enough for the batch norms,
# observers and scales to hold real values. The QAT delays are shortened to fit.
SMALL = """blocks: [8, 8, 0, 16, 0]
hidden: 32
batch_size: 64
quant_delay: 5
freeze_bn_delay: 20
"""


def lowbit_cmd(*args, check=True):
    return subprocess.run([str(LOWBIT), *map(str, args)], capture_output=True, text=True, check=check)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    if not ref.node_runner_available():
        pytest.fail("onnxruntime-node is not installed: run ./scripts/setup (npm ci in tests/onnx)")
    root = tmp_path_factory.mktemp("export")
    data = ref.subset(root / "data")
    (root / "small.yaml").write_text(SMALL)
    return root


@pytest.fixture(scope="module")
def trained(work):
    """recipe -> (run directory, LibTorch's test logits)."""
    out = {}
    for recipe in RECIPES:
        run = work / "runs" / recipe
        lowbit_cmd("train", "--model", recipe, "--config", work / "small.yaml", "--data", work / "data",
                   "--epochs", 1, "--out", run, "--no-progress")
        lowbit_cmd("eval", "--checkpoint", run, "--data", work / "data", "--logits", run / "logits.npy")
        out[recipe] = (run, np.load(run / "logits.npy"))
    return out


@pytest.fixture(scope="module")
def exported(trained):
    """(recipe, format) -> the exported ModelProto's file."""
    files = {}
    for recipe, (run, _) in trained.items():
        for fmt in ("qonnx", "standard"):
            path = run / f"model-{fmt}.onnx"
            lowbit.export_onnx(run, path, format=fmt)
            files[recipe, fmt] = path
    return files


def subset_images(work):
    return ref.read_idx(work / "data" / "t10k-images-idx3-ubyte")


def output_step(model):
    """The scale of the logits' quantization (the last DequantizeLinear or Quant), or None."""
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    last = [n for n in model.graph.node if n.op_type in ("DequantizeLinear", "Quant")]
    return float(inits[last[-1].input[1]]) if last else None


def compare(recipe, model, got, expected):
    agree = np.mean(got.argmax(1) == expected.argmax(1))
    diff = np.abs(got - expected).max(axis=1)
    if recipe == "po2-int8":
        # Power-of-2 grids: every product and sum is exact in float32, and the export writes fake
        # quantization's own rounding: onnxruntime gives LibTorch's logits bit for bit.
        np.testing.assert_array_equal(got, expected)
    elif recipe in INT8:
        # Affine grids: float sums in another order may move a value across a rounding boundary,
        # and the logits by one step of their grid.
        step = output_step(model)
        assert diff.max() <= step * 1.0001, (diff.max(), step)
        assert agree >= 0.995, agree
    else:
        assert agree == 1.0, agree
        # Float layers sum in another order; a low-bit activation at a threshold may flip.
        assert np.mean(diff <= 1e-4 * (1 + np.abs(expected).max(axis=1))) >= 0.99


@pytest.mark.parametrize("fmt", ["qonnx", "standard"])
@pytest.mark.parametrize("recipe", RECIPES)
def test_checker_accepts_the_export(exported, recipe, fmt):
    model = onnx.load(exported[recipe, fmt])
    onnx.checker.check_model(model)
    ops = {n.op_type for n in model.graph.node}
    assert not ops & {"BatchNormalization", "Dropout"}, ops  # folded / removed
    assert [i.name for i in model.graph.input] == ["image"]
    assert [o.name for o in model.graph.output] == ["logits"]
    if fmt == "standard":
        assert all(n.domain in ("", "ai.onnx") for n in model.graph.node)
        assert all(o.domain in ("", "ai.onnx") for o in model.opset_import)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 13


@pytest.mark.parametrize("recipe", RECIPES)
def test_onnxruntime_runs_the_standard_export_like_libtorch(work, trained, exported, recipe):
    path = exported[recipe, "standard"]
    got = ref.run_ort(path, subset_images(work), work)
    compare(recipe, onnx.load(path), got, trained[recipe][1])


@pytest.mark.parametrize("recipe", RECIPES)
def test_qonnx_export_under_qonnx_semantics_matches_libtorch(work, trained, exported, recipe):
    model = onnx.load(exported[recipe, "qonnx"])
    path = work / f"{recipe}-qonnx-as-standard.onnx"
    onnx.save(ref.qonnx_to_standard(model), path)
    got = ref.run_ort(path, subset_images(work), work)
    # Power-of-2 activations as unsigned codes with zero point 128 and HALF_UP rounding:
    # fake_quant_pow2's rounding, bit for bit (compare asserts equality for po2-int8).
    compare(recipe, model, got, trained[recipe][1])


def qonnx_nodes(model, op):
    inits = ref.constant_values(model)  # initializers and the packed binary kernels they decode to
    out = []
    for n in model.graph.node:
        if n.op_type == op and n.domain == QONNX:
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
            out.append((n, [inits.get(i) for i in n.input], attrs))
    return out


def test_qonnx_marks_binary_tensors_with_bipolar_quant(exported):
    model = onnx.load(exported["bnn", "qonnx"])
    nodes = qonnx_nodes(model, "BipolarQuant")
    weights = [n for n, inputs, _ in nodes if inputs[0] is not None]
    activations = [n for n, inputs, _ in nodes if inputs[0] is None]
    # Two binary convolutions and the binary hidden dense layer: kernel and input each.
    assert len(weights) == 3 and len(activations) == 3
    for _, inputs, _ in nodes:
        assert float(inputs[1]) == 1.0
        if inputs[0] is not None:
            assert set(np.unique(inputs[0])) <= {-1.0, 1.0}  # the quantized kernel is stored
    assert not qonnx_nodes(model, "Quant")


@pytest.mark.parametrize("fmt", ["qonnx", "standard"])
@pytest.mark.parametrize("recipe", ["bnn", "xnor", "blueoil-a2w1", "birealnet"])
def test_binary_kernels_are_stored_at_one_bit_per_weight(exported, recipe, fmt):
    model = onnx.load(exported[recipe, fmt])
    inits = {t.name: t for t in model.graph.initializer}
    bits = [t for name, t in inits.items() if name.endswith(".weight.bits")]
    assert bits and all(t.data_type == onnx.TensorProto.UINT8 for t in bits)
    values = ref.constant_values(model)
    float_bytes = 0
    for t in bits:
        # The decoded signs: the Reshape to the kernel's shape that ends the chain from the bits.
        prefix = t.name[: -len(".bits")]
        shape = numpy_helper.to_array(inits[prefix + ".shape"])
        ends = [n for n in model.graph.node if n.op_type == "Reshape" and n.input[1] == prefix + ".shape"]
        assert len(ends) == 1, prefix
        w = values[ends[0].output[0]]
        assert w.shape == tuple(shape)
        assert set(np.unique(w)) <= {-1.0, 1.0}
        # Bit k of byte b is weight 8b + k, 1 for -1.
        packed = numpy_helper.to_array(t)
        unpacked = np.unpackbits(packed, bitorder="little")[: w.size]
        np.testing.assert_array_equal(np.where(unpacked == 1, -1.0, 1.0), w.reshape(-1))
        assert packed.size == (w.size + 7) // 8
        float_bytes += 4 * w.size
    # No float copy of a binary kernel: the file is far smaller than float kernels would make it.
    assert not [n for n in inits if n.endswith(".weight") and n + ".bits" in inits]
    assert exported[recipe, fmt].stat().st_size < 0.5 * float_bytes


@pytest.mark.parametrize("fmt", ["qonnx", "standard"])
@pytest.mark.parametrize("recipe", ["po2-int8", "tf-int8", "ternary"])
def test_low_bit_weights_are_stored_as_byte_codes(exported, recipe, fmt):
    model = onnx.load(exported[recipe, fmt])
    inits = {t.name: t for t in model.graph.initializer}
    codes = [t for name, t in inits.items() if name.endswith(".weight.codes") or name.endswith(".weight_q")]
    assert codes and all(t.data_type == onnx.TensorProto.INT8 for t in codes)
    for t in codes:
        k = numpy_helper.to_array(t)
        assert k.min() >= -128 and k.max() <= 127
        # Each tensor of codes feeds one node (the Cast, or DequantizeLinear, that decodes it).
        consumers = [n for n in model.graph.node if t.name in n.input]
        assert len(consumers) == 1
    # Only the float first and last layers (and biases, scales) are left in float32: the file is
    # well under half of what float32 weights would take.
    floats = sum(numpy_helper.to_array(t).size for t in inits.values() if t.data_type == onnx.TensorProto.FLOAT)
    total = sum(numpy_helper.to_array(t).size for t in codes)
    assert floats < total, (floats, total)
    assert exported[recipe, fmt].stat().st_size < 0.5 * 4 * (total + floats)


def test_qonnx_scaled_binary_kernels_carry_their_scales(exported, trained):
    model = onnx.load(exported["xnor", "qonnx"])
    for _, (w, scale), _ in qonnx_nodes(model, "BipolarQuant"):
        if w is None:
            continue
        assert scale.shape == (w.shape[0],) + (1,) * (w.ndim - 1)  # one scale per output channel
        assert (scale > 0).all() and set(np.unique(w)) <= {-1.0, 1.0}  # the signs, at 1 bit each


def test_qonnx_power_of_2_activations_are_8_bit_fixed_point(exported):
    model = onnx.load(exported["po2-int8", "qonnx"])
    quants = qonnx_nodes(model, "Quant")
    acts = [(i, a) for _, i, a in quants if i[0] is None]
    assert acts
    for (x, scale, zeropt, bits), attrs in acts:
        assert float(bits) == 8 and float(zeropt) == 128 and attrs["signed"] == 0
        assert attrs["rounding_mode"] == b"HALF_UP"
        assert np.log2(float(scale)) == round(np.log2(float(scale)))  # a power of 2
    weights = [(i, a) for _, i, a in quants if i[0] is not None and float(i[3]) == 8]
    biases = [(i, a) for _, i, a in quants if i[0] is not None and float(i[3]) == 16]
    assert len(weights) == 5 and len(biases) == 5  # three convolutions, two dense layers
    for (w, scale, zeropt, bits), attrs in weights + biases:
        codes = w / scale
        np.testing.assert_array_equal(codes, np.round(codes))  # on the grid
        assert float(zeropt) == 0 and attrs["signed"] == 1


def test_qonnx_low_bit_grids(exported):
    dorefa = onnx.load(exported["dorefa", "qonnx"])
    found = [(i, a) for _, i, a in qonnx_nodes(dorefa, "Quant")]
    weights = [i for i, _ in found if i[0] is not None]
    assert weights and all(float(i[3]) == 2 and float(i[2]) == 1.5 for i in weights)
    for w, scale, zeropt, _ in weights:  # levels 2j/3 - 1
        levels = np.round(w / scale + zeropt)
        assert set(np.unique(levels)) <= {0.0, 1.0, 2.0, 3.0}
    ternary = onnx.load(exported["ternary", "qonnx"])
    weights = [(i, a) for _, i, a in qonnx_nodes(ternary, "Quant") if i[0] is not None]
    assert weights
    for (w, scale, zeropt, bits), attrs in weights:
        assert float(bits) == 2 and attrs["narrow"] == 1 and attrs["signed"] == 1
        assert set(np.unique(w)) <= {-1.0, 0.0, 1.0}


def test_standard_int8_export_has_int8_weights_and_int32_biases(exported):
    for recipe in sorted(INT8):
        model = onnx.load(exported[recipe, "standard"])
        inits = {t.name: t for t in model.graph.initializer}
        dq = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits]
        types = [inits[n.input[0]].data_type for n in dq]
        assert types.count(onnx.TensorProto.INT8) == 5, recipe  # three convolutions, two dense
        assert types.count(onnx.TensorProto.INT32) == 5, recipe
        assert any(n.op_type == "QuantizeLinear" for n in model.graph.node)


def test_input_standardisation_is_in_the_graph(exported, work):
    model = onnx.load(exported["float", "standard"])
    first = model.graph.node[:3]
    assert [n.op_type for n in first] == ["Div", "Sub", "Div"]
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    images = ref.read_idx(work / "data" / "train-images-idx3-ubyte").astype(np.float64) / 255
    assert float(inits[first[0].input[1]]) == 255
    assert abs(float(inits[first[1].input[1]]) - images.mean()) < 1e-6
    assert abs(float(inits[first[2].input[1]]) - images.std(ddof=1)) < 1e-6


def test_cli_export_prints_json_and_is_deterministic(trained, tmp_path):
    run = trained["bnn"][0]
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    result = json.loads(lowbit_cmd("export", "--checkpoint", run / "checkpoint.pt", "--out", a).stdout)
    assert result["format"] == "qonnx" and result["bytes"] == a.stat().st_size
    assert result["nodes"]["BipolarQuant"] == 6
    lowbit.export_onnx(run, b)
    assert a.read_bytes() == b.read_bytes()


# ---- bad input ------------------------------------------------------------------------------------

def test_missing_checkpoint_names_it(tmp_path):
    with pytest.raises(ValueError, match="no such checkpoint"):
        lowbit.export_onnx(tmp_path / "nothing", tmp_path / "m.onnx")
    r = lowbit_cmd("export", "--checkpoint", tmp_path / "nothing", "--out", tmp_path / "m.onnx", check=False)
    assert r.returncode == 2 and "nothing" in r.stderr


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "checkpoint.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="not a lowbit checkpoint"):
        lowbit.export_onnx(bad, tmp_path / "m.onnx")


def test_truncated_checkpoint_is_a_clear_error(trained, tmp_path):
    data = (trained["bnn"][0] / "checkpoint.pt").read_bytes()
    bad = tmp_path / "checkpoint.pt"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=str(bad)):
        lowbit.export_onnx(bad, tmp_path / "m.onnx")


def test_bad_format_and_output_are_named(trained, tmp_path):
    run = trained["bnn"][0]
    with pytest.raises(ValueError, match="format"):
        lowbit.export_onnx(run, tmp_path / "m.onnx", format="tflite")
    r = lowbit_cmd("export", "--checkpoint", run, "--out", tmp_path / "m.onnx", "--format", "tflite", check=False)
    assert r.returncode == 2 and "--format" in r.stderr
    with pytest.raises(ValueError, match="--out"):
        lowbit.export_onnx(run, tmp_path / "no" / "such" / "dir" / "m.onnx")
    with pytest.raises(ValueError, match="directory"):
        lowbit.export_onnx(run, tmp_path)


def train_variant(work, tmp_path, name, options):
    """A one-epoch run of the small bnn network with other quantizers."""
    config = tmp_path / f"{name}.yaml"
    config.write_text(SMALL + options)
    run = tmp_path / name
    lowbit_cmd("train", "--model", "bnn", "--config", config, "--data", work / "data", "--epochs", 1,
               "--out", run, "--no-progress")
    config.unlink()
    return run


def test_unexportable_quantizer_is_named_and_the_old_file_survives(work, tmp_path):
    run = train_variant(work, tmp_path, "ttq", "kernel_quantizer: ttq_weight\n")
    out = tmp_path / "m.onnx"
    out.write_bytes(b"previous export")
    with pytest.raises(ValueError, match=r"module \d+ \(kernel quantizer ttq_weight") as e:
        lowbit.export_onnx(run, out)
    assert "--format standard" in str(e.value)
    assert out.read_bytes() == b"previous export"  # nothing half-written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "ttq"]
    lowbit.export_onnx(run, out, format="standard")  # the standard format stores the values
    onnx.checker.check_model(onnx.load(out))


def test_data_dependent_input_quantizer_is_named(work, tmp_path):
    run = train_variant(work, tmp_path, "mas", "input_quantizer: binary_mean_scaling\n")
    for fmt in ("qonnx", "standard"):
        with pytest.raises(ValueError, match=r"input quantizer binary_mean_scaling"):
            lowbit.export_onnx(run, tmp_path / "m.onnx", format=fmt)


# ---- the inference engine (lowbit run) on the exports -------------------------------------------

@pytest.mark.parametrize("fmt", ["qonnx", "standard"])
@pytest.mark.parametrize("recipe", RECIPES)
def test_engine_runs_the_export_like_libtorch(work, trained, exported, recipe, fmt):
    path = exported[recipe, fmt]
    logits = work / f"{recipe}-{fmt}-engine.npy"
    result = json.loads(lowbit_cmd("run", path, "--data", work / "data", "--threads", 2, "--logits", logits).stdout)
    got, expected = np.load(logits), trained[recipe][1]
    assert result["images"] == len(expected)
    labels = ref.read_idx(work / "data" / "t10k-labels-idx1-ubyte")
    assert result["test_accuracy"] == pytest.approx(np.mean(got.argmax(1) == labels))
    compare(recipe, onnx.load(path), got, expected)
    assert result["file_bytes"] == path.stat().st_size
    kernels = result["kernels"]
    if recipe in INT8:
        # Every convolution and dense layer whose input is quantized runs on integers.
        assert any(k.startswith("int8_conv2d_") for k in kernels), kernels
        assert any(k.startswith("int8_gemm_") for k in kernels), kernels
        # The requantization is fused into the layers in both formats: power-of-2 steps by the
        # spec's shift, the affine scheme's QuantizeLinear by threshold tables.
        fused = "+thresholds" if (recipe, fmt) == ("tf-int8", "standard") else "+requantize"
        if recipe == "po2-int8" or fmt == "standard":
            assert any(k.endswith(fused) for k in kernels), kernels
    if recipe in ("bnn", "xnor", "birealnet"):
        # QONNX's BipolarQuant and the standard format's Where(x >= 0, 1, -1) alike.
        assert any(k.startswith("binary_conv2d_") for k in kernels), kernels
    if recipe in ("bnn", "xnor"):
        # Conv -> MaxPool -> batch norm -> sign: one step writing bits; no float sign or pool left.
        assert any(k.endswith("+maxpool+threshold") for k in kernels), kernels
        assert "maxpool_f32" not in kernels, kernels


def test_engine_rejects_a_corrupt_model_naming_it(tmp_path, work):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage")
    r = lowbit_cmd("run", bad, "--data", work / "data", check=False)
    assert r.returncode == 2 and "bad.onnx" in r.stderr


def test_eval_and_run_standardise_as_in_training_on_another_data_set(work, trained, exported, tmp_path):
    # A data set whose training split has another mean and std than the one the model saw: LibTorch
    # (lowbit eval, lowbit run --checkpoint) must standardise with the checkpoint's values, as the
    # exported graph does.
    other = ref.subset(tmp_path / "other", train=300, test=400)
    run = trained["float"][0]
    lowbit_cmd("eval", "--checkpoint", run, "--data", other, "--logits", tmp_path / "torch.npy")
    result = json.loads(lowbit_cmd("run", exported["float", "qonnx"], "--data", other, "--checkpoint", run,
                                   "--logits", tmp_path / "engine.npy").stdout)
    torch_logits, engine_logits = np.load(tmp_path / "torch.npy"), np.load(tmp_path / "engine.npy")
    np.testing.assert_allclose(engine_logits, torch_logits, rtol=1e-4, atol=1e-4)
    assert result["same_predictions"] == 1.0


def test_json_output_escapes_paths(trained, exported, tmp_path, work):
    # A file name with a quote and a backslash: lowbit's JSON lines stay valid JSON.
    odd = tmp_path / 'we"ird\\name.onnx'
    odd.write_bytes(exported["bnn", "qonnx"].read_bytes())
    result = json.loads(lowbit_cmd("run", odd, "--data", work / "data").stdout)
    assert result["model"] == str(odd)
    out = tmp_path / 'ex"port.onnx'
    assert json.loads(lowbit_cmd("export", "--checkpoint", trained["bnn"][0], "--out", out).stdout)["out"] == str(out)
