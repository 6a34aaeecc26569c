"""Shared by the export tests: onnxruntime against the user's PyTorch model, rounding flips told apart.

A binary network's output moves far when a value within float rounding of 0 takes another sign in the
export than in PyTorch (see cmc.exporter.sign_flips); such flips are forced to PyTorch's sign and must be
rare and tiny, and every other bit must agree at the tolerance."""
import numpy as np
import onnx
import onnxruntime as ort
import torch

from cmc.exporter.packed_chains import has_packed, unpack_chains
from cmc.exporter.sign_flips import attribute_flips


def base_op_types(onnx_model: onnx.ModelProto) -> list[str]:
    """com.cmc op types with the packed BinaryConv variants named as the op they pack (BinaryConv)."""
    return ["BinaryConv" if n.op_type.startswith("BinaryConvPacked") else n.op_type
            for n in onnx_model.graph.node if n.domain == "com.cmc"]


def assert_onnx_matches(user: torch.nn.Module, onnx_model: onnx.ModelProto, x: torch.Tensor, tol: float):
    """With packed chains: the packed model equals its unpacked form bit for bit, and that form is
    compared with PyTorch (where rounding flips can be attributed)."""
    if has_packed(onnx_model):
        unpacked = unpack_chains(onnx_model)
        runs = []
        for m in (onnx_model, unpacked):
            sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
            runs.append(sess.run(None, {sess.get_inputs()[0].name: x.numpy()}))
        for a, b in zip(*runs):
            assert np.array_equal(a, b), "packed chains differ from the unpacked graph"
        onnx_model = unpacked
    sess = ort.InferenceSession(onnx_model.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: x.numpy()}
    with torch.no_grad():
        ref = user(x)
    refs = list(ref) if isinstance(ref, (tuple, list)) else [ref]
    refs = [r.numpy() for r in refs]
    gots = sess.run(None, feed)
    assert [g.shape for g in gots] == [r.shape for r in refs]
    errs = [np.abs(g - r).max() / np.abs(r).max() for g, r in zip(gots, refs)]
    if max(errs) <= tol:
        return {"forced": 0, "rel_err": max(errs)}
    names = [o.name for o in onnx_model.graph.output]
    rep = attribute_flips(user, onnx_model, feed, dict(zip(names, refs)))
    assert rep is not None, f"error {max(errs):.3g} > {tol:g} and the model binarizes nothing"
    assert rep.genuine is None, rep.genuine["message"]
    assert 0 < rep.forced <= 16 * x.shape[0], f"{rep.forced} rounding flips forced for {x.shape[0]} sample(s)"
    assert rep.largest_forced_rel <= 1e-5
    forced_errs = [o["max_abs_err"] / o["max_abs_ref"] for o in rep.outputs]
    assert max(forced_errs) <= tol, f"with {rep.forced} rounding flips forced: {max(forced_errs):.3g} > {tol:g}"
    return {"forced": rep.forced, "rel_err": max(forced_errs)}
