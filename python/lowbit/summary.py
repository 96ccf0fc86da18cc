"""Larq-style model summary: parameters, memory and MACs by bit width (docs/layers.md); also
reachable as lowbit.nn.summary and lowbit.nn.ModelSummary."""
import numbers

import torch
from torch import nn as _nn

from .nn import QuantConv2d, QuantLayer, Quantizer

__all__ = ["summary", "ModelSummary"]


# ---- model summary -------------------------------------------------------------------------------

def _summary_shape_text(shape):
    if not shape:
        return "?"
    return "(" + ", ".join(["-1"] + [str(d) for d in shape[1:]]) + ")"  # -1: the batch, as Larq


def _summary_output_shape(output):
    """The shape of a module's output: a tensor's, or the first tensor's in a tuple/list."""
    if isinstance(output, torch.Tensor):
        return tuple(int(d) for d in output.shape)
    if isinstance(output, (tuple, list)):
        for o in output:
            if isinstance(o, torch.Tensor):
                return tuple(int(d) for d in o.shape)
    return None


def _summary_macs(module, shape):
    """MACs per sample of a linear or 2-d convolution layer, from its output shape (0 otherwise)."""
    if not shape:
        return 0
    outputs = 1
    for d in shape[1:]:
        outputs *= d
    if isinstance(module, _nn.Linear):
        return outputs * module.in_features
    if isinstance(module, _nn.Conv2d):
        if isinstance(module, QuantConv2d) and len(shape) != 4:
            return 0
        kh, kw = module.kernel_size
        return outputs * (module.in_channels // module.groups) * kh * kw
    if getattr(module, "summary_as_quant_layer", False):  # lowbit.qat.FoldedLayer
        return outputs * (module.weight.numel() // module.weight.shape[0])
    return 0


def _summary_input_shape(input_shape):
    if isinstance(input_shape, (str, bytes)) or not hasattr(input_shape, "__iter__"):
        raise TypeError(f"summary: input_shape must be a sequence of ints starting with the batch "
                        f"size, got {input_shape!r}")
    shape = []
    for d in input_shape:
        if isinstance(d, bool) or not isinstance(d, numbers.Integral):
            raise TypeError(f"summary: input_shape must be a sequence of ints, got {input_shape!r}")
        shape.append(int(d))
    if not shape or shape[0] < 1:
        raise ValueError(f"summary: input_shape must start with a batch size >= 1, "
                         f"got {input_shape!r}")
    if any(d < 0 for d in shape):
        raise ValueError(f"summary: input_shape has a negative size: {input_shape!r}")
    return tuple(shape)


class ModelSummary:
    """Larq's model summary of a model (made by :func:`summary`); the same numbers as C++'s
    ``lowbit::nn::summary``.

    ``rows``: one :class:`ModelSummary.Row` per layer. Totals: ``total_params``,
    ``trainable_params`` (``total_params - non_trainable_params``), ``non_trainable_params``
    (floating-point buffers such as batch-norm running statistics), ``model_size_kib`` (every
    parameter at its bit width), ``model_size_8bit_kib`` (each at ``min(bits, 8)``),
    ``float32_kib`` (every parameter at 32 bits), ``compression_ratio``
    (``float32_kib / model_size_kib``), ``total_macs`` (per sample), ``binarized_mac_ratio`` and
    ``ternarized_mac_ratio`` (the fractions of MACs at 1 and 2 bits). ``str(summary)`` is the table
    (as C++'s ``to_string``), ``to_dict()`` the numbers.
    """

    class Row:
        """One layer: ``name`` (qualified), ``type`` (class name), ``input_precision`` (bits; None
        for a layer that is not quantized), ``output_shape`` (tuple with the batch dimension; None
        when unknown), ``params_by_bits`` ({bits: count}), ``memory_kib``, ``macs_by_bits``
        ({bits: MACs per sample})."""

        def __init__(self, name, type, input_precision=None, output_shape=None,
                     params_by_bits=None, memory_kib=0.0, macs_by_bits=None):
            self.name = name
            self.type = type
            self.input_precision = input_precision
            self.output_shape = output_shape
            self.params_by_bits = dict(params_by_bits or {})
            self.memory_kib = memory_kib
            self.macs_by_bits = dict(macs_by_bits or {})

        def to_dict(self):
            return {"name": self.name, "type": self.type, "input_precision": self.input_precision,
                    "output_shape": None if self.output_shape is None else list(self.output_shape),
                    "params_by_bits": dict(self.params_by_bits), "memory_kib": self.memory_kib,
                    "macs_by_bits": dict(self.macs_by_bits)}

        def __repr__(self):
            return (f"ModelSummary.Row(name={self.name!r}, type={self.type!r}, "
                    f"input_precision={self.input_precision!r}, "
                    f"output_shape={self.output_shape!r}, params_by_bits={self.params_by_bits!r}, "
                    f"memory_kib={self.memory_kib!r}, macs_by_bits={self.macs_by_bits!r})")

    _TOTALS = ("total_params", "trainable_params", "non_trainable_params", "model_size_kib",
               "model_size_8bit_kib", "float32_kib", "compression_ratio", "total_macs",
               "binarized_mac_ratio", "ternarized_mac_ratio")

    def __init__(self, rows=()):
        self.rows = list(rows)
        self.total_params = 0
        self.trainable_params = 0
        self.non_trainable_params = 0
        self.model_size_kib = 0.0
        self.model_size_8bit_kib = 0.0
        self.float32_kib = 0.0
        self.compression_ratio = 0.0
        self.total_macs = 0
        self.binarized_mac_ratio = 0.0
        self.ternarized_mac_ratio = 0.0

    def to_dict(self):
        """The totals (the keys of C++'s ``to_json``) and ``"rows"`` (a list of row dicts)."""
        d = {k: getattr(self, k) for k in self._TOTALS}
        d["rows"] = [r.to_dict() for r in self.rows]
        return d

    def __str__(self):
        param_bits = sorted({b for r in self.rows for b in r.params_by_bits})
        mac_bits = sorted({b for r in self.rows for b in r.macs_by_bits})
        header = (["Layer", "Input prec. (bit)", "Outputs"]
                  + [f"# {b}-bit" for b in param_bits] + ["Memory (kB)"]
                  + [f"{b}-bit MACs" for b in mac_bits])
        table = [header]
        for r in self.rows:
            table.append(
                [f"{r.name} ({r.type})",
                 "-" if r.input_precision is None else str(r.input_precision),
                 _summary_shape_text(r.output_shape)]
                + [str(r.params_by_bits.get(b, 0)) for b in param_bits]
                + [f"{r.memory_kib:.2f}"]
                + [str(r.macs_by_bits.get(b, 0)) for b in mac_bits])
        width = [max(len(line[c]) for line in table) for c in range(len(header))]
        lines = []
        for i, line in enumerate(table):
            lines.append("  ".join(cell.ljust(width[c]) if c == 0 else cell.rjust(width[c])
                                   for c, cell in enumerate(line)))
            if i == 0:
                lines.append("-" * (sum(w + 2 for w in width) - 2))
        lines += [
            "",
            f"Total params                   {self.total_params}",
            f"Trainable params               {self.trainable_params}",
            f"Non-trainable params           {self.non_trainable_params}",
            f"Model size                     {self.model_size_kib:.2f} KiB",
            f"Model size (8-bit FP weights)  {self.model_size_8bit_kib:.2f} KiB",
            f"Float-32 equivalent            {self.float32_kib:.2f} KiB",
            f"Compression ratio of memory    {self.compression_ratio:.2f}",
            f"Number of MACs                 {self.total_macs}",
            f"Ratio of MACs that are binarized   {self.binarized_mac_ratio:.4f}",
            f"Ratio of MACs that are ternarized  {self.ternarized_mac_ratio:.4f}",
        ]
        return "\n".join(lines) + "\n"

    def __repr__(self):
        return (f"ModelSummary({len(self.rows)} rows, total_params={self.total_params}, "
                f"total_macs={self.total_macs})")


def summary(model, input_shape, print_fn=print):
    """Larq's model summary of ``model``: per layer the input precision, output shape, parameters
    per bit width, memory and MACs per bit width; then totals and compression. Returns a
    :class:`ModelSummary` and, unless ``print_fn`` is None, calls ``print_fn`` once with its table
    (``str(summary)`` without the final newline).

    The shapes come from one forward of a zero batch of ``input_shape`` (the batch size first,
    >= 1), in eval mode and without gradients, through forward hooks, so any module works; every
    module's training flag is restored afterwards. The input takes the device and dtype of the
    model's first floating-point parameter or buffer (CPU float otherwise).

    Rows, in registration order (``named_modules``, the model itself excluded):

    - every quantized layer (:class:`QuantLinear`, :class:`QuantConv2d`): the kernel at
      ``kernel_precision`` bits, every other parameter (the bias, the parameters of its
      quantizers) at 32 bits; MACs per sample (output values per sample times ``in_features``, or
      ``in_channels / groups * kh * kw``) at ``max(input_precision, kernel_precision)`` bits;
    - every other module that directly owns parameters or floating-point buffers: all at 32 bits;
      floating-point buffers (running statistics) are non-trainable parameters and integer buffers
      (``num_batches_tracked``) are not counted; a plain ``nn.Linear`` / ``nn.Conv2d`` has its MACs
      at 32 bits; ``input_precision`` is None (printed ``-``).

    - ``lowbit.qat``'s folded layers count as quantized layers (weight at their weight bits, the
      batch-norm parameters at 32 bits, moving statistics not counted, as in C++).

    :class:`Quantizer` modules and ``lowbit.qat``'s activation quantizers are never rows themselves.
    """
    shape = _summary_input_shape(input_shape)
    if not isinstance(model, _nn.Module):
        raise TypeError(f"summary: model must be a torch.nn.Module, got {type(model).__name__}")

    like = next((t for t in list(model.parameters()) + list(model.buffers())
                 if t.is_floating_point()), None)
    factory = {"device": like.device, "dtype": like.dtype} if like is not None else {}

    shapes = {}

    def hook(module, inputs, output):
        shapes[module] = _summary_output_shape(output)

    handles = [m.register_forward_hook(hook) for m in model.modules() if m is not model]
    flags = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(shape, **factory))
    finally:
        for h in handles:
            h.remove()
        for m, training in flags:
            m.training = training

    s = ModelSummary()
    covered = set()  # the submodules of quantized layers (their quantizers), counted with the layer
    for name, m in model.named_modules():
        if m is model or id(m) in covered:
            continue
        out_shape = shapes.get(m)
        params, macs, non_trainable = {}, {}, 0
        if isinstance(m, QuantLayer) or getattr(m, "summary_as_quant_layer", False):
            covered.update(id(sub) for sub in m.modules() if sub is not m)
            input_precision = int(m.input_precision)
            kernel_bits = int(m.kernel_precision)
            params[kernel_bits] = m.weight.numel()
            for p in m.parameters():
                if p is not m.weight:
                    params[32] = params.get(32, 0) + p.numel()
            n = _summary_macs(m, out_shape)
            if n > 0:
                macs[max(input_precision, kernel_bits)] = n
        else:
            if isinstance(m, Quantizer) or getattr(m, "summary_skip", False):
                continue
            own_params = list(m.parameters(recurse=False))
            float_buffers = [b for b in m.buffers(recurse=False) if b.is_floating_point()]
            if not own_params and not float_buffers:
                continue
            input_precision = None
            non_trainable = sum(b.numel() for b in float_buffers)
            params[32] = sum(p.numel() for p in own_params) + non_trainable
            n = _summary_macs(m, out_shape)
            if n > 0:
                macs[32] = n
        params = dict(sorted(params.items()))
        row = ModelSummary.Row(name, type(m).__name__, input_precision, out_shape, params,
                               sum(b * n for b, n in params.items()) / 8.0 / 1024.0, macs)
        s.total_params += sum(params.values())
        s.non_trainable_params += non_trainable
        for b, n in params.items():
            s.model_size_kib += b * n / 8.0 / 1024.0
            s.model_size_8bit_kib += min(b, 8) * n / 8.0 / 1024.0
        for b, n in macs.items():
            s.total_macs += n
            if b == 1:
                s.binarized_mac_ratio += float(n)
            if b == 2:
                s.ternarized_mac_ratio += float(n)
        s.rows.append(row)
    s.trainable_params = s.total_params - s.non_trainable_params
    s.float32_kib = s.total_params * 4.0 / 1024.0
    s.compression_ratio = s.float32_kib / s.model_size_kib if s.model_size_kib > 0 else 0.0
    if s.total_macs > 0:
        s.binarized_mac_ratio /= s.total_macs
        s.ternarized_mac_ratio /= s.total_macs
    if print_fn is not None:
        print_fn(str(s).rstrip("\n"))
    return s
