"""Recognise the BNN research code's quantized conv (``Conv2d_Q`` inside ``Tnn_Bin_Conv2d``).

Structure: an nn.Conv2d subclass with child modules ``activation_quantizer`` (attribute ``A``) and
``weight_quantizer`` (attribute ``W``). What it computes, reproduced exactly:
* A == 2: activations torch.sign(x); otherwise ReLU(x) (in place, as the research code does);
* W == 2: weights alpha * torch.sign(W), alpha = mean |W| per output channel of the weights as they
  are (the code's mean-centring and clamp are not in-place and do nothing); otherwise W unchanged;
* then F.conv2d with the layer's bias, stride, padding, dilation and groups (zero padding after
  binarization, so padded taps add 0).
Differences from the contract's binarize(0) = +1 are handled, not ignored: weights containing an
exact 0 (torch.sign(0) = 0) cannot be +-1, so that layer stays a float conv with alpha*sign(W)
weights; where a calibration run sees inputs exactly 0 (a ReLU in front), the sign stays a standard
Sign op in front of BinaryConv(binarize_input=0); otherwise the note says where outputs could differ.
"""
from __future__ import annotations

import torch
from torch import nn

from .layer import BinaryConv2d


def _quantizers(module):
    aq = getattr(module, "activation_quantizer", None)
    wq = getattr(module, "weight_quantizer", None)
    if isinstance(module, nn.Conv2d) and isinstance(aq, nn.Module) and isinstance(wq, nn.Module):
        return aq, wq
    return None


def recognise(module: nn.Module, facts: dict | None = None):
    """``facts`` may hold what a calibration run saw: ``input_has_zeros`` (an input element exactly 0)."""
    facts = facts or {}
    if isinstance(module, BinaryConv2d):
        return None
    q = _quantizers(module)
    if q is None:
        return None
    aq, wq = q
    if not hasattr(aq, "A") or not hasattr(wq, "W"):
        raise ValueError(f"{type(module).__name__}: quantizers lack the A / W bit-width attributes")
    a_bits, w_bits = int(aq.A), int(wq.W)
    if w_bits not in (2, 32) or a_bits not in (2, 32):
        # No cmc operator for this width (ternary, ...): export the user's own forward, traced to
        # standard ops, which computes exactly what their model computes.
        return module, (f"kept as standard ops: A={a_bits}, W={w_bits} (ternary or other widths) "
                        "has no cmc operator")
    # The research forward calls F.conv2d itself, so padding_mode is ignored and padding is zeros.
    pads = _explicit_pads(module)
    w = module.weight.detach()
    binarize_input = a_bits == 2
    prefix = [] if binarize_input else [nn.ReLU(inplace=True)]
    note = None
    if w_bits != 2:
        layer = nn.Conv2d(module.in_channels, module.out_channels, module.kernel_size, module.stride,
                          module.padding, module.dilation, module.groups, module.bias is not None)
        _copy_conv(layer, w, module.bias)
        kind = "float conv"
    elif bool((w == 0).any()):
        alpha = w.abs().mean(dim=(1, 2, 3), keepdim=True)
        layer = nn.Conv2d(module.in_channels, module.out_channels, module.kernel_size, module.stride,
                          module.padding, module.dilation, module.groups, module.bias is not None)
        _copy_conv(layer, torch.sign(w) * alpha, module.bias)
        kind = "float conv (weights contain exact zeros: torch.sign(0)=0 is not +-1)"
    else:
        zeros_seen = binarize_input and facts.get("input_has_zeros", False)
        if zeros_seen:
            # Inputs exactly 0 (e.g. after a ReLU) binarize to 0 with torch.sign, not to +1: keep the
            # user's sign as a standard Sign op and give BinaryConv the already-signed input.
            prefix = [TorchSign()]
        layer = BinaryConv2d(module.in_channels, module.out_channels, module.kernel_size, module.stride,
                             pads, module.dilation, module.groups, module.bias is not None,
                             binarize_input=binarize_input and not zeros_seen, use_alpha=True)
        with torch.no_grad():
            layer.weight.copy_(w)
            if module.bias is not None:
                layer.bias.copy_(module.bias)
        if zeros_seen:
            kind = "Sign + BinaryConv (binarize_input=0)"
            note = "inputs exactly 0 were seen (torch.sign(0)=0 is not +-1): the sign is a standard Sign op"
        else:
            kind = "BinaryConv" + ("" if binarize_input else " (float input)")
            if binarize_input:
                note = ("binarize(0)=+1 where the research code's torch.sign(0)=0: no input exactly 0 was seen "
                        "in the calibration run; outputs would differ only for inputs exactly 0")
    if binarize_input and not isinstance(layer, BinaryConv2d):
        prefix = [TorchSign()]  # standard ops, exactly the research code's torch.sign activations
    out = nn.Sequential(*prefix, layer) if prefix else layer
    desc = (f"{kind} {module.in_channels}->{module.out_channels} k={tuple(module.kernel_size)} "
            f"stride={tuple(module.stride)} groups={module.groups} A={a_bits} W={w_bits}")
    if note:
        desc += f"; note: {note}"
    return out, desc


def _explicit_pads(conv: nn.Conv2d) -> list[int]:
    """ONNX-order pads [top, left, bottom, right] of what F.conv2d does with conv.padding
    ('valid' = none; 'same' puts the odd extra row/column at the bottom/right, as PyTorch does)."""
    if conv.padding == "valid":
        return [0, 0, 0, 0]
    if conv.padding == "same":
        total = [d * (k - 1) for d, k in zip(conv.dilation, conv.kernel_size)]
        return [total[0] // 2, total[1] // 2, total[0] - total[0] // 2, total[1] - total[1] // 2]
    ph, pw = conv.padding
    return [ph, pw, ph, pw]


class TorchSign(nn.Module):
    """torch.sign activations (sign(0) = 0), for layers that stay standard ops."""

    def forward(self, x):
        return torch.sign(x)


def _copy_conv(layer: nn.Conv2d, weight, bias):
    with torch.no_grad():
        layer.weight.copy_(weight)
        if bias is not None:
            layer.bias.copy_(bias)
