"""Networks written layer by layer in a config file, through the whole command: summary, training,
export in both formats, onnxruntime and the engine against LibTorch."""
import json
import subprocess

import numpy as np
import pytest

import onnx_reference as ref

LOWBIT = ref.ROOT / "build" / "lowbit"

CONFIG = """recipe: bnn
epochs: 3
batch_size: 64
layers:
  - {conv: 16, bias: false}
  - batch_norm
  - residual:
    body: [{conv: 16, bias: false}, batch_norm]
  - max_pool: 2
  - batch_norm
  - concat:
      - [{conv: 16, bias: false}, batch_norm]
      - [{depthwise_conv: 1, bias: false}, batch_norm]
  - {avg_pool: 2, stride: 2}
  - residual:
    body: [{conv: 24, kernel: 3, stride: 1, bias: false}, batch_norm]
    shortcut: [{conv: 24, kernel: 1, quantized: false, bias: false}, batch_norm]
  - global_avg_pool
  - dense: classes
"""


def lowbit_cmd(*args, check=True):
    return subprocess.run([str(LOWBIT), *map(str, args)], capture_output=True, text=True, check=check)


@pytest.fixture(scope="module")
def layer_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("layers")
    data = ref.subset(work / "data", train=1500, test=400)
    config = work / "net.yaml"
    config.write_text(CONFIG)
    out = work / "run"
    trained = json.loads(lowbit_cmd("train", "--config", config, "--data", data, "--out", out,
                                    "--no-progress").stdout)
    return work, data, config, out, trained


def test_summary_lists_every_layer_of_the_config(layer_run):
    work, _, config, _, _ = layer_run
    text = lowbit_cmd("summary", "--config", config).stdout
    assert "Model: bnn" in text
    # Layers with parameters, by their path: blocks' bodies, shortcuts and concat branches too.
    for row in ("0 (QuantConv2d)", "2.body.0 (QuantConv2d)", "5.0.0 (QuantConv2d)", "5.1.0 (QuantConv2d)",
                "7.projection.0 (QuantConv2d)", "(QuantLinear)"):
        assert row in text, row
    assert "(-1, 24, 7, 7)" in text  # the shapes as the layers give them


@pytest.mark.parametrize("fmt", ["standard", "qonnx"])
def test_a_layer_network_exports_and_runs_as_libtorch_does(layer_run, fmt):
    work, data, _, out, trained = layer_run
    assert trained["test_accuracy"] > 0.25  # 10 classes: above chance
    model = work / f"net-{fmt}.onnx"
    lowbit_cmd("export", "--checkpoint", out, "--out", model, "--format", fmt)
    engine = json.loads(lowbit_cmd("run", model, "--data", data, "--checkpoint", out).stdout)
    assert engine["same_predictions"] >= 0.99
    if fmt == "standard" and ref.node_runner_available():
        logits = work / "torch.npy"
        lowbit_cmd("eval", "--checkpoint", out, "--data", data, "--logits", logits)
        images = ref.read_idx(data / "t10k-images-idx3-ubyte")
        got = ref.run_ort(model, images, work)
        want = np.load(logits)
        assert (got.argmax(1) == want.argmax(1)).mean() >= 0.99
        np.testing.assert_allclose(got, want, atol=1e-3 * np.abs(want).max())


def test_model_from_the_config_or_both_agreeing(layer_run, tmp_path):
    _, data, config, _, _ = layer_run
    r = lowbit_cmd("summary", "--model", "float", "--config", config, check=False)
    assert r.returncode == 2 and "recipe: 'bnn' but the model is 'float'" in r.stderr
    plain = tmp_path / "plain.yaml"
    plain.write_text("epochs: 1\n")
    r = lowbit_cmd("train", "--config", plain, "--data", data, "--out", tmp_path / "x", check=False)
    assert r.returncode == 2 and "--model: no recipe given" in r.stderr
