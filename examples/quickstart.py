#!/usr/bin/env python3
"""The quickstart demo: every family of lowbit quantizers on a small tensor, with gradients and a
side-by-side timing against PyTorch's own fake quant."""
import time

import torch

import lowbit

torch.set_printoptions(precision=4, linewidth=120)


def show(name, y):
    print(f"  {name:<58} {y}")


def main():
    print(f"lowbit {lowbit.__version__}: operators from {lowbit.library_path}\n")
    x = torch.tensor([-1.5, -1.0, -0.4, -0.0, 0.0, 0.3, 0.5, 1.0, 2.0])
    print(f"x = {x}\n")

    print("TensorFlow fake quantization (range nudged so that 0 is exact):")
    show("fake_quant_with_min_max_args(x, -1, 1, num_bits=4)",
         lowbit.fake_quant_with_min_max_args(x, -1.0, 1.0, num_bits=4))
    show("fake_quant_with_min_max_vars(x, min=-1, max=1.5, 3 bits)",
         lowbit.fake_quant_with_min_max_vars(x, torch.tensor(-1.0), torch.tensor(1.5), num_bits=3))

    print("\nLarq:")
    show("ste_sign(x)", lowbit.ste_sign(x))
    show("ste_heaviside(x)", lowbit.ste_heaviside(x))
    show("ste_tern(x, threshold_value=0.35)", lowbit.ste_tern(x, threshold_value=0.35))
    show("dorefa(x, k_bit=2)  (activations)", lowbit.dorefa(x, k_bit=2))
    show("dorefa(x, k_bit=2, mode='weights')", lowbit.dorefa(x, k_bit=2, mode="weights"))
    show("magnitude_aware_sign(x.view(1, -1), axis=0)  (one scale)",
         lowbit.magnitude_aware_sign(x.view(1, -1), axis=0).view(-1))

    print("\nBlueoil:")
    show("binary_mean_scaling(x)", lowbit.binary_mean_scaling(x))
    show("linear_mid_tread_half(x, bit=2, max_value=2)", lowbit.linear_mid_tread_half(x))
    show("twn_weight(x)", lowbit.twn_weight(x))
    show("ttq_weight(x, positive=0.8, negative=0.6)",
         lowbit.ttq_weight(x, torch.tensor(0.8), torch.tensor(0.6)))

    print("\nPower-of-2 fixed point (the range of 8-bit weights with max |w| = 0.3):")
    lo, hi = lowbit.pow2_range(torch.tensor(-0.3), torch.tensor(0.3), num_bits=8)
    print(f"  pow2_range(-0.3, 0.3) = [{lo.item()}, {hi.item()}]  (scale 2^-8, 8 fractional bits)")
    show("fake_quant_pow2(x * 0.2, -0.3, 0.3)",
         lowbit.fake_quant_pow2(x * 0.2, torch.tensor(-0.3), torch.tensor(0.3)))

    print("\nPseudo-gradients (d sum(q(x)) / dx):")
    for name, fn in [("ste_sign", lowbit.ste_sign), ("approx_sign", lowbit.approx_sign),
                     ("swish_sign", lowbit.swish_sign),
                     ("linear_mid_tread_half", lowbit.linear_mid_tread_half),
                     ("ste_sign, backward=lambda x, g: g * x.abs()",
                      lambda t: lowbit.ste_sign(t, backward=lambda x, g: g * x.abs()))]:
        xg = x.clone().requires_grad_()
        fn(xg).sum().backward()
        show(name, xg.grad)

    n = 1 << 22
    big = torch.randn(n) * 4
    mn, mx = torch.tensor(-6.0), torch.tensor(6.0)

    def clock(f, reps=20):
        f()
        t0 = time.perf_counter()
        for _ in range(reps):
            f()
        return (time.perf_counter() - t0) / reps * 1e3

    ours = clock(lambda: lowbit.fake_quant_with_min_max_vars(big, mn, mx))
    theirs = clock(lambda: torch.fake_quantize_per_tensor_affine(big, 12 / 255, 128, 0, 255))
    differ = int((lowbit.fake_quant_with_min_max_vars(big, mn, mx)
                  != torch.fake_quantize_per_tensor_affine(big, 12 / 255, 128, 0, 255)).sum())
    print(f"\n8-bit fake quant of {n} floats: lowbit {ours:.2f} ms, "
          f"torch.fake_quantize_per_tensor_affine {theirs:.2f} ms ({theirs / ours:.1f}x faster);\n"
          f"  {differ} outputs differ by one step at near-ties: TF's arithmetic (ours) divides by the\n"
          f"  scale and rounds ties up, torch's multiplies by 1/scale and rounds ties to even")
    print("Full benchmarks: PYTHONPATH=python /usr/bin/python3 bench/ops.py (see docs/performance.md)")


if __name__ == "__main__":
    main()
