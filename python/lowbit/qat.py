"""Quantization-aware training for integer hardware (docs/qat.md): batch-norm folding and fake
quantization of weights, activations and biases, power-of-2 (seed 003) or TF affine
(tf.contrib.quantize), the same modules and numerics as lowbit::qat in C++.

    import lowbit.qat as qat
    model = qat.prepare(float_sequential, scheme="pow2", quant_delay=1000, freeze_bn_delay=6000)
    ... train ...
    model.eval()
    for layer in qat.integer_parameters(model): print(layer)
"""
import copy
import json
import math
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F

from . import _ops
from . import nn as _lnn

__all__ = ["QatOptions", "TensorQuantization", "ActivationQuant", "FoldedLayer", "prepare",
           "integer_parameters"]


# The defaults are C++'s (lowbit::qat::QatOptions), read once.
_DEFAULTS = json.loads(torch.ops.lowbit._qat_defaults())


@dataclass(frozen=True)
class QatOptions:
    """The options of lowbit::qat::QatOptions, with the same names and defaults (read from C++)."""

    scheme: str = _DEFAULTS["scheme"]                # "pow2" or "affine"
    weight_bits: int = _DEFAULTS["weight_bits"]
    activation_bits: int = _DEFAULTS["activation_bits"]
    bias_bits: int = _DEFAULTS["bias_bits"]          # pow2 only; affine: int32 at conversion
    max_exponent: int = _DEFAULTS["max_exponent"]    # pow2 weights and biases
    ema_decay: float = _DEFAULTS["ema_decay"]
    quant_delay: int = _DEFAULTS["quant_delay"]
    freeze_bn_delay: int = _DEFAULTS["freeze_bn_delay"]  # -1: never
    quantize_input: bool = _DEFAULTS["quantize_input"]
    per_channel: bool = _DEFAULTS["per_channel"]     # one weight range per output channel

    def check(self):
        if self.scheme not in ("pow2", "affine"):
            raise ValueError(f"qat: unknown scheme {self.scheme!r} (known: pow2, affine)")
        names = ["weight_bits", "activation_bits"] + (["bias_bits"] if self.scheme == "pow2" else [])
        for name in names:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or not 2 <= v <= 16:
                raise ValueError(f"qat: {name} must be an integer in [2, 16], got {v!r}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"qat: ema_decay must be in [0, 1), got {self.ema_decay!r}")
        if self.quant_delay < 0:
            raise ValueError("qat: quant_delay must be >= 0")
        if self.freeze_bn_delay < -1:
            raise ValueError("qat: freeze_bn_delay must be >= 0, or -1 for never")
        return self


@dataclass
class TensorQuantization:
    """pow2: value = q * 2^-frac_bits; affine: value = (q - zero_point) * scale; q in [qmin, qmax].
    bits == 0: not quantized."""

    bits: int = 0
    frac_bits: int = 0
    scale: float = 0.0
    zero_point: int = 0
    qmin: int = 0
    qmax: int = 0
    min: float = 0.0
    max: float = 0.0


def _pow2_quantization(lo, hi, bits, max_exponent):
    pmin, pmax = _ops.pow2_range(torch.tensor(float(lo)), torch.tensor(float(hi)), bits,
                                 max_exponent)
    e = int(round(math.log2(-float(pmin))))  # pow2_min = -2^e exactly
    f = bits - 1 - e
    return TensorQuantization(bits, f, math.ldexp(1.0, -f), 0, -(1 << (bits - 1)),
                              (1 << (bits - 1)) - 1, float(pmin), float(pmax))


def _affine_quantization(lo, hi, bits, narrow_range):
    # TF's nudging (spec section 1) in float32, as the operator does it.
    f32 = lambda v: torch.tensor(v, dtype=torch.float32)  # noqa: E731
    qmin, qmax = (1 if narrow_range else 0), (1 << bits) - 1
    lo, hi = f32(lo), f32(hi)
    if float(lo) == 0 and float(hi) == 0:
        return TensorQuantization(bits, 0, 0.0, qmin, qmin, qmax, 0.0, 0.0)
    scale = (hi - lo) / f32(qmax - qmin)
    zp_from_min = f32(qmin) - lo / scale
    if float(zp_from_min) < qmin:
        zp = qmin
    elif float(zp_from_min) > qmax:
        zp = qmax
    else:
        v = float(zp_from_min)
        zp = int(math.floor(abs(v) + 0.5)) * (1 if v >= 0 else -1)  # half away from zero
    nmin, nmax = f32(qmin - zp) * scale, f32(qmax - zp) * scale
    return TensorQuantization(bits, 0, float(scale), zp, qmin, qmax, float(nmin), float(nmax))


class ActivationQuant(torch.nn.Module):
    """Fake quantization of activations with a moving average of the batch min/max (0 included;
    the first training batch initialises it). Observes in training and quantizes from step
    ``quant_delay``; in eval quantizes with the stored range once it has seen data."""

    summary_skip = True  # lowbit.nn.summary: an observer, not a layer

    def __init__(self, options=QatOptions()):
        super().__init__()
        self.options = options.check()
        self.register_buffer("min", torch.zeros(()))
        self.register_buffer("max", torch.zeros(()))
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self.register_buffer("observed", torch.zeros((), dtype=torch.long))

    @property
    def precision(self):
        return self.options.activation_bits

    def forward(self, x):
        return self.forward_many([x])[0]

    def forward_many(self, xs):
        """Fake-quantizes several tensors with this one range (a residual Add's or a Concat's
        inputs: lowbit.CommonScale): in training the range follows the union of their batch
        ranges, one step per call."""
        o = self.options
        if self.training:
            if any(x.numel() > 0 for x in xs):
                with torch.no_grad():
                    ranges = [torch.aminmax(x.detach()) for x in xs if x.numel() > 0]
                    lo = torch.stack([r[0] for r in ranges]).min()
                    hi = torch.stack([r[1] for r in ranges]).max()
                    lo, hi = lo.clamp(max=0).float(), hi.clamp(min=0).float()
                    if not self.observed:
                        self.min.copy_(lo)
                        self.max.copy_(hi)
                        self.observed.fill_(1)
                    else:  # TF's assign_moving_average: v -= (1 - decay) * (v - value)
                        self.min.sub_((self.min - lo) * (1.0 - o.ema_decay))
                        self.max.sub_((self.max - hi) * (1.0 - o.ema_decay))
            s = int(self.step)
            self.step.add_(1)
            if s < o.quant_delay or not self.observed:
                return list(xs)
        elif not self.observed:
            return list(xs)
        if o.scheme == "pow2":
            return [_ops.fake_quant_pow2(x, self.min, self.max, o.activation_bits) for x in xs]
        return [_ops.fake_quant_with_min_max_vars(x, self.min, self.max, o.activation_bits, False)
                for x in xs]

    def quantization(self):
        if not self.observed:
            return TensorQuantization()
        lo, hi, b = float(self.min), float(self.max), self.options.activation_bits
        if self.options.scheme == "pow2":
            return _pow2_quantization(lo, hi, b, None)
        return _affine_quantization(lo, hi, b, False)

    def extra_repr(self):
        return (f"scheme={self.options.scheme}, bits={self.options.activation_bits}, "
                f"ema_decay={self.options.ema_decay}")


def _as_output(v, dim):
    return v.view([1, -1] + [1] * (dim - 2))


def _as_weight(v, dim):
    return v.view([-1] + [1] * (dim - 1))


class FoldedLayer(torch.nn.Module):
    """A Conv2d or Linear with its batch norm folded in (lowbit::qat::FoldedLayer, docs/qat.md)."""

    summary_as_quant_layer = True  # lowbit.nn.summary: weight at weight_bits, MACs at 8 bits

    def __init__(self, layer, bn=None, options=QatOptions()):
        super().__init__()
        self.options = options.check()
        self.conv = isinstance(layer, (torch.nn.Conv1d, torch.nn.Conv2d))
        self.conv_dims = 1 if isinstance(layer, torch.nn.Conv1d) else 2
        if self.conv:
            padding = layer.padding
            if padding == "valid":
                padding = (0,) * self.conv_dims
            elif padding == "same":  # PyTorch's "same": symmetric when every d * (k - 1) is even
                totals = [d * (k - 1) for d, k in zip(layer.dilation, layer.kernel_size)]
                if all(t % 2 == 0 for t in totals):
                    padding = tuple(t // 2 for t in totals)
            if isinstance(padding, str) or layer.padding_mode != "zeros":
                raise ValueError("FoldedLayer: only explicit zero padding is supported")
            self.stride, self.padding = layer.stride, padding
            self.dilation, self.groups = layer.dilation, layer.groups
        self.weight = torch.nn.Parameter(layer.weight.detach().clone())
        self.bias = (torch.nn.Parameter(layer.bias.detach().clone())
                     if layer.bias is not None else None)
        if bn is not None:
            if not bn.affine or not bn.track_running_stats:
                raise ValueError("FoldedLayer: the batch norm must be affine and track running "
                                 "statistics to be folded")
            self.gamma = torch.nn.Parameter(bn.weight.detach().clone())
            self.beta = torch.nn.Parameter(bn.bias.detach().clone())
            self.register_buffer("running_mean", bn.running_mean.detach().clone())
            self.register_buffer("running_var", bn.running_var.detach().clone())
            self.eps = bn.eps
            self.momentum = bn.momentum if bn.momentum is not None else 0.1
        else:
            self.gamma = self.beta = None
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    # QuantLayer-like attributes, for lowbit.nn.summary
    @property
    def input_precision(self):
        return self.options.activation_bits

    @property
    def kernel_precision(self):
        return self.options.weight_bits

    def _apply_op(self, x, w):
        if self.conv:
            conv = F.conv1d if self.conv_dims == 1 else F.conv2d
            return conv(x, w, None, self.stride, self.padding, self.dilation, self.groups)
        return F.linear(x, w)

    def _quantize_weight(self, w, quantize):
        if not quantize:
            return w
        o = self.options
        # Per channel: the operators' per-channel forms work on the last dimension, so each
        # output channel becomes a column.
        v = w.reshape(w.shape[0], -1).t() if o.per_channel else w
        if o.per_channel:
            lo, hi = v.detach().min(0).values, v.detach().max(0).values
        else:
            lo, hi = v.min().detach(), v.max().detach()
        if o.scheme == "pow2":
            q = _ops.fake_quant_pow2(v, lo, hi, o.weight_bits, o.max_exponent)
        elif o.per_channel:
            q = _ops.fake_quant_with_min_max_vars_per_channel(v, lo.clamp(max=0), hi.clamp(min=0),
                                                              o.weight_bits, True)
        else:
            q = _ops.fake_quant_with_min_max_vars(v, lo.clamp(max=0), hi.clamp(min=0),
                                                  o.weight_bits, True)
        return q.t().reshape(w.shape) if o.per_channel else q

    def _quantize_bias(self, b, quantize):
        o = self.options
        if not quantize or o.scheme != "pow2" or b is None or b.numel() == 0:
            return b
        return _ops.fake_quant_pow2(b, b.min().detach(), b.max().detach(), o.bias_bits,
                                    o.max_exponent)

    def forward(self, x):
        o = self.options
        s = int(self.step)
        quantize = not self.training or s >= o.quant_delay
        if self.gamma is None:
            y = self._apply_op(x, self._quantize_weight(self.weight, quantize))
            if self.bias is not None:
                y = y + _as_output(self._quantize_bias(self.bias, quantize), y.dim())
        else:
            batch_statistics = self.training and not (0 <= o.freeze_bn_delay <= s)
            moving_std = (self.running_var + self.eps).sqrt()
            scale = self.gamma / moving_std
            y = self._apply_op(x, self._quantize_weight(
                self.weight * _as_weight(scale, self.weight.dim()), quantize))
            if not self.conv and y.dim() != 2:
                raise ValueError("FoldedLayer: a linear layer with batch norm takes "
                                 "[batch, features] inputs")
            if batch_statistics:
                bias = self.bias if self.bias is not None else torch.zeros_like(scale)
                safe = torch.where(scale == 0, torch.ones_like(scale), scale)
                raw = y / _as_output(safe, y.dim()) + _as_output(bias, y.dim())
                y, mean, invstd = torch.native_batch_norm(
                    raw, self.gamma, self.beta, self.running_mean, self.running_var, True,
                    self.momentum, self.eps)
                if quantize and o.scheme == "pow2":
                    with torch.no_grad():
                        b = self._folded_bias(mean, self.gamma * invstd)
                        error = self._quantize_bias(b, True) - b
                    y = y + _as_output(error, y.dim())
            else:
                b = self._folded_bias(self.running_mean, scale)
                y = y + _as_output(self._quantize_bias(b, quantize), y.dim())
        if self.training:
            self.step.add_(1)
        return y

    @torch.no_grad()
    def folded_parameters(self):
        """(weight, bias) of eval mode, before fake quantization."""
        if self.gamma is None:
            return self.weight.detach().clone(), (
                None if self.bias is None else self.bias.detach().clone())
        scale = self.gamma / (self.running_var + self.eps).sqrt()
        return (self.weight * _as_weight(scale, self.weight.dim()),
                self._folded_bias(self.running_mean, scale))

    def _folded_bias(self, mean, factor):
        """beta + (bias - mean) * factor: the folded bias for a mean and gamma / std."""
        bias = self.bias if self.bias is not None else torch.zeros_like(mean)
        return self.beta + (bias - mean) * factor

    @torch.no_grad()
    def quantized_folded_parameters(self):
        w, b = self.folded_parameters()
        return self._quantize_weight(w, True), self._quantize_bias(b, True)

    def weight_quantization(self):
        w, _ = self.folded_parameters()
        lo, hi, o = float(w.min()), float(w.max()), self.options
        if o.scheme == "pow2":
            return _pow2_quantization(lo, hi, o.weight_bits, o.max_exponent)
        return _affine_quantization(min(lo, 0.0), max(hi, 0.0), o.weight_bits, True)

    def channel_weight_quantization(self):
        """One TensorQuantization per output channel (what per_channel quantizes with)."""
        rows = self.folded_parameters()[0].reshape(self.weight.shape[0], -1)
        o, out = self.options, []
        for r in rows:
            lo, hi = float(r.min()), float(r.max())
            out.append(_pow2_quantization(lo, hi, o.weight_bits, o.max_exponent)
                       if o.scheme == "pow2"
                       else _affine_quantization(min(lo, 0.0), max(hi, 0.0), o.weight_bits, True))
        return out

    def bias_quantization(self):
        _, b = self.folded_parameters()
        o = self.options
        if b is None or b.numel() == 0 or o.scheme != "pow2":
            return TensorQuantization()
        return _pow2_quantization(float(b.min()), float(b.max()), o.bias_bits, o.max_exponent)

    def extra_repr(self):
        return (f"{f'conv{self.conv_dims}d' if self.conv else 'linear'}, batchnorm={self.gamma is not None}, "
                f"scheme={self.options.scheme}, weight_bits={self.options.weight_bits}")


def _float_layer(m, where):
    if isinstance(m, _lnn.QuantLayer):
        if m.input_quantizer is not None or m.kernel_quantizer is not None:
            raise ValueError(f"{where}: has quantizers; prepare takes a float network")
        if isinstance(m, _lnn.QuantConv2d) and m.pad_values != 0 and any(m.explicit_padding()):
            raise ValueError(f"{where}: pad_values must be 0")
    return isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))


def _has_quantizers(m):
    return isinstance(m, _lnn.QuantLayer) and (m.input_quantizer is not None
                                                or m.kernel_quantizer is not None)


def prepare(model, options=None, keep_quantized_layers=False, **kwargs):
    """A new ``nn.Sequential`` prepared for quantization-aware training (see lowbit::qat::prepare):
    Conv2d/Linear + following BatchNorm fold into a FoldedLayer, an ActivationQuant follows each
    (after its ReLU), one quantizes the input; ReLU, MaxPool2d, Flatten, Dropout pass through.
    With ``keep_quantized_layers``, layers that have quantizers stay as they are (the same modules)
    with their batch norms, and a folded layer reading one's output gets an ActivationQuant first
    (mixed precision, as the zoo's bnn-int8-io). ``options`` is a QatOptions, or give its fields as
    keyword arguments."""
    if not isinstance(model, torch.nn.Sequential):
        raise TypeError("qat.prepare: the model must be a torch.nn.Sequential")
    o = replace(options or QatOptions(), **kwargs).check()
    mods = list(model)
    out = [ActivationQuant(o)] if o.quantize_input else []
    on_grid, after_kept = True, False  # on_grid: not fed by a kept layer (see the C++ prepare)
    i = 0
    while i < len(mods):
        m = mods[i]
        where = f"qat.prepare: module {i} ({type(m).__name__})"
        if keep_quantized_layers and _has_quantizers(m):
            out.append(m)
            on_grid, after_kept = False, True
        elif after_kept and isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            out.append(m)
        elif _float_layer(m, where):
            if not on_grid:
                out.append(ActivationQuant(o))
            conv = isinstance(m, torch.nn.Conv2d)
            bn = None
            if i + 1 < len(mods) and isinstance(mods[i + 1], (torch.nn.BatchNorm1d,
                                                               torch.nn.BatchNorm2d)):
                bn = mods[i + 1]
                if conv != isinstance(bn, torch.nn.BatchNorm2d):
                    raise ValueError(f"{where}: {type(bn).__name__} does not fit this layer")
                i += 1
            try:
                out.append(FoldedLayer(m, bn, o))
            except ValueError as e:
                raise ValueError(f"{where}: {e}") from None
            if i + 1 < len(mods) and isinstance(mods[i + 1], torch.nn.ReLU):
                out.append(torch.nn.ReLU())
                i += 1
            out.append(ActivationQuant(o))
            on_grid, after_kept = True, False
        elif isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            raise ValueError(f"{where}: a batch norm that does not follow a Conv2d or Linear "
                             "cannot be folded")
        elif isinstance(m, (torch.nn.ReLU, torch.nn.MaxPool2d, torch.nn.Flatten,
                            torch.nn.Dropout)):
            out.append(copy.deepcopy(m))
        else:
            raise ValueError(f"{where}: not supported by quantization-aware training (known: "
                             "Conv2d, Linear, BatchNorm after them, ReLU, MaxPool2d, Flatten, "
                             "Dropout)")
        i += 1
    return torch.nn.Sequential(*out)


@dataclass
class LayerIntegerParameters:
    name: str
    type: str
    relu: bool = False
    input: TensorQuantization = field(default_factory=TensorQuantization)
    weight: TensorQuantization = field(default_factory=TensorQuantization)
    bias: TensorQuantization = field(default_factory=TensorQuantization)
    output: TensorQuantization = field(default_factory=TensorQuantization)


def integer_parameters(prepared):
    """Per folded layer of a prepared network: the quantization of its input, weight, bias and
    output, for an integer engine (see lowbit::qat::integer_parameters)."""
    layers, current, waiting = [], TensorQuantization(), None
    for i, m in enumerate(prepared):
        if isinstance(m, ActivationQuant):
            current = m.quantization()
            if waiting is not None:
                waiting.output = current
            waiting = None
        elif isinstance(m, FoldedLayer):
            p = LayerIntegerParameters(str(i), f"conv{m.conv_dims}d" if m.conv else "linear", False, current,
                                       m.weight_quantization(), m.bias_quantization())
            if m.options.scheme == "affine" and m.folded_parameters()[1] is not None \
                    and p.input.bits > 0:
                s = p.input.scale * p.weight.scale  # TF's conversion: int32 at the accumulator
                p.bias = TensorQuantization(32, 0, s, 0, -(1 << 31), (1 << 31) - 1,
                                            -(1 << 31) * s, ((1 << 31) - 1) * s)
            current = TensorQuantization()
            layers.append(p)
            waiting = p
        elif isinstance(m, torch.nn.ReLU) and waiting is not None:
            waiting.relu = True
        elif isinstance(m, (_lnn.QuantLayer, torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            current, waiting = TensorQuantization(), None  # a kept layer: float values again
    return layers
