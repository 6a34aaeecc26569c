"""``--binarize-weights``: checkpoints that hold latent float weights of binary layers.

Some codebases binarize the weights *outside* the model: XNOR-Net-PyTorch's ``BinOp`` binarizes the
target convs before each test pass and restores the float (latent) weights afterwards, and saves the
checkpoint restored — the model file alone computes a float network. The option applies the
binarization the codebase documents, in place, to exactly these layers, and reports each:

* the layers: ``nn.Conv2d`` / ``nn.Linear`` modules that use their weight as it is (no forward of
  their own) and whose input in a calibration run was already binarized (+-1, or 0 where torch.sign
  met 0) — the convs fed by a binarizing activation (XNOR-Net: every conv after ``BinActive``);
  layers whose weights are already two-valued per output channel are left alone (reported);
* ``xnor`` (XNOR-Net-PyTorch ``BinOp.binarization``): W <- W - mean over input channels, clamp to
  [-1, 1], then alpha * sign(W) with alpha = mean |W| per output channel;
* ``sign`` (BinaryNet): W <- sign(W), no alpha.

torch.sign(0) = 0: a weight exactly 0 stays 0, and such a layer is exported as the float conv it is.
"""
from __future__ import annotations

import torch
from torch import nn

from .attribution import explain_failure
from .dataflow import observe_dataflow
from .errors import CmcError

SCHEMES = ("xnor", "sign")


def binarize(w: torch.Tensor, scheme: str) -> torch.Tensor:
    """The scheme applied to one weight tensor [M, ...] (float64 arithmetic, the weight's dtype back)."""
    v = w.detach().double()
    if scheme == "sign":
        return torch.sign(v).to(w.dtype)
    if scheme != "xnor":
        raise CmcError(f"--binarize-weights {scheme!r}: choose one of {', '.join(SCHEMES)}")
    v = (v - v.mean(1, keepdim=True)).clamp(-1.0, 1.0)
    alpha = v.abs().flatten(1).mean(1).view(-1, *([1] * (v.dim() - 1)))
    return (torch.sign(v) * alpha).to(w.dtype)


def _plain(mod: nn.Module) -> bool:
    return (isinstance(mod, nn.Conv2d) and type(mod).forward is nn.Conv2d.forward) or \
        (isinstance(mod, nn.Linear) and type(mod).forward is nn.Linear.forward)


def _two_valued(w: torch.Tensor) -> bool:
    a = w.detach().abs().flatten(1)
    return bool(((a.min(1).values > 0) & (a.max(1).values == a.min(1).values)).all())


def binarize_latent_weights(model: nn.Module, example: torch.Tensor, scheme: str) -> list[dict]:
    """Binarize, in place, the weights of the layers fed by a binarizing activation; one report entry each."""
    if scheme not in SCHEMES:
        raise CmcError(f"--binarize-weights {scheme!r}: choose one of {', '.join(SCHEMES)}")
    try:
        flow = observe_dataflow(model, example)
    except Exception as e:
        raise explain_failure(e, during="the calibration run for --binarize-weights", model=model, example=example) from e
    done = []
    for name, mod in model.named_modules():
        f = flow.get(name)
        if not (_plain(mod) and f is not None and f.binarized_input):
            continue
        if _two_valued(mod.weight):
            done.append({"layer": name, "scheme": None, "note": "weights already two-valued per output channel: kept"})
            continue
        with torch.no_grad():
            mod.weight.copy_(binarize(mod.weight, scheme))
        alpha = mod.weight.detach().abs().flatten(1).max(1).values
        entry = {"layer": name, "scheme": scheme, "alpha_min": float(alpha.min()), "alpha_max": float(alpha.max())}
        if bool((mod.weight == 0).any()):
            entry["note"] = "weights exactly 0 stay 0 (torch.sign(0) = 0): this layer stays a float conv"
        done.append(entry)
    if not any(e["scheme"] for e in done):
        raise CmcError(f"--binarize-weights {scheme}: no conv/linear layer with float weights is fed by a binarizing "
                       "activation in this model (nothing to binarize)")
    return done
