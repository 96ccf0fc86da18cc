#!/usr/bin/env python3
"""Cost of one training step of the bnn recipe's network, side by side in one process:

  float     the same architecture without quantizers (zero padding, float convolutions)
  lowbit    lowbit's operators: ste_sign inputs and kernels, weight clip, +1 padding
  composed  the same binary network with ste_sign composed from plain torch operations
            (clamp, where, detach: the straight-through estimator as usually written)

A step is zero_grad, forward, cross entropy, backward, Adam step and the weight clip, on a batch of
Fashion-MNIST-sized inputs. Prints one JSON line per model and one with the ratios:
{"lowbit_vs_float": lowbit_ms / float_ms, "composed_vs_lowbit": composed_ms / lowbit_ms}.

  PYTHONPATH=python /usr/bin/python3 bench/train_step.py [--batch 128] [--steps 10] [--repeat 7]
"""
import argparse
import json
import statistics
import time

import torch

import lowbit.nn as qnn


class ComposedSteSign(torch.nn.Module):
    """Larq's ste_sign from torch operations: sign0 forward, gradient g * 1[|x| <= 1]."""

    precision = 1

    def forward(self, x):
        clipped = x.clamp(-1.0, 1.0)
        return clipped + (torch.where(x >= 0, 1.0, -1.0) - clipped).detach()


def network(quantizer, binary):
    """The bnn recipe's network (lowbit::nn::build_network with the recipe's options)."""
    def conv(cin, cout, quantized):
        q = quantizer() if quantized else None
        k = quantizer() if quantized else None
        return qnn.QuantConv2d(cin, cout, 3, padding=1, bias=False, input_quantizer=q,
                               kernel_quantizer=k,
                               kernel_constraint="weight_clip" if quantized else None,
                               pad_values=1.0 if quantized else 0.0)

    def dense(cin, cout, quantized, bias):
        q = quantizer() if quantized else None
        k = quantizer() if quantized else None
        return qnn.QuantLinear(cin, cout, bias=bias, input_quantizer=q, kernel_quantizer=k,
                               kernel_constraint="weight_clip" if quantized else None)

    nn = torch.nn
    return nn.Sequential(
        conv(1, 32, False), nn.BatchNorm2d(32),
        conv(32, 32, binary), nn.MaxPool2d(2), nn.BatchNorm2d(32),
        conv(32, 64, binary), nn.BatchNorm2d(64),
        conv(64, 64, binary), nn.MaxPool2d(2), nn.BatchNorm2d(64),
        nn.Flatten(), dense(64 * 7 * 7, 256, binary, False), nn.BatchNorm1d(256),
        dense(256, 10, False, True))


def make_step(model, x, y):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        qnn.apply_constraints(model)
    return step


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=10, help="steps per sample")
    ap.add_argument("--repeat", type=int, default=7, help="samples per model (interleaved)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.batch, 1, 28, 28)
    y = torch.randint(0, 10, (args.batch,))
    models = {
        "float": network(lambda: None, binary=False),
        "lowbit": network(lambda: "ste_sign", binary=True),
        "composed": network(ComposedSteSign, binary=True),
    }
    steps = {name: make_step(m, x, y) for name, m in models.items()}
    for s in steps.values():  # warm up: allocations, oneDNN primitives
        for _ in range(2):
            s()
    samples = {name: [] for name in steps}
    for _ in range(args.repeat):  # interleaved, so that machine noise hits all alike
        for name, s in steps.items():
            t0 = time.perf_counter()
            for _ in range(args.steps):
                s()
            samples[name].append((time.perf_counter() - t0) / args.steps * 1e3)
    ms = {name: statistics.median(v) for name, v in samples.items()}
    for name, v in ms.items():
        print(json.dumps({"model": name, "batch": args.batch, "threads": torch.get_num_threads(),
                          "step_ms": round(v, 2),
                          "samples_per_s": round(args.batch / v * 1e3, 1)}), flush=True)
    print(json.dumps({"lowbit_vs_float": round(ms["lowbit"] / ms["float"], 3),
                      "composed_vs_lowbit": round(ms["composed"] / ms["lowbit"], 3)}), flush=True)


if __name__ == "__main__":
    main()
