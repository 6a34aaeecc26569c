"""cmc's FP16 ONNX (cmc.exporter.trt.fp16_onnx): what TensorRT builds for --fp16 on 10.x and 11.x.

Small graphs check the types the conversion writes and where it keeps float32; whole research networks
(AdderNet ResNet-20 with realistic weights, BNN NIN, SPConv ResNet-20) run in onnxruntime at float16
activations and are compared with the float64 PyTorch model against the contracts' FP16 tolerances.
"""
from __future__ import annotations

import copy

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto as TP
from onnx import helper, numpy_helper

from cmc.exporter.errors import CmcError
from cmc.exporter.trt import fp16_plan
from cmc.exporter.trt.engine_check import default_tolerance, relative_error
from cmc.exporter.trt.fp16_onnx import convert_to_fp16, float16_rounding_model

F32, F16 = TP.FLOAT, TP.FLOAT16


def _model(nodes, inputs, outputs, inits=(), opset=18, functions=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    opsets = [helper.make_opsetid("", opset)] + ([helper.make_opsetid("com.cmc", 1)] if functions else [])
    return helper.make_model(graph, opset_imports=opsets, ir_version=10, functions=list(functions))


def _arr(a, name, dtype=np.float32):
    return numpy_helper.from_array(np.asarray(a, dtype), name)


def _run16(model16, feeds):
    """The float16 model's numerics as TensorRT stores them: every float16 tensor rounded (see
    float16_rounding_model: onnxruntime on the float16 model itself skips roundings between ops)."""
    return _run(float16_rounding_model(model16), feeds)


def _run(model, feeds):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    kinds = {i.name: i.type for i in sess.get_inputs()}
    typed = {k: np.asarray(v, np.float16 if kinds[k] == "tensor(float16)" else np.float32) for k, v in feeds.items()}
    return [np.asarray(o, np.float64) for o in sess.run(None, typed)]


def _types(model):
    out = {vi.name: vi.type.tensor_type.elem_type for vi in list(model.graph.input) + list(model.graph.output)}
    out.update({i.name: i.data_type for i in model.graph.initializer})
    return out


def _ops(model):
    return [n.op_type for n in model.graph.node]


def _rng_feed(shape, seed=0, scale=1.0):
    return {"x": (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)}


# ---------------------------------------------------------------- small graphs: types and casts

def conv_bn_model():
    """Conv -> BatchNormalization -> Relu -> MaxPool -> Flatten -> Gemm, with Clip and a constant Concat."""
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "g", "beta", "mean", "var"], ["bn"], epsilon=1e-5),
        helper.make_node("Relu", ["bn"], ["r"]),
        helper.make_node("Clip", ["r", "lo", "hi"], ["cl"]),
        helper.make_node("Concat", ["cl", "extra"], ["cat"], axis=1),
        helper.make_node("MaxPool", ["cat"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["y"], transB=1),
    ]
    inits = [_arr(rng.standard_normal((6, 3, 3, 3)) * 0.3, "w"), _arr(rng.standard_normal(6) * 0.1, "b"),
             _arr(rng.random(6) + 0.5, "g"), _arr(rng.standard_normal(6), "beta"),
             _arr(rng.standard_normal(6) * 0.1, "mean"), _arr(rng.random(6) + 0.5, "var"),
             _arr(0.0, "lo"), _arr(4.0, "hi"), _arr(rng.standard_normal((1, 2, 8, 8)), "extra"),
             _arr(rng.standard_normal((5, 8 * 4 * 4)) * 0.1, "fc_w"), _arr(rng.standard_normal(5), "fc_b")]
    return _model(nodes, [helper.make_tensor_value_info("x", F32, [1, 3, 8, 8])],
                  [helper.make_tensor_value_info("y", F32, [1, 5])], inits)


def test_standard_ops_run_in_float16_with_their_weights_converted():
    model = conv_bn_model()
    m16, report = convert_to_fp16(model, [_rng_feed((1, 3, 8, 8), 1)])
    t = _types(m16)
    assert t["x"] == F16 and t["y"] == F16
    for w in ("w__fp16", "b__fp16", "lo__fp16", "hi__fp16", "extra__fp16", "fc_w__fp16", "fc_b__fp16"):
        assert t[w] == F16, w
    assert not {"w", "b", "g", "beta", "mean", "var", "fc_w"} & set(t), "replaced float32 weights are dropped"
    # BatchNormalization became Mul + Add with float16 scale/shift folded in float64
    assert _ops(m16) == ["Conv", "Mul", "Add", "Relu", "Clip", "Concat", "MaxPool", "Flatten", "Gemm"]
    assert report["batchnorms_as_mul_add"] == 1 and report["casts_inserted"] == 0 and report["fp32_nodes"] == []
    feed = _rng_feed((1, 3, 8, 8), 2)
    (y32,), (y16,), (y16_ort,) = _run(model, feed), _run16(m16, feed), _run(m16, feed)
    assert relative_error(y16, y32) < 2e-3 and relative_error(y16_ort, y32) < 2e-3
    assert model.graph.input[0].type.tensor_type.elem_type == F32, "the input model is not modified"


def test_resize_keeps_its_float32_scales_and_shape_math_stays_float32():
    """Resize's scales input is tensor(float) in every opset; a Shape -> Cast(float) chain carries shapes, not
    activations."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Cast", ["s"], ["sf"], to=F32),
        helper.make_node("Div", ["sf", "sf"], ["ones"]),  # float math on shapes: stays float32
        helper.make_node("Mul", ["ones", "two"], ["scales"]),
        helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="nearest"),
    ]
    model = _model(nodes, [helper.make_tensor_value_info("x", F32, [1, 2, 4, 4])],
                   [helper.make_tensor_value_info("y", F32, [1, 2, 8, 8])],
                   [_arr([1, 1, 2, 2], "two")])
    m16, _ = convert_to_fp16(model, [_rng_feed((1, 2, 4, 4))])
    assert _types(m16)["x"] == F16 and _types(m16)["two"] == F32
    cast = next(n for n in m16.graph.node if n.op_type == "Cast")
    assert helper.get_attribute_value(cast.attribute[0]) == F32
    assert _ops(m16) == ["Shape", "Cast", "Div", "Mul", "Resize"]
    feed = _rng_feed((1, 2, 4, 4), 3)
    np.testing.assert_array_equal(_run(m16, feed)[0], _run(model, feed)[0].astype(np.float16))


def test_activation_cast_to_float_becomes_float16():
    nodes = [helper.make_node("Cast", ["x"], ["c"], to=F32), helper.make_node("Relu", ["c"], ["y"])]
    model = _model(nodes, [helper.make_tensor_value_info("x", F32, [2, 3])], [helper.make_tensor_value_info("y", F32, [2, 3])])
    m16, _ = convert_to_fp16(model)
    assert helper.get_attribute_value(m16.graph.node[0].attribute[0]) == F16


def test_large_activations_stay_float32_with_casts_around():
    """An activation past the threshold (here 1e5: float16 overflows at 65504) keeps its producer and consumers
    in float32; the graph output it reaches stays float32."""
    nodes = [helper.make_node("Mul", ["x", "k"], ["big"]), helper.make_node("Relu", ["big"], ["r"]),
             helper.make_node("Div", ["r", "k"], ["y"]), helper.make_node("Relu", ["big"], ["y2"])]
    model = _model(nodes, [helper.make_tensor_value_info("x", F32, [4, 8])],
                   [helper.make_tensor_value_info("y", F32, [4, 8]), helper.make_tensor_value_info("y2", F32, [4, 8])],
                   [_arr(1e5, "k")])
    m16, report = convert_to_fp16(model, [_rng_feed((4, 8))])
    reasons = [r["reason"] for r in report["fp32_nodes"]]
    assert len(reasons) == 4 and all("> 4096" in r for r in reasons)
    t = _types(m16)
    assert t["x"] == F16 and t["k"] == F32 and t["y2"] == F32 and t["y"] == F16
    assert _ops(m16) == ["Cast", "Mul", "Relu", "Div", "Relu", "Cast"]  # x -> fp32 ... y -> fp16 under its name
    assert report["outputs"] == {"y": "FLOAT16", "y2": "FLOAT"}
    feed = _rng_feed((4, 8), 4)
    got, ref = _run16(m16, feed), _run(model, feed)
    assert relative_error(got[0], ref[0]) < 1e-3 and relative_error(got[1], ref[1]) < 1e-3
    # without calibration only op-kind rules apply: the overflow is not seen (the report says so)
    _, blind = convert_to_fp16(model)
    assert blind["calibrated"] is False and not any("4096" in r["reason"] for r in blind["fp32_nodes"])


def test_batchnorm_cancelling_a_large_mean_keeps_its_input_float32():
    """An unfused BatchNorm after an AdderNet-like sum (sum |x - w| ~ 3000 for |w| ~ 100) subtracts a mean of
    ~3000: in float16 the terms (ulp 1/16) and the sum (ulp 2) are rounded before the subtraction. Everything
    on the large scale above the BatchNorm stays float32; x (on the result's scale) stays float16."""
    nodes = [helper.make_node("Sub", ["x", "w"], ["d"]), helper.make_node("Abs", ["d"], ["a"]),
             helper.make_node("ReduceSum", ["a", "axes"], ["s"], keepdims=1),
             helper.make_node("BatchNormalization", ["s", "g", "beta", "mean", "var"], ["y"])]
    model = _model(nodes, [helper.make_tensor_value_info("x", F32, [8, 4, 30])],
                   [helper.make_tensor_value_info("y", F32, [8, 4, 1])],
                   [_arr(np.full((1, 4, 30), 100.0), "w"), numpy_helper.from_array(np.array([2]), "axes"),
                    _arr(np.ones(4), "g"), _arr(np.zeros(4), "beta"), _arr(np.full(4, 3000.0), "mean"),
                    _arr(np.full(4, 30.0), "var")])
    feed = lambda seed: {"x": np.random.default_rng(seed).standard_normal((8, 4, 30)).astype(np.float32)}  # noqa: E731
    m16, report = convert_to_fp16(model, [feed(0)])
    reasons = [(r["node"], r["reason"]) for r in report["fp32_nodes"]]
    assert [n for n, _ in reasons] == ["<unnamed> (Sub)", "<unnamed> (Abs)", "<unnamed> (ReduceSum)",
                                       "<unnamed> (BatchNormalization)"]
    assert "cancelled by BatchNorm" in reasons[2][1] and "cancels a large mean" in reasons[3][1]
    assert report["inputs"] == {"x": "FLOAT16"}
    assert _ops(m16) == ["Cast", "Sub", "Abs", "ReduceSum", "BatchNormalization", "Cast"]
    ref = _run(model, feed(1))[0]
    assert relative_error(_run16(m16, feed(1))[0], ref) < 2e-3
    # converted without calibration (the rule cannot see the ranges) the signal is lost: the rule is needed
    naive, _ = convert_to_fp16(model, None)
    assert relative_error(_run16(naive, feed(1))[0], ref) > 5e-2


def test_reduction_whose_sum_would_overflow_stays_float32():
    nodes = [helper.make_node("ReduceMean", ["x", "axes"], ["y"], keepdims=0)]
    model = _model(nodes, [helper.make_tensor_value_info("x", F32, [1, 1, 4096])],
                   [helper.make_tensor_value_info("y", F32, [1, 1])], [numpy_helper.from_array(np.array([2]), "axes")])
    feed = {"x": (np.abs(np.random.default_rng(0).standard_normal((1, 1, 4096))) * 50).astype(np.float32)}
    m16, report = convert_to_fp16(model, [feed])
    assert "accumulates" in report["fp32_nodes"][0]["reason"]
    assert relative_error(_run16(m16, feed)[0], _run(model, feed)[0]) < 1e-3


def test_binarized_inputs_are_computed_in_float32(monkeypatch):
    """Sign (and BinaryConv) read only the sign of their input: float16 rounding of a float32 result keeps the
    sign, but computing the producer in float16 flips values near 0. The producer stays float32 and so does
    the value it reads (here the graph input); the Sign itself and what follows run in float16."""
    rng = np.random.default_rng(0)
    shape = (1, 16, 32, 32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("MaxPool", ["c"], ["p"], kernel_shape=[1, 1]),
             helper.make_node("Sign", ["p"], ["s"]), helper.make_node("Conv", ["s", "w2"], ["y"])]
    model = _model(nodes, [helper.make_tensor_value_info("x", F32, list(shape))],
                   [helper.make_tensor_value_info("y", F32, [1, 4, 32, 32])],
                   [_arr(rng.standard_normal((8, 16, 1, 1)), "w"), _arr(rng.standard_normal((4, 8, 1, 1)), "w2")])
    m16, report = convert_to_fp16(model, [_rng_feed(shape)])
    assert [r["node"] for r in report["fp32_nodes"]] == ["<unnamed> (Conv)"]
    assert report["inputs"] == {"x": "FLOAT"} and report["outputs"] == {"y": "FLOAT16"}
    # the Conv's float32 output is narrowed to float16 keeping its sign (BinaryConv's float16 rule)
    assert _ops(m16) == ["Conv", "Less", "Greater", "Min", "Max", "Where", "Where", "Cast", "MaxPool", "Sign", "Conv"]
    assert _types(m16)["w"] == F32 and _types(m16)["w2__fp16"] == F16
    # without the rule (every node float16) signs flip; with it the signs are the float32 model's
    with monkeypatch.context() as mp:
        mp.setattr(fp16_plan, "decision_paths", lambda graph, act: (set(), {}))
        naive, naive_report = convert_to_fp16(model, [_rng_feed(shape)])
    assert naive_report["fp32_nodes"] == [] and naive_report["inputs"] == {"x": "FLOAT16"}
    signs = {"rule": 0, "naive": 0}
    for seed in range(4):
        feed = _rng_feed(shape, 100 + seed)
        ref = np.sign(_run(_with_output(model, "s", F32), feed)[1])
        signs["rule"] += int(np.sum(np.sign(_run16(_with_output(m16, "s", F16), feed)[1]) != ref))
        signs["naive"] += int(np.sum(np.sign(_run16(_with_output(naive, "s", F16), feed)[1]) != ref))
    assert signs["rule"] == 0 and signs["naive"] > 0, signs


def _with_output(model, name, elem_type):
    out = onnx.ModelProto()
    out.CopyFrom(model)
    out.graph.output.append(helper.make_tensor_value_info(name, elem_type, None))
    return out


def test_unknown_domain_op_stays_float32_and_control_flow_is_refused():
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Mystery", ["r"], ["y"], domain="com.other")]
    fn = helper.make_function("com.other", "Mystery", ["X"], ["Y"], [helper.make_node("Neg", ["X"], ["Y"])],
                              opset_imports=[helper.make_opsetid("", 18)])
    model = helper.make_model(
        helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", F32, [2])],
                          [helper.make_tensor_value_info("y", F32, [2])]),
        opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.other", 1)], ir_version=10, functions=[fn])
    m16, report = convert_to_fp16(model)
    assert report["fp32_nodes"] == [{"node": "<unnamed> (com.other::Mystery)", "reason": "no type rule for com.other::Mystery"}]
    assert _ops(m16) == ["Relu", "Cast", "Mystery", "Cast"]
    np.testing.assert_allclose(_run(m16, {"x": np.array([1.5, -2.0], np.float32)})[0], [-1.5, 0.0])

    then_g = helper.make_graph([helper.make_node("Identity", ["x"], ["t"])], "then", [],
                               [helper.make_tensor_value_info("t", F32, [2])])
    else_g = helper.make_graph([helper.make_node("Neg", ["x"], ["e"])], "else", [],
                               [helper.make_tensor_value_info("e", F32, [2])])
    model = _model([helper.make_node("ReduceSum", ["x"], ["s"]),
                    helper.make_node("Greater", ["s", "zero"], ["c"]),
                    helper.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g)],
                   [helper.make_tensor_value_info("x", F32, [2])], [helper.make_tensor_value_info("y", F32, [2])],
                   [_arr(0.0, "zero")])
    with pytest.raises(CmcError, match="control flow") as e:
        convert_to_fp16(model)
    assert "\n" not in str(e.value)


# ---------------------------------------------------------------- com.cmc nodes

def test_cmc_nodes_take_float16_x_and_keep_their_weight_types():
    from .onnx_models import binary_adder_model

    model = binary_adder_model()
    m16, report = convert_to_fp16(model, [{"X": _rng_feed((2, 4, 8, 8))["x"]}])
    t = _types(m16)
    assert t["X"] == F16 and t["Y"] == F16
    assert (t["W_packed"], t["bscale"], t["bshift"], t["W"], t["ascale"], t["ashift"]) == (TP.INT32,) + (F32,) * 5
    assert _ops(m16) == ["BinaryConv", "AdderConv"] and report["casts_inserted"] == 0
    x = np.random.default_rng(5).standard_normal((3, 4, 8, 8)).astype(np.float32)
    (y16,), (y32,) = _run16(m16, {"X": x}), _run(model, {"X": x})
    assert relative_error(y16, y32) < 1e-2


# ---------------------------------------------------------------- whole research networks vs float64 PyTorch

def _export(model: torch.nn.Module, shape) -> onnx.ModelProto:
    from cmc.exporter.convert import convert_research_layers, pack_for_deployment
    from cmc.exporter.onnx_export import export_onnx

    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    converted, _ = convert_research_layers(model, x)
    return export_onnx(pack_for_deployment(converted).eval(), x).model


def _realistic_addernet():
    """The sample AdderNet ResNet-20 with trained-like adder weights (|w| up to 60) and BatchNorm statistics
    fitted to those layers' outputs."""
    from samples import addernet_resnet20
    from samples.make_checkpoints import calibrate

    torch.manual_seed(0)
    model = addernet_resnet20.resnet20()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, addernet_resnet20.adder2d):
                m.adder.mul_(20.0).clamp_(-60.0, 60.0)
    model = calibrate(model)
    assert max(float(m.adder.detach().abs().max()) for m in model.modules()
               if isinstance(m, addernet_resnet20.adder2d)) == 60.0
    return model


def _sample(name):
    from samples.make_checkpoints import build

    return _realistic_addernet() if name == "addernet_resnet20_realistic" else build(name)


@pytest.fixture(scope="module")
def exported():
    cache = {}

    def get(name):
        if name not in cache:
            model = _sample(name)
            cache[name] = (model, _export(model, (2, 3, 32, 32)))
        return cache[name]

    return get


@pytest.mark.parametrize("name", ["addernet_resnet20_realistic", "bnn_nin", "spconv_resnet20"])
def test_research_network_in_float16_matches_float64_pytorch(exported, name):
    """The FP16 ONNX in onnxruntime vs the float64 PyTorch model, within the loosest FP16 contract tolerance of
    the model's ops (1e-2 for AdderConv; 5e-3 BinaryConv; 1e-2 without cmc ops). Samples on which the float32
    ONNX itself disagrees with float64 (a binarized value within float32 rounding of 0) are out of every
    contract and are skipped, and counted: the float16 model must add no such flips of its own. Checked
    with every float16 tensor rounded (as TensorRT stores them) and with onnxruntime on the float16 model."""
    model, onnx32 = exported(name)
    rng = np.random.default_rng(7)
    calib = [{"input": rng.standard_normal((b, 3, 32, 32)).astype(np.float32)} for b in (1, 4)]
    m16, report = convert_to_fp16(onnx32, calib)
    tol16, tol32 = default_tolerance(onnx32, "fp16"), default_tolerance(onnx32, "fp32")
    ref64 = copy.deepcopy(model).double().eval()
    kept = 0
    for seed in range(4):
        x = np.random.default_rng(100 + seed).standard_normal((2, 3, 32, 32)).astype(np.float32)
        x = x.astype(np.float16).astype(np.float32)  # the values a float16 input can hold, for all three
        with torch.no_grad():
            y64 = ref64(torch.from_numpy(x).double()).numpy()
        if relative_error(_run(onnx32, {"input": x})[0], y64) > tol32:
            continue
        kept += 1
        for how, run in (("rounded", _run16), ("onnxruntime float16", _run)):
            err = relative_error(run(m16, {"input": x})[0], y64)
            assert err <= tol16, f"{name} ({how}): float16 error {err:.3g} > {tol16:g} (seed {seed})"
    assert kept >= 3, f"only {kept} of 4 samples agree in float32"
