#!/usr/bin/python3
"""Bring your own model (docs/python-api.md): a float CNN with a residual block trained with plain
PyTorch on Fashion-MNIST, then lowbit.quantize'd to po2-int8 and to bnn and fine-tuned.

    PYTHONPATH=python /usr/bin/python3 examples/bring_your_own_model.py --out runs/byom

Prints one JSON line per phase (accuracy on the 10,000 test images, seconds) and saves each
model's state_dict (float.pt, po2-int8.pt, bnn.pt) under --out; the quantized models are exported
in both formats (po2-int8-qonnx.onnx, ...) and run by lowbit's engine (build/lowbit-run) on every
test image, whose predictions are compared with PyTorch's. --quick trains on a slice for a smoke
test; --from DIR reloads the state_dicts of an earlier run instead of training them.
"""
import argparse
import gzip
import json
import math
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import lowbit


def read_idx(path):
    with gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def load(data_dir, split):
    prefix = "train" if split == "train" else "t10k"
    names = os.listdir(data_dir)

    def find(kind):
        for n in names:
            if n.startswith(f"{prefix}-{kind}"):
                return os.path.join(data_dir, n)
        raise FileNotFoundError(f"--data: no {prefix}-{kind}* file in {data_dir}")

    x = torch.from_numpy(read_idx(find("images")).copy()).float().div_(255).unsqueeze(1)
    y = torch.from_numpy(read_idx(find("labels")).copy()).long()
    return x, y


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


class FloatCNN(nn.Module):
    """An ordinary PyTorch model: nothing in it knows about lowbit."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.conv2 = nn.Conv2d(32, 32, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(32)
        self.conv3 = nn.Conv2d(32, 64, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(64)
        self.block = Residual(64)
        self.fc1 = nn.Linear(64 * 7 * 7, 256, bias=False)
        self.bn4 = nn.BatchNorm1d(256)
        self.fc2 = nn.Linear(256, 10)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        x = F.relu(self.bn3(self.conv3(x)))
        x = F.max_pool2d(self.block(x), 2)
        x = F.relu(self.bn4(self.fc1(torch.flatten(x, 1))))
        return self.fc2(x)


def evaluate(model, x, y, batch=250):
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            correct += int((model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum())
    return correct / len(x)


RUNNER = Path(__file__).resolve().parents[1] / "build" / "lowbit-run"


def engine_agreement(model, name, x, out_dir, threads):
    """Exports the model in both formats and runs lowbit's engine on x: predictions that differ
    from PyTorch's, per format."""
    model.eval()
    with torch.no_grad():
        want = torch.cat([model(x[i:i + 250]) for i in range(0, len(x), 250)]).argmax(1).numpy()
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        np.save(os.path.join(tmp, "x.npy"), x.numpy())
        for fmt in ("qonnx", "standard"):
            path = os.path.join(out_dir, f"{name}-{fmt}.onnx")
            lowbit.export_onnx(model, x[:2], path, fmt)
            subprocess.run([str(RUNNER), "run", path, "--input", os.path.join(tmp, "x.npy"),
                            "--output", os.path.join(tmp, "y.npy"), "--threads", str(threads)],
                           check=True, capture_output=True)
            got = np.load(os.path.join(tmp, "y.npy")).argmax(1)
            result[f"engine_{fmt}_prediction_mismatches"] = int((got != want).sum())
    return result


def train(model, x, y, epochs, lr, seed, constraints=False, batch=128):
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * math.ceil(len(x) / batch)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), batch):
            idx = order[i:i + batch]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if constraints:
                lowbit.nn.apply_constraints(model)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--out", default="runs/byom")
    ap.add_argument("--float-epochs", type=int, default=5)
    ap.add_argument("--int8-epochs", type=int, default=2)
    ap.add_argument("--bnn-epochs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="2,000 training images (smoke test)")
    ap.add_argument("--from", dest="reload", metavar="DIR",
                    help="reload float.pt, po2-int8.pt and bnn.pt from DIR instead of training "
                         "(the phases whose file is missing are trained)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    xtr, ytr = load(a.data, "train")
    xte, yte = load(a.data, "test")
    mean, std = float(xtr.mean()), float(xtr.std())
    xtr, xte = (xtr - mean) / std, (xte - mean) / std
    if a.quick:
        xtr, ytr = xtr[:2000], ytr[:2000]
    os.makedirs(a.out, exist_ok=True)
    steps_per_epoch = math.ceil(len(xtr) / 128)

    def report(phase, model, start, **extra):
        acc = evaluate(model, xte, yte)
        torch.save(model.state_dict(), os.path.join(a.out, f"{phase}.pt"))
        line = {"phase": phase, "test_accuracy": round(acc, 4),
                "seconds": round(time.time() - start, 1), **extra}
        print(json.dumps(line), flush=True)
        return acc

    def reload(module, phase):
        """Loads DIR/PHASE.pt when --from gives one that has it; False: train this phase."""
        path = os.path.join(a.reload, f"{phase}.pt") if a.reload else None
        if path is None or not os.path.exists(path):
            return False
        module.load_state_dict(torch.load(path))
        return True

    start = time.time()
    model = FloatCNN()
    if not reload(model, "float"):
        train(model, xtr, ytr, a.float_epochs, 1e-3, a.seed)
    float_acc = report("float", model, start, epochs=a.float_epochs)

    example = (xte[:2],)
    start = time.time()
    # Integer QAT from the float weights: observers and batch norms settle in the first epoch,
    # the last trains with the batch norms frozen (exactly what inference computes).
    int8 = lowbit.quantize(model, {"recipe": "po2-int8", "freeze_bn_delay": steps_per_epoch},
                           example)
    int8_before = evaluate(int8, xte, yte)
    if not reload(int8, "po2-int8"):
        train(int8, xtr, ytr, a.int8_epochs, 1e-4, a.seed + 1)
    int8_acc = evaluate(int8, xte, yte)
    report("po2-int8", int8, start, epochs=a.int8_epochs, before_fine_tuning=round(int8_before, 4),
           float_minus_int8_points=round(100 * (float_acc - int8_acc), 2),
           **engine_agreement(int8, "po2-int8", xte, a.out, a.threads))

    start = time.time()
    bnn = lowbit.quantize(model, "bnn", example)
    bnn_before = evaluate(bnn, xte, yte)
    if not reload(bnn, "bnn"):
        train(bnn, xtr, ytr, a.bnn_epochs, 1e-3, a.seed + 2, constraints=True)
    report("bnn", bnn, start, epochs=a.bnn_epochs, before_fine_tuning=round(bnn_before, 4),
           **engine_agreement(bnn, "bnn", xte, a.out, a.threads))

if __name__ == "__main__":
    main()
