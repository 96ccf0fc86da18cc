"""Larq's flip ratio and Bop optimizer for the latent kernels of quantized layers (docs/layers.md);
also reachable as lowbit.nn.FlipRatio, lowbit.nn.Bop, lowbit.nn.split_binary_parameters."""
import numbers

import torch

from .nn import quant_layers

__all__ = ["FlipRatio", "Bop", "split_binary_parameters"]


# ---- flip ratio ----------------------------------------------------------------------------------

class FlipRatio:
    """Larq's flip ratio: the fraction of quantized kernel values that changed since the last call.

    ``ratios = flip.update(model)`` quantizes the kernel of every quantized layer with a kernel
    quantizer (``layer.quantized_kernel()``) and returns ``{layer name: ratio}``; ``flip.overall``
    is then the ratio over all those kernels together (changed values / values). A layer seen for
    the first time (or whose kernel changed shape) has no previous values and reports 0.0, as
    Larq's metric does after its first batch. Call it after each optimizer step (or each epoch).
    As in Larq, a value "changes" when the quantized output changes, so for scaled quantizers
    (``magnitude_aware_sign``, ``ttq_weight``...) a changed scale counts too.
    """

    def __init__(self):
        self._previous = {}
        self.overall = 0.0

    def reset(self):
        """Forgets the previous kernels; the next update reports 0.0."""
        self._previous = {}
        self.overall = 0.0

    @torch.no_grad()
    def update(self, model):
        """``{layer name: ratio}`` for the layers of ``model`` with a kernel quantizer."""
        ratios, changed_total, size_total = {}, 0, 0
        current = {}
        for name, layer in quant_layers(model):
            if layer.kernel_quantizer is None:
                continue
            q = layer.quantized_kernel().detach().clone()
            current[name] = q
            prev = self._previous.get(name)
            if prev is None or prev.shape != q.shape or q.numel() == 0:
                ratios[name] = 0.0
                continue
            changed = int((prev.to(q.device) != q).sum())
            ratios[name] = changed / q.numel()
            changed_total += changed
            size_total += q.numel()
        self._previous = current
        self.overall = changed_total / size_total if size_total else 0.0
        return ratios


# ---- Bop -----------------------------------------------------------------------------------------

def _sign0(w):
    return torch.where(w >= 0, torch.ones_like(w), -torch.ones_like(w))


class Bop(torch.optim.Optimizer):
    """Larq's Bop (Helwegen et al. 2019) for binary weights, as a ``torch.optim.Optimizer``.

    For each weight ``w`` (kept at +-1) with gradient ``g``::

        m <- m + gamma * (g - m)                 # = (1 - gamma) m + gamma g
        w <- -w   where |m| > threshold and sign(m) == sign(w)      (that is, w * m > threshold)

    Bop flips a weight when the moving average of its gradient is large and points the same way
    as the weight (gradient descent would push it through zero). The parameters are set to
    ``sign(w)`` (0 -> +1) when they are added and kept at +-1 by each step. ``lr`` is not used.

    Use it only for the latent kernels of binary layers, beside another optimizer for the rest::

        binary, others = lowbit.nn.split_binary_parameters(model)
        bop = lowbit.nn.Bop(binary, threshold=1e-8, gamma=1e-4)
        adam = torch.optim.Adam(others, lr=1e-3)
        for x, y in data:
            bop.zero_grad(); adam.zero_grad()
            loss_fn(model(x), y).backward()
            bop.step(); adam.step()

    Do not give these kernels a ``weight_clip`` constraint smaller than 1.
    """

    def __init__(self, params, threshold=1e-8, gamma=1e-4):
        if not (isinstance(threshold, numbers.Real) and threshold >= 0):
            raise ValueError(f"Bop: threshold must be >= 0, got {threshold!r}")
        if not (isinstance(gamma, numbers.Real) and 0 <= gamma <= 1):
            raise ValueError(f"Bop: gamma must be in [0, 1], got {gamma!r}")
        super().__init__(params, dict(threshold=float(threshold), gamma=float(gamma)))

    def add_param_group(self, param_group):
        """Adds a group (as ``torch.optim.Optimizer``) and sets its weights to +-1 by sign."""
        super().add_param_group(param_group)
        with torch.no_grad():
            for p in self.param_groups[-1]["params"]:
                p.copy_(_sign0(p))

    @torch.no_grad()
    def step(self, closure=None):
        """One Bop update of every parameter with a gradient; returns ``closure()`` if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            gamma, threshold = group["gamma"], group["threshold"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("Bop does not support sparse gradients")
                state = self.state[p]
                if "m" not in state:
                    state["m"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                m = state["m"]
                m.add_(p.grad - m, alpha=gamma)
                w = _sign0(p)
                p.copy_(torch.where(w * m > threshold, -w, w))
        return loss


def split_binary_parameters(model):
    """``(binary_kernels, others)``: the latent kernels of quantized layers whose kernel quantizer
    has precision 1 (Larq's rule for Bop), and every other parameter of ``model``."""
    binary, seen = [], set()
    for _, layer in quant_layers(model):
        if layer.kernel_quantizer is not None and layer.kernel_precision == 1:
            if id(layer.weight) not in seen:
                seen.add(id(layer.weight))
                binary.append(layer.weight)
    others = [p for p in model.parameters() if id(p) not in seen]
    return binary, others
