"""cmc-export's pruning options: --align-channels (off by default, its cost reported), --accept-deviation
(exit 0, the deviation a warning, parity against the shrunk model), a shrink that removes nothing (one line
with the reason), and a sparsity-trained model without --slim (how to proceed)."""
import json

import pytest
import torch

from cmc.exporter.cli import main

pytestmark = pytest.mark.slow

L1 = "samples.pruning.resnet56_l1:resnet56_l1"


def _save(model, path):
    torch.save(model.state_dict(), path)
    return str(path)


def _report(out):
    return json.loads((out / "report.json").read_text())


def test_alignment_is_off_by_default_and_reported_when_asked(tmp_path, in_repo_root, capsys):
    from samples.pruning.resnet56_l1 import resnet56_l1

    # 30 % of each block's conv1: 16 -> 12, 32 -> 23, 64 -> 45 channels: none a multiple of 8
    args = "depth=20,ratios=(0.3,0.3,0.3)"
    ckpt = _save(resnet56_l1(depth=20, ratios=(0.3, 0.3, 0.3)), tmp_path / "r20.pth")
    assert main([ckpt, "--arch", L1, "--arch-args", args, "--verify-batch", "2", "-o", str(tmp_path / "exact")]) == 0
    exact = _report(tmp_path / "exact")["shrink"]
    capsys.readouterr()
    assert main([ckpt, "--arch", L1, "--arch-args", args, "--verify-batch", "2", "--align-channels", "8",
                 "-o", str(tmp_path / "aligned")]) == 0
    err = capsys.readouterr().err
    aligned = _report(tmp_path / "aligned")["shrink"]

    assert exact["report"]["round_to"] == 1 and "alignment" not in exact
    widths = {e["name"]: e["out_after"] for e in exact["report"]["layers"] if e["name"].endswith(".conv1")}
    assert {widths["layer1.0.conv1"], widths["layer2.0.conv1"], widths["layer3.0.conv1"]} == {12, 23, 45}
    a = aligned["alignment"]
    # stage 1: 12 -> 16 (4 kept per block), stage 2: 23 -> 24 (1), stage 3: 45 -> 48 (3); 3 blocks each
    assert a["channels_kept"] == 3 * (4 + 1 + 3)
    assert a["extra_params"] == aligned["report"]["params"]["after"] - exact["report"]["params"]["after"] > 0
    assert a["params_without_alignment"] == exact["report"]["params"]["after"]
    assert f"--align-channels 8 kept {a['channels_kept']} removable channel(s)" in err
    assert f"+{a['extra_params']:,} parameters" in err


def test_accept_deviation_exits_0_with_the_measured_deviation(tmp_path, in_repo_root, capsys):
    """Filters zeroed but not their BatchNorm: each pruned channel is the constant relu(β − γμ/σ) > 0, read
    by a padded conv. Exact shrinking must keep them all (and says so in one line); --accept-deviation folds
    them and states by how much that differs."""
    from samples.pruning.resnet56_l1 import resnet56_l1

    args = "depth=20,zero_bn=False"
    model = resnet56_l1(depth=20, zero_bn=False)
    with torch.no_grad():
        for stage in (model.layer1, model.layer2, model.layer3):
            for block in stage:
                dead = block.conv1.weight.flatten(1).abs().sum(1) == 0
                block.bn1.bias[dead] = 0.5 + block.bn1.weight[dead] * block.bn1.running_mean[dead].abs()
    ckpt = _save(model, tmp_path / "r20.pth")
    assert main([ckpt, "--arch", L1, "--arch-args", args, "--verify-batch", "2", "-o", str(tmp_path / "kept")]) == 0
    err = capsys.readouterr().err
    line = [ln for ln in err.splitlines() if "shrink removed nothing" in ln]
    assert len(line) == 1 and "constant channel read by padded conv" in line[0] and "--accept-deviation" in line[0]
    kept = _report(tmp_path / "kept")["shrink"]["report"]
    assert kept["params"]["after"] == kept["params"]["before"]

    assert main([ckpt, "--arch", L1, "--arch-args", args, "--accept-deviation", "--verify-batch", "2",
                 "-o", str(tmp_path / "dev")]) == 0
    err = capsys.readouterr().err
    rep = _report(tmp_path / "dev")
    dev = rep["deviation"]
    assert dev["accepted"] and dev["max_rel_err"] > 1e-3
    assert f"cmc-export: warning: --accept-deviation: the shrunk model differs from the original by " \
           f"{dev['max_rel_err']:.3g} of max|y|" in err
    assert rep["parity"]["passed"] and rep["shrink"]["report"]["approximated"]
    assert rep["shrink"]["report"]["params"]["after"] < rep["shrink"]["report"]["params"]["before"]

    # the CI check agrees with the export when told the same, and fails against the original model
    onnx_path = str(tmp_path / "dev" / "r20.onnx")
    common = [onnx_path, ckpt, "--arch", L1, "--arch-args", args, "--verify-batch", "2",
              "--json", str(tmp_path / "v.json"), "--junit", str(tmp_path / "v.xml")]
    assert main(["verify", *common, "--accept-deviation"]) == 0
    assert main(["verify", *common]) == 3

    # --no-verify still states the deviation
    capsys.readouterr()
    assert main([ckpt, "--arch", L1, "--arch-args", args, "--accept-deviation", "--no-verify",
                 "-o", str(tmp_path / "nv")]) == 0
    assert "warning: --accept-deviation" in capsys.readouterr().err


def test_sparsity_trained_model_without_slim_says_how_to_proceed(tmp_path, in_repo_root, capsys):
    from samples.pruning import repo_prune
    from samples.pruning.common import randomize_bn
    from samples.pruning.vgg_slim import vgg

    cfg = [16, 'M', 32, 'M', 32, 'M', 48, 'M', 48]
    torch.manual_seed(0)
    m = vgg(cfg=cfg)
    randomize_bn(m, torch.Generator().manual_seed(0))
    repo_prune.sparsity_trained(m)
    ckpt = tmp_path / "checkpoint.pth.tar"
    torch.save({"epoch": 160, "state_dict": m.state_dict(), "best_prec1": torch.tensor(0.93)}, ckpt)
    arch = ["--arch", "samples.pruning.vgg_slim:vgg", "--arch-args", f"cfg={cfg}"]
    assert main(["shrink", str(ckpt), *arch, "-o", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert "nothing to shrink: no pruned structure found" in err and "--slim PERCENT" in err

    assert main(["shrink", str(ckpt), *arch, "--slim", "50", "-o", str(tmp_path / "s")]) == 0
    rep = json.loads((tmp_path / "s" / "shrink_report.json").read_text())
    kept = [layer["kept"] for layer in rep["slim"]["layers"]]
    masks = repo_prune.slim_masks(m, 50)
    assert kept == [int(k.sum()) for _, k in masks]
    convs = [e["out_after"] for e in rep["shrink"]["report"]["layers"] if e["type"] == "Conv2d"]
    assert convs == kept

    # the CI verify of a slimmed export needs --slim too, and then agrees
    assert main([str(ckpt), *arch, "--slim", "50", "--verify-batch", "2", "-o", str(tmp_path / "o")]) == 0
    assert "warning: --slim 50 changes the model's outputs by" in capsys.readouterr().err
    common = [str(tmp_path / "o" / "checkpoint.onnx"), str(ckpt), *arch, "--verify-batch", "2",
              "--json", str(tmp_path / "v.json"), "--junit", str(tmp_path / "v.xml")]
    assert main(["verify", *common, "--slim", "50"]) == 0
    assert main(["verify", *common]) == 3


@pytest.mark.parametrize("argv,message", [
    (["--slim", "0"], "between 0 and 100"),
    (["--slim", "abc"], "not a percentage"),
    (["--align-channels", "0"], "between 1"),
    (["--arch-args", "depth"], "NAME=VALUE"),
    (["--arch-args", "nope=1"], "takes no argument 'nope'"),
])
def test_bad_option_values_fail_in_one_line(argv, message, tmp_path, in_repo_root, capsys):
    from samples.pruning.resnet56_l1 import resnet56_l1

    ckpt = _save(resnet56_l1(depth=8), tmp_path / "r8.pth")
    out = tmp_path / "o"
    assert main([ckpt, "--arch", L1, *argv, "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("cmc-export: error:") and message in err[-1] and not out.exists()
