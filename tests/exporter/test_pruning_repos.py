"""Acceptance: models written the way the pruning repositories write them (rethinking-network-pruning:
Network Slimming's VGG / pre-activation ResNet with channel_selection / DenseNet, L1-norm pruning's CIFAR
ResNet-56 and ImageNet ResNet-34 saved from DataParallel), in every checkpoint form those repositories
save, export with one command and no wrapper module:

* ``train``: main.py's training checkpoint {'epoch', 'state_dict', 'best_prec1' (0-d tensor), 'optimizer'}
  — for Network Slimming a sparsity-trained model (small γ, none zero) exported with ``--slim``;
  for L1 pruning the masked (pruned, not yet rebuilt) model;
* ``thresholded``: the masked model's state_dict (γ = β = 0, or zeroed filters and their BN channels);
* ``pruned``: the prune script's {'cfg', 'state_dict'}; ``finetuned``: main_finetune.py's checkpoint
  with 'cfg' as well.

Each export must hold parity (<= 1e-4 of max|y|), and the exported model must have exactly the parameters
of the model the repository's own prune step builds from the same mask (``samples.pruning.repo_prune``,
which also supplies the rebuilt model the ONNX output is compared with).
"""
from __future__ import annotations

import functools
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from cmc.exporter.cli import main
from cmc.exporter.load import load_model
from samples.pruning import densenet_cs, preresnet_cs, repo_prune as rp, resnet34_l1, resnet56_l1, vgg_slim
from samples.pruning.common import randomize_bn

pytestmark = pytest.mark.slow

#: blocks (0-based, 27 of ResNet-56) res56prune.py leaves alone, and its per-stage fraction: version A
R56_SKIP_A, R56_PROB_A = (7, 9, 18, 26), (0.1, 0.1, 0.1)


def _r56_fractions(n=9):
    return [0.0 if b in R56_SKIP_A else R56_PROB_A[b // n] for b in range(3 * n)]


def _vgg19(cfg=None):
    return vgg_slim.vgg(depth=19, cfg=cfg)


def _preresnet(cfg=None):
    return preresnet_cs.resnet(depth=29, cfg=cfg)


def _densenet(cfg=None):
    return densenet_cs.densenet(depth=40, cfg=cfg)


def _resnet56(cfg=None):
    return resnet56_l1.ResNet(56, cfg=cfg)


def _resnet56_data(cfg=None):
    mod = pytest.importorskip("samples.pruning.resnet_l1_data",
                              reason="needs samples/pruning/resnet_l1_data.py and the .data capture of branch c-capture")
    return mod.resnet(depth=56, cfg=cfg)


MODELS = {
    # name: (--arch, --arch-args, builder(cfg), method, prune step, input shape)
    "vgg19": ("samples.pruning.vgg_slim:vgg", None, _vgg19, ("slim", 50), rp.prune_vgg, (1, 3, 32, 32)),
    "preresnet29": ("samples.pruning.preresnet_cs:resnet", "depth=29", _preresnet, ("slim", 40), rp.prune_preresnet,
                    (1, 3, 32, 32)),
    "densenet40": ("samples.pruning.densenet_cs:densenet", "depth=40", _densenet, ("slim", 40), rp.prune_densenet,
                   (1, 3, 32, 32)),
    "resnet56": ("samples.pruning.resnet56_l1:ResNet", "depth=56", _resnet56, ("l1", _r56_fractions()),
                 rp.prune_resnet_blocks, (1, 3, 32, 32)),
    "resnet56_data": ("samples.pruning.resnet_l1_data:resnet", "depth=56,dataset=cifar10", _resnet56_data,
                      ("l1", _r56_fractions()), rp.prune_resnet_blocks, (1, 3, 32, 32)),
    "resnet34": ("samples.pruning.resnet34_l1:resnet34", None, resnet34_l1.resnet34,
                 ("l1", resnet34_l1.RESNET34_PRUNE["A"]), rp.prune_resnet_blocks, (1, 3, 64, 64)),
}

CASES = [
    ("vgg19", "train"), ("vgg19", "thresholded"), ("vgg19", "pruned"), ("vgg19", "finetuned"),
    ("preresnet29", "train"), ("preresnet29", "thresholded"), ("preresnet29", "pruned"),
    ("densenet40", "train"), ("densenet40", "thresholded"), ("densenet40", "pruned"),
    ("resnet56", "train"), ("resnet56", "pruned"), ("resnet56", "finetuned"),
    ("resnet56_data", "thresholded"), ("resnet56_data", "pruned"),
    ("resnet34", "train"), ("resnet34", "pruned"),
]


@functools.lru_cache(maxsize=None)
def _prepared(name):
    """(trained model, masked model, cfg, the repository's rebuilt model) — seeded."""
    _, _, builder, (method, arg), prune, _ = MODELS[name]
    torch.manual_seed(0)
    trained = builder()
    randomize_bn(trained, torch.Generator().manual_seed(0))
    trained.eval()
    masked = builder()
    if method == "slim":
        rp.sparsity_trained(trained)
        masked.load_state_dict(trained.state_dict())
        masks = rp.slim_masks(masked, arg)
        rp.apply_bn_masks(masked, masks)
    else:
        masked.load_state_dict(trained.state_dict())
        masks = rp.l1_block_masks(masked, arg)
        rp.apply_l1_masks(masked, masks)
    masked.eval()
    cfg, rebuilt = prune(masked, masks, builder)
    return trained, masked, cfg, rebuilt.eval()


def _optimizer_state(model, shape):
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model.train()
    model(torch.randn(2, *shape[1:])).sum().backward()
    opt.step()
    model.eval()
    return opt.state_dict()


def _dataparallel(sd, name):
    return {f"module.{k}": v for k, v in sd.items()} if name == "resnet34" else sd


def _checkpoint(name, form, path):
    """Write the checkpoint as the repository's scripts would; return the model the export must equal."""
    _, _, builder, (method, _), _, shape = MODELS[name]
    trained, masked, cfg, rebuilt = _prepared(name)
    if form == "train":
        src = trained if method == "slim" else masked
        ck = {"epoch": 160, "state_dict": _dataparallel(src.state_dict(), name), "best_prec1": torch.tensor(0.9312),
              "optimizer": _optimizer_state(builder(), shape)}
        if name == "resnet34":
            ck["arch"] = "resnet34"
    elif form == "thresholded":
        ck = _dataparallel(masked.state_dict(), name)
    elif form == "pruned":
        ck = {"cfg": cfg, "state_dict": _dataparallel(rebuilt.state_dict(), name)}
    else:
        ck = {"epoch": 40, "state_dict": _dataparallel(rebuilt.state_dict(), name), "best_prec1": torch.tensor(0.9288),
              "optimizer": _optimizer_state(builder(cfg=cfg), shape), "cfg": cfg}
    torch.save(ck, path)
    return rebuilt


def _extra_removed_by_cmc(name) -> int:
    """Parameters cmc removes beyond the repository's prune step, counted from the masks alone.

    A channel that every BatchNorm reading it zeroes (γ = β = 0) is dead: cmc removes the filters that
    produce it and those BatchNorms' γ, β. The prune scripts never narrow a BatchNorm that is followed by
    a channel_selection, so they keep such channels: in DenseNet (every concatenated channel, read only
    through BatchNorms) and in the last stage of the pre-activation ResNet (its residual stream is read
    only by the blocks' bn1 and the final bn; the earlier streams also feed a downsample conv directly)."""
    if name == "densenet40":
        return _extra_densenet()
    if name == "preresnet29":
        return _extra_preresnet_last_stage()
    return 0


def _dead(bns, pos) -> bool:
    return all(float(bn.weight[pos].detach()) == 0 and float(bn.bias[pos].detach()) == 0 for bn in bns)


def _kept(bn) -> int:
    return int(((bn.weight.detach() != 0) | (bn.bias.detach() != 0)).sum())


def _extra_preresnet_last_stage() -> int:
    _, masked, _, _ = _prepared("preresnet29")
    blocks = list(masked.layer3)
    readers = [b.bn1 for b in blocks[1:]] + [masked.bn]     # layer3.0.bn1 reads the previous stage's stream
    extra = 0
    for c in range(masked.bn.num_features):
        if _dead(readers, c):
            extra += blocks[0].downsample[0].in_channels                     # 1x1 downsample filter
            extra += sum(_kept(b.bn3) for b in blocks)                       # each block's conv3 filter
            extra += 2 * len(readers)                                        # γ, β of every reader
    return extra


def _extra_densenet() -> int:
    _, masked, _, _ = _prepared("densenet40")
    extra = 0
    stages = [(masked.conv1, masked.dense1, masked.trans1), (masked.trans1.conv1, masked.dense2, masked.trans2),
              (masked.trans2.conv1, masked.dense3, None)]
    for stem, dense, trans in stages:
        # producers of this stage's stream, in concatenation order: (conv, offset)
        producers, offset = [(stem, 0)], stem.out_channels
        for blk in dense:
            producers.append((blk.conv1, offset))
            offset += blk.conv1.out_channels
        readers = [blk.bn1 for blk in dense] + [trans.bn1 if trans is not None else masked.bn]
        for conv, off in producers:
            in_kept = sum(1 for c in range(conv.in_channels) if _reads(masked, conv, c))
            for c in range(conv.out_channels):
                who = [bn for bn in readers if bn.num_features > off + c]
                if _dead(who, off + c):
                    extra += in_kept * conv.kernel_size[0] * conv.kernel_size[1] + 2 * len(who)
    return extra


def _reads(masked, conv, c) -> bool:
    """Whether ``conv`` reads input channel c after shrinking: not when the BatchNorm in front zeroes it."""
    for m in masked.modules():
        if getattr(m, "conv1", None) is conv and hasattr(m, "bn1"):
            return not _dead([m.bn1], c)
    return True   # the stem reads the image


def _onnx_output(path, x):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]


@pytest.mark.parametrize("name,form", CASES)
def test_repository_checkpoint_exports_with_one_command(name, form, tmp_path, in_repo_root, capsys):
    arch, arch_args, _, (method, arg), _, shape = MODELS[name]
    _prepared(name)
    ckpt = tmp_path / ("checkpoint.pth.tar" if form in ("train", "finetuned") else f"{form}.pth.tar")
    rebuilt = _checkpoint(name, form, ckpt)
    argv = [str(ckpt), "--arch", arch, "--input-shape", "x".join(map(str, shape)), "--verify-batch", "2",
            "-o", str(tmp_path / "out")]
    if arch_args:
        argv += ["--arch-args", arch_args]
    if form == "train" and method == "slim":
        argv += ["--slim", str(arg)]
    assert main(argv) == 0, capsys.readouterr().err
    err = capsys.readouterr().err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["parity"]["passed"] and report["parity"]["tolerance"] <= 1e-4

    # parameters: exactly those of the repository's rebuilt model (DenseNet: minus the dead filters it keeps)
    shrink = report["shrink"]
    if form in ("train", "thresholded"):
        assert "report" in shrink, shrink
        got = shrink["report"]["params"]["after"]
        assert shrink["report"]["round_to"] == 1
    else:
        got = shrink["report"]["params"]["after"] if "report" in shrink else \
            rp.count_params(load_model(ckpt, arch, arch_args=_args(arch_args)).module)
    assert got == rp.count_params(rebuilt) - _extra_removed_by_cmc(name), err
    if form in ("pruned", "finetuned"):
        assert "passed to --arch: cfg" in err
    if form == "train":
        assert "best_prec1=0.9312 (0-d tensor)" in err and "optimizer (optimizer state)" in err

    # the ONNX model computes what the repository's pruned model computes
    x = torch.randn(3, *shape[1:], generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ref = rebuilt(x).numpy()
    y = _onnx_output(tmp_path / "out" / f"{ckpt.name.split('.')[0]}.onnx", x)
    assert np.abs(y - ref).max() / np.abs(ref).max() <= 1e-4


def _args(text):
    from cmc.exporter.arch import parse_arch_args

    return parse_arch_args(text)


# ---------------------------------------------------------------- channel_selection before pruning (issue 17, 7)
# A sparsity-trained model straight from main.py -sr (or any model whose channel_selection layers hold
# their indexes, pruned or not, exported without shrinking) reaches capture with the research forward's
# NumPy gather: its indexes are parameters, so the selection is a constant and exports as one. With
# --slim the same checkpoint is the ("train") case above.

def _channel_selections(model) -> int:
    return sum(type(m).__name__ == "channel_selection" for m in model.modules())


@pytest.mark.parametrize("name,form,extra", [
    ("densenet40", "train", []),                    # all-ones indexes, nothing pruned: no shrink
    ("preresnet29", "train", []),
    ("preresnet29", "pruned", ["--no-shrink"]),     # indexes with zeros, kept as gathers
])
def test_channel_selection_exports_without_shrinking(name, form, extra, tmp_path, in_repo_root, capsys):
    arch, arch_args, builder, *_, shape = MODELS[name]
    trained, _, cfg, rebuilt = _prepared(name)
    ckpt = tmp_path / ("checkpoint.pth.tar" if form == "train" else "pruned.pth.tar")
    _checkpoint(name, form, ckpt)
    user = trained if form == "train" else rebuilt
    n_sel = _channel_selections(user)
    all_ones = form == "train"
    assert n_sel and all(bool((m.indexes == 1).all()) == all_ones
                         for m in user.modules() if type(m).__name__ == "channel_selection")
    argv = [str(ckpt), "--arch", arch, "--arch-args", arch_args, "--input-shape", "x".join(map(str, shape)),
            "--verify-batch", "2", "-o", str(tmp_path / "out"), *extra]
    assert main(argv) == 0, capsys.readouterr().err
    err = capsys.readouterr().err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["parity"]["passed"] and report["parity"]["tolerance"] <= 1e-4
    assert "report" not in report["shrink"]          # nothing was shrunk: the selections stay selections
    sel = report["channel_selections"]
    assert len(sel) == n_sel
    assert all(e["action"].endswith(": Identity") == all_ones for e in sel)
    assert f"channel_selection: {n_sel} layer(s) exported as constant index selections" in err
    if form == "train":
        assert "--slim PERCENT" in err               # the sparsity hint is still given

    x = torch.randn(3, *shape[1:], generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ref = user(x).numpy()
    path = tmp_path / "out" / f"{ckpt.name.split('.')[0]}.onnx"
    assert np.abs(_onnx_output(path, x) - ref).max() / np.abs(ref).max() <= 1e-4
    gathers = sum(n.op_type == "Gather" for n in onnx.load(str(path)).graph.node)
    assert gathers >= (0 if all_ones else n_sel)
