"""lowbit.quantize (this module: lowbit.convert): one call from a float PyTorch model to a quantized one (docs/python-api.md,
"Bring your own model"). A torch.fx graph rewrite: Conv1d/Conv2d/Linear modules become lowbit's
quantized layers (quantizer recipes) or folded integer-QAT layers (po2-int8, tf-int8), with their
weights; the original model is left untouched.

    qmodel = lowbit.quantize(model, "bnn", example_inputs=(torch.randn(1, 1, 28, 28),))
    qmodel = lowbit.quantize(model, {"recipe": "po2-int8", "layers": {"fc": {"skip": True}}})
"""
import copy
import dataclasses
import fnmatch
import json
import operator
import os

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn as _nn

from . import nn as _lnn
from . import qat as _qat

__all__ = ["quantize", "recipes", "CommonScale", "QuantizedLayer"]


def recipes():
    """The quantization recipes by name (the `lowbit` command's, from the C++ table): a dict of
    name -> {"description", "input_quantizer", "kernel_quantizer", "kernel_constraint",
    "pad_values", "activation", "qat", "quantize_first_layer", "quantize_last_layer"}."""
    table = json.loads(torch.ops.lowbit._quantization_recipes())["recipes"]
    return {r.pop("name"): r for r in table}


# The options of a QAT layer are lowbit.qat.QatOptions' fields (scheme is "qat").
_QAT_KEYS = tuple(f.name for f in dataclasses.fields(_qat.QatOptions) if f.name != "scheme")
_QUANTIZER_KEYS = ("input_quantizer", "kernel_quantizer", "kernel_constraint", "pad_values")
_GLOBAL_KEYS = (("recipe", "activation", "qat", "quantize_first_layer", "quantize_last_layer",
                 "layers") + _QUANTIZER_KEYS + _QAT_KEYS)
_LAYER_KEYS = ("skip", "bits", "qat") + _QUANTIZER_KEYS + ("weight_bits", "activation_bits")
_SCHEMES = {"none": None, "pow2": "pow2", "affine": "affine"}
_LAYER_TYPES = (_nn.Conv1d, _nn.Conv2d, _nn.Linear)


@dataclasses.dataclass
class QuantizedLayer:
    """What quantize() did to one Conv1d/Conv2d/Linear module, in execution order."""

    name: str
    type: str
    skip: bool
    qat: str = "none"
    input_quantizer: str = "none"
    kernel_quantizer: str = "none"
    kernel_constraint: str = "none"
    pad_values: float = 0.0
    weight_bits: int = 32
    activation_bits: int = 32
    batch_norm: str = ""  # the batch norm folded into a QAT layer


class CommonScale(_nn.Module):
    """Fake-quantizes its inputs (a residual Add's or a Concat's) with one shared range, so that
    an integer engine adds or concatenates numbers with the same scale: one ActivationQuant
    observing the union of their ranges."""

    summary_skip = True

    def __init__(self, options):
        super().__init__()
        self.quant = _qat.ActivationQuant(options)

    def forward(self, *xs):
        return tuple(self.quant.forward_many(list(xs)))


# ---- the config ------------------------------------------------------------------------------------

def _fail(where, message):
    raise ValueError(f"{where}: {message}")


def _load_config(config):
    if isinstance(config, (str, os.PathLike)):
        text = os.fspath(config)
        table = recipes()
        if text in table:
            return {"recipe": text}
        if text.endswith((".yaml", ".yml", ".json")) or os.path.sep in text:
            import yaml  # python3-yaml

            try:
                with open(text, encoding="utf-8") as f:
                    loaded = yaml.safe_load(f)
            except OSError as e:
                raise ValueError(f"config: cannot read {text}: {e.strerror}") from None
            except yaml.YAMLError as e:
                raise ValueError(f"config: {text} is not valid YAML: {e}") from None
            if not isinstance(loaded, dict):
                raise ValueError(f"config: {text} must hold a mapping of options")
            return loaded
        raise ValueError(f"config: unknown recipe {text!r} (known: {', '.join(table)}; or a "
                         ".yaml file or a dict)")
    if isinstance(config, dict):
        return dict(config)
    raise TypeError(f"config must be a recipe name, a YAML file or a dict, got "
                    f"{type(config).__name__}")


def _check_keys(options, known, where):
    for key in options:
        if key not in known:
            raise ValueError(f"{where}: unknown option {key!r} (known: {', '.join(known)})")


def _resolve(config):
    """The global settings: the recipe's, overridden by the config's keys."""
    _check_keys(config, _GLOBAL_KEYS, "config")
    name = config.get("recipe", "float")
    table = recipes()
    if name not in table:
        _fail("config: recipe", f"unknown recipe {name!r} (known: {', '.join(table)})")
    g = dict(table[name])
    g.pop("description")
    g.update({k: v for k, v in config.items() if k not in ("recipe", "layers")})
    if g["qat"] not in _SCHEMES:
        _fail("config: qat", f"must be none, pow2 or affine, got {g['qat']!r}")
    if g["activation"] not in ("relu", "none"):
        _fail("config: activation", f"must be relu or none, got {g['activation']!r}")
    for key in ("quantize_first_layer", "quantize_last_layer"):
        if not isinstance(g[key], bool):
            _fail(f"config: {key}", f"must be true or false, got {g[key]!r}")
    qat_defaults = _qat.QatOptions()
    for key in _QAT_KEYS:
        g.setdefault(key, getattr(qat_defaults, key))
        kind = type(getattr(qat_defaults, key))
        ok = isinstance(g[key], kind) and (kind is bool or not isinstance(g[key], bool))
        if kind is float and isinstance(g[key], int) and not isinstance(g[key], bool):
            g[key], ok = float(g[key]), True
        if not ok:
            _fail(f"config: {key}", f"must be {kind.__name__}, got {g[key]!r}")
    try:
        _qat.QatOptions(**{k: g[k] for k in _QAT_KEYS}).check()
    except ValueError as e:
        raise ValueError(f"config: {str(e).replace('qat: ', '')}") from None
    return g


def _layer_rules(config):
    """[(pattern, overrides)] in the config's order: "layers" is a mapping pattern -> overrides or a
    list of {"match": pattern, ...}."""
    layers = config.get("layers") or {}
    if isinstance(layers, dict):
        items = list(layers.items())
    elif isinstance(layers, list):
        items = []
        for i, rule in enumerate(layers):
            if not isinstance(rule, dict) or "match" not in rule:
                _fail(f"config: layers[{i}]", "must be a mapping with a 'match' pattern")
            items.append((rule["match"], {k: v for k, v in rule.items() if k != "match"}))
    else:
        raise ValueError("config: layers must map module name patterns to options")
    for pattern, overrides in items:
        where = f"config: layers {pattern!r}"
        if not isinstance(pattern, str):
            _fail(where, "a pattern must be a string")
        if not isinstance(overrides, dict):
            _fail(where, "must map options to values")
        _check_keys(overrides, _LAYER_KEYS, where)
    return items


def _with_bits(spec, bits, role):
    """The quantizer spec with its bit option (k_bit or bit) set; None if it has none."""
    q = _lnn.make_quantizer(spec, role)
    if not isinstance(q, _lnn.Quantizer) or q.name == "none":
        return None
    entry = _lnn._QUANTIZERS[q.name]
    key = next((k for k in ("k_bit", "bit") if k in entry.options), None)
    if key is None:
        return None
    options = dict(q.options)
    options[key] = bits
    return _lnn._format_spec(q.name, {k: v for k, v in options.items()
                                      if k not in entry.parameters})


def _plan(layers, g, rules):
    """One QuantizedLayer per (name, module), in execution order."""
    plans = []
    matched = {pattern: False for pattern, _ in rules}
    last = len(layers) - 1
    for i, (name, module) in enumerate(layers):
        s = {k: g[k] for k in _QUANTIZER_KEYS + ("qat", "weight_bits", "activation_bits")}
        s["skip"] = ((i == 0 and not g["quantize_first_layer"])
                     or (i == last and not g["quantize_last_layer"]))
        bits, own = None, set()  # own: the keys this layer's overrides set
        for pattern, overrides in rules:
            if fnmatch.fnmatchcase(name, pattern):
                matched[pattern] = True
                s.update({k: v for k, v in overrides.items() if k != "bits"})
                own.update(overrides)
                bits = overrides.get("bits", bits)
        where = f"module {name!r}"
        if not isinstance(s["skip"], bool):
            _fail(where, f"option 'skip' must be true or false, got {s['skip']!r}")
        if s["qat"] not in _SCHEMES:
            _fail(where, f"option 'qat' must be none, pow2 or affine, got {s['qat']!r}")
        p = QuantizedLayer(name, type(module).__name__, s["skip"], s["qat"])
        if not p.skip and s["qat"] != "none":
            if bits is not None:
                s["weight_bits"] = s["activation_bits"] = bits
            # A layer made integer by its own override ignores the config's quantizers (mixed
            # precision); quantizers given for an integer layer are an error.
            inherited = "qat" in own and g["qat"] == "none"
            for key in _QUANTIZER_KEYS[:3]:
                if s[key] not in (None, "none") and (key in own or not inherited):
                    _fail(where, f"option {key!r} does not apply to an integer QAT layer "
                          f"(qat: {s['qat']}); set qat: none for this layer to use quantizers")
            p.weight_bits, p.activation_bits = s["weight_bits"], s["activation_bits"]
            try:
                _qat.QatOptions(scheme=s["qat"], weight_bits=p.weight_bits,
                                activation_bits=p.activation_bits).check()
            except ValueError as e:
                _fail(where, str(e).replace("qat: ", "option "))
        elif not p.skip:
            for key, role in (("input_quantizer", "input"), ("kernel_quantizer", "kernel")):
                spec = s[key]
                if bits is not None and spec not in (None, "none"):
                    spec = _with_bits(spec, bits, role)
                    if spec is None:
                        _fail(where, f"option 'bits': {key} {s[key]!r} has no bit width option")
                try:
                    q = _lnn.make_quantizer(spec, role)
                except (TypeError, ValueError) as e:
                    raise type(e)(f"{where}: option {key!r}: {e}") from None
                setattr(p, key, getattr(q, "spec", "none") if isinstance(q, _lnn.Quantizer)
                        else spec)
            try:
                c = _lnn.make_constraint(s["kernel_constraint"])
            except (TypeError, ValueError) as e:
                raise type(e)(f"{where}: option 'kernel_constraint': {e}") from None
            p.kernel_constraint = "none" if c is None else getattr(c, "spec", repr(c))
            p.pad_values = s["pad_values"]
            p.weight_bits = _lnn.make_quantizer(p.kernel_quantizer, "kernel").precision
            p.activation_bits = _lnn.make_quantizer(p.input_quantizer).precision
        plans.append(p)
    for pattern, hit in matched.items():
        if not hit:
            names = ", ".join(n for n, _ in layers) or "none"
            _fail(f"config: layers {pattern!r}",
                  f"matches no Conv1d/Conv2d/Linear module (modules: {names})")
    return plans


# ---- the graph -------------------------------------------------------------------------------------

def _module(gm, node):
    return gm.get_submodule(node.target) if node.op == "call_module" else None


def _is_relu(gm, node, relu6=False):
    """A ReLU (module, function or method); with relu6, ReLU6 too."""
    if node.op == "call_module":
        return type(_module(gm, node)) in ((_nn.ReLU, _nn.ReLU6) if relu6 else (_nn.ReLU,))
    if node.op == "call_function":
        return node.target in (F.relu, torch.relu, torch.relu_) + ((F.relu6,) if relu6 else ())
    return node.op == "call_method" and node.target in ("relu", "relu_")


_ADDS = (operator.add, operator.iadd, torch.add)
_GRID_MODULES = (_nn.ReLU, _nn.MaxPool1d, _nn.MaxPool2d, _nn.Flatten, _nn.Dropout, _nn.Identity)
_GRID_FUNCTIONS = (F.relu, torch.relu, F.max_pool1d, F.max_pool2d, torch.flatten, F.dropout)
_GRID_METHODS = ("relu", "view", "reshape", "flatten", "contiguous", "permute", "transpose",
                 "squeeze", "unsqueeze", "size")


def _set_module(gm, name, module):
    parent, _, leaf = name.rpartition(".")
    setattr(gm.get_submodule(parent) if parent else gm, leaf, module)


def _new_name(gm, base):
    i = 0
    while hasattr(gm, f"{base}_{i}"):
        i += 1
    return f"{base}_{i}"


def _quantized_layer(module, p):
    factory = {"device": module.weight.device, "dtype": module.weight.dtype}
    common = dict(bias=module.bias is not None, input_quantizer=p.input_quantizer,
                  kernel_quantizer=p.kernel_quantizer, kernel_constraint=p.kernel_constraint)
    if isinstance(module, _nn.Linear):
        new = _lnn.QuantLinear(module.in_features, module.out_features, **common, **factory)
    else:
        if module.padding_mode != "zeros":
            raise ValueError(f"padding_mode {module.padding_mode!r}: quantized convolutions pad "
                             "with a constant (pad_values)")
        cls = _lnn.QuantConv1d if isinstance(module, _nn.Conv1d) else _lnn.QuantConv2d
        new = cls(module.in_channels, module.out_channels, module.kernel_size, module.stride,
                  module.padding, module.dilation, module.groups, pad_values=p.pad_values,
                  **common, **factory)
    new.load_state_dict(module.state_dict(), strict=False)
    new.train(module.training)
    return new


def _dropout_modules(gm):
    """F.dropout(x, p, self.training) is traced with the training flag of the moment: made a
    Dropout module again, so that eval() turns it off."""
    for node in list(gm.graph.nodes):
        if node.op == "call_function" and node.target is F.dropout:
            kw = dict(zip(("input", "p", "training", "inplace"), node.args), **node.kwargs)
            with gm.graph.inserting_before(node):
                name = _new_name(gm, "dropout")
                gm.add_submodule(name, _nn.Dropout(float(kw.get("p", 0.5))))
                new = gm.graph.call_module(name, (kw["input"],))
            node.replace_all_uses_with(new)
            gm.graph.erase_node(node)


def _remove_relus(gm):
    for node in list(gm.graph.nodes):
        if _is_relu(gm, node, relu6=True):
            node.replace_all_uses_with(node.args[0])
            gm.graph.erase_node(node)


def _fold(gm, node, p, options):
    """Replaces a QAT layer by a FoldedLayer (with the batch norm that alone reads its output);
    returns the node whose value the layer's output quantizer reads (after a ReLU)."""
    module = _module(gm, node)
    bn_node = None
    users = list(node.users)
    if len(users) == 1 and users[0].op == "call_module":
        bn = _module(gm, users[0])
        want = _nn.BatchNorm2d if isinstance(module, _nn.Conv2d) else _nn.BatchNorm1d
        if type(bn) is want:
            bn_node = users[0]
    bn = _module(gm, bn_node) if bn_node is not None else None
    try:
        folded = _qat.FoldedLayer(module, bn, options)
    except ValueError as e:
        _fail(f"module {p.name!r}", str(e))
    folded.train(module.training)
    _set_module(gm, node.target, folded)
    if bn_node is not None:
        p.batch_norm = bn_node.target
        bn_node.replace_all_uses_with(node)
        gm.graph.erase_node(bn_node)
    out = node
    users = list(node.users)
    if len(users) == 1 and _is_relu(gm, users[0]):
        out = users[0]
    return out


def _insert_module(gm, module, base, args, after):
    name = _new_name(gm, base)
    gm.add_submodule(name, module)
    with gm.graph.inserting_after(after):
        return gm.graph.call_module(name, args)


def _on_grid(gm, node, memo):
    """Whether a value is already fake-quantized: an activation quantizer's output, or a value
    that max pooling, ReLU, reshapes and dropout keep on its grid."""
    if not isinstance(node, torch.fx.Node):
        return False
    if node in memo:
        return memo[node]
    memo[node] = False
    m = _module(gm, node)
    if isinstance(m, _qat.ActivationQuant):
        result = True
    elif node.op == "call_function" and node.target is operator.getitem:
        result = isinstance(_module(gm, node.args[0]), CommonScale)
    elif node.op == "call_function" and node.target is torch.cat:
        tensors = node.args[0] if node.args else node.kwargs.get("tensors", ())
        result = bool(tensors) and all(_on_grid(gm, a, memo) for a in tensors)
    elif ((m is not None and isinstance(m, _GRID_MODULES))
          or (node.op == "call_function" and node.target in _GRID_FUNCTIONS)
          or (node.op == "call_method" and node.target in _GRID_METHODS)):
        result = bool(node.args) and _on_grid(gm, node.args[0], memo)
    else:
        result = False
    memo[node] = result
    return result


def _is_add(node):
    """An addition of two tensors (a residual Add)."""
    add = ((node.op == "call_function" and node.target in _ADDS)
           or (node.op == "call_method" and node.target in ("add", "add_")))
    return add and len(node.args) >= 2 and all(isinstance(a, torch.fx.Node)
                                               for a in node.args[:2])


def _qat_source(gm, node):
    """The QAT options of the integer layer or observer a value comes from (through ReLU, pooling,
    reshapes), or None."""
    while isinstance(node, torch.fx.Node):
        m = _module(gm, node)
        if isinstance(m, (_qat.ActivationQuant, _qat.FoldedLayer)):
            return m.options
        if node.op == "call_function" and node.target is operator.getitem:
            m = _module(gm, node.args[0])
            return m.quant.options if isinstance(m, CommonScale) else None
        if _is_add(node):  # a sum of values on one grid (a common scale's) is an integer too
            sources = [_qat_source(gm, a) for a in node.args[:2]]
            return None if any(o is None for o in sources) else sources[0]
        grid = ((m is not None and isinstance(m, _GRID_MODULES))
                or (node.op == "call_function" and node.target in _GRID_FUNCTIONS)
                or (node.op == "call_method" and node.target in _GRID_METHODS))
        if not grid or not node.args:
            return None
        node = node.args[0]
    return None


def _common_scales(gm):
    """Residual Adds of two tensors and Concats whose inputs all come from integer layers get one
    shared fake-quantization range, at the widest of those layers' activation bits."""
    for node in list(gm.graph.nodes):
        if _is_add(node):
            inputs, rebuild = list(node.args[:2]), lambda q, n=node: ((*q, *n.args[2:]), n.kwargs)
        elif node.op == "call_function" and node.target is torch.cat:
            tensors = node.args[0] if node.args else node.kwargs.get("tensors")
            if not isinstance(tensors, (list, tuple)) or len(tensors) < 2:
                continue
            inputs = list(tensors)
            if node.args:
                rebuild = lambda q, n=node: ((list(q), *n.args[1:]), n.kwargs)  # noqa: E731
            else:
                rebuild = lambda q, n=node: ((), {**n.kwargs, "tensors": list(q)})  # noqa: E731
        else:
            continue
        sources = [_qat_source(gm, a) for a in inputs]
        if any(o is None for o in sources):
            continue  # a float (or binary) input: the next integer layer quantizes the result
        options = max(sources, key=lambda o: o.activation_bits)
        # A layer's output quantizer read only by this Add is replaced by the common one.
        redundant = [a for a in inputs if isinstance(_module(gm, a), _qat.ActivationQuant)
                     and len(a.users) == 1]
        inputs = [a.args[0] if a in redundant else a for a in inputs]
        with gm.graph.inserting_before(node):
            name = _new_name(gm, "common_scale")
            gm.add_submodule(name, CommonScale(options))
            shared = gm.graph.call_module(name, tuple(inputs))
            quantized = [gm.graph.call_function(operator.getitem, (shared, i))
                         for i in range(len(inputs))]
        node.args, node.kwargs = rebuild(quantized)
        for a in redundant:
            gm.graph.erase_node(a)


def _prepare_qat(gm, nodes, plans, g):
    shared = dataclasses.replace(_qat.QatOptions(), **{k: g[k] for k in _QAT_KEYS})
    outputs = []
    for node, p in zip(nodes, plans):
        if p.skip or p.qat == "none":
            continue
        o = dataclasses.replace(shared, scheme=p.qat, weight_bits=p.weight_bits,
                                activation_bits=p.activation_bits).check()
        out = _fold(gm, node, p, o)
        aq = _insert_module(gm, _qat.ActivationQuant(o), "activation_quant", (out,), out)
        out.replace_all_uses_with(aq, delete_user_cb=lambda user, aq=aq: user is not aq)
        outputs.append((node, o))
    if not outputs:
        return
    _common_scales(gm)
    memo, inputs = {}, {}
    for node, o in outputs:
        x = node.args[0]
        if _on_grid(gm, x, memo) or (x.op == "placeholder" and not o.quantize_input):
            continue
        if x not in inputs:
            inputs[x] = _insert_module(gm, _qat.ActivationQuant(o), "input_quant", (x,), x)
            memo[inputs[x]] = True
        node.args = (inputs[x], *node.args[1:])


def quantize(model, config="float", example_inputs=None):
    """A quantized copy of ``model`` (a ``torch.fx.GraphModule``; ``model`` is untouched).

    ``config``: a recipe name (:func:`lowbit.recipes`: "bnn", "xnor", "birealnet",
    "blueoil-a2w1", "ternary", "dorefa", "po2-int8", "tf-int8", "float"), a YAML file, or a dict
    with any of: ``recipe`` (the base, default "float"); ``input_quantizer``, ``kernel_quantizer``,
    ``kernel_constraint``, ``pad_values`` (lowbit.nn's forms); ``activation`` ("relu", or "none":
    every ReLU and ReLU6 removed, as binary networks need: the sign of a ReLU output is +1);
    ``qat`` ("none", "pow2", "affine": batch norms folded, fake-quantized weights, activations
    and biases, common scales at residual Adds and Concats) with lowbit.qat.QatOptions' fields
    (``weight_bits``, ``activation_bits``, ``bias_bits``, ``max_exponent``, ``ema_decay``,
    ``quant_delay``, ``freeze_bn_delay``, ``quantize_input``); ``quantize_first_layer`` /
    ``quantize_last_layer`` (Blueoil's rules: the first and last layers in execution order keep
    float unless true; the integer recipes quantize them); ``layers``: module name patterns
    (fnmatch, e.g. ``"layer1.*"``) mapped to overrides (``skip``, ``bits``, ``qat``,
    ``weight_bits``, ``activation_bits`` and the quantizer options), applied in order.

    Conv1d, Conv2d (grouped and depthwise too) and Linear modules are replaced; functional calls
    (F.conv2d with a tensor) are not. ``example_inputs`` (a tuple) are run once in eval mode, so a
    model that the conversion broke fails here. The result carries ``lowbit_layers``: a
    :class:`QuantizedLayer` per layer. Errors (ValueError, TypeError) name the module and option.
    """
    config = _load_config(config)
    g = _resolve(config)
    rules = _layer_rules(config)
    if not isinstance(model, _nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    for name, m in model.named_modules():
        if isinstance(m, (_lnn.QuantLayer, _qat.FoldedLayer)):
            _fail(f"module {name!r}", f"is already a lowbit {type(m).__name__}; quantize takes a "
                  "float model")
    try:
        gm = torch.fx.symbolic_trace(copy.deepcopy(model))
    except Exception as e:  # noqa: BLE001 - tracing raises anything the model's code raises
        raise ValueError(f"model: torch.fx cannot trace it ({type(e).__name__}: {e}); "
                         "quantize needs a model without data-dependent control flow") from None
    nodes, layers, calls = [], [], {}
    for node in gm.graph.nodes:
        m = _module(gm, node)
        if isinstance(m, _LAYER_TYPES):
            calls[node.target] = calls.get(node.target, 0) + 1
            if calls[node.target] == 1:
                nodes.append(node)
                layers.append((node.target, m))
    plans = _plan(layers, g, rules)
    for p in plans:
        if not p.skip and p.qat != "none" and calls[p.name] > 1:
            _fail(f"module {p.name!r}", f"is called {calls[p.name]} times; integer QAT folds and "
                  "observes each call site, so give each call its own module")
    _dropout_modules(gm)
    if g["activation"] == "none":
        _remove_relus(gm)
    for node, p in zip(nodes, plans):
        if not p.skip and p.qat == "none":
            try:
                _set_module(gm, node.target, _quantized_layer(_module(gm, node), p))
            except (TypeError, ValueError) as e:
                raise type(e)(f"module {p.name!r}: {e}") from None
    _prepare_qat(gm, nodes, plans, g)
    gm.graph.lint()
    gm.delete_all_unused_submodules()
    gm.recompile()
    gm.lowbit_layers = plans
    if example_inputs is not None:
        if not isinstance(example_inputs, tuple):
            example_inputs = (example_inputs,)
        training = gm.training
        gm.eval()
        try:
            with torch.no_grad():
                gm(*example_inputs)
        except Exception as e:  # noqa: BLE001
            raise ValueError(f"example_inputs: the quantized model fails on them "
                             f"({type(e).__name__}: {e})") from None
        finally:
            gm.train(training)
    return gm
