"""Test data with the numerics of trained AdderNets: the one place every AdderConv accuracy test (CPU op,
ONNX body, CUDA kernels, whole networks, benchmarks) takes its data from.

Why: random N(0, 1) weights and an epilogue of scale 0.5-1.5 hide precision bugs. In a trained AdderNet
|w| reaches ~60, every layer sums hundreds of |x - w| (A is in the tens of thousands) and the BatchNorm
that follows subtracts a mean far larger than the signal, which lives in the per-channel spread of A.
So here:

* weights have trained magnitudes: N(0, 1) scaled so that max |w| = ``W_MAX`` (60);
* inputs of deeper layers are post-BatchNorm/ReLU activations: relu(N(0, 1)), exact zeros included
  (a first layer sees N(0, 1) images);
* the epilogue is BatchNorm-like, fitted to the layer's own output: per channel ``scale = 1/sigma``,
  ``shift = -mu/sigma`` of A over the batch (float64), so Y is ~N(0, 1) per channel and an error in A
  shows at its true size relative to max |y|.

The C++ device test (trt_plugins/tests/test_device.cu) follows the same recipe in C++.
The whole-network part builds an AdderNet ResNet-20 with such weights (the sample's weights scaled, its
BatchNorms recalibrated) and its deployment form (BatchNorm folded into each AdderConv's epilogue).
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

W_MAX = 60.0  # trained AdderNet ResNet-20 weights reach |w| ~ 58


# ---------------------------------------------------------------- one layer

def trained_weights(shape, gen: torch.Generator) -> torch.Tensor:
    """float32 weights of trained-AdderNet magnitude: N(0, 1) scaled so that max |w| = W_MAX."""
    w = torch.randn(*shape, generator=gen, dtype=torch.float64)
    return (w * (W_MAX / w.abs().max())).float()


def activations(shape, gen: torch.Generator, first_layer: bool = False) -> torch.Tensor:
    """float32 layer inputs: post-BatchNorm/ReLU activations (about half exactly 0), or N(0, 1) images."""
    x = torch.randn(*shape, generator=gen)
    return x if first_layer else torch.relu(x)


def fitted_epilogue(acc) -> tuple[torch.Tensor, torch.Tensor]:
    """BatchNorm fitted to the raw sums ``acc`` [N, M, Ho, Wo] (float64): per channel scale = 1/sigma,
    shift = -mu/sigma (float32, as the contract stores them)."""
    a = torch.as_tensor(acc, dtype=torch.float64)
    mu = a.mean(dim=(0, 2, 3))
    sigma = a.std(dim=(0, 2, 3), correction=0)
    sigma = torch.maximum(sigma, 1e-6 * mu.abs().clamp(min=1.0))  # a constant channel (one output pixel)
    return (1.0 / sigma).float(), (-mu / sigma).float()


def raw_sum_float64(x, w, strides, pads, dilations, group) -> torch.Tensor:
    """A = -sum |Xpad - W| in float64 (only to fit the epilogue; expected outputs come from the reference)."""
    from cmc.plugins.adder_conv.op import adder_conv

    m = w.shape[0]
    return adder_conv(x.double(), w.double(), torch.ones(m, dtype=torch.float64), torch.zeros(m, dtype=torch.float64),
                      list(strides), list(pads), list(dilations), group, 0, 0.0)


def layer_case(n, c, h, w, m, kh, kw, strides, pads, dilations, group, activation=0, seed=0, first_layer=None,
               x_dtype=torch.float32):
    """(x, w, scale, shift, attrs) for one AdderConv layer with trained-AdderNet numerics.

    ``x_dtype=torch.float16`` rounds the inputs to half (FP16 activations) before the epilogue is fitted,
    so the reference of the rounded input is what the op must reproduce. W is always float32.
    ``first_layer`` (default: c <= 3) draws N(0, 1) images instead of post-ReLU activations."""
    gen = torch.Generator().manual_seed(seed)
    first = c <= 3 if first_layer is None else first_layer
    x = activations((n, c, h, w), gen, first).to(x_dtype)
    wt = trained_weights((m, c // group, kh, kw), gen)
    acc = raw_sum_float64(x, wt, strides, pads, dilations, group)
    scale, shift = fitted_epilogue(acc)
    attrs = dict(kernel_shape=[kh, kw], strides=list(strides), pads=list(pads), dilations=list(dilations),
                 group=group, activation=activation)
    return x, wt, scale, shift, attrs


def rel_err(got, want) -> float:
    """max |got - want| / max |want|, in float64 (the contract's tolerance measure)."""
    got = np.asarray(torch.as_tensor(got).detach().cpu().double().numpy() if isinstance(got, torch.Tensor) else got,
                     np.float64)
    want = np.asarray(torch.as_tensor(want).detach().cpu().double().numpy() if isinstance(want, torch.Tensor) else want,
                      np.float64)
    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-30))


# ---------------------------------------------------------------- the old FP16 rule (for tests that must fail)

def old_fp16_rule_adder(x, w, scale, shift, strides, pads, dilations, group, activation):
    """What the FP16 kernel computed before issue 10, simulated on the CPU: W rounded to half, |x - w| and
    partial sums of 8 consecutive taps (k = (c, p, q), aligned to multiples of 8) in half, those partials
    added in float32, the epilogue in float32, Y rounded to half. Used only to show that the accuracy
    tests catch it."""
    xh = x.half()
    wh = w.half()
    n, m = x.shape[0], w.shape[0]
    kh, kw = w.shape[2:]
    xp = F.pad(xh.float(), (pads[1], pads[3], pads[0], pads[2]))
    cols = F.unfold(xp, (kh, kw), dilation=tuple(dilations), stride=tuple(strides)).half()  # [N, C*K, L], exact
    ho = (x.shape[2] + pads[0] + pads[2] - dilations[0] * (kh - 1) - 1) // strides[0] + 1
    wo = (x.shape[3] + pads[1] + pads[3] - dilations[1] * (kw - 1) - 1) // strides[1] + 1
    k = cols.shape[1] // group
    mg = m // group
    acc = torch.zeros(n, m, cols.shape[2])
    for g in range(group):
        xc = cols[:, g * k:(g + 1) * k, :]                     # [N, K, L] half
        wg = wh[g * mg:(g + 1) * mg].reshape(mg, k)           # [Mg, K] half
        for k0 in range(0, k, 8):
            part = torch.zeros(n, mg, cols.shape[2], dtype=torch.float16)
            for kk in range(k0, min(k, k0 + 8)):
                d = (xc[:, kk, None, :] - wg[None, :, kk, None]).abs()  # half arithmetic
                part = part - d
            acc[:, g * mg:(g + 1) * mg] += part.float()
    acc = acc.reshape(n, m, ho, wo)
    y = acc * scale.float().view(1, -1, 1, 1) + shift.float().view(1, -1, 1, 1)
    y = torch.relu(y) if activation == 1 else y
    return y.half()


@contextlib.contextmanager
def old_fp16_rule():
    """Inside: every AdderConv2d given half inputs computes by the old FP16 rule (``old_fp16_rule_adder``)."""
    from cmc.plugins.adder_conv import AdderConv2d

    original = AdderConv2d.forward

    def forward(self, x):
        if x.dtype != torch.float16:
            return original(self, x)
        shift = self.shift if self.bias is None else self.shift + self.scale * self.bias
        return old_fp16_rule_adder(x, self.weight, self.scale, shift, *self.geometry(), self.activation)

    AdderConv2d.forward = forward
    try:
        yield
    finally:
        AdderConv2d.forward = original


# ---------------------------------------------------------------- a whole network

def trained_magnitude_resnet20(seed: int = 0) -> nn.Module:
    """The sample AdderNet ResNet-20 with trained-AdderNet numerics, as cmc layers: its research adder2d
    layers converted to AdderConv2d (cmc's recogniser), each one's weights scaled so that max |w| = W_MAX,
    then every BatchNorm recalibrated on random images (samples.make_checkpoints.calibrate), so deeper
    layers see post-BN/ReLU activations. Eval mode, BatchNorms not folded (see deployment_form)."""
    from cmc.exporter.convert import convert_research_layers
    from cmc.plugins.adder_conv import AdderConv2d
    from samples.addernet_resnet20 import resnet20
    from samples.make_checkpoints import calibrate

    torch.manual_seed(seed)
    model, _ = convert_research_layers(resnet20())
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, AdderConv2d):
                mod.weight.mul_(W_MAX / mod.weight.abs().max())
    return calibrate(model, batches=2, batch_size=16, seed=seed)


def fold_batchnorms(model: nn.Module, example: torch.Tensor) -> list[str]:
    """Fold every eval-mode BatchNorm2d that directly consumes an AdderConv2d's or nn.Conv2d's output
    into that layer and replace it by Identity: into an AdderConv2d's epilogue (scale/shift), into a
    Conv2d's weight and bias (what TensorRT's Conv+BN fusion does). float64, rounded once to float32 —
    the rule of the exporter's ONNX fold (cmc.exporter.onnx_export.fold_into_epilogues). Which
    BatchNorm reads which layer is observed in one forward pass on ``example``. Returns their names."""
    from cmc.plugins.adder_conv import AdderConv2d

    outputs: list[tuple[torch.Tensor, nn.Module]] = []  # the tensors themselves: ids alone could be reused
    pairs: list[tuple[str, nn.Module, nn.BatchNorm2d]] = []
    hooks = []
    for name, mod in model.named_modules():
        if isinstance(mod, (AdderConv2d, nn.Conv2d)):
            hooks.append(mod.register_forward_hook(lambda m, a, out: outputs.append((out, m))))
        elif isinstance(mod, nn.BatchNorm2d):
            def pre(m, args, name=name):
                src = next((conv for out, conv in outputs if out is args[0]), None)
                if src is not None and getattr(src, "activation", 0) == 0 and not m.training:
                    pairs.append((name, src, m))
            hooks.append(mod.register_forward_pre_hook(pre))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in hooks:
            h.remove()
    for name, conv, bn in pairs:
        gamma = bn.weight.double() if bn.weight is not None else 1.0
        beta = bn.bias.double() if bn.bias is not None else 0.0
        inv = gamma / torch.sqrt(bn.running_var.double() + bn.eps)
        with torch.no_grad():
            if isinstance(conv, AdderConv2d):
                shift = conv.shift.double() + (conv.scale.double() * conv.bias.double() if conv.bias is not None else 0.0)
                conv.scale.copy_((conv.scale.double() * inv).float())
                conv.shift.copy_(((shift - bn.running_mean.double()) * inv + beta).float())
                if conv.bias is not None:
                    conv.bias.zero_()
            else:
                bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(inv)
                conv.weight.copy_((conv.weight.double() * inv.view(-1, 1, 1, 1)).float())
                conv.bias = nn.Parameter(((bias - bn.running_mean.double()) * inv + beta).float())
        parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
        setattr(parent, name.rpartition(".")[2], nn.Identity())
    return [p[0] for p in pairs]


def deployment_form(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """A copy of the cmc model with every BatchNorm folded (into the AdderConv epilogues and the float
    convolutions), as it is deployed."""
    import copy

    folded = copy.deepcopy(model).eval()
    fold_batchnorms(folded, example)
    return folded


def network_inputs(n: int = 64, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def fp16_network_figures(fp16_logits, ref_logits) -> dict:
    """Error of FP16 logits vs float64 ones (of max |y|) and how often their argmax agrees."""
    got = fp16_logits.detach().cpu().double()
    want = ref_logits.detach().cpu().double()
    return {"rel_err_of_max_abs": rel_err(got, want),
            "argmax_agreement": float((got.argmax(1) == want.argmax(1)).double().mean()),
            "n_inputs": int(want.shape[0])}
