// What the harness knows about each cmc operator: where its contract and README are, the weight
// layout, the layer configurations it drives through the lifecycle (field values, channels, the
// optimisation profile and the shapes it runs inside it), realistic test data and a float64 C++
// reference of the contract math (cross-checked against plugins/<op>/reference.py by the pytest
// wrapper through --dump-reference).
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
    cmc::plugin::ContractInfo const* contract;
    std::vector<std::string> ioNames;        // inputs then outputs, as the contract names them
    int32_t nbInputs = 0, nbOutputs = 0;
    double tolFloat32 = -1, tolFloat16 = -1;  // contract tolerances, max|y - y_ref| / max|y_ref|
    bool binaryWeights = false;              // W is BinaryConv's packed int32 layout
};
std::vector<OpModel> const& opModels();
OpModel const* findModel(std::string const& pluginName);

struct ConvAttrs {
    int32_t kh = 1, kw = 1, sh = 1, sw = 1, pt = 0, pl = 0, pb = 0, pr = 0, dh = 1, dw = 1, group = 1;
    bool relu = false;
    bool binarizeInput = true;
};

enum class InputKind { kPostRelu, kCentered };  // post-BatchNorm/ReLU activations (exact zeros) or N(0, 1)

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

// Inputs of one run, as the plugin receives them (rounded to the run's types), and the reference.
struct HostTensors {
    Dims4 x, y;
    std::vector<double> xv;         // X, rounded to X's type
    std::vector<double> wv;         // AdderConv: W [M, C/g, kh, kw] rounded to W's type; BinaryConv: latent floats
    std::vector<int32_t> wPacked;   // BinaryConv: W_packed [M, kh, kw, words]
    std::vector<float> scale, shift;  // the epilogue, fitted to the layer's own raw sums (a folded BatchNorm)
    std::vector<double> yRef;       // float64 contract reference on exactly these inputs
};
// `xType`/`wType` decide the rounding (float32, float16); `seed` makes the data reproducible.
HostTensors makeTensors(OpCase const& k, Dims4 const& x, nvinfer1::DataType xType, nvinfer1::DataType wType,
                        uint64_t seed);

double roundToType(double v, nvinfer1::DataType t);  // float32 / float16 rounding (others: unchanged)
uint16_t halfBits(float v);
float halfValue(uint16_t bits);

// Writes <dir>/<label>.json (+ raw little-endian .bin files) for one small run per case: what the
// pytest wrapper feeds to plugins/<op>/reference.py. False with the reason on an I/O error.
bool dumpReferenceCases(std::string const& dir, std::string& why);

}  // namespace cmcharness
