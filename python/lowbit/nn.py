"""Quantizer objects and quantized layers (docs/layers.md); Larq's flip ratio and Bop optimizer
(lowbit.optim) and the model summary (lowbit.summary) are re-exported here."""
import json
import numbers
import re

import torch
import torch.nn.functional as F
from torch import nn as _nn

from . import _ops

__all__ = [
    "parse_spec",
    "Quantizer",
    "make_quantizer",
    "WeightClip",
    "make_constraint",
    "QuantLayer",
    "QuantLinear",
    "QuantConv2d",
    "QuantConv1d",
    "quant_layers",
    "apply_constraints",
    "FlipRatio",
    "Bop",
    "split_binary_parameters",
    "summary",
    "ModelSummary",
]

# ---- the "name(key=value, ...)" form -------------------------------------------------------------

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?([0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)([eE][+-]?[0-9]+)?")
_WORDS = {"true": True, "True": True, "false": False, "False": False, "none": None, "None": None}


def _parse_value(token, key, text):
    if token in _WORDS:
        return _WORDS[token]
    if _INT.fullmatch(token):
        return int(token)
    if _FLOAT.fullmatch(token):
        return float(token)
    if _IDENT.fullmatch(token):
        return token
    raise ValueError(f"bad value {token!r} for option {key!r} in {text!r}: expected a number, "
                     "true, false, none or a bare word")


def parse_spec(text):
    """Parses ``"name"`` or ``"name(key=value, ...)"`` into ``(name, {key: value})``.

    Values are ints, floats, ``true``/``false``, ``none`` (also ``True``/``False``/``None``) or bare
    words (strings). Whitespace around names, ``=``, ``,`` and parentheses is ignored; anything else
    (positional values, a trailing comma, repeated keys, text after ``)``) is a ValueError that
    names the bad part.
    """
    if not isinstance(text, str):
        raise TypeError(f"a quantizer spec must be a string, got {type(text).__name__}")
    n = len(text)
    pos = 0

    def skip(p):
        while p < n and text[p].isspace():
            p += 1
        return p

    def ident(p, what):
        m = _IDENT.match(text, p)
        if not m:
            at = f"at {text[p:]!r}" if p < n else "at the end"
            raise ValueError(f"expected {what} {at} in {text!r}")
        return m.group(0), m.end()

    pos = skip(pos)
    name, pos = ident(pos, "a name")
    pos = skip(pos)
    options = {}
    if pos == n:
        return name, options
    if text[pos] != "(":
        raise ValueError(f"unexpected {text[pos:]!r} after the name {name!r} in {text!r}")
    pos = skip(pos + 1)
    if pos < n and text[pos] == ")":
        pos += 1
    else:
        while True:
            key, pos = ident(pos, "an option name")
            pos = skip(pos)
            if pos >= n or text[pos] != "=":
                raise ValueError(f"expected '=' after option {key!r} in {text!r}")
            start = pos + 1
            pos = start
            while pos < n and text[pos] not in ",)":
                pos += 1
            token = text[start:pos].strip()
            if not token:
                raise ValueError(f"option {key!r} has no value in {text!r}")
            if key in options:
                raise ValueError(f"option {key!r} given twice in {text!r}")
            options[key] = _parse_value(token, key, text)
            if pos >= n:
                raise ValueError(f"missing ')' at the end of {text!r}")
            pos += 1
            if text[pos - 1] == ")":
                break
            pos = skip(pos)
    pos = skip(pos)
    if pos != n:
        raise ValueError(f"unexpected {text[pos:]!r} after ')' in {text!r}")
    return name, options


def _format_value(v):
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v) if isinstance(v, str) else repr(v)


def _format_spec(name, options):
    if not options:
        return name
    return name + "(" + ", ".join(f"{k}={_format_value(v)}" for k, v in options.items()) + ")"


# ---- option kinds --------------------------------------------------------------------------------

def _check(name, key, kind, value):
    """The value converted to its kind (int given for float becomes float); TypeError otherwise."""
    where = f"option {key!r} of {name!r}"
    if kind in ("float", "float?"):
        if value is None and kind == "float?":
            return None
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            return float(value)
        want = "a number or none" if kind == "float?" else "a number"
    elif kind == "int":
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)
        want = "an integer"
    elif kind == "bool":
        if isinstance(value, bool):
            return value
        want = "true or false"
    elif kind == "str":
        if isinstance(value, str):
            return value
        want = "a word"
    else:  # pragma: no cover - table error
        raise AssertionError(kind)
    raise TypeError(f"{where} must be {want}, got {value!r} ({type(value).__name__})")


class _Kind:
    """One quantizer of the C++ catalogue (lowbit/catalogue.h): its operator, options with kinds
    and defaults (the operator schema's), precision and the kernel role's axis default."""

    def __init__(self, entry):
        self.name = entry["name"]
        self.options = {o["key"]: (o["kind"], _check(self.name, o["key"], o["kind"], o["default"]))
                        for o in entry["options"]}
        self.parameters = [o["key"] for o in entry["options"] if o["parameter"]]
        self.kernel_axis = entry["kernel_axis"]
        self.op = getattr(torch.ops.lowbit, self.name)

    def forward(self, q, x, options):
        args = [getattr(q, k) if k in self.parameters else v for k, v in options.items()]
        return self.op(x, *args)


class _Identity:
    name, options, parameters, kernel_axis = "none", {}, [], False

    @staticmethod
    def forward(q, x, options):
        return x


def _catalogue():
    entries = json.loads(torch.ops.lowbit._quantizer_catalogue())["quantizers"]
    table = {"none": _Identity()}
    table.update((e["name"], _Kind(e)) for e in entries)
    return table


# Read once from the C++ catalogue: the options are the operators' arguments with the operators'
# defaults (docs/quantizers.md); the value checks and precisions are C++'s too.
_QUANTIZERS = _catalogue()


def _precision(name, options, role):
    """The precision of a quantizer, after the C++ catalogue's value checks (ValueError)."""
    if name == "none":
        return 32
    keys = list(options)
    values = [_format_value(options[k]) for k in keys]
    return int(torch.ops.lowbit._quantizer_precision(name, keys, values, role == "kernel"))


_ROLES = ("input", "kernel")


def _check_role(role):
    if role not in _ROLES:
        raise ValueError(f"role must be 'input' or 'kernel', got {role!r}")


class Quantizer(_nn.Module):
    """A quantizer by name with options: an ``nn.Module`` calling one lowbit operator.

    ``Quantizer("dorefa", {"k_bit": 2, "mode": "weights"}, role="kernel")``. The options are the
    operator's arguments with the operator's defaults; as a kernel quantizer (``role="kernel"``),
    ``magnitude_aware_sign`` and ``binary_channel_wise_mean_scaling`` default to ``axis=0``
    (PyTorch's output channel). ``"none"`` is the identity (precision 32).

    Attributes: ``name``; ``options`` (every option, defaults filled in); ``precision`` (bits);
    ``role``; ``spec`` (the string form, which :func:`make_quantizer` reads back). ``ttq_weight``
    holds the trainable 0-dim parameters ``positive`` and ``negative``, initialised from the options
    of the same names.
    """

    def __init__(self, name, options=None, role="input"):
        super().__init__()
        _check_role(role)
        if not isinstance(name, str):
            raise TypeError(f"a quantizer name must be a string, got {type(name).__name__}")
        if name not in _QUANTIZERS:
            raise ValueError(f"unknown quantizer {name!r}; known: "
                             + ", ".join(sorted(_QUANTIZERS)))
        kind = _QUANTIZERS[name]
        given = dict(options or {})
        for key in given:
            if key not in kind.options:
                known = ", ".join(kind.options) or "none"
                raise ValueError(f"unknown option {key!r} of quantizer {name!r} (options: {known})")
        resolved = {}
        for key, (k, default) in kind.options.items():
            if key in given:
                resolved[key] = _check(name, key, k, given[key])
            elif key == "axis" and kind.kernel_axis and role == "kernel":
                resolved[key] = 0
            else:
                resolved[key] = default
        self.name = name
        self.role = role
        self.options = resolved
        self.precision = _precision(name, resolved, role)
        for key in kind.parameters:
            self.register_parameter(key, _nn.Parameter(torch.tensor(float(resolved[key]))))

    @property
    def spec(self):
        """The string form, ``name(key=value, ...)`` with every option."""
        return _format_spec(self.name, self.options)

    def forward(self, x):
        """The quantized tensor (differentiable through the operator's gradient)."""
        return _QUANTIZERS[self.name].forward(self, x, self.options)

    def extra_repr(self):
        return self.spec


def make_quantizer(spec, role="input"):
    """The quantizer for ``spec``, for the given role (``"input"`` or ``"kernel"``).

    ``spec`` is a name (``"ste_sign"``), a name with options (``"dorefa(k_bit=2, mode=weights)"``),
    a dict (``{"name": "dorefa", "k_bit": 2, "mode": "weights"}``), ``None``/``"none"`` (the
    identity quantizer, precision 32), or an object: anything callable with a ``precision``
    attribute, a :class:`Quantizer` included, is returned as is. Unknown names or options raise
    ValueError, values of the wrong type TypeError; the message names them.
    """
    _check_role(role)
    if spec is None:
        return Quantizer("none", role=role)
    if isinstance(spec, str):
        name, options = parse_spec(spec)
        return Quantizer(name, options, role=role)
    if isinstance(spec, dict):
        if "name" not in spec:
            raise ValueError(f"a quantizer dict needs a 'name': {spec!r}")
        options = {k: v for k, v in spec.items() if k != "name"}
        return Quantizer(spec["name"], options, role=role)
    if callable(spec):
        if not hasattr(spec, "precision"):
            raise TypeError(f"a quantizer object must have a 'precision' attribute (bits): "
                            f"{spec!r}")
        return spec
    raise TypeError(f"a quantizer is a name, a dict, None or a callable with a precision; "
                    f"got {type(spec).__name__}")


# ---- kernel constraint ---------------------------------------------------------------------------

class WeightClip:
    """Larq's weight clip: clamps latent weights to ``[-clip_value, clip_value]`` (default 1.0)."""

    name = "weight_clip"

    def __init__(self, clip_value=1.0):
        clip_value = _check("weight_clip", "clip_value", "float", clip_value)
        if not clip_value > 0:
            raise ValueError(f"option 'clip_value' of 'weight_clip' must be > 0, "
                             f"got {clip_value!r}")
        self.clip_value = clip_value

    @property
    def spec(self):
        """The string form, ``weight_clip(clip_value=...)``."""
        return _format_spec(self.name, {"clip_value": self.clip_value})

    def __call__(self, w):
        return w.clamp(-self.clip_value, self.clip_value)

    def __repr__(self):
        return self.spec


def make_constraint(spec):
    """A kernel constraint: ``None``/``"none"`` (none), ``"weight_clip"``,
    ``"weight_clip(clip_value=0.5)"``, ``{"name": "weight_clip", "clip_value": 0.5}``, or a
    callable ``constraint(weight) -> weight`` (returned as is, as Keras constraints are)."""
    if spec is None:
        return None
    if isinstance(spec, str):
        name, options = parse_spec(spec)
    elif isinstance(spec, dict):
        if "name" not in spec:
            raise ValueError(f"a constraint dict needs a 'name': {spec!r}")
        name, options = spec["name"], {k: v for k, v in spec.items() if k != "name"}
    elif callable(spec):
        return spec
    else:
        raise TypeError(f"a kernel constraint is a name, a dict, None or a callable; "
                        f"got {type(spec).__name__}")
    if name == "none" and not options:
        return None
    if name != "weight_clip":
        raise ValueError(f"unknown kernel constraint {name!r}; known: weight_clip, none")
    for key in options:
        if key != "clip_value":
            raise ValueError(f"unknown option {key!r} of kernel constraint 'weight_clip' "
                             "(options: clip_value)")
    return WeightClip(**options)


# ---- layers --------------------------------------------------------------------------------------

def _spec_of(obj):
    return getattr(obj, "spec", None) or repr(obj)


class QuantLayer:
    """What the quantized layers share: input and kernel quantizers and the kernel constraint.

    ``input_quantizer`` / ``kernel_quantizer`` are ``None`` without quantization (as in Larq),
    otherwise the quantizer objects; ``kernel_constraint`` is ``None`` or a constraint.
    """

    def _setup_quantization(self, input_quantizer, kernel_quantizer, kernel_constraint, factory):
        self.input_quantizer = self._make(input_quantizer, "input", factory)
        self.kernel_quantizer = self._make(kernel_quantizer, "kernel", factory)
        self.kernel_constraint = make_constraint(kernel_constraint)

    @staticmethod
    def _make(spec, role, factory):
        q = make_quantizer(spec, role)
        if isinstance(q, Quantizer) and q is not spec:
            if q.name == "none":
                return None
            if factory:
                q.to(**factory)
        return q

    @property
    def input_precision(self):
        """Bits of the quantized input (32 without an input quantizer)."""
        return 32 if self.input_quantizer is None else int(self.input_quantizer.precision)

    @property
    def kernel_precision(self):
        """Bits of the quantized kernel (32 without a kernel quantizer)."""
        return 32 if self.kernel_quantizer is None else int(self.kernel_quantizer.precision)

    def quantize_input(self, x):
        """The input as the forward uses it (before any padding)."""
        return x if self.input_quantizer is None else self.input_quantizer(x)

    def quantized_kernel(self):
        """The kernel as the forward uses it: ``kernel_quantizer(weight)``."""
        w = self.weight
        return w if self.kernel_quantizer is None else self.kernel_quantizer(w)

    def apply_kernel_constraint(self):
        """Clamps the latent kernel by the constraint (no-op without one); call after a step."""
        c = self.kernel_constraint
        if c is None:
            return
        with torch.no_grad():
            if isinstance(c, WeightClip):
                self.weight.clamp_(-c.clip_value, c.clip_value)
            else:
                self.weight.copy_(c(self.weight))

    def _quant_repr(self):
        parts = [f"input_precision={self.input_precision}",
                 f"kernel_precision={self.kernel_precision}"]
        for role in ("input_quantizer", "kernel_quantizer"):
            q = getattr(self, role)
            if q is not None and not isinstance(q, _nn.Module):  # modules print as children
                parts.append(f"{role}={_spec_of(q)}")
        if self.kernel_constraint is not None:
            parts.append(f"kernel_constraint={_spec_of(self.kernel_constraint)}")
        return ", ".join(parts)


class QuantLinear(_nn.Linear, QuantLayer):
    """``linear(input_quantizer(x), kernel_quantizer(weight), bias)``; the bias is never quantized.

    A ``torch.nn.Linear`` (same parameters, initialisation and state_dict keys; ``ttq_weight`` adds
    ``kernel_quantizer.positive`` / ``.negative``). Quantizers are given as in
    :func:`make_quantizer`; ``kernel_constraint`` as in :func:`make_constraint`, applied by
    :meth:`apply_kernel_constraint` or :func:`apply_constraints` after each optimizer step.
    """

    def __init__(self, in_features, out_features, bias=True, input_quantizer=None,
                 kernel_quantizer=None, kernel_constraint=None, device=None, dtype=None):
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        factory = {k: v for k, v in (("device", device), ("dtype", dtype)) if v is not None}
        self._setup_quantization(input_quantizer, kernel_quantizer, kernel_constraint, factory)

    def forward(self, x):
        """``linear(input_quantizer(x), kernel_quantizer(weight), bias)``."""
        return F.linear(self.quantize_input(x), self.quantized_kernel(), self.bias)

    def extra_repr(self):
        return super().extra_repr() + ", " + self._quant_repr()


def _check_pad_values(v):
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(f"pad_values must be a number, got {v!r} ({type(v).__name__})")
    return float(v)


class _QuantConv(QuantLayer):
    """What QuantConv1d and QuantConv2d share: pad the quantized input with ``pad_values``, then
    convolve with the quantized kernel (``padding`` as PyTorch takes it: "same" puts the odd extra
    row/column at the bottom/right)."""

    def _init_conv(self, base, in_channels, out_channels, kernel_size, stride, padding, dilation,
                   groups, bias, input_quantizer, kernel_quantizer, kernel_constraint, pad_values,
                   padding_mode, device, dtype):
        if padding_mode != "zeros":
            raise ValueError(f"{type(self).__name__}: padding_mode must be 'zeros' (pad with "
                             f"pad_values), got {padding_mode!r}")
        pad_values = _check_pad_values(pad_values)
        base.__init__(self, in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                      dilation=dilation, groups=groups, bias=bias, padding_mode="zeros",
                      device=device, dtype=dtype)
        self.pad_values = pad_values
        factory = {k: v for k, v in (("device", device), ("dtype", dtype)) if v is not None}
        self._setup_quantization(input_quantizer, kernel_quantizer, kernel_constraint, factory)

    def explicit_padding(self):
        """The padding as ``F.pad`` takes it: ``(left, right)`` in 1-d, ``(left, right, top,
        bottom)`` in 2-d."""
        pads = []
        for d, k, p in zip(reversed(self.dilation), reversed(self.kernel_size),
                           reversed(self.padding if not isinstance(self.padding, str)
                                    else self.kernel_size)):
            if self.padding == "valid":
                pads += [0, 0]
            elif self.padding == "same":
                total = d * (k - 1)
                pads += [total // 2, total - total // 2]
            else:
                pads += [p, p]
        return tuple(pads)

    def forward(self, x):
        """``conv(pad(input_quantizer(x), pad_values), kernel_quantizer(weight), bias, ...)``."""
        xq = self.quantize_input(x)
        pads = self.explicit_padding()
        if any(pads):
            xq = F.pad(xq, pads, mode="constant", value=float(self.pad_values))
        conv = F.conv1d if len(self.kernel_size) == 1 else F.conv2d
        return conv(xq, self.quantized_kernel(), self.bias, self.stride, 0, self.dilation,
                    self.groups)

    def extra_repr(self):
        s = super().extra_repr() + ", " + self._quant_repr()
        if self.pad_values != 0.0:
            s += f", pad_values={self.pad_values}"
        return s


class QuantConv2d(_QuantConv, _nn.Conv2d):
    """``conv2d(pad(input_quantizer(x), pad_values), kernel_quantizer(weight), bias, stride, 0,
    dilation, groups)``; the bias is never quantized.

    A ``torch.nn.Conv2d`` (same parameters, initialisation and state_dict keys). The input is padded
    with the constant ``pad_values`` after it is quantized, so ``pad_values=1.0`` gives Larq's
    "same-one" padding. ``padding`` is an int, a pair, ``"valid"`` or ``"same"`` (as in PyTorch:
    stride 1, the odd extra row/column at the bottom/right). ``groups`` gives grouped and depthwise
    convolutions. Only ``padding_mode="zeros"`` is accepted (the pad value is ``pad_values``).
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, input_quantizer=None, kernel_quantizer=None,
                 kernel_constraint=None, pad_values=0.0, padding_mode="zeros", device=None,
                 dtype=None):
        self._init_conv(_nn.Conv2d, in_channels, out_channels, kernel_size, stride, padding,
                        dilation, groups, bias, input_quantizer, kernel_quantizer,
                        kernel_constraint, pad_values, padding_mode, device, dtype)


class QuantConv1d(_QuantConv, _nn.Conv1d):
    """:class:`QuantConv2d` over one spatial dimension: a ``torch.nn.Conv1d`` (same parameters
    and state_dict keys) computing ``conv1d(pad(input_quantizer(x), pad_values),
    kernel_quantizer(weight), bias, stride, 0, dilation, groups)``."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, input_quantizer=None, kernel_quantizer=None,
                 kernel_constraint=None, pad_values=0.0, padding_mode="zeros", device=None,
                 dtype=None):
        self._init_conv(_nn.Conv1d, in_channels, out_channels, kernel_size, stride, padding,
                        dilation, groups, bias, input_quantizer, kernel_quantizer,
                        kernel_constraint, pad_values, padding_mode, device, dtype)


def quant_layers(module):
    """Every quantized layer in ``module`` (itself included) as ``(qualified name, layer)``."""
    return [(n, m) for n, m in module.named_modules() if isinstance(m, QuantLayer)]


def apply_constraints(module):
    """Applies the kernel constraint of every quantized layer in ``module``.

    Call after each ``optimizer.step()``, as Keras applies constraints after each update.
    """
    for _, layer in quant_layers(module):
        layer.apply_kernel_constraint()


# Defined in their own modules, which import the layers above (so imported last).
from .optim import Bop, FlipRatio, split_binary_parameters  # noqa: E402
from .summary import ModelSummary, summary  # noqa: E402
