"""Packed chains (1-bit activations between binary layers): what the exporter packs, what stops a chain,
parity of whole networks, packed == unpacked bit for bit, and that a wrong packed model fails."""
import json
import xml.etree.ElementTree as ET

import numpy as np
import onnx
import pytest
import torch

from cmc.exporter.cli import main
from cmc.exporter.convert import convert_research_layers, pack_for_deployment
from cmc.exporter.errors import CmcError
from cmc.exporter.onnx_export import export_onnx
from cmc.exporter.packed_chains import compare_with_unpacked, has_packed, unpack_chains
from cmc.exporter.trt.onnx_prep import prepare_onnx_for_trt
from cmc.exporter.verify import verify
from cmc.plugins.binary_conv.reference import VARIANTS, packed_words_per_pixel

from . import packed_models
from .parity import assert_onnx_matches

FAMILY = {"BinaryConv", *VARIANTS}


def _export(builder, shape=(1, 3, 12, 12), packed=True):
    user = builder()
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    model, _ = convert_research_layers(user, x)
    return user, export_onnx(pack_for_deployment(model).eval(), x, packed_chains=packed)


def _ops(model):
    return {n.name: n.op_type for n in model.graph.node if n.domain == "com.cmc"}


def _attr(node, name):
    return next((onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == name), None)


@pytest.fixture(scope="module")
def decisions():
    return _export(packed_models.decisions)


def test_what_stops_a_chain(decisions):
    _, res = decisions
    rep = res.packed_chains
    assert rep["chains"] == [["a.0/BinaryConv", "b.0/BinaryConv", "c.0/BinaryConv"],  # fan-out to two binarizing layers
                             ["f.0/BinaryConv", "g.0/BinaryConv"],                    # f reads floats, writes bits
                             ["h.0/BinaryConv", "i.0/BinaryConv"]]
    reasons = {k["node"].split(".")[0]: k["reason"] for k in rep["kept_float"]}
    assert reasons["b"].startswith("read by Add") and reasons["c"].startswith("read by Add")  # residual
    assert reasons["d"].startswith("group 2")
    assert "binarize_input=0" in reasons["e"]
    assert reasons["g"] == "its output is a graph output"
    assert reasons["i"].startswith("read by Conv")  # a float layer
    assert rep["packed_tensors"] == 3
    ops = _ops(res.model)
    assert ops == {"a.0/BinaryConv": "BinaryConvPackedOut", "b.0/BinaryConv": "BinaryConvPackedIn",
                   "c.0/BinaryConv": "BinaryConvPackedIn", "d.0/BinaryConv": "BinaryConv", "e.0/BinaryConv": "BinaryConv",
                   "f.0/BinaryConv": "BinaryConvPackedOut", "g.0/BinaryConv": "BinaryConvPackedIn",
                   "h.0/BinaryConv": "BinaryConvPackedOut", "i.0/BinaryConv": "BinaryConvPackedIn"}
    nodes = {n.name: n for n in res.model.graph.node}
    assert _attr(nodes["b.0/BinaryConv"], "in_channels") == 16 and _attr(nodes["i.0/BinaryConv"], "in_channels") == 24
    assert _attr(nodes["a.0/BinaryConv"], "in_channels") is None
    assert _attr(nodes["f.0/BinaryConv"], "binarize_input") == 0  # a float-input producer may pack its output
    # The tensor between a and b/c is int32 [N, H, W, 4*ceil(16/128)].
    vi = {v.name: v for v in res.model.graph.value_info}
    t = vi[nodes["a.0/BinaryConv"].output[0]].type.tensor_type
    assert t.elem_type == onnx.TensorProto.INT32
    assert [d.dim_value for d in t.shape.dim][1:] == [12, 12, packed_words_per_pixel(16)]
    assert {o.domain: o.version for o in res.model.opset_import}["com.cmc"] == 2
    assert {f.name for f in res.model.functions} == {"BinaryConv", "BinaryConvPackedOut", "BinaryConvPackedIn"}
    onnx.checker.check_model(res.model, full_check=True)


def test_unpack_chains_is_the_export_without_packing(decisions):
    _, res = decisions
    _, plain = _export(packed_models.decisions, packed=False)
    assert plain.packed_chains is None and not has_packed(plain.model)
    un = unpack_chains(res.model)
    assert not has_packed(un) and {o.domain: o.version for o in un.opset_import}["com.cmc"] == 1
    assert [(n.op_type, n.input[:], n.attribute[:]) for n in un.graph.node] == \
        [(n.op_type, n.input[:], n.attribute[:]) for n in plain.model.graph.node]
    onnx.checker.check_model(un, full_check=True)
    feeds = [{"input": np.random.default_rng(b).standard_normal((b, 3, 12, 12)).astype(np.float32)} for b in (1, 4)]
    cmp = compare_with_unpacked(res.model, plain.model, feeds)
    assert cmp["identical"] and all(o["differing_values"] == 0 for c in cmp["cases"] for o in c["outputs"].values())


def test_verify_checks_the_unpacked_form_and_packed_equals_unpacked(decisions):
    user, res = decisions
    v = verify(user, res.model, (1, 3, 12, 12), batches=(1, 5))
    assert v.passed and v.packed_chains["identical"]
    assert [c["batch"] for c in v.packed_chains["cases"]] == [1, 5]
    assert v.to_dict()["packed_equals_unpacked"]["identical"] is True
    # Sign flips can only be attributed on the unpacked form: asked on the packed one, it says so.
    from cmc.exporter.sign_flips import attribute_flips

    x = np.zeros((1, 3, 12, 12), np.float32)
    with pytest.raises(ValueError, match="unpack_chains"):
        attribute_flips(user, res.model, {"input": x}, {})


def _swap_bit_values(model: onnx.ModelProto) -> onnx.ModelProto:
    """A packed model whose packing body writes channel 0's sign at bit 1 and channel 1's at bit 0."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    fn = next(f for f in m.functions if f.name == "BinaryConvPackedOut")
    for node in fn.node:
        for a in node.attribute:
            if a.name == "value" and a.t.name == "bit_values":
                arr = onnx.numpy_helper.to_array(a.t).copy()
                arr[[0, 1]] = arr[[1, 0]]
                a.t.CopyFrom(onnx.numpy_helper.from_array(arr, "bit_values"))
                return m
    raise AssertionError("no bit_values constant in the BinaryConvPackedOut body")


def _flip_weights(model: onnx.ModelProto, name: str) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    node = next(n for n in m.graph.node if n.name == name)
    init = next(t for t in m.graph.initializer if t.name == node.input[1])
    w = onnx.numpy_helper.to_array(init).copy()
    w.reshape(-1)[: w.size // 2] ^= np.int32((1 << 24) - 1)  # half the filters' signs inverted (24 channels)
    init.CopyFrom(onnx.numpy_helper.from_array(w, init.name))
    return m


def test_a_wrong_packing_body_fails_verification(decisions):
    user, res = decisions
    bad = _swap_bit_values(res.model)
    v = verify(user, bad, (1, 3, 12, 12), batches=(1, 5))
    assert not v.passed and not v.packed_chains["identical"]
    assert v.divergence["kind"] == "packed_chains" and "bit for bit" in v.divergence["message"]


def test_wrong_weights_in_a_packed_layer_fail_verification(decisions):
    user, res = decisions
    bad = _flip_weights(res.model, "i.0/BinaryConv")  # a BinaryConvPackedIn
    v = verify(user, bad, (1, 3, 12, 12), batches=(1,))
    assert not v.passed and v.packed_chains["identical"]  # the unpacked form carries the same wrong weights
    assert v.divergence is not None and v.divergence["kind"] in ("operator", "module")


def test_cli_verify_of_a_tampered_packed_artifact_exits_3(decisions, tmp_path, in_repo_root, capsys):
    user, res = decisions
    ckpt = tmp_path / "dec.pth"
    torch.save(user.state_dict(), ckpt)
    art = tmp_path / "bad.onnx"
    onnx.save(_swap_bit_values(res.model), str(art))
    rc = main(["verify", str(art), str(ckpt), "--arch", "tests.exporter.packed_models:decisions", "--input-shape",
               "1x3x12x12", "--json", str(tmp_path / "v.json"), "--junit", str(tmp_path / "v.xml"),
               "--accept-constant-output"])  # an output of this small fixture is the same for every verify input
    assert rc == 3
    assert "packed chains do not reproduce the unpacked graph" in capsys.readouterr().err
    suite = ET.parse(tmp_path / "v.xml").getroot().find("testsuite")
    failed = [tc.get("name") for tc in suite.findall("testcase") if tc.find("failure") is not None]
    assert failed and all(n.endswith("packed_equals_unpacked") for n in failed)
    assert int(suite.get("failures")) == len(failed)
    assert json.loads((tmp_path / "v.json").read_text())["packed_equals_unpacked"]["identical"] is False


def test_res_relu_bnn_end_to_end(tmp_path, in_repo_root):
    user = packed_models.res_relu_bnn()
    ckpt = tmp_path / "res.pth"
    torch.save(torch.nn.DataParallel(user).state_dict(), ckpt)
    out = tmp_path / "o"
    assert main([str(ckpt), "--arch", "tests.exporter.packed_models:res_relu_bnn", "--input-shape", "1x3x16x16",
                 "-o", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["parity"]["passed"] and report["parity"]["packed_equals_unpacked"]["identical"]
    assert report["export"]["packed_chains"]["chains"] == [
        ["b3.tnn_bin_conv/BinaryConv", "b4.tnn_bin_conv/BinaryConv"],
        ["b5.tnn_bin_conv.1/BinaryConv", "b6.tnn_bin_conv/BinaryConv", "b7.tnn_bin_conv/BinaryConv"]]
    kept = {k["node"].split(".")[0]: k["reason"] for k in report["export"]["packed_chains"]["kept_float"]}
    assert kept["b1"].startswith("read by Add") and kept["b2"].startswith("read by Add")  # the residual
    assert kept["b4"].startswith("read by Sign")  # the ReLU-fed layer keeps torch.sign(0) = 0: a Sign in front
    model = onnx.load(str(out / "res.onnx"))
    assert sum(report["export"]["custom_nodes"].values()) == 7 and set(report["export"]["custom_nodes"]) <= FAMILY
    b5 = next(n for n in model.graph.node if n.name == "b5.tnn_bin_conv.1/BinaryConv")
    assert b5.op_type == "BinaryConvPackedOut" and _attr(b5, "binarize_input") == 0
    unpacked = unpack_chains(model)
    for batch in (1, 5):
        x = torch.randn(batch, 3, 16, 16, generator=torch.Generator().manual_seed(batch + 200))
        assert_onnx_matches(user, unpacked, x, 1e-4)
        assert compare_with_unpacked(model, unpacked, [{"input": x.numpy()}])["identical"]


def test_nin_packed_chains_equal_the_unpacked_export(checkpoints, tmp_path, in_repo_root):
    args = [str(checkpoints["bnn_nin"]), "--arch", "samples.bnn_nin:nin", "--input-shape", "1x3x32x32"]
    assert main(args + ["-o", str(tmp_path / "p"), "--no-verify"]) == 0
    assert main(args + ["-o", str(tmp_path / "u"), "--no-verify", "--no-packed-chains"]) == 0
    rp = json.loads((tmp_path / "p" / "report.json").read_text())
    ru = json.loads((tmp_path / "u" / "report.json").read_text())
    assert [[name.split(".")[1] for name in c] for c in rp["export"]["packed_chains"]["chains"]] == \
        [["2", "3"], ["5", "6", "7"], ["9", "10"]]  # MaxPools and the float head stop the chains
    assert rp["export"]["custom_nodes"] == {"BinaryConvPackedOut": 3, "BinaryConvPackedInOut": 1, "BinaryConvPackedIn": 3}
    assert ru["export"]["custom_nodes"] == {"BinaryConv": 7}
    assert ru["export"]["packed_chains"] == {"skipped": "--no-packed-chains"}
    packed, plain = onnx.load(str(tmp_path / "p" / "bnn_nin.onnx")), onnx.load(str(tmp_path / "u" / "bnn_nin.onnx"))
    feeds = [{"input": np.random.default_rng(b).standard_normal((b, 3, 32, 32)).astype(np.float32)} for b in (1, 5)]
    assert compare_with_unpacked(packed, plain, feeds)["identical"]


def test_tensorrt_preparation_keeps_the_packed_variants(decisions):
    _, res = decisions
    prepared, rep = prepare_onnx_for_trt(res.model)
    assert rep["plugin_nodes"] == {"BinaryConvPackedOut": 3, "BinaryConvPackedIn": 4, "BinaryConv": 2}
    assert not prepared.functions
    node = next(n for n in prepared.graph.node if n.name == "g.0/BinaryConv")
    assert _attr(node, "in_channels") == 16 and _attr(node, "plugin_version") == b"1"
    assert _attr(node, "plugin_namespace") == b"cmc"
    old = onnx.ModelProto()
    old.CopyFrom(res.model)
    next(o for o in old.opset_import if o.domain == "com.cmc").version = 1
    with pytest.raises(CmcError, match="version 1, but BinaryConvPackedIn"):
        prepare_onnx_for_trt(old)
