"""The description of a traced PyTorch model that the C++ exporter reads (lowbit::exporter::
graph_to_onnx): JSON nodes in execution order, each layer with its options and the indices of its
tensors in a list passed alongside. What has no translation is an error naming the node."""
import json
import operator

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn as _nn
from torch.fx.passes.shape_prop import ShapeProp

from . import nn as _lnn
from . import qat as _qat
from .convert import CommonScale

_ADDS = (operator.add, operator.iadd, torch.add)


class _Describer:
    def __init__(self, gm):
        self.gm = gm
        self.nodes, self.tensors, self.alias, self.skip = [], [], {}, set()

    def tensor(self, t):
        self.tensors.append(t.detach().to(torch.float32).cpu().contiguous())
        return len(self.tensors) - 1

    def ref(self, node, arg):
        if not isinstance(arg, torch.fx.Node):
            self.fail(node, f"an input that is not a tensor ({arg!r})")
        return self.alias.get(arg.name, arg.name)

    @staticmethod
    def fail(node, what):
        raise ValueError(f"cannot export node {node.name!r} ({node.op} {_target_name(node)}): "
                         f"{what}")

    def add(self, node, op, inputs, **fields):
        self.nodes.append({"op": op, "name": node.name,
                           "inputs": [self.ref(node, a) for a in inputs], **fields})

    # ---- layers

    def quantizer_spec(self, node, q):
        if q is None:
            return "none"
        if not isinstance(q, _lnn.Quantizer):
            self.fail(node, f"a quantizer object of its own ({q!r}) has no ONNX translation")
        return q.spec

    def layer_tensors(self, m, unsqueeze=False):
        """A layer's weight (a 1-d kernel as 2-d, height 1), bias and kernel quantizer parameters
        (ttq_weight's scales)."""
        tensors = {"weight": self.tensor(m.weight.unsqueeze(2) if unsqueeze else m.weight)}
        if m.bias is not None:
            tensors["bias"] = self.tensor(m.bias)
        kq = getattr(m, "kernel_quantizer", None)
        for pname, p in (kq.named_parameters() if isinstance(kq, _nn.Module) else ()):
            tensors["kernel_quantizer." + pname] = self.tensor(p)
        return tensors

    def folded_batch_norm(self, node, module, fields, tensors):
        """A float layer whose output only its batch norm reads: the batch norm is folded in."""
        users = list(node.users)
        if getattr(module, "kernel_quantizer", None) is not None or len(users) != 1:
            return
        bn = _module(self.gm, users[0])
        want = _nn.BatchNorm2d if isinstance(module, _nn.Conv2d) else _nn.BatchNorm1d
        if type(bn) is not want or not bn.track_running_stats:
            return
        fields["bn.eps"] = bn.eps
        fields["bn.dims"] = 2 if want is _nn.BatchNorm2d else 1
        for key in ("running_mean", "running_var") + (("weight", "bias") if bn.affine else ()):
            tensors["bn." + key] = self.tensor(getattr(bn, key))
        self.alias[users[0].name] = node.name
        self.skip.add(users[0])

    def conv(self, node, m):
        one_d = isinstance(m, _nn.Conv1d)
        if isinstance(m, (_lnn.QuantConv1d, _lnn.QuantConv2d)):
            pads = m.explicit_padding()
            if pads[0::2] != pads[1::2]:
                self.fail(node, f"asymmetric padding {pads} ('same' with an even kernel)")
            padding = list(reversed(pads[0::2]))
        else:
            if m.padding_mode != "zeros":
                self.fail(node, f"padding_mode {m.padding_mode!r}")
            padding = m.padding
            if isinstance(padding, str):
                padding = [d * (k - 1) // 2 for d, k in zip(m.dilation, m.kernel_size)] \
                    if padding == "same" else [0] * len(m.kernel_size)
                if any(d * (k - 1) % 2 for d, k in zip(m.dilation, m.kernel_size)):
                    self.fail(node, "asymmetric 'same' padding (an even kernel)")
        tensors, kq = self.layer_tensors(m, unsqueeze=one_d), getattr(m, "kernel_quantizer", None)
        lead = [1] if one_d else []  # a Conv1d runs as a 2-d convolution over a height of 1
        lead0 = [0] if one_d else []
        fields = {"in_channels": m.in_channels, "out_channels": m.out_channels,
                  "kernel_size": lead + list(m.kernel_size), "stride": lead + list(m.stride),
                  "padding": lead0 + list(padding), "dilation": lead + list(m.dilation),
                  "groups": m.groups,
                  "input_quantizer": self.quantizer_spec(node, getattr(m, "input_quantizer", None)),
                  "kernel_quantizer": self.quantizer_spec(node, kq),
                  "pad_values": float(getattr(m, "pad_values", 0.0))}
        self.folded_batch_norm(node, m, fields, tensors)
        self.conv_node(node, "conv", one_d, tensors=tensors, **fields)

    def conv_node(self, node, op, one_d, **fields):
        """The layer's node; a 1-d one between reshapes to and from a height of 1."""
        if not one_d:
            self.add(node, op, node.args[:1], **fields)
            return
        x, out = _shape(node.args[0]), _shape(node)
        self.nodes.append({"op": "reshape", "name": node.name + ".to_2d",
                           "inputs": [self.ref(node, node.args[0])], "shape": [0, x[1], 1, x[2]]})
        self.nodes.append({"op": op, "name": node.name + ".2d", "inputs": [node.name + ".to_2d"],
                           **fields})
        self.nodes.append({"op": "reshape", "name": node.name, "inputs": [node.name + ".2d"],
                           "shape": [0, out[1], out[2]]})

    def linear(self, node, m):
        if len(_shape(node.args[0])) != 2:
            self.fail(node, "a Linear on an input of rank other than 2 (ONNX's Gemm takes "
                      "[batch, features])")
        tensors, kq = self.layer_tensors(m), getattr(m, "kernel_quantizer", None)
        fields = {"in_features": m.in_features, "out_features": m.out_features,
                  "input_quantizer": self.quantizer_spec(node, getattr(m, "input_quantizer", None)),
                  "kernel_quantizer": self.quantizer_spec(node, kq)}
        self.folded_batch_norm(node, m, fields, tensors)
        self.add(node, "linear", node.args[:1], tensors=tensors, **fields)

    @staticmethod
    def qat_options(o):
        return {"scheme": o.scheme, "weight_bits": o.weight_bits,
                "activation_bits": o.activation_bits, "bias_bits": o.bias_bits,
                "max_exponent": o.max_exponent, "per_channel": o.per_channel}

    def folded(self, node, m):
        one_d = m.conv and m.conv_dims == 1
        tensors = {"weight": self.tensor(m.weight.unsqueeze(2) if one_d else m.weight)}
        for key in ("bias", "gamma", "beta", "running_mean", "running_var"):
            if getattr(m, key, None) is not None:
                tensors[key] = self.tensor(getattr(m, key))
        fields = {"conv": m.conv, "options": self.qat_options(m.options),
                  "eps": float(getattr(m, "eps", 1e-5))}
        if m.conv:
            lead, lead0 = ([1], [0]) if one_d else ([], [])
            fields.update(stride=lead + list(m.stride), padding=lead0 + list(m.padding),
                          dilation=lead + list(m.dilation), groups=m.groups)
        self.conv_node(node, "folded", one_d, tensors=tensors, **fields)

    def activation_quant(self, node, a, inputs, op="activation_quant"):
        self.add(node, op, inputs, options=self.qat_options(a.options),
                 tensors={"min": self.tensor(a.min), "max": self.tensor(a.max)},
                 observed=bool(a.observed))

    def pool(self, node, op, kernel, stride, padding, ceil_mode, dilation=1, count_include_pad=True):
        pair = lambda v: list(v) if isinstance(v, (tuple, list)) else [v, v]  # noqa: E731
        stride = kernel if stride is None or stride == [] else stride
        fields = {"kernel_shape": pair(kernel), "strides": pair(stride), "pads": pair(padding),
                  "ceil_mode": int(bool(ceil_mode))}
        if op == "max_pool":
            fields["dilations"] = pair(dilation)
        else:
            fields["count_include_pad"] = int(bool(count_include_pad))
        self.add(node, op, node.args[:1], **fields)

    # ---- nodes

    def in_place(self, node):
        """An in-place op whose input other nodes read too would change what they see."""
        x = node.args[0]
        if isinstance(x, torch.fx.Node) and len(x.users) > 1:
            self.fail(node, "an in-place operation on a value that other nodes also read")

    def module(self, node, m):
        if isinstance(m, (_nn.Conv1d, _nn.Conv2d)):
            self.conv(node, m)
        elif isinstance(m, _nn.Linear):
            self.linear(node, m)
        elif isinstance(m, _qat.FoldedLayer):
            self.folded(node, m)
        elif isinstance(m, _qat.ActivationQuant):
            self.activation_quant(node, m, node.args[:1])
        elif isinstance(m, CommonScale):
            self.activation_quant(node, m.quant, node.args, op="common_scale")
        elif isinstance(m, (_nn.BatchNorm1d, _nn.BatchNorm2d)):
            if not m.track_running_stats:
                self.fail(node, "a batch norm without running statistics")
            tensors = {k: self.tensor(getattr(m, k)) for k in ("running_mean", "running_var")}
            if m.affine:
                tensors.update(weight=self.tensor(m.weight), bias=self.tensor(m.bias))
            self.add(node, "batch_norm", node.args[:1], tensors=tensors, eps=m.eps,
                     dims=2 if isinstance(m, _nn.BatchNorm2d) else 1,
                     rank=len(_shape(node.args[0])))
        elif type(m) is _nn.ReLU:
            if m.inplace:
                self.in_place(node)
            self.add(node, "relu", node.args[:1])
        elif isinstance(m, _nn.Hardtanh):  # ReLU6 too
            if m.inplace:
                self.in_place(node)
            self.add(node, "clip", node.args[:1], min=m.min_val, max=m.max_val)
        elif isinstance(m, (_nn.Identity, _nn.Dropout)):
            self.alias[node.name] = self.ref(node, node.args[0])
        elif isinstance(m, _nn.Flatten):
            self.flatten(node, m.start_dim, m.end_dim)
        elif isinstance(m, _nn.MaxPool2d):
            self.pool(node, "max_pool", m.kernel_size, m.stride, m.padding, m.ceil_mode,
                      m.dilation)
        elif isinstance(m, _nn.AvgPool2d):
            if m.divisor_override is not None:
                self.fail(node, "AvgPool2d with divisor_override")
            self.pool(node, "avg_pool", m.kernel_size, m.stride, m.padding, m.ceil_mode,
                      count_include_pad=m.count_include_pad)
        elif isinstance(m, _nn.AdaptiveAvgPool2d) and _is_one(m.output_size):
            self.add(node, "global_avg_pool", node.args[:1])
        else:
            self.fail(node, f"the module {type(m).__name__} has no ONNX translation")

    def flatten(self, node, start, end=-1):
        shape = _shape(node.args[0])
        if end not in (-1, len(shape) - 1):
            self.fail(node, "a flatten that keeps trailing dimensions")
        if start % len(shape) == 1:
            self.add(node, "flatten", node.args[:1], axis=1)
        elif start % len(shape) == 0:
            self.fail(node, "a flatten of the batch dimension")
        else:  # ONNX's Flatten always gives 2-d: keep the leading dimensions by a Reshape
            self.add(node, "reshape", node.args[:1], shape=[0] + list(_shape(node)[1:]))

    def function(self, node):
        t = node.target
        kw = _bind(node, _PARAMETERS.get(t, ()))
        if t in (F.relu, torch.relu):
            if node.kwargs.get("inplace") or (len(node.args) > 1 and node.args[1]):
                self.in_place(node)
            self.add(node, "relu", node.args[:1])
        elif t in (F.relu6, F.hardtanh):
            lo, hi = (0.0, 6.0) if t is F.relu6 else (kw.get("min_val", -1.0),
                                                       kw.get("max_val", 1.0))
            self.add(node, "clip", node.args[:1], min=lo, max=hi)
        elif t in _ADDS:
            if len(node.args) != 2 or not all(isinstance(a, torch.fx.Node) for a in node.args):
                self.fail(node, "an addition of something other than two tensors")
            if node.kwargs.get("alpha", 1) != 1:
                self.fail(node, "torch.add with alpha other than 1")
            if t is operator.iadd:
                self.in_place(node)
            self.add(node, "add", node.args)
        elif t is torch.cat:
            tensors = kw["tensors"]
            self.add(node, "concat", tensors, axis=kw.get("dim", 0) % len(_shape(tensors[0])))
        elif t is torch.flatten:
            self.flatten(node, kw.get("start_dim", 0), kw.get("end_dim", -1))
        elif t is F.max_pool2d:
            if kw.get("return_indices"):
                self.fail(node, "max pooling that returns indices")
            self.pool(node, "max_pool", kw["kernel_size"], kw.get("stride"), kw.get("padding", 0),
                      kw.get("ceil_mode", False), kw.get("dilation", 1))
        elif t is F.avg_pool2d:
            if kw.get("divisor_override") is not None:
                self.fail(node, "avg_pool2d with divisor_override")
            self.pool(node, "avg_pool", kw["kernel_size"], kw.get("stride"), kw.get("padding", 0),
                      kw.get("ceil_mode", False), count_include_pad=kw.get("count_include_pad",
                                                                           True))
        elif t is F.adaptive_avg_pool2d and _is_one(kw.get("output_size")):
            self.add(node, "global_avg_pool", node.args[:1])
        elif t is F.dropout:
            kw = _bind(node, ("input", "p", "training", "inplace"))
            if kw.get("training", True):
                self.fail(node, "F.dropout traced with training=True (F.dropout(x, p, "
                          "self.training) in a model traced in train mode): use nn.Dropout")
            self.alias[node.name] = self.ref(node, node.args[0])
        elif t is operator.getitem and isinstance(_module(self.gm, node.args[0]), CommonScale):
            self.alias[node.name] = f"{self.ref(node, node.args[0])}.{node.args[1]}"
        else:
            self.fail(node, "this function has no ONNX translation")

    def method(self, node):
        t = node.target
        if t in ("relu", "relu_"):
            if t == "relu_":
                self.in_place(node)
            self.add(node, "relu", node.args[:1])
        elif t in ("contiguous",):
            self.alias[node.name] = self.ref(node, node.args[0])
        elif t == "size":
            self.skip.add(node)  # read by a view/reshape, whose shape comes from the trace
        elif t in ("view", "reshape", "flatten"):
            out, x = _shape(node), _shape(node.args[0])
            if len(out) == 2 and out[0] == x[0]:
                self.add(node, "flatten", node.args[:1], axis=1)
            elif out[0] == x[0]:
                self.add(node, "reshape", node.args[:1], shape=[0] + list(out[1:]))
            else:
                self.fail(node, "a reshape that changes the batch dimension")
        elif t == "mean" and _is_spatial_mean(node):
            self.add(node, "global_avg_pool", node.args[:1])
            keep = node.kwargs.get("keepdim", node.args[2] if len(node.args) > 2 else False)
            if not keep:
                name = node.name + ".flatten"
                self.nodes.append({"op": "flatten", "name": name, "inputs": [node.name],
                                   "axis": 1})
                self.alias[node.name] = name
        else:
            self.fail(node, "this method has no ONNX translation")


# The parameter names of the functions whose arguments are read (F.max_pool2d is a
# boolean_dispatch wrapper that torch.fx cannot normalise).
_PARAMETERS = {
    F.max_pool2d: ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode",
                   "return_indices"),
    F.avg_pool2d: ("input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
                   "divisor_override"),
    F.adaptive_avg_pool2d: ("input", "output_size"),
    torch.flatten: ("input", "start_dim", "end_dim"),
    torch.cat: ("tensors", "dim"),
    F.hardtanh: ("input", "min_val", "max_val", "inplace"),
}


def _bind(node, names):
    kw = dict(zip(names, node.args))
    kw.update(node.kwargs)
    return kw


class _Tracer(torch.fx.Tracer):
    """Keeps lowbit's layers and observers as modules (their insides are the exporter's)."""

    def is_leaf_module(self, m, qualname):
        return isinstance(m, (_lnn.QuantLayer, _qat.FoldedLayer, _qat.ActivationQuant,
                              CommonScale)) or super().is_leaf_module(m, qualname)


def _module(gm, node):
    return gm.get_submodule(node.target) if getattr(node, "op", None) == "call_module" else None


def _target_name(node):
    t = node.target
    return t if isinstance(t, str) else getattr(t, "__name__", repr(t))


def _shape(node):
    meta = node.meta.get("tensor_meta") if isinstance(node, torch.fx.Node) else None
    if meta is None or not hasattr(meta, "shape"):
        raise ValueError(f"cannot export node {getattr(node, 'name', node)!r}: its shape is unknown")
    return tuple(int(d) for d in meta.shape)


def _is_one(size):
    return size == 1 or (isinstance(size, (tuple, list)) and all(s == 1 for s in size))


def _is_spatial_mean(node):
    dims = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
    if not isinstance(dims, (tuple, list)):
        return False
    rank = len(_shape(node.args[0]))
    return rank == 4 and sorted(d % rank for d in dims) == [2, 3]


def describe(model, example_input):
    """(JSON text, [tensors]) of ``model`` traced by torch.fx and run on ``example_input`` in
    eval mode for the shapes."""
    inputs = example_input if isinstance(example_input, tuple) else (example_input,)
    if not all(isinstance(x, torch.Tensor) for x in inputs):
        raise TypeError("example_input must be a tensor or a tuple of tensors")
    if isinstance(model, torch.fx.GraphModule):
        gm = model
    else:
        try:
            gm = torch.fx.GraphModule(model, _Tracer().trace(model))
        except Exception as e:  # noqa: BLE001
            raise ValueError(f"model: torch.fx cannot trace it ({type(e).__name__}: {e})") from None
    training = gm.training
    gm.eval()
    try:
        with torch.no_grad():
            ShapeProp(gm).propagate(*inputs)
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"example_input: the model fails on it ({type(e).__name__}: {e})") \
            from None
    finally:
        gm.train(training)
    d = _Describer(gm)
    for node in gm.graph.nodes:
        if node in d.skip:
            continue
        if node.op == "placeholder":
            d.nodes.append({"op": "input", "name": node.name, "shape": list(_shape(node)[1:])})
        elif node.op == "output":
            outs = node.args[0] if isinstance(node.args[0], (tuple, list)) else (node.args[0],)
            d.nodes.append({"op": "output", "name": "output",
                            "inputs": [d.ref(node, o) for o in outs],
                            "shapes": [list(_shape(o)[1:]) for o in outs]})
        elif node.op == "call_module":
            d.module(node, _module(gm, node))
        elif node.op == "call_function":
            d.function(node)
        elif node.op == "call_method":
            d.method(node)
        else:
            d.fail(node, "a parameter or attribute used as a value")
    return json.dumps({"nodes": d.nodes}), d.tensors
