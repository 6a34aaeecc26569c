"""Issue 17 (research code, round 3): no silent misreports, no avoidable refusals.

Each model in ``round3_models`` is written the way an unseen codebase writes it; each test failed
before its fix (the report claimed conversions the ONNX lacked, a binarizing layer came out float
without a word, the user's argparse read cmc's argv, a constructor's ``.cuda()`` failed, a settled
clamp was refused, exact-zero weights had no opt-in)."""
import inspect
import json

import onnx
import pytest
import torch

from cmc.exporter.cli import main

from . import round3_models as r3

ARCH = "tests.exporter.round3_models"


def _export(tmp_path, name, *extra, arch_args=None, build_kwargs=None):
    ckpt = tmp_path / f"{name}.pth"
    from cmc.exporter.arch import build_arch  # the constructor's .cuda() runs under cmc's shim here too

    model = build_arch(f"{ARCH}:{name}_arch", build_kwargs or {})
    torch.save(r3._calibrated(model).state_dict(), ckpt)
    out = tmp_path / "out"
    args = [str(ckpt), "--arch", f"{ARCH}:{name}_arch", "--input-shape", "1x3x16x16", "-o", str(out), *extra]
    if arch_args:
        args += ["--arch-args", arch_args]
    rc = main(args)
    report = json.loads((out / "report.json").read_text()) if rc == 0 else None
    model = onnx.load(str(out / f"{name}.onnx")) if rc == 0 else None
    return rc, report, model


def _cmc_nodes(model):
    return [n for n in model.graph.node if n.domain == "com.cmc"]


def _report_agrees_with_onnx(report, model):
    """Every layer reported converted has its com.cmc node(s) in the ONNX, and there are no others."""
    converted = [e for e in report["converted"] if e["status"] == "converted"]
    assert all(e["onnx_nodes"] >= 1 for e in converted)
    assert sum(e["onnx_nodes"] for e in converted) == len(_cmc_nodes(model))


@pytest.mark.parametrize("how", ["tuple", "list", "dict", "second_attribute"])
def test_layers_called_through_aliases_are_converted_everywhere(how, tmp_path, in_repo_root):
    rc, report, model = _export(tmp_path, "alias", arch_args=f"how={how}", build_kwargs={"how": how})
    assert rc == 0
    assert [n.op_type for n in _cmc_nodes(model)] == ["AdderConv", "AdderConv"]
    assert [e["status"] for e in report["converted"]] == ["converted", "converted"]
    _report_agrees_with_onnx(report, model)
    first = next(e for e in report["converted"] if e["layer"] == "block.conv1")
    assert first["also_replaced_at"] == {"tuple": ["block.ops[0]"], "list": ["block.ops[0]"],
                                         "dict": ["block.ops['conv']"], "second_attribute": ["block.first"]}[how]


def test_a_layer_reached_where_cmc_cannot_replace_it_is_reported_kept(tmp_path, in_repo_root, capsys):
    rc, report, model = _export(tmp_path, "alias", arch_args="how=closure", build_kwargs={"how": "closure"})
    assert rc == 0
    status = {e["layer"]: e["status"] for e in report["converted"]}
    assert status == {"block.conv1": "kept", "block.conv2": "converted"}
    kept = next(e for e in report["converted"] if e["layer"] == "block.conv1")
    assert kept["not_applied"].startswith("AdderConv") and "could not follow" in kept["to"]
    assert [n.op_type for n in _cmc_nodes(model)] == ["AdderConv"]
    _report_agrees_with_onnx(report, model)
    err = capsys.readouterr().err
    assert "1 to com.cmc ops (AdderConv 1), 1 kept as the user's own ops" in err and "block.conv1 (adder2d)" in err


def test_asymmetric_two_valued_layers_are_never_float_without_a_word(tmp_path, in_repo_root, capsys):
    rc, report, model = _export(tmp_path, "asymmetric")
    assert rc == 0
    (entry,) = report["converted"]
    assert entry["layer"] == "conv2" and entry["status"] == "rebuilt"
    assert "not binary" in entry["to"] and "no per-channel offsets" in entry["to"]
    assert "0.5 + 0.5 * binarize(x)" in entry["to"]
    assert "conv2 (AsymmetricBinConv2d)" in capsys.readouterr().err
    assert report["parity"]["passed"]


def test_argparse_at_import_time_sees_an_empty_command_line(tmp_path, in_repo_root, capsys, monkeypatch):
    import sys

    monkeypatch.setattr(sys, "argv", ["pytest"])
    from tests.exporter import argparse_model

    ckpt = tmp_path / "ap.pth"
    torch.save(argparse_model.net().state_dict(), ckpt)
    argv = [str(ckpt), "--arch", "tests.exporter.argparse_model:net", "-o", str(tmp_path / "o")]
    # As from the shell: the process's argv is cmc-export's, and the module is imported afresh.
    monkeypatch.setattr(sys, "argv", ["cmc-export", *argv])
    monkeypatch.delitem(sys.modules, "tests.exporter.argparse_model")
    rc = main(argv)
    assert rc == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "o" / "report.json").read_text())["parity"]["passed"]


def test_cuda_in_a_constructor_stays_on_the_cpu_and_is_reported(tmp_path, in_repo_root):
    rc, report, model = _export(tmp_path, "ctor_cuda")
    assert rc == 0
    line = inspect.getsourcelines(r3.CtorCudaConv2d.__init__)[1] + 2
    assert any(f"round3_models.py:{line} while building the model kept it on the CPU" in n for n in report["notes"])
    assert [n.op_type for n in _cmc_nodes(model)] == ["BinaryConv"]


def test_an_in_place_clamp_that_settles_is_exported_and_reported(tmp_path, in_repo_root):
    rc, report, model = _export(tmp_path, "clamped_bn")
    assert rc == 0 and report["parity"]["passed"]
    (note,) = report["state_updates"]
    assert "m.weight.data.clamp_(min=0.01)" in note and "fixed point" in note and "bn1.weight" in note
    assert "Clip" not in {n.op_type for n in model.graph.node}  # the update is not in the graph


def test_an_in_place_update_that_keeps_changing_is_still_refused(tmp_path, in_repo_root, capsys):
    rc, _, _ = _export(tmp_path, "clamped_bn", arch_args="keeps_changing=True",
                       build_kwargs={"keeps_changing": True})
    err = capsys.readouterr().err
    assert rc == 2 and "m.weight.data.mul_(1.01)" in err and "no fixed point" in err
    assert not (tmp_path / "out").exists()


def test_exact_zero_weights_are_named_and_the_opt_in_makes_the_layers_binary(tmp_path, in_repo_root, capsys):
    rc, report, model = _export(tmp_path, "zero_weight")
    assert rc == 0 and not _cmc_nodes(model)
    conv2 = next(e for e in report["converted"] if e["layer"] == "conv2")
    assert "2 of 3456 weights exactly 0 (at [[3, 5, 1, 1], [7, 0, 0, 2]])" in conv2["to"]
    assert "--zero-weights-as-plus-one" in conv2["to"]

    rc, report, model = _export(tmp_path, "zero_weight", "--zero-weights-as-plus-one")
    err = capsys.readouterr().err
    assert rc == 0 and [n.op_type for n in _cmc_nodes(model)] == ["BinaryConv", "BinaryConv"]
    zw = report["zero_weights"]
    assert zw["weights"] == 3 and zw["layers"] == ["conv2", "conv3"] and zw["max_rel_err"] > 1e-4
    assert f"changes the outputs by {zw['max_rel_err']:.3g}" in err
    assert report["parity"]["passed"]
    # The artifact is checked against the model with the zeros taken as +1, not against itself or the user's.
    ckpt = tmp_path / "zero_weight.pth"
    onnx_path = tmp_path / "out" / "zero_weight.onnx"
    common = [str(onnx_path), str(ckpt), "--arch", f"{ARCH}:zero_weight_arch", "--input-shape", "1x3x16x16",
              "--json", str(tmp_path / "v.json"), "--junit", str(tmp_path / "v.xml")]
    assert main(["verify", *common, "--zero-weights-as-plus-one"]) == 0
    assert main(["verify", *common]) == 3  # against the user's model: the measured deviation is a real one


def test_activations_standardised_before_their_sign_become_centre_plus_binary_conv(tmp_path, in_repo_root):
    rc, report, model = _export(tmp_path, "standardised")
    assert rc == 0 and report["parity"]["passed"]
    (entry,) = [e for e in report["converted"] if e["layer"] == "conv2"]
    assert entry["status"] == "converted" and entry["to"].startswith("Centre + BinaryConv (binarize_input=1)")
    assert [n.op_type for n in _cmc_nodes(model)] == ["BinaryConv"]
    _report_agrees_with_onnx(report, model)


def test_an_adder_layer_in_another_layout_is_reported_kept_not_silently_float():
    from cmc.exporter.convert import convert_research_layers, summarise

    _, info = convert_research_layers(r3.OtherAdderNet().eval(), torch.randn(1, 3, 8, 8))
    (entry,) = info
    assert entry["layer"] == "adder" and entry["status"] == "kept" and "adder2d layout" in entry["to"]
    assert summarise(info) == "1 kept as the user's own ops"
