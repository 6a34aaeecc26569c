"""cmc-export shrinks pruned research models on its own (after converting their layers)."""
import json

import onnx
import torch

from cmc.exporter.cli import main
from samples.addernet_resnet20 import resnet20
from samples.make_checkpoints import calibrate


def _slimmed_research_addernet():
    torch.manual_seed(0)
    model = calibrate(resnet20())
    with torch.no_grad():  # Network Slimming on the research adder2d ResNet: gamma = beta = 0
        for block in (model.layer1[0], model.layer2[1], model.layer3[2]):
            n = block.bn1.num_features
            block.bn1.weight[: n // 2] = 0
            block.bn1.bias[: n // 2] = 0
    return model.eval()


def test_pruned_research_addernet_is_shrunk_and_exact(tmp_path, in_repo_root):
    ckpt = tmp_path / "slim.pth"
    torch.save(_slimmed_research_addernet().state_dict(), ckpt)
    out, dense = tmp_path / "o", tmp_path / "d"
    assert main([str(ckpt), "--arch", "tests.exporter.test_pipeline_shrink:_slimmed_research_addernet", "-o", str(out)]) == 0
    assert main([str(ckpt), "--arch", "tests.exporter.test_pipeline_shrink:_slimmed_research_addernet", "-o", str(dense),
                 "--no-shrink", "--no-verify"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["parity"]["passed"] and "report" in report["shrink"]

    def weight_bytes(path):
        return sum(onnx.numpy_helper.to_array(t).nbytes for t in onnx.load(str(path)).graph.initializer)

    assert weight_bytes(out / "slim.onnx") < weight_bytes(dense / "slim.onnx")


def test_shrink_subcommand_writes_a_loadable_program(tmp_path, in_repo_root):
    from samples.pruning.mnist import convnet_pruned

    ckpt = tmp_path / "convnet.pth"
    torch.save(convnet_pruned().state_dict(), ckpt)
    out = tmp_path / "s"
    assert main(["shrink", str(ckpt), "--arch", "samples.pruning.mnist:convnet_pruned", "--input-shape", "1x1x28x28",
                 "-o", str(out)]) == 0
    report = json.loads((out / "shrink_report.json").read_text())
    assert report["shrink"]["report"]["params"]
    program = torch.export.load(str(out / "convnet.shrunk.pt2"))
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        ref = convnet_pruned().eval()(x)
    assert torch.allclose(program.module()(x), ref, atol=1e-4 * float(ref.abs().max()))
    # ... and the program exports like any other .pt2
    assert main([str(out / "convnet.shrunk.pt2"), "-o", str(tmp_path / "o"), "--allow-pickle"]) == 0


def test_shrink_subcommand_refuses_a_model_without_pruning(tmp_path, in_repo_root, capsys):
    from tests.exporter import user_models

    ckpt = tmp_path / "dense.pth"
    torch.save(user_models.tiny_adder().state_dict(), ckpt)
    out = tmp_path / "s"
    assert main(["shrink", str(ckpt), "--arch", "tests.exporter.user_models:tiny_adder", "--input-shape", "1x3x8x8",
                 "-o", str(out)]) == 2
    assert "nothing to shrink" in capsys.readouterr().err and not out.exists()
