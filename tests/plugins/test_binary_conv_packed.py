"""BinaryConv's packed-activation variants: layout, contracts, and function bodies against the reference
and, bit for bit, against the unpacked BinaryConv body."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

from cmc.exporter.onnx_export import PLUGIN_ATTRS
from cmc.plugins.binary_conv import reference as ref
from cmc.plugins.contract import load, variants
from cmc.plugins.registry import by_op_type

OUT = "BinaryConvPackedOut"
IN = "BinaryConvPackedIn"
IN_OUT = "BinaryConvPackedInOut"

GRID = [
    # (N, C, H, W, M, kh, kw, strides, pads, dilations, activation)
    (1, 5, 6, 6, 3, 3, 3, [1, 1], [1, 1, 1, 1], [1, 1], 0),
    (2, 33, 7, 5, 129, 3, 3, [2, 2], [1, 0, 2, 1], [1, 1], 1),   # tail bits; M needs two 128-bit blocks
    (3, 128, 5, 5, 128, 1, 1, [1, 1], [0, 0, 0, 0], [1, 1], 0),  # exactly one block, no pad bits
    (2, 130, 9, 9, 7, 3, 3, [1, 2], [2, 2, 2, 2], [2, 1], 0),    # dilation, asymmetric stride
]


def run(op_type, x, w_packed, scale, shift, **attrs):
    """One node of ``op_type`` through onnxruntime, using only its model-local function body."""
    entry = by_op_type(op_type)
    c = entry["contract"]
    inits = [numpy_helper.from_array(np.asarray(w_packed), "W_packed"),
             numpy_helper.from_array(np.asarray(scale, np.float32), "scale"),
             numpy_helper.from_array(np.asarray(shift, np.float32), "shift")]
    node = helper.make_node(op_type, ["X", "W_packed", "scale", "shift"], ["Y"], domain=c.domain, **attrs,
                            plugin_version=c.plugin["version"], plugin_namespace=c.plugin["namespace"])
    y_type = onnx.TensorProto.INT32 if c.output_packed else (
        onnx.TensorProto.FLOAT if c.input_packed else helper.np_dtype_to_tensor_dtype(x.dtype))
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("X", helper.np_dtype_to_tensor_dtype(x.dtype),
                                                                          ["N", "A", "B", "C"])],
                              [helper.make_tensor_value_info("Y", y_type, ["N", "D", "E", "F"])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid(c.domain, c.version)],
                              functions=[entry["body"](extra_attributes=PLUGIN_ATTRS)], ir_version=10)
    onnx.checker.check_model(model, full_check=True)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"X": x})[0]


def _case(n, c, h, w, m, kh, kw, strides, pads, dilations, act, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    x[0, 0, :2, :2] = 0.0  # exact zeros binarize to +1
    wp = ref.pack_weights(rng.standard_normal((m, c, kh, kw)))
    scale = (rng.random(m) + 0.5).astype(np.float32)
    shift = rng.standard_normal(m).astype(np.float32) * 3
    attrs = dict(kernel_shape=[kh, kw], strides=strides, pads=pads, dilations=dilations, activation=act)
    return x, wp, scale, shift, attrs


# ---- layout ----------------------------------------------------------------------------------------

def test_packed_layout_is_the_contracts():
    x = -np.ones((1, 130, 1, 2), np.float32)
    x[0, 0, 0, 0] = 0.0      # 0 binarizes to +1: word 0 bit 0
    x[0, 31, 0, 0] = 2.0     # word 0 bit 31 (the int32 sign bit)
    x[0, 129, 0, 1] = 1.0    # word 4 bit 1 (second 128-bit block)
    x[0, 5, 0, 1] = np.nan   # NaN binarizes to -1: bit 0
    p = ref.pack_activations(x)
    assert p.dtype == np.int32 and p.shape == (1, 1, 2, 8)  # 130 channels -> two 128-bit blocks
    words = p.view(np.uint32)
    assert words[0, 0, 0].tolist() == [1 | (1 << 31), 0, 0, 0, 0, 0, 0, 0]
    assert words[0, 0, 1].tolist() == [0, 0, 0, 0, 1 << 1, 0, 0, 0]  # channels 130..255: pad bits 0
    assert ref.packed_words_per_pixel(1) == 4 and ref.packed_words_per_pixel(128) == 4
    assert ref.packed_words_per_pixel(129) == 8


@pytest.mark.parametrize("c", [1, 31, 32, 127, 128, 129, 300])
def test_pack_unpack_round_trip(c):
    x = np.random.default_rng(c).standard_normal((2, c, 3, 4))
    assert np.array_equal(ref.unpack_activations(ref.pack_activations(x), c), ref.binarize(x))


def test_unpack_ignores_pad_bits_and_checks_the_word_count():
    x = np.random.default_rng(1).standard_normal((1, 5, 2, 2))
    p = ref.pack_activations(x)
    p[..., 0] |= np.int32(1 << 7)  # a pad bit (channel 7 of 5)
    p[..., 3] = -1
    assert np.array_equal(ref.unpack_activations(p, 5), ref.binarize(x))
    with pytest.raises(ValueError, match="words per pixel"):
        ref.unpack_activations(p, 129)
    with pytest.raises(ValueError, match="int32"):
        ref.unpack_activations(p.astype(np.int64), 5)


# ---- contracts ---------------------------------------------------------------------------------------

def test_variants_are_new_ops_of_com_cmc_version_2_with_plugins_of_their_own():
    base = load("binary_conv")
    vs = {v.op_type: v for v in variants("binary_conv")}
    assert set(vs) == {OUT, IN, IN_OUT}
    for v in vs.values():
        assert v.domain == base.domain and v.version == 2 > base.version
        assert v.plugin == {"name": v.op_type, "version": "1", "namespace": "cmc"}
        assert v.attribute_names[:len(base.attribute_names)] == base.attribute_names
        extra = {"in_channels": 4} if v.input_packed else {}
        with pytest.raises(ValueError, match="group"):
            v.normalize(dict(kernel_shape=[1, 1], group=2, **extra))
    assert (vs[OUT].input_packed, vs[OUT].output_packed) == (False, True)
    assert (vs[IN].input_packed, vs[IN].output_packed) == (True, False)
    assert (vs[IN_OUT].input_packed, vs[IN_OUT].output_packed) == (True, True)
    # A float-input producer may still pass its signs on packed; a packed input is always binarized.
    assert vs[OUT].normalize(dict(kernel_shape=[1, 1], binarize_input=0))["binarize_input"] == 0
    for op in (IN, IN_OUT):
        with pytest.raises(ValueError, match="binarize_input"):
            vs[op].normalize(dict(kernel_shape=[1, 1], binarize_input=0, in_channels=4))
        with pytest.raises(ValueError, match="in_channels"):
            vs[op].normalize(dict(kernel_shape=[1, 1]))
    assert "in_channels" not in vs[OUT].attribute_names and "in_channels" not in base.attribute_names
    assert vs[IN].raw["outputs"][0]["dtype"] == "float32" and vs[OUT].raw["outputs"][0]["dtype"] == "int32"


# ---- function bodies -----------------------------------------------------------------------------------

def _near_zero_ok(bits_got, bits_ref, y_ref, rel=1e-5):
    """Packed outputs equal the float64 reference's signs except where |y| is within float32 rounding of 0."""
    c = y_ref.shape[1]
    got = ref.unpack_activations(bits_got, c)
    want = ref.unpack_activations(bits_ref, c)
    differ = got != want
    assert np.all(np.abs(y_ref[differ]) <= rel * np.abs(y_ref).max())


@pytest.mark.parametrize("case", GRID)
def test_variant_bodies_match_the_reference(case):
    x, wp, s, t, a = _case(*case)
    c = x.shape[1]
    y_ref = ref.reference(x, wp, s, t, **a)
    xp = ref.pack_activations(x)
    out = run(OUT, x, wp, s, t, **a)
    assert out.dtype == np.int32 and out.shape == (y_ref.shape[0], y_ref.shape[2], y_ref.shape[3],
                                                    ref.packed_words_per_pixel(y_ref.shape[1]))
    _near_zero_ok(out, ref.reference_variant(OUT)(x, wp, s, t, **a), y_ref)
    got = run(IN, xp, wp, s, t, in_channels=c, **a)
    assert got.dtype == np.float32
    assert np.abs(got - y_ref).max() <= 1e-6 * np.abs(y_ref).max()
    assert np.array_equal(ref.reference_variant(IN)(xp, wp, s, t, in_channels=c, **a), y_ref)
    _near_zero_ok(run(IN_OUT, xp, wp, s, t, in_channels=c, **a), ref.pack_activations(y_ref), y_ref)


@pytest.mark.parametrize("case", GRID)
def test_variant_bodies_equal_the_unpacked_body_bit_for_bit(case):
    x, wp, s, t, a = _case(*case)
    c = x.shape[1]
    y = run("BinaryConv", x, wp, s, t, **a)  # binarize_input=1 (default)
    xp = ref.pack_activations(x)
    assert np.array_equal(run(OUT, x, wp, s, t, **a), ref.pack_activations(y))
    assert np.array_equal(run(IN, xp, wp, s, t, in_channels=c, **a), y)
    assert np.array_equal(run(IN_OUT, xp, wp, s, t, in_channels=c, **a), ref.pack_activations(y))


def test_packed_output_of_a_float_input_layer():
    x, wp, s, t, a = _case(*GRID[1])
    a["binarize_input"] = 0
    y = run("BinaryConv", x, wp, s, t, **a)
    assert np.array_equal(run(OUT, x, wp, s, t, **a), ref.pack_activations(y))


def test_packed_input_with_set_pad_bits_reads_only_c_channels():
    x, wp, s, t, a = _case(*GRID[0])
    xp = ref.pack_activations(x)
    xp[..., 0] |= np.int32(-(1 << 31))  # channel 31 of 5: a pad bit
    xp[..., 1:] = -1
    y = run("BinaryConv", x, wp, s, t, **a)
    assert np.array_equal(run(IN, xp, wp, s, t, in_channels=x.shape[1], **a), y)
