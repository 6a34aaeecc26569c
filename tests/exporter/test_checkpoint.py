"""Checkpoint conventions of the research repositories, --arch arguments, and what errors say."""
import argparse

import numpy as np
import pytest
import torch

from cmc.exporter.arch import parse_arch_args
from cmc.exporter.checkpoint import as_literal, split_checkpoint
from cmc.exporter.errors import CmcError
from cmc.exporter.load import artifact_stem, load_model

VGG = "samples.pruning.vgg_slim:vgg"
SMALL = [8, 'M', 12, 'M', 8, 'M', 10, 'M', 6]          # four 'M's: 32x32 -> 2x2, as the CIFAR VGGs
PRUNED = [5, 'M', 7, 'M', 8, 'M', 3, 'M', 4]


def _vgg(cfg):
    from samples.pruning.vgg_slim import vgg

    torch.manual_seed(0)
    return vgg(cfg=list(cfg)).eval()


def _optimizer_state(model):
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model.train()
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    opt.step()
    model.eval()
    return opt.state_dict()


def _same_weights(a, b):
    sb = b.state_dict()
    return all(torch.equal(v, sb[k]) for k, v in a.state_dict().items())


def test_training_checkpoint_with_tensor_metric_and_optimizer(tmp_path, in_repo_root):
    """main.py's save_checkpoint: {'epoch', 'state_dict', 'best_prec1' (0-d tensor), 'optimizer'}."""
    model = _vgg(SMALL)
    ck = {"epoch": 160, "state_dict": model.state_dict(), "best_prec1": torch.tensor(0.9312),
          "optimizer": _optimizer_state(_vgg(SMALL))}
    torch.save(ck, tmp_path / "checkpoint.pth.tar")
    loaded = load_model(tmp_path / "checkpoint.pth.tar", VGG, arch_args={"cfg": SMALL})
    assert _same_weights(loaded.module, model)
    note = next(n for n in loaded.notes if n.startswith("checkpoint: weights from"))
    assert "'state_dict'" in note and "epoch=160" in note and "best_prec1=0.9312 (0-d tensor)" in note
    assert "optimizer (optimizer state)" in note


@pytest.mark.parametrize("form", ["pruned", "finetuned", "dataparallel"])
def test_cfg_in_the_checkpoint_builds_the_pruned_model(form, tmp_path, in_repo_root):
    """prune scripts: {'cfg', 'state_dict'}; main_finetune.py adds epoch/best_prec1/optimizer."""
    model = _vgg(PRUNED)
    sd = model.state_dict()
    if form == "dataparallel":
        sd = torch.nn.DataParallel(model).state_dict()
    ck = {"cfg": PRUNED, "state_dict": sd}
    if form == "finetuned":
        ck.update(epoch=40, best_prec1=torch.tensor(0.93), optimizer=_optimizer_state(_vgg(PRUNED)))
    torch.save(ck, tmp_path / "pruned.pth.tar")
    loaded = load_model(tmp_path / "pruned.pth.tar", VGG)
    assert loaded.arch_kwargs == {"cfg": PRUNED}
    assert _same_weights(loaded.module, model)
    assert any("passed to --arch: cfg" in n for n in loaded.notes)


def test_cfg_goes_through_var_kwargs_only_as_cfg(tmp_path, in_repo_root):
    """imagenet resnet34(pretrained=False, **kwargs): cfg is passed, other entries are not."""
    from samples.pruning.resnet34_l1 import resnet34

    cfg = [64, 44, 44, 128, 89, 89, 128, 256, 179, 179, 179, 179, 256, 512, 512, 512]
    model = resnet34(cfg=cfg)
    torch.save({"cfg": cfg, "arch": "resnet34", "epoch": 3,
                "state_dict": torch.nn.DataParallel(model).state_dict()}, tmp_path / "r34.pth.tar")
    loaded = load_model(tmp_path / "r34.pth.tar", "samples.pruning.resnet34_l1:resnet34")
    assert loaded.arch_kwargs == {"cfg": cfg} and _same_weights(loaded.module, model)
    assert any("DataParallel" in n for n in loaded.notes)


def test_command_line_arguments_and_their_precedence(tmp_path, in_repo_root):
    from samples.pruning.resnet56_l1 import ResNet

    cfg = [9] * 3 + [20] * 3 + [40] * 3
    model = ResNet(20, dataset="cifar100", cfg=cfg).eval()
    torch.save({"cfg": cfg, "state_dict": model.state_dict()}, tmp_path / "r20.pth.tar")
    loaded = load_model(tmp_path / "r20.pth.tar", "samples.pruning.resnet56_l1:ResNet",
                        arch_args=parse_arch_args("depth=20,dataset=cifar100"))
    assert loaded.arch_kwargs == {"cfg": cfg, "depth": 20, "dataset": "cifar100"}
    with pytest.raises(CmcError, match=r"instead of the checkpoint's cfg=\[9, 9"):
        load_model(tmp_path / "r20.pth.tar", "samples.pruning.resnet56_l1:ResNet",
                   arch_args={"depth": 20, "dataset": "cifar100", "cfg": None})
    with pytest.raises(CmcError, match=r"calling samples.pruning.resnet56_l1:ResNet\(cfg=.*\) failed: TypeError"):
        load_model(tmp_path / "r20.pth.tar", "samples.pruning.resnet56_l1:ResNet")     # depth is required


def test_mismatch_names_the_cfg_when_the_callable_cannot_take_it(tmp_path, in_repo_root):
    torch.save({"cfg": PRUNED, "state_dict": _vgg(PRUNED).state_dict()}, tmp_path / "pruned.pth.tar")
    with pytest.raises(CmcError, match=r"carries cfg=\[5, 'M'.*takes no 'cfg' argument"):
        load_model(tmp_path / "pruned.pth.tar", "samples.pruning.vgg_slim:vgg16_slimmed")
    with pytest.raises(CmcError, match=r"carries cfg=.*a pruned model.*pass --arch"):
        load_model(tmp_path / "pruned.pth.tar")


def small_vgg():
    """A user's zero-argument builder of the unpruned model."""
    return _vgg(SMALL)


def test_mismatch_without_cfg_suggests_one(tmp_path, in_repo_root):
    torch.save(_vgg(PRUNED).state_dict(), tmp_path / "pruned.pth")
    with pytest.raises(CmcError, match=r"'feature.0.weight' is \(5, 3, 3, 3\).*\(8, 3, 3, 3\).*narrower.*cfg"):
        load_model(tmp_path / "pruned.pth", "tests.exporter.test_checkpoint:small_vgg")


def test_saved_training_args_are_read_without_unpickling_code(tmp_path, in_repo_root):
    """argparse.Namespace and NumPy metrics are plain data: no --allow-pickle needed; the args only hint."""
    from samples.pruning.resnet56_l1 import ResNet

    model = ResNet(20).eval()
    args = argparse.Namespace(depth=20, dataset="cifar10", lr=0.1, save="./logs")
    torch.save({"args": args, "state_dict": model.state_dict(), "best_prec1": np.float64(92.5),
                "epoch": np.int64(160)}, tmp_path / "ck.pth")
    with pytest.raises(CmcError, match=r"training args have dataset='cifar10',depth=20: pass --arch-args"):
        load_model(tmp_path / "ck.pth", "samples.pruning.resnet56_l1:ResNet", arch_args={"depth": 56})
    loaded = load_model(tmp_path / "ck.pth", "samples.pruning.resnet56_l1:ResNet", arch_args={"depth": 20})
    assert _same_weights(loaded.module, model)
    note = next(n for n in loaded.notes if n.startswith("checkpoint: weights from"))
    assert "args (argparse.Namespace with 4 fields)" in note and "best_prec1=92.5" in note


class Meter:  # a class only this test module defines: unpickling it means importing and running user code
    def __init__(self):
        self.avg = 0.5


def test_other_pickled_objects_are_refused_and_named(tmp_path, in_repo_root):
    torch.save({"state_dict": _vgg(SMALL).state_dict(), "meter": Meter()}, tmp_path / "ck.pth")
    with pytest.raises(CmcError, match=r"classes tests.exporter.test_checkpoint.Meter\).*--allow-pickle"):
        load_model(tmp_path / "ck.pth", VGG, arch_args={"cfg": SMALL})
    loaded = load_model(tmp_path / "ck.pth", VGG, arch_args={"cfg": SMALL}, allow_pickle=True)
    assert any("meter (Meter object)" in n for n in loaded.notes)


def test_flat_dict_with_a_metric_beside_the_weights(tmp_path, in_repo_root):
    model = _vgg(SMALL)
    torch.save(dict(model.state_dict(), best_acc=torch.tensor(93.1), epoch=12), tmp_path / "ck.pth")
    loaded = load_model(tmp_path / "ck.pth", VGG, arch_args={"cfg": SMALL})
    assert _same_weights(loaded.module, model)
    assert any("best_acc=93.1" in n for n in loaded.notes) and any("epoch=12" in n for n in loaded.notes)


def test_whole_model_under_a_key_with_allow_pickle(tmp_path, in_repo_root):
    model = _vgg(SMALL)
    torch.save({"net": model, "acc": 91.0}, tmp_path / "ck.pth")
    loaded = load_model(tmp_path / "ck.pth", allow_pickle=True)
    assert _same_weights(loaded.module, model)


def test_split_checkpoint_refuses_what_holds_no_weights():
    for obj in ({"epoch": 3}, {}, [1, 2], {"state_dict": {"epoch": 1}}):
        with pytest.raises(CmcError, match="not a state_dict|no state_dict"):
            split_checkpoint(obj)


def test_cfg_values_become_plain_python():
    cfg = [np.int64(5), torch.tensor(7), "M", np.int32(3)]
    assert as_literal(cfg) == [5, 7, "M", 3]
    assert as_literal(np.array([1, 2])) == [1, 2] and as_literal(torch.tensor([3, 4])) == [3, 4]
    with pytest.raises(ValueError):
        as_literal(torch.randn(3))


@pytest.mark.parametrize("text,expected", [
    ("depth=56,dataset=cifar10", {"depth": 56, "dataset": "cifar10"}),
    ("cfg=[16, 'M', 32],depth=19", {"cfg": [16, "M", 32], "depth": 19}),
    ("cfg=[[16,16],[32]], flag=True, x=None, s='a,b'", {"cfg": [[16, 16], [32]], "flag": True, "x": None, "s": "a,b"}),
    ('{"depth": 56, "cfg": [1, 2], "bn": true}', {"depth": 56, "cfg": [1, 2], "bn": True}),
    ("{'depth': 56}", {"depth": 56}),
    ("", {}),
])
def test_parse_arch_args(text, expected):
    assert parse_arch_args(text) == expected


@pytest.mark.parametrize("text", ["depth", "depth=56,depth=20", "cfg=[1,2", "x=__import__('os')", "1x=2", "{1: 2}",
                                  "a=b c"])
def test_parse_arch_args_refuses(text):
    with pytest.raises(CmcError, match="--arch-args"):
        parse_arch_args(text)


def test_artifact_stem():
    assert artifact_stem("a/pruned.pth.tar") == "pruned" and artifact_stem("m.pth") == "m"
    assert artifact_stem("x.tar") == "x" and artifact_stem("model.v2.pth") == "model.v2"


def test_a_namespace_holding_code_is_still_refused(tmp_path):
    """Allowing argparse.Namespace allows its class, not what its fields reference: a field holding a
    function (a global the file would import) is refused like any pickled code."""
    torch.save({"args": argparse.Namespace(f=print)}, tmp_path / "ck.pth")
    with pytest.raises(CmcError, match=r"classes builtins.print.*--allow-pickle"):
        load_model(tmp_path / "ck.pth", VGG)


@pytest.mark.parametrize("form", ["model wrapped", "part wrapped"])
def test_dataparallel_levels_anywhere_in_the_names(tmp_path, form):
    """DataParallel 'module' levels are matched against the model's own names: an --arch that returns a
    wrapped model, and pytorch/examples' `model.features = DataParallel(model.features)` checkpoints."""
    import torch
    from torch import nn

    from cmc.exporter.load import _load_into

    def plain():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))

    class Net(nn.Module):
        def __init__(self, wrap_features):
            super().__init__()
            self.features = plain()
            if wrap_features:
                self.features = nn.DataParallel(self.features)
            self.fc = nn.Linear(4, 2)

    if form == "model wrapped":
        saved = {k: v + 1 if v.is_floating_point() else v for k, v in plain().state_dict().items()}  # stripped names
        model = nn.DataParallel(plain())
    else:
        saved = {k: v + 1 if v.is_floating_point() else v for k, v in Net(True).state_dict().items()}
        model = Net(False)
    notes = []
    _load_into(model, saved, notes)
    got = list(model.state_dict().values())
    assert all(torch.equal(a, b) for a, b in zip(got, saved.values()))
    assert any("'module' levels" in n for n in notes)
