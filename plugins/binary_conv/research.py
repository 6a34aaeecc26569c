"""Recognise binary layers of research code by what they compute, not by their class names.

A candidate is an ``nn.Conv2d`` / ``nn.Linear`` subclass, or any module (outside torch.nn) that owns
parameters and made exactly one conv2d / linear call per call in the calibration run (Bi-Real's
``HardBinaryConv`` with a flat weight), or a plain ``nn.Conv2d`` / ``nn.Linear`` whose input was
already binarized (XNOR-Net's ``BinActive`` before a float conv). Its own forward is run on probe
inputs (``probe.py``: a deep copy; exact zeros and both signs in the probe) and the conv/linear call
it makes is recorded. The layer is binary when

* the weight it really convolves with (whatever its quantizer did: centring that takes effect or
  not, BinaryNet's ``weight.org`` swap, a power-of-two scale) is exactly +-alpha_m per output channel,
  the same on two consecutive calls with different inputs (it depends on the parameters alone);
* the input it convolves is the probe as it is, torch.sign(probe) (sign(0) = 0), binarize(probe)
  (sign(0) = +1) or relu(probe) — anything else cannot be expressed and the layer is kept;
* its output is an affine function per output channel of what the call returned (a bias added
  afterwards, a scale multiplied afterwards), and the BinaryConv it would become reproduces the
  layer's output on both probes within 1e-5 of max|y| (in float64).

A recognition that does not hold keeps the user's own layer, reported; the parity check after export
stays the last word. Where a calibration run saw inputs exactly 0, torch.sign(0) = 0 is kept by a
standard Sign op in front of BinaryConv(binarize_input=0). A parameter-free module whose output is
an elementwise sign of its input (Bi-Real's ``BinaryActivation``, micronet's ``ActivationQuantizer``)
becomes a plain Sign, or is absorbed into the BinaryConv it alone feeds (binarize_input=1).
Linear layers become 1x1 BinaryConv on [N, F, 1, 1].
"""
from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn

from .._conv_args import pair
from .layer import BinaryConv2d, PackedBinaryConv2d
from .probe import probe_input, probe_twice, run_probe
from .research_forms import AffineOfSign, Binarize, Centre, LinearAsConv1x1, TorchSign

#: Elements within this of +-1 / 0 count as sign values (an STE written sign(x) - f(x) + f(x) is off by ulps).
SIGN_TOL = 1e-6
#: The rebuilt layer must reproduce the research layer on the probes within this of max|y| (contract: 1e-4).
CHECK_TOL = 1e-5
_CMC_TYPES = (BinaryConv2d, PackedBinaryConv2d, TorchSign, Binarize, LinearAsConv1x1, AffineOfSign, Centre)


def recognise(module: nn.Module, facts: dict | None = None):
    """``facts`` (from the calibration run, optional): ``flow`` — this module's
    ``cmc.exporter.dataflow.ModuleFacts``; ``feeder`` — (path, module, ModuleFacts) of the module
    whose output was this module's input; ``input_has_zeros``.

    Returns None, or (replacement, description, extra) with extra keys ``binarizes`` (the user's
    value whose sign the emitted binarization takes: 'path' = its input 0, 'path:output'),
    ``sign_source`` (the value a sign in front of the layer, outside it, took) and ``absorbs`` (the
    path of a sign module to replace with Identity)."""
    facts = facts or {}
    if isinstance(module, _CMC_TYPES):
        return None
    flow = facts.get("flow")
    if _is_sign_module_candidate(module, flow):
        convention = sign_convention(module, flow.input_shape)
        if convention is None:
            return None
        return _sign_replacement(module, convention)
    if not _is_candidate(module, flow):
        return None
    shape = flow.input_shape if flow is not None and flow.input_shape else _synthetic_shape(module)
    if shape is None:
        return None
    try:
        # A 2-D input has no spatial positions: more samples, so the per-channel fit below is overdetermined.
        obs = probe_twice(module, (2 if len(shape) > 2 else 8, *shape[1:]))
    except Exception as e:  # the forward refuses a probe: not ours to judge; keep it
        if isinstance(module, (nn.Conv2d, nn.Linear)) and type(module) not in (nn.Conv2d, nn.Linear):
            return module, f"kept as the user's own ops: its forward failed on a probe input ({type(e).__name__}: {str(e)[:120]})", {}
        return None
    return _analyse(module, obs, facts)


# ---------------------------------------------------------------- sign modules

def _is_sign_module_candidate(module, flow) -> bool:
    return (flow is not None and flow.calls > 0 and flow.output_sign_valued and flow.input_shape is not None
            and flow.output_shape == flow.input_shape and flow.linear_calls == 0
            and not any(True for _ in module.parameters()) and not isinstance(module, (nn.Dropout, nn.Identity)))


def sign_convention(module: nn.Module, shape) -> str | None:
    """'sign' (torch.sign: 0 -> 0) or 'binarize' (0 -> +1) when ``module`` computes an elementwise
    sign of its input on probes with exact zeros (within SIGN_TOL); None otherwise."""
    import copy

    m = copy.deepcopy(module)
    for seed in (11, 12):
        try:
            obs = run_probe(m, probe_input((2, *shape[1:]), seed))
        except Exception:
            return None
        form = _input_form(obs.probe, obs.output)
        if form not in ("sign", "binarize"):
            return None
        if seed == 11:
            first = form
        elif form != first:
            return None
    return first


def _sign_replacement(module, convention):
    if convention == "sign":
        return TorchSign(), f"Sign (torch.sign: sign(0) = 0), from {type(module).__name__}", {}
    return Binarize(), f"binarize (sign(0) = +1), from {type(module).__name__}", {}


# ---------------------------------------------------------------- conv / linear layers

def _is_candidate(module, flow) -> bool:
    if flow is not None and flow.calls == 0:
        return False  # never ran: nothing to reproduce
    if type(module) in (nn.Conv2d, nn.Linear):
        return flow is not None and flow.binarized_input  # fed by a binarizing activation
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        return True
    if type(module).__module__.startswith("torch."):
        return False
    return flow is not None and flow.conv_like and any(True for _ in module.parameters(recurse=False))


def _synthetic_shape(module):
    """A probe shape for a layer the calibration run did not see (only nn.Conv2d / nn.Linear subclasses)."""
    if isinstance(module, nn.Conv2d):
        k = max((d * (kk - 1) + 1) for d, kk in zip(module.dilation, module.kernel_size))
        side = k + 2 * max(module.stride) + 3
        return (2, module.in_channels, side, side)
    if isinstance(module, nn.Linear):
        return (2, module.in_features)
    return None


def _input_form(probe: torch.Tensor, x: torch.Tensor) -> str | None:
    """How the tensor the layer convolved (``x``) relates to the probe it was given."""
    if not isinstance(x, torch.Tensor) or x.shape != probe.shape:
        return None
    if torch.equal(x, probe):
        return "float"
    x = x.double()
    p = probe.double()
    if bool(((x - torch.sign(p)).abs() <= SIGN_TOL).all()):
        return "sign"
    if bool(((x - torch.where(p >= 0, 1.0, -1.0)).abs() <= SIGN_TOL).all()):
        return "binarize"
    if torch.equal(x, torch.relu(p)):
        return "relu"
    fit = affine_of_sign(probe, x)
    if fit is not None:
        return f"affine_{fit[0]}"
    fit = centred_sign(probe, x)
    return None if fit is None else f"centred_{fit[0]}"


def centred_sign(probe: torch.Tensor, x: torch.Tensor):
    """(convention, dims) when ``x`` is the sign of the probe minus its mean over ``dims`` (per sample: (1, 2, 3),
    or per sample and channel: (2, 3)), as activation-standardising codebases compute it (RBNN: (a - mean) / std,
    then sign; the division does not change the sign); None otherwise."""
    if not isinstance(x, torch.Tensor) or x.shape != probe.shape or probe.dim() < 2:
        return None
    x = x.double()
    for dims in ((tuple(range(1, probe.dim())),) + (((2, 3),) if probe.dim() == 4 else ())):
        c = probe.float() - probe.float().mean(dims, keepdim=True)  # float32, as the research code centres
        for conv, s in (("binarize", torch.where(c >= 0, 1.0, -1.0)), ("sign", torch.sign(c))):
            if bool(((x - s.double()).abs() <= SIGN_TOL).all()):
                return conv, dims
    return None


def affine_of_sign(probe: torch.Tensor, x: torch.Tensor):
    """(convention, delta, gamma) when ``x`` = delta + gamma * s with s = binarize(probe) ('binarize') or
    torch.sign(probe) ('sign') and gamma != 0, one delta and gamma for the whole tensor (DoReFa's {0, 1}
    activations: (sign(x) + 1) / 2); None otherwise."""
    if not isinstance(x, torch.Tensor) or x.shape != probe.shape or not x.is_floating_point():
        return None
    x, p = x.double(), probe.double()
    for conv, s in (("binarize", torch.where(p >= 0, 1.0, -1.0)), ("sign", torch.sign(p))):
        hi, lo = x[s > 0], x[s < 0]
        if hi.numel() == 0 or lo.numel() == 0:
            continue
        delta, gamma = float(hi[0] + lo[0]) / 2, float(hi[0] - lo[0]) / 2
        if gamma == 0:
            continue
        tol = SIGN_TOL * max(abs(delta) + abs(gamma), 1e-30)
        if bool(((x - (delta + gamma * s)).abs() <= tol).all()):
            return conv, delta, gamma
    return None


def _two_valued(w: torch.Tensor):
    """(is +-alpha_m per output channel, alpha [M] float64)."""
    a = w.double().abs().flatten(1)
    amax, amin = a.max(1).values, a.min(1).values
    ok = bool(((amin > 0) & ((amax - amin) <= SIGN_TOL * amax)).all())
    return ok, a.mean(1)


def _few_levels(w: torch.Tensor, n: int = 3) -> bool:
    """Every output channel's weights take at most ``n`` distinct values (a binary/ternary look-alike)."""
    return all(torch.unique(row).numel() <= n for row in w.flatten(1))


def _geometry(call):
    """(stride, pads [t, l, b, r], dilation, groups) of a conv2d call; 1x1 identity for linear."""
    if call.kind == "linear":
        return [1, 1], [0, 0, 0, 0], [1, 1], 1
    stride, dilation = pair(call.stride, "stride"), pair(call.dilation, "dilation")
    kh, kw = call.weight.shape[2:]
    p = call.padding
    if p == "valid":
        pads = [0, 0, 0, 0]
    elif p == "same":  # the odd extra row/column at the bottom/right, as PyTorch pads it
        th, tw = dilation[0] * (kh - 1), dilation[1] * (kw - 1)
        pads = [th // 2, tw // 2, th - th // 2, tw - tw // 2]
    else:
        ph, pw = pair(p, "padding")
        pads = [ph, pw, ph, pw]
    return stride, pads, dilation, int(call.groups)


def _conv64(x, w, geom):
    stride, pads, dilation, groups = geom
    x = x.double()
    if x.dim() == 2:
        return x @ w.double().t()
    x = F.pad(x, (pads[1], pads[3], pads[0], pads[2]))
    return F.conv2d(x, w.double(), None, stride, 0, dilation, groups)


def _per_channel(v: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return v.view(1, -1, *([1] * (y.dim() - 2)))


def _close(y_hat, y) -> bool:
    y = y.double()
    return y_hat.shape == y.shape and float((y_hat - y).abs().max()) <= CHECK_TOL * max(float(y.abs().max()), 1e-30)


def _post_affine(module, obs):
    """(a [M], c [M]) float64 with layer output = a * (what conv2d/linear returned) + c on both probes."""
    pairs = [(o.output, o.calls[0].output) for o in obs]
    if not all(isinstance(yl, torch.Tensor) and yl.shape == yc.shape for yl, yc in pairs):
        return None
    m = pairs[0][1].shape[1]
    one, zero = torch.ones(m, dtype=torch.float64), torch.zeros(m, dtype=torch.float64)
    candidates = [(one, zero)]
    bias = getattr(module, "bias", None)
    if isinstance(bias, torch.Tensor) and bias.numel() == m and obs[0].calls[0].bias is None:
        candidates.append((one, bias.detach().double().flatten()))  # BinaryNet: out += bias after the call
    yl = torch.cat([p[0].double().transpose(0, 1).reshape(m, -1) for p in pairs], 1)
    yc = torch.cat([p[1].double().transpose(0, 1).reshape(m, -1) for p in pairs], 1)
    mc = yc.mean(1, keepdim=True)
    var = ((yc - mc) ** 2).sum(1)
    if bool((var > 0).all()):  # least squares per channel: a scale or BatchNorm applied after the call
        a = ((yc - mc) * (yl - yl.mean(1, keepdim=True))).sum(1) / var
        candidates.append((a, yl.mean(1) - a * mc.squeeze(1)))
    for a, c in candidates:
        if all(_close(_per_channel(a, yc_) * yc_.double() + _per_channel(c, yc_), yl_) for yl_, yc_ in pairs):
            return a, c
    return None


def _analyse(module, obs, facts):
    name = type(module).__name__
    if any(len(o.calls) != 1 for o in obs):
        return None
    c1, c2 = obs[0].calls[0], obs[1].calls[0]
    w1, w2 = c1.weight.detach(), c2.weight.detach()
    forms = [_input_form(o.probe, o.calls[0].input) for o in obs]
    binary, alpha = _two_valued(w1)
    quantized = not torch.equal(w1, _raw_weight(module, w1))
    zeros = None
    if not binary and facts.get("zero_weights_as_plus_one"):
        patched = zeros_as_plus_alpha(w1)
        if patched is not None and _two_valued(patched)[0] and torch.equal(patched, zeros_as_plus_alpha(w2)):
            # --zero-weights-as-plus-one: torch.sign(0) = 0 weights taken as +alpha; the layer becomes binary
            zeros = (w1 == 0)
            w1 = w2 = patched
            binary, alpha = _two_valued(w1)
    # Binarizing behaviour of any kind: +-alpha weights, a sign of the input (also shifted / scaled: {0, 1}
    # activations), or weights quantized to two values per channel that are not +-alpha ({beta-alpha, beta+alpha}).
    looks_binary = binary or forms[0] in ("sign", "binarize") or (forms[0] or "").startswith("affine_") \
        or (quantized and _few_levels(w1, 2))
    if not looks_binary and not quantized:
        if type(module) in (nn.Conv2d, nn.Linear):  # fed by a binarizing activation, yet float weights
            return module, ("kept as a float layer: its input is binarized but its weights are not two-valued per "
                            "output channel (latent float weights of a codebase that binarizes them outside the "
                            "model? --binarize-weights xnor|sign applies that binarization)"), {}
        return None  # a float layer
    if forms[0] is None or forms[0] != forms[1]:
        return (module, f"kept as the user's own ops: the input it convolves is a transform of its input that "
                        f"BinaryConv cannot express", {}) if looks_binary else None
    if c1.kind == "linear" and c1.input.dim() != 2:
        return (module, "kept as the user's own ops: a linear layer on a non-2-D input", {}) if looks_binary else None
    if w1.shape != w2.shape or not _same_weights(w1, w2, binary):
        return (module, "kept as the user's own ops: its effective weights change from call to call "
                        "(in-place updates that do not settle, or weights that depend on the input)", {}) \
            if looks_binary else None
    affine = _post_affine(module, obs)
    if affine is None:
        return (module, "kept as the user's own ops: its output is not an affine function per channel of its "
                        "conv/linear call", {}) if looks_binary else None
    a, c = affine
    geom = _geometry(c1)
    bias_call = c1.bias.detach().double() if c1.bias is not None else torch.zeros_like(a)
    form = forms[0]
    if form.startswith("affine_"):
        fits = [affine_of_sign(o.probe, o.calls[0].input) for o in obs]
        if fits[0] != fits[1]:
            return module, "kept as the user's own ops: the shift / scale around its input's sign changes between calls", {}
        form = fits[0]
    elif form.startswith("centred_"):
        fits = [centred_sign(o.probe, o.calls[0].input) for o in obs]
        if fits[0] != fits[1]:
            return module, "kept as the user's own ops: the centring before its input's sign changes between calls", {}
        form = ("centred", *fits[0])
    if not binary:
        if not (form in ("sign", "binarize") or isinstance(form, tuple) or _few_levels(w1)):
            return None
        return _frozen_float(module, obs, c1, geom, form, a, c, bias_call, w1)
    if isinstance(form, tuple) and form[0] != "centred":
        return _frozen_float(module, obs, c1, geom, form, a, c, bias_call, w1)
    return _binary(module, obs, c1, geom, form, a, c, bias_call, w1, alpha, facts, zeros)


def _raw_weight(module, like):
    """The module's own parameter that has the effective weight's shape (or ``like`` when none has)."""
    for p in module.parameters(recurse=False):
        if p.shape == like.shape:
            return p.detach()
    return like.new_full(like.shape, float("nan"))


def _same_weights(w1, w2, binary) -> bool:
    if binary:
        _, a1 = _two_valued(w1)
        ok2, a2 = _two_valued(w2)
        return ok2 and torch.equal(w1 >= 0, w2 >= 0) and bool(((a1 - a2).abs() <= SIGN_TOL * a1).all())
    return bool((w1.double() - w2.double()).abs().max() <= SIGN_TOL * max(float(w1.abs().max()), 1e-30))


_PREFIX = {"sign": TorchSign, "binarize": Binarize, "relu": lambda: nn.ReLU()}


def _prefix(form):
    if isinstance(form, tuple) and form[0] == "centred":  # ("centred", convention, dims): sign(x - mean)
        return nn.Sequential(Centre(form[2]), _PREFIX[form[1]]())
    if isinstance(form, tuple):  # (convention, delta, gamma): delta + gamma * sign
        return AffineOfSign(*form)
    return _PREFIX[form]()


def _exact_input(form, p):
    if isinstance(form, tuple) and form[0] == "centred":
        _, conv, dims = form
        return _exact_input(conv, p.float() - p.float().mean(dims, keepdim=True))
    p = p.double()
    if isinstance(form, tuple):
        conv, delta, gamma = form
        return delta + gamma * _exact_input(conv, p)
    return {"float": p, "sign": torch.sign(p), "binarize": torch.where(p >= 0, 1.0, -1.0), "relu": torch.relu(p)}[form]


def _input_desc(form) -> str:
    if isinstance(form, tuple) and form[0] == "centred":
        return f"{_INPUT_DESC[form[1]]} after subtracting its mean over dims {form[2]}"
    if isinstance(form, tuple):
        conv, delta, gamma = form
        return f"{delta:g} + {gamma:g} * {'binarize' if conv == 'binarize' else 'torch.sign'}(x)"
    return _INPUT_DESC[form]


def _frozen_float(module, obs, call, geom, form, a, c, bias_call, w):
    """A look-alike that is not binary (ternary, a zero weight under torch.sign): its effective weights as a
    standard conv/linear, with its input transform in front — exact, and free of its forward's idioms."""
    weight = a.view(-1, *([1] * (w.dim() - 1))) * w.double()
    bias = a * bias_call + c
    for o in obs:
        y_hat = _conv64(_exact_input(form, o.probe), weight, geom) + _per_channel(bias, o.output)
        if not _close(y_hat, o.output):
            return module, "kept as the user's own ops: a float rebuild of it does not reproduce its output", {}
    layer = _float_layer(call, geom, weight, bias)
    out = nn.Sequential(_prefix(form), layer) if form != "float" else layer
    levels = max(torch.unique(row).numel() for row in w.flatten(1))
    zeros = ""
    if bool((w == 0).any()):
        zeros = f" (exact zeros: torch.sign(0) = 0 is not +-1; {_zero_weight_desc(w == 0)}"
        patched = zeros_as_plus_alpha(w)
        if patched is not None and _two_valued(patched)[0]:
            zeros += "; --zero-weights-as-plus-one takes them as +1 and makes the layer binary, with the deviation measured"
        zeros += ")"
    why = []
    if levels <= 2 and not _two_valued(w)[0]:
        why.append("two values per output channel that are not +-alpha (an offset: {beta-alpha, beta+alpha})")
    if isinstance(form, tuple):
        why.append("an input sign that is shifted / scaled (delta + gamma * sign)")
    asym = (f"; BinaryConv has no per-channel offsets (contract v2), so: {' and '.join(why)}, as an exact float "
            f"{call.kind}") if why else ""
    desc = (f"float {call.kind} {_shape_desc(call, geom)}: not binary, its effective weights take up to {levels} "
            f"values per output channel{zeros}; input {_input_desc(form)}{asym}")
    return out, desc, {}


def _float_layer(call, geom, weight, bias):
    stride, pads, dilation, groups = geom
    w32, b32 = weight.float(), bias.float()
    if call.kind == "linear":
        layer = nn.Linear(w32.shape[1], w32.shape[0])
    else:
        m, cg, kh, kw = w32.shape
        symmetric = pads[0] == pads[2] and pads[1] == pads[3]
        layer = nn.Conv2d(cg * groups, m, (kh, kw), stride, (pads[0], pads[1]) if symmetric else 0, dilation, groups)
    with torch.no_grad():
        layer.weight.copy_(w32)
        layer.bias.copy_(b32)
    if call.kind == "conv2d" and not (pads[0] == pads[2] and pads[1] == pads[3]):
        return nn.Sequential(nn.ZeroPad2d((pads[1], pads[3], pads[0], pads[2])), layer)
    return layer


_INPUT_DESC = {"float": "used as it is", "sign": "binarized by torch.sign (sign(0) = 0)",
               "binarize": "binarized with sign(0) = +1", "relu": "ReLU"}


def _shape_desc(call, geom):
    w = call.weight
    if call.kind == "linear":
        return f"{w.shape[1]}->{w.shape[0]}"
    stride, _, _, groups = geom
    return f"{w.shape[1] * groups}->{w.shape[0]} k={tuple(w.shape[2:])} stride={tuple(stride)} groups={groups}"


def _alpha_desc(alpha: torch.Tensor) -> str:
    if bool((alpha == 1).all()):
        return "+-1 (no alpha)"
    log2 = torch.log2(alpha)
    if bool((log2 == torch.round(log2)).all()):
        return "+-2^k per output channel"
    return "+-alpha per output channel"


def zeros_as_plus_alpha(w: torch.Tensor) -> torch.Tensor | None:
    """``w`` with its exact zeros replaced by +alpha_m (the channel's max |w|), when ``w`` has zeros and every
    output channel has a non-zero weight; None otherwise."""
    if not bool((w == 0).any()):
        return None
    amax = w.detach().abs().flatten(1).max(1).values
    if not bool((amax > 0).all()):
        return None
    return torch.where(w == 0, amax.view(-1, *([1] * (w.dim() - 1))).to(w.dtype), w)


def _zero_weight_desc(zeros: torch.Tensor) -> str:
    where = [list(map(int, i)) for i in zeros.nonzero()[:3]]
    more = f" and {int(zeros.sum()) - 3} more" if int(zeros.sum()) > 3 else ""
    return f"{int(zeros.sum())} of {zeros.numel()} weights exactly 0 (at {where}{more})"


def _binary(module, obs, call, geom, form, a, c, bias_call, w, alpha, facts, zeros=None):
    flow = facts.get("flow")
    pattern = torch.where(w >= 0, 1.0, -1.0).double()
    scale, shift = a * alpha, a * bias_call + c
    for o in obs:  # the exact semantics of the layer (its own sign convention) against its output
        y_hat = _per_channel(scale, o.output) * _conv64(_exact_input(form, o.probe), pattern, geom) \
            + _per_channel(shift, o.output)
        target = o.output
        if zeros is not None:  # what the layer computes with its zero weights taken as +alpha
            dw = torch.where(zeros, w.double(), 0.0)
            target = o.output.double() + _per_channel(a, o.output) * _conv64(_exact_input(form, o.probe), dw, geom)
        if not _close(y_hat, target):
            return module, "kept as the user's own ops: a BinaryConv rebuild does not reproduce its output", {}
    zeros_seen = bool(facts.get("input_has_zeros", flow.input_has_zeros if flow is not None else False))
    extra, note, prefix = {}, None, None
    if isinstance(form, tuple):  # ("centred", convention, dims): BinaryConv binarizes x - mean(x)
        _, conv, dims = form
        prefix, binarize_input = Centre(dims), True
        how = f"centred (x - mean over dims {dims}) and binarized inside the layer"
        if conv == "sign":
            note = ("binarize(0)=+1 where the research code's torch.sign(0)=0: outputs would differ only where an "
                    "input equals its mean exactly")
    elif form == "binarize":
        binarize_input, how = True, "binarized inside the layer (sign(0) = +1)"
    elif form == "sign" and zeros_seen:
        # Inputs exactly 0 (after a ReLU): torch.sign gives 0 there, not +-1. Keep the sign a standard
        # Sign op and give BinaryConv the already-signed input.
        prefix, binarize_input, how = TorchSign(), False, "torch.sign inside the layer, kept as a Sign op"
        note = "inputs exactly 0 were seen (torch.sign(0)=0 is not +-1): the sign is a standard Sign op"
    elif form == "sign":
        binarize_input, how = True, "binarized inside the layer (torch.sign)"
        seen = "was seen in the calibration run" if flow is not None else "is known (no calibration run)"
        note = (f"binarize(0)=+1 where the research code's torch.sign(0)=0: no input exactly 0 {seen}; "
                "outputs would differ only for inputs exactly 0")
    elif form == "relu":
        prefix, binarize_input, how = nn.ReLU(), False, "ReLU (float input)"
    elif flow is not None and flow.binarized_input:
        binarize_input, how, extra, note = _fed_by_sign(flow, facts)
    else:
        binarize_input, how = False, "float (binary weights only)"
    if form in ("sign", "binarize"):
        extra["binarizes"] = "self"  # (a centred form binarizes a value of cmc's own, not one of the user's)
    layer = _binary_layer(call, geom, pattern, scale, shift, binarize_input)
    out = nn.Sequential(prefix, layer) if prefix is not None else layer
    kind = ("Sign + " if isinstance(prefix, TorchSign) else "Centre + " if isinstance(prefix, Centre)
            else "Relu + " if prefix is not None else "") + \
        f"BinaryConv (binarize_input={int(binarize_input)})"
    if call.kind == "linear":
        kind += " as a 1x1 conv"
    desc = f"{kind} {_shape_desc(call, geom)}; weights {_alpha_desc(alpha)}; input {how}"
    if zeros is not None:
        desc += f"; --zero-weights-as-plus-one: {_zero_weight_desc(zeros)} taken as +1"
        extra["zero_weights"] = {"count": int(zeros.sum()), "of": zeros.numel(),
                                 "first": [list(map(int, i)) for i in zeros.nonzero()[:8]]}
    if note:
        desc += f"; note: {note}"
    return out, desc, extra


def _fed_by_sign(flow, facts):
    """The layer convolves its input as it is, and that input is already +-1 (0 where torch.sign met 0)."""
    feeder = facts.get("feeder")
    extra = {}
    if flow.sign_source:
        extra["sign_source"] = flow.sign_source
    if feeder is not None and flow.input_exclusive:
        path, module, ffacts = feeder
        convention = sign_convention(module, ffacts.input_shape) if ffacts is not None and ffacts.calls == 1 else None
        if convention == "binarize" or (convention == "sign" and not ffacts.input_has_zeros):
            note = None if convention == "binarize" else (
                "binarize(0)=+1 where torch.sign(0)=0: no input of the sign module exactly 0 was seen in the "
                "calibration run; outputs would differ only for inputs exactly 0")
            return True, f"the output of sign module {path!r}, absorbed", {"binarizes": path, "absorbs": path}, note
    if flow.input_has_zeros:
        return False, "already +-1 / 0 (binarized before the layer; exact zeros seen)", extra, None
    extra["binarizes"] = "self"
    return True, "already +-1 (binarized before the layer)", extra, None


def _binary_layer(call, geom, pattern, scale, shift, binarize_input):
    stride, pads, dilation, groups = geom
    if call.kind == "linear":
        m, f = pattern.shape
        pattern = pattern.view(m, f, 1, 1)
    m, cg = pattern.shape[:2]
    layer = BinaryConv2d(cg * groups, m, tuple(pattern.shape[2:]), stride, pads, dilation, groups, bias=False,
                         binarize_input=binarize_input, use_alpha=False)
    with torch.no_grad():
        layer.weight.copy_(pattern.float())
        layer.scale.copy_(scale.float())
        layer.shift.copy_(shift.float())
    return LinearAsConv1x1(layer) if call.kind == "linear" else layer
