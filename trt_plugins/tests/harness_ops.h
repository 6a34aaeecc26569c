// What the harness knows about each cmc plugin: where its contract and README format table are, the
// weight layout, whether X / Y are packed 1-bit activations (BinaryConv's packed variants), the layer
// configurations it drives through the lifecycle (field values, channels, the optimisation profile
// and the shapes it runs inside it), realistic test data and a float64 C++ reference of the contract
// math, including the packing of activations (cross-checked against plugins/<op>/reference.py by the
// pytest wrapper through --dump-reference).
//
// Shapes: a Dims4 is always the logical [N, C, H, W] (of X) or [N, M, Ho, Wo] (of Y); xDims()/yDims()
// give the dims the plugin sees, which for a packed tensor are int32 [N, H, W, 4*ceil(C/128)].
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <NvInferRuntime.h>

#include "plugin_fields.h"

namespace cmcharness {

struct Dims4 {
    int64_t n = 0, c = 0, h = 0, w = 0;
};
std::string dimsText(Dims4 const& d);

struct OpModel {
    std::string pluginName;                  // "AdderConv"
    std::string folder;                      // "adder_conv": plugins/<folder>/, trt_plugins/<folder>/README.md
    // The README format table: "" for the folder's own operator (<!-- cmc-formats:begin -->), else the
    // plugin name (<!-- cmc-formats:begin BinaryConvPackedOut -->).
    std::string formatTable;
    cmc::plugin::ContractInfo const* contract;
    std::vector<std::string> ioNames;        // inputs then outputs, as the contract names them
    int32_t nbInputs = 0, nbOutputs = 0;
    double tolFloat32 = -1, tolFloat16 = -1;  // contract tolerances, max|y - y_ref| / max|y_ref|
    bool binaryWeights = false;              // W is BinaryConv's packed int32 layout
    bool inputPacked = false;                // X is int32 [N, H, W, 4*ceil(C/128)], C = in_channels
    bool outputPacked = false;               // Y is int32 [N, Ho, Wo, 4*ceil(M/128)]
    // The type the contract gives Y for an X of type `x` (packed Y: int32; float Y of a packed X: float32).
    nvinfer1::DataType outputType(nvinfer1::DataType x) const;
    // The float type the epilogue rounds to before a packed Y takes its signs: X's, float32 for a packed X.
    nvinfer1::DataType epilogueType(nvinfer1::DataType x) const;
};
std::vector<OpModel> const& opModels();
OpModel const* findModel(std::string const& pluginName);

struct ConvAttrs {
    int32_t kh = 1, kw = 1, sh = 1, sw = 1, pt = 0, pl = 0, pb = 0, pr = 0, dh = 1, dw = 1, group = 1;
    bool relu = false;
    bool binarizeInput = true;
};

// Post-BatchNorm/ReLU activations (exact zeros), N(0, 1), or N(0, 1) with a fifth of the values exactly 0
// (signs of both kinds and binarize(0) = +1: what a packed X carries).
enum class InputKind { kPostRelu, kCentered, kSignsWithZeros };

struct OpCase {
    std::string label;
    OpModel const* op;
    std::vector<std::vector<int32_t>> fieldValues;  // per contract field, in contract order
    int64_t c = 0, m = 0;
    Dims4 min, opt, max;          // the optimisation profile of X (C fixed)
    std::vector<Dims4> runShapes;  // X shapes enqueued, all inside the profile
    InputKind input = InputKind::kPostRelu;
    double weightSigma = 1, weightClip = 0;  // W ~ N(0, sigma), clipped to +-clip when clip > 0
    ConvAttrs attrs() const;
};
std::vector<OpCase> const& opCases();

std::vector<int64_t> weightDims(OpCase const& k);
Dims4 outputDims(OpCase const& k, Dims4 const& x);  // [N, M, Ho, Wo]; Ho/Wo may be <= 0 for empty outputs

// Packed 1-bit activations: 4 int32 words per started 128 channels.
int64_t packedWords(int64_t channels);
// X / Y dims as the plugin sees them (packed: [N, H, W, words]); -1 entries stay -1 (dynamic axes).
std::vector<int64_t> xDims(OpModel const& op, Dims4 const& x);
std::vector<int64_t> yDims(OpModel const& op, Dims4 const& y);
// The axis of H in X / of Ho in Y as the plugin sees them (W / Wo follow): 2, or 1 when packed.
int32_t xHeightAxis(OpModel const& op);
int32_t yHeightAxis(OpModel const& op);

// Inputs of one run, as the plugin receives them (rounded to the run's types), and the reference.
struct HostTensors {
    Dims4 x, y;                     // logical [N, C, H, W] and [N, M, Ho, Wo]
    std::vector<double> xv;         // X, rounded to X's type (a packed X: the floats whose signs it holds)
    std::vector<int32_t> xPacked;   // packed X [N, H, W, words(C)] of xv; its pad bits hold garbage (ignored)
    std::vector<double> wv;         // AdderConv: W [M, C/g, kh, kw] rounded to W's type; BinaryConv: latent floats
    std::vector<int32_t> wPacked;   // BinaryConv: W_packed [M, kh, kw, words]
    std::vector<float> scale, shift;  // the epilogue, fitted to the layer's own raw sums (a folded BatchNorm)
    std::vector<double> yRef;       // float64 contract reference [N, M, Ho, Wo] on exactly these inputs
    // Packed Y: the reference bits [N, Ho, Wo, words(M)] (bit = yRef rounded to the epilogue type >= 0,
    // pad bits 0), and how close to 0 a reference value may be where the plugin's sign may differ: 0 when
    // the sum is an exact integer (binarize_input 1), else the contract tolerance times max|yRef|.
    std::vector<int32_t> yPackedRef;
    double signMargin = 0;
};
// `xType`/`wType` decide the rounding (float32, float16; int32 for a packed X); `seed` makes X
// reproducible. The weights depend on the case alone (not on the shape or the types), as constant
// weights in an engine do: BinaryConv plugins prepare them once per weight address.
HostTensors makeTensors(OpCase const& k, Dims4 const& x, nvinfer1::DataType xType, nvinfer1::DataType wType,
                        uint64_t seed);
// Packs float activations [N, C, H, W] the contract's way (bit 1 where x >= 0); pad bits are set to
// `padGarbage` bits (0: the layout a producer writes).
std::vector<int32_t> packActivations(std::vector<double> const& x, Dims4 const& d, uint32_t padGarbage);

double roundToType(double v, nvinfer1::DataType t);  // float32 / float16 rounding (others: unchanged)
uint16_t halfBits(float v);
float halfValue(uint16_t bits);

// Writes <dir>/<label>.json (+ raw little-endian .bin files) for one small run per case: what the
// pytest wrapper feeds to plugins/<op>/reference.py. False with the reason on an I/O error.
bool dumpReferenceCases(std::string const& dir, std::string& why);

}  // namespace cmcharness
