"""Acceptance (issue 8): binary layers written the way the BNN codebases write them export with every
binary layer as one BinaryConv node, and onnxruntime matches PyTorch at batch 1 and 5."""
import json

import onnx
import pytest
import torch

from cmc.exporter.cli import main
from samples import bnn_nin

from . import bnn_codebases as bc
from .parity import assert_onnx_matches, base_op_types

# name: the research layer classes that are binary (each must become one BinaryConv node)
BINARY = {
    "micronet_dec2020": (bnn_nin.Conv2d_Q,),
    "micronet_mar2020": (bc.CentredConv2d_Q,),
    "micronet_mar2020_inplace": (bc.CentredConv2d_Q,),
    "micronet_today": (bc.QuantConv2d,),
    "binarynet_vgg": (bc.BinarizeConv2d, bc.BinarizeLinear),
    "binarynet_mlp": (bc.BinarizeLinear,),
    "bireal": (bc.HardBinaryConv,),
    "irnet": (bc.IRConv2d,),
    "scaled_pow2": (bc.ScaledBinaryConv,),
    "relu_fed": (bnn_nin.Conv2d_Q,),
    "ternary_nin": (),  # a look-alike: ternary weights are not binary
}


def _checkpoint(name, tmp_path):
    path = tmp_path / f"{name}.pth"
    torch.save(bc.build(name).state_dict(), path)
    return path


def _user(name, ckpt):
    model = getattr(bc, f"{name}_arch")()
    model.load_state_dict(torch.load(ckpt, weights_only=True))
    return model.eval()


def _export(name, tmp_path, *extra):
    ckpt = _checkpoint(name, tmp_path)
    out = tmp_path / "out"
    shape = "x".join(map(str, bc.input_shape(name)))
    rc = main([str(ckpt), "--arch", f"tests.exporter.bnn_codebases:{name}_arch", "--input-shape", shape,
               "--to", "onnx", "-o", str(out), *extra])
    return rc, ckpt, out


@pytest.mark.parametrize("name", list(BINARY))
def test_codebase_layers_export_as_binary_conv_with_parity(name, tmp_path, in_repo_root):
    rc, ckpt, out = _export(name, tmp_path)
    assert rc == 0
    model = onnx.load(str(out / f"{name}.onnx"))
    user = _user(name, ckpt)
    n_binary = sum(isinstance(m, BINARY[name]) for m in user.modules()) if BINARY[name] else 0
    ops = base_op_types(model)
    assert ops == ["BinaryConv"] * n_binary
    report = json.loads((out / "report.json").read_text())
    assert report["parity"]["passed"] is True
    binary_entries = [e for e in report["converted"] if "BinaryConv (binarize_input=" in e["to"]]
    assert len(binary_entries) == n_binary
    for batch in (1, 5):
        x = torch.randn(batch, *bc.input_shape(name)[1:], generator=torch.Generator().manual_seed(batch + 7))
        assert_onnx_matches(user, model, x, 1e-4)
    if name == "ternary_nin":
        assert all("not binary" in e["to"] for e in report["converted"]) and len(report["converted"]) == 3
        assert not model.functions


def test_sign_modules_are_absorbed_or_become_one_sign_op(tmp_path, in_repo_root):
    """micronet's ActivationQuantizer before a QuantConv2d: absorbed (the BinaryConv binarizes its input);
    before a MaxPool or the output pool: one Sign op."""
    rc, _, out = _export("micronet_today", tmp_path)
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    absorbed = [e for e in report["converted"] if e.get("absorbed_by")]
    assert [e["layer"] for e in absorbed] == ["model.2", "model.5", "model.12"]
    model = onnx.load(str(out / "micronet_today.onnx"))
    assert sum(n.op_type == "Sign" for n in model.graph.node) == 2
    marked = {p.value for n in model.graph.node for p in n.metadata_props if p.key == "cmc.binarized_value"}
    assert {"model.2", "model.5", "model.12"} <= marked


def test_latent_float_weights_are_binarized_on_request_and_reported(tmp_path, in_repo_root):
    """XNOR-Net saves the float (latent) weights; without the option the convs stay float (with a hint),
    with --binarize-weights xnor the two convs fed by BinActive become BinaryConv."""
    rc, ckpt, out = _export("xnor_modern", tmp_path, "--no-verify")
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    assert [e["layer"] for e in report["converted"]] == ["xnor.3.conv", "xnor.5.conv"]
    assert all("--binarize-weights" in e["to"] for e in report["converted"])

    (tmp_path / "b").mkdir()
    rc, ckpt, out = _export("xnor_modern", tmp_path / "b", "--binarize-weights", "xnor")
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    assert [e["layer"] for e in report["binarized_weights"]] == ["xnor.3.conv", "xnor.5.conv"]
    assert all(e["scheme"] == "xnor" for e in report["binarized_weights"])
    model = onnx.load(str(out / "xnor_modern.onnx"))
    assert base_op_types(model) == ["BinaryConv"] * 2
    assert report["parity"]["passed"] is True


def test_binarize_weights_refuses_a_model_without_binarized_inputs(tmp_path, in_repo_root, capsys):
    rc, _, out = _export("ternary_nin", tmp_path, "--binarize-weights", "sign")
    assert rc == 2 and not out.exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("cmc-export: error: --binarize-weights sign: no conv/linear layer")


def test_xnor_legacy_binactive_with_binarized_weights():
    """XNOR-Net-PyTorch as it is: a legacy BinActive Function (PyTorch 2.x runs it only inside cmc's
    legacy_autograd_functions()) before a plain nn.Conv2d whose weights --binarize-weights xnor binarized."""
    from cmc.exporter.convert import convert_research_layers, pack_for_deployment
    from cmc.exporter.idioms import legacy_autograd_functions
    from cmc.exporter.latent_weights import binarize_latent_weights
    from cmc.exporter.onnx_export import export_onnx
    from cmc.exporter.sign_flips import annotate_binarization_points

    from . import xnor_models

    user = xnor_models.tiny_xnor()
    x = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    with legacy_autograd_functions():
        done = binarize_latent_weights(user, x, "xnor")
        assert [e["layer"] for e in done] == ["xnor.3.conv", "xnor.5.conv"]
        converted, info = convert_research_layers(user, x)
        assert [e["layer"] for e in info] == ["xnor.3.conv", "xnor.5.conv"]
        assert all(e["sign_source"] == e["layer"].replace(".conv", ".bn:output") for e in info)
        model = export_onnx(pack_for_deployment(converted).eval(), x).model
        assert base_op_types(model) == ["BinaryConv"] * 2
        assert annotate_binarization_points(model, info) == 4  # two Sign ops + two BinaryConv(binarize_input=1)
        for batch in (1, 5):
            xb = torch.randn(batch, 3, 8, 8, generator=torch.Generator().manual_seed(batch))
            assert_onnx_matches(user, model, xb, 1e-4)
        with torch.no_grad():
            ref = xnor_models.reference_forward(user, xb)
        assert torch.allclose(user(xb), ref)


def test_a_channel_with_three_values_is_not_binary(tmp_path):
    """One weight exactly 0 in one filter: torch.sign makes that filter three-valued; that layer stays a
    float conv (exact), the others are BinaryConv."""
    from cmc.exporter.convert import convert_research_layers, pack_for_deployment

    user = bc.build("micronet_dec2020")
    with torch.no_grad():
        user.features[4].weight[5, 3, 1, 1] = 0.0
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    converted, info = convert_research_layers(user, x)
    kinds = {e["layer"]: e["to"].split(" ")[0] for e in info}
    assert kinds == {"features.2": "BinaryConv", "features.4": "float", "features.7": "BinaryConv"}
    with torch.no_grad():
        assert torch.allclose(pack_for_deployment(converted)(x), user(x), rtol=0, atol=1e-5 * float(user(x).abs().max()))


def test_xnor_legacy_checkpoint_end_to_end(tmp_path, in_repo_root):
    """cmc-export on XNOR-Net as it is (legacy BinActive, latent float weights in the checkpoint)."""
    from . import xnor_models

    ckpt = tmp_path / "xnor.pth"
    torch.save(xnor_models.tiny_xnor().state_dict(), ckpt)
    out = tmp_path / "out"
    assert main([str(ckpt), "--arch", "tests.exporter.xnor_models:TinyXnorNet", "--input-shape", "1x3x8x8",
                 "--binarize-weights", "xnor", "-o", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert [e["layer"] for e in report["binarized_weights"]] == ["xnor.3.conv", "xnor.5.conv"]
    assert report["export"]["custom_nodes"] == {"BinaryConv": 2} and report["parity"]["passed"] is True
