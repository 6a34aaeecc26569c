#include "harness_ops.h"

#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <stdexcept>

#include "cmc_contract_adder_conv.h"
#include "cmc_contract_binary_conv.h"

namespace cmcharness {

using nvinfer1::DataType;

std::string dimsText(Dims4 const& d) {
    return "[" + std::to_string(d.n) + ", " + std::to_string(d.c) + ", " + std::to_string(d.h) + ", " +
           std::to_string(d.w) + "]";
}

namespace {

template <class C>
OpModel model(std::string folder, bool binaryWeights, bool ownTable) {
    OpModel m;
    m.pluginName = C::kPluginName;
    m.folder = std::move(folder);
    m.formatTable = ownTable ? "" : C::kPluginName;
    m.contract = &C::info();
    for (int32_t i = 0; i < C::kNbInputs; ++i) m.ioNames.push_back(C::kInputNames[i]);
    for (int32_t i = 0; i < C::kNbOutputs; ++i) m.ioNames.push_back(C::kOutputNames[i]);
    m.nbInputs = C::kNbInputs;
    m.nbOutputs = C::kNbOutputs;
    m.tolFloat32 = C::kToleranceFloat32;
    m.tolFloat16 = C::kToleranceFloat16;
    m.binaryWeights = binaryWeights;
    m.inputPacked = C::kInputPacked;
    m.outputPacked = C::kOutputPacked;
    return m;
}

int32_t fieldIndex(cmc::plugin::ContractInfo const& c, std::string const& name) {
    for (int32_t i = 0; i < c.nbFields; ++i) {
        if (name == c.fields[i].name) return i;
    }
    return -1;
}

// Field values for a case: the contract defaults, overridden by `given` (names must exist).
std::vector<std::vector<int32_t>> values(OpModel const& op,
                                         std::map<std::string, std::vector<int32_t>> const& given) {
    cmc::plugin::ContractInfo const& c = *op.contract;
    std::vector<std::vector<int32_t>> v(static_cast<size_t>(c.nbFields));
    for (int32_t i = 0; i < c.nbFields; ++i) {
        v[static_cast<size_t>(i)].assign(c.fields[i].defaultValue, c.fields[i].defaultValue + c.fields[i].nbDefault);
    }
    for (auto const& kv : given) {
        int32_t const i = fieldIndex(c, kv.first);
        if (i < 0) {
            throw std::runtime_error(op.pluginName + " contract has no field '" + kv.first + "' (harness case out of date)");
        }
        v[static_cast<size_t>(i)] = kv.second;
    }
    return v;
}

std::vector<OpCase> makeCases() {
    namespace ct = cmc::plugin::contract;
    OpModel const* adder = findModel(ct::AdderConv::kPluginName);
    OpModel const* binary = findModel(ct::BinaryConv::kPluginName);
    OpModel const* packedOut = findModel(ct::BinaryConvPackedOut::kPluginName);
    OpModel const* packedIn = findModel(ct::BinaryConvPackedIn::kPluginName);
    OpModel const* packedInOut = findModel(ct::BinaryConvPackedInOut::kPluginName);
    std::vector<OpCase> cases;
    auto add = [&](std::string label, OpModel const* op, std::map<std::string, std::vector<int32_t>> given, int64_t c,
                   int64_t m, Dims4 mn, Dims4 opt, Dims4 mx, Dims4 extra, InputKind input, double sigma, double clip) {
        if (op->inputPacked) {
            // C of a packed X is a field: the packed shape gives only 4*ceil(C/128).
            given["in_channels"] = {static_cast<int32_t>(c)};
        }
        OpCase k;
        k.label = std::move(label);
        k.op = op;
        k.fieldValues = values(*op, given);
        k.c = c;
        k.m = m;
        k.min = mn;
        k.opt = opt;
        k.max = mx;
        k.runShapes = {mn, opt, mx, extra};
        k.input = input;
        k.weightSigma = sigma;
        k.weightClip = clip;
        cases.push_back(k);
    };
    // Trained AdderNets: |w| up to ~60, inputs are post-BatchNorm/ReLU activations (exact zeros).
    add("adder_k3x3_s2x1_p1110_d1x2_g2_relu", adder,
        {{"kernel_shape", {3, 3}}, {"strides", {2, 1}}, {"pads", {1, 1, 1, 0}}, {"dilations", {1, 2}}, {"group", {2}},
         {"activation", {1}}},
        12, 10, {1, 12, 5, 6}, {3, 12, 11, 9}, {4, 12, 16, 13}, {2, 12, 7, 10}, InputKind::kPostRelu, 15.0, 60.0);
    // A first layer: 1x1, odd channel counts, every optional field at its default, centred input.
    add("adder_k1x1_defaults_c37_m19", adder, {{"kernel_shape", {1, 1}}}, 37, 19, {1, 37, 1, 1}, {2, 37, 6, 5},
        {5, 37, 9, 8}, {3, 37, 4, 7}, InputKind::kCentered, 15.0, 60.0);
    // BNNs: binarized input after a ReLU (exact zeros binarize to +1), 40 channels = 2 words with a tail.
    add("binary_k3x3_p1_c40_binarized", binary,
        {{"kernel_shape", {3, 3}}, {"pads", {1, 1, 1, 1}}, {"binarize_input", {1}}}, 40, 16, {1, 40, 3, 3},
        {2, 40, 8, 8}, {3, 40, 12, 10}, {2, 40, 5, 9}, InputKind::kPostRelu, 1.0, 0.0);
    // Float input (Relu + BinaryConv(binarize_input=0)), groups, stride, dilation, asymmetric pads.
    add("binary_k3x2_s2x1_p0121_d2x1_g2_float_relu", binary,
        {{"kernel_shape", {3, 2}}, {"strides", {2, 1}}, {"pads", {0, 1, 2, 1}}, {"dilations", {2, 1}}, {"group", {2}},
         {"binarize_input", {0}}, {"activation", {1}}},
        68, 6, {1, 68, 5, 2}, {2, 68, 9, 7}, {4, 68, 13, 11}, {3, 68, 6, 4}, InputKind::kPostRelu, 1.0, 0.0);
    // Packed chains (com.cmc version 2, group 1). A packed Y with M = 136: two 128-bit blocks, the second
    // with 120 pad bits; signs of both kinds and exact zeros in X (binarize(0) = +1).
    add("packedout_k3x3_p1_c40_m136", packedOut, {{"kernel_shape", {3, 3}}, {"pads", {1, 1, 1, 1}}}, 40, 136,
        {1, 40, 1, 2}, {2, 40, 7, 6}, {3, 40, 10, 9}, {2, 40, 4, 8}, InputKind::kSignsWithZeros, 1.0, 0.0);
    // A first binary layer: float X used as it is (binarize_input 0), packed signs out; stride and dilation.
    add("packedout_k3x2_s2x1_d1x2_c19_m7_float", packedOut,
        {{"kernel_shape", {3, 2}}, {"strides", {2, 1}}, {"dilations", {1, 2}}, {"binarize_input", {0}}}, 19, 7,
        {1, 19, 3, 3}, {2, 19, 9, 8}, {3, 19, 12, 10}, {1, 19, 5, 4}, InputKind::kCentered, 1.0, 0.0);
    // Packed X with C = 200 (8 words, 56 pad bits) into a float Y with ReLU; stride, dilation, asymmetric pads.
    add("packedin_k3x3_s2x1_p1021_d1x2_c200_m24_relu", packedIn,
        {{"kernel_shape", {3, 3}}, {"strides", {2, 1}}, {"pads", {1, 0, 2, 1}}, {"dilations", {1, 2}}, {"activation", {1}}},
        200, 24, {1, 200, 3, 5}, {2, 200, 8, 9}, {4, 200, 13, 11}, {3, 200, 6, 7}, InputKind::kSignsWithZeros, 1.0, 0.0);
    // Packed in and out, C = 130 (a 2-channel second block), M = 40.
    add("packedinout_k3x3_p1_c130_m40", packedInOut, {{"kernel_shape", {3, 3}}, {"pads", {1, 1, 1, 1}}}, 130, 40,
        {1, 130, 1, 1}, {2, 130, 6, 6}, {3, 130, 9, 11}, {2, 130, 3, 4}, InputKind::kSignsWithZeros, 1.0, 0.0);
    return cases;
}

int64_t convOut(int64_t in, int32_t k, int32_t s, int32_t pb, int32_t pe, int32_t d) {
    int64_t const span = in + pb + pe - static_cast<int64_t>(d) * (k - 1) - 1;
    return span < 0 ? 0 : span / s + 1;
}

int32_t wordsPerTap(int64_t cg) { return static_cast<int32_t>((cg + 31) / 32); }

// float [M, Cg, kh, kw] -> the contract's int32 [M, kh, kw, words]: bit b of word k = channel 32k+b,
// 1 for w >= 0. Written independently of the plugins' host packing.
std::vector<int32_t> pack(std::vector<double> const& w, int64_t m, int64_t cg, int32_t kh, int32_t kw) {
    int32_t const words = wordsPerTap(cg);
    std::vector<int32_t> out(static_cast<size_t>(m * kh * kw * words), 0);
    for (int64_t o = 0; o < m; ++o)
        for (int64_t c = 0; c < cg; ++c)
            for (int32_t p = 0; p < kh; ++p)
                for (int32_t q = 0; q < kw; ++q) {
                    if (w[static_cast<size_t>(((o * cg + c) * kh + p) * kw + q)] >= 0) {
                        size_t const word = static_cast<size_t>(((o * kh + p) * kw + q) * words + c / 32);
                        uint32_t bits = static_cast<uint32_t>(out[word]) | (1u << (c % 32));
                        out[word] = static_cast<int32_t>(bits);
                    }
                }
    return out;
}

// The +-1 weights [M, Cg, kh, kw] a packed tensor holds.
std::vector<double> unpack(std::vector<int32_t> const& packed, int64_t m, int64_t cg, int32_t kh, int32_t kw) {
    int32_t const words = wordsPerTap(cg);
    std::vector<double> out(static_cast<size_t>(m * cg * kh * kw));
    for (int64_t o = 0; o < m; ++o)
        for (int64_t c = 0; c < cg; ++c)
            for (int32_t p = 0; p < kh; ++p)
                for (int32_t q = 0; q < kw; ++q) {
                    auto const word = static_cast<uint32_t>(packed[static_cast<size_t>(((o * kh + p) * kw + q) * words + c / 32)]);
                    out[static_cast<size_t>(((o * cg + c) * kh + p) * kw + q)] = (word >> (c % 32)) & 1u ? 1.0 : -1.0;
                }
    return out;
}

// The contract's accumulation A (before the epilogue) in float64, one loop for both operators.
std::vector<double> rawSums(OpCase const& k, Dims4 const& x, std::vector<double> const& xv, std::vector<double> const& w) {
    ConvAttrs const a = k.attrs();
    Dims4 const y = outputDims(k, x);
    int64_t const cg = x.c / a.group, mg = k.m / a.group;
    bool const binary = k.op->binaryWeights;
    std::vector<double> acc(static_cast<size_t>(y.n * y.c * y.h * y.w), 0.0);
    for (int64_t n = 0; n < y.n; ++n)
        for (int64_t o = 0; o < k.m; ++o)
            for (int64_t i = 0; i < y.h; ++i)
                for (int64_t j = 0; j < y.w; ++j) {
                    int64_t const g = o / mg;
                    double s = 0;
                    for (int64_t c = 0; c < cg; ++c)
                        for (int32_t p = 0; p < a.kh; ++p)
                            for (int32_t q = 0; q < a.kw; ++q) {
                                int64_t const ih = i * a.sh - a.pt + p * a.dh;
                                int64_t const iw = j * a.sw - a.pl + q * a.dw;
                                bool const inside = ih >= 0 && ih < x.h && iw >= 0 && iw < x.w;
                                double const v = inside ? xv[static_cast<size_t>(((n * x.c + g * cg + c) * x.h + ih) * x.w + iw)] : 0.0;
                                double const wv = w[static_cast<size_t>(((o * cg + c) * a.kh + p) * a.kw + q)];
                                if (binary) {
                                    // Padding after binarization: a padded tap reads 0 and adds nothing.
                                    double const xb = !inside ? 0.0 : (a.binarizeInput ? (v >= 0 ? 1.0 : -1.0) : v);
                                    s += xb * wv;
                                } else {
                                    s -= std::fabs(v - wv);  // a padded tap (v = 0) adds -|w|
                                }
                            }
                    acc[static_cast<size_t>(((n * k.m + o) * y.h + i) * y.w + j)] = s;
                }
    return acc;
}

}  // namespace

std::vector<OpModel> const& opModels() {
    namespace ct = cmc::plugin::contract;
    static std::vector<OpModel> const models = {
        model<ct::AdderConv>("adder_conv", false, true),
        model<ct::BinaryConv>("binary_conv", true, true),
        model<ct::BinaryConvPackedOut>("binary_conv", true, false),
        model<ct::BinaryConvPackedIn>("binary_conv", true, false),
        model<ct::BinaryConvPackedInOut>("binary_conv", true, false),
    };
    return models;
}

OpModel const* findModel(std::string const& pluginName) {
    for (auto const& m : opModels()) {
        if (m.pluginName == pluginName) return &m;
    }
    return nullptr;
}

std::vector<OpCase> const& opCases() {
    static std::vector<OpCase> const cases = makeCases();
    return cases;
}

ConvAttrs OpCase::attrs() const {
    cmc::plugin::ContractInfo const& c = *op->contract;
    auto get = [&](char const* name, size_t idx, int32_t fallback) {
        int32_t const i = fieldIndex(c, name);
        return i < 0 ? fallback : fieldValues[static_cast<size_t>(i)][idx];
    };
    ConvAttrs a;
    a.kh = get("kernel_shape", 0, 1);
    a.kw = get("kernel_shape", 1, 1);
    a.sh = get("strides", 0, 1);
    a.sw = get("strides", 1, 1);
    a.pt = get("pads", 0, 0);
    a.pl = get("pads", 1, 0);
    a.pb = get("pads", 2, 0);
    a.pr = get("pads", 3, 0);
    a.dh = get("dilations", 0, 1);
    a.dw = get("dilations", 1, 1);
    a.group = get("group", 0, 1);
    a.relu = get("activation", 0, 0) == 1;
    a.binarizeInput = get("binarize_input", 0, 1) == 1;
    return a;
}

std::vector<int64_t> weightDims(OpCase const& k) {
    ConvAttrs const a = k.attrs();
    int64_t const cg = k.c / a.group;
    if (k.op->binaryWeights) {
        return {k.m, a.kh, a.kw, wordsPerTap(cg)};
    }
    return {k.m, cg, a.kh, a.kw};
}

Dims4 outputDims(OpCase const& k, Dims4 const& x) {
    ConvAttrs const a = k.attrs();
    return {x.n, k.m, convOut(x.h, a.kh, a.sh, a.pt, a.pb, a.dh), convOut(x.w, a.kw, a.sw, a.pl, a.pr, a.dw)};
}

DataType OpModel::outputType(DataType x) const {
    if (outputPacked) return DataType::kINT32;
    return inputPacked ? DataType::kFLOAT : x;
}

DataType OpModel::epilogueType(DataType x) const { return inputPacked ? DataType::kFLOAT : x; }

int64_t packedWords(int64_t channels) { return 4 * ((channels + 127) / 128); }

std::vector<int64_t> xDims(OpModel const& op, Dims4 const& x) {
    if (op.inputPacked) return {x.n, x.h, x.w, x.c < 0 ? -1 : packedWords(x.c)};
    return {x.n, x.c, x.h, x.w};
}

std::vector<int64_t> yDims(OpModel const& op, Dims4 const& y) {
    if (op.outputPacked) return {y.n, y.h, y.w, y.c < 0 ? -1 : packedWords(y.c)};
    return {y.n, y.c, y.h, y.w};
}

int32_t xHeightAxis(OpModel const& op) { return op.inputPacked ? 1 : 2; }
int32_t yHeightAxis(OpModel const& op) { return op.outputPacked ? 1 : 2; }

std::vector<int32_t> packActivations(std::vector<double> const& x, Dims4 const& d, uint32_t padGarbage) {
    int64_t const words = packedWords(d.c);
    std::vector<int32_t> out(static_cast<size_t>(d.n * d.h * d.w * words), 0);
    for (int64_t n = 0; n < d.n; ++n)
        for (int64_t i = 0; i < d.h; ++i)
            for (int64_t j = 0; j < d.w; ++j) {
                size_t const pixel = static_cast<size_t>(((n * d.h + i) * d.w + j) * words);
                for (int64_t wd = 0; wd < words; ++wd) {
                    uint32_t bits = 0;
                    for (int64_t b = 0; b < 32; ++b) {
                        int64_t const c = wd * 32 + b;
                        bool const one = c < d.c ? x[static_cast<size_t>(((n * d.c + c) * d.h + i) * d.w + j)] >= 0
                                                 : ((padGarbage >> b) & 1u) != 0;  // NaN >= 0 is false: 0
                        bits |= one ? (1u << b) : 0u;
                    }
                    out[pixel + static_cast<size_t>(wd)] = static_cast<int32_t>(bits);
                }
            }
    return out;
}

uint16_t halfBits(float v) {
    __half_raw const raw = __half_raw(__float2half_rn(v));
    return raw.x;
}

float halfValue(uint16_t bits) {
    __half_raw raw;
    raw.x = bits;
    return __half2float(__half(raw));
}

double roundToType(double v, DataType t) {
    if (t == DataType::kFLOAT) return static_cast<double>(static_cast<float>(v));
    if (t == DataType::kHALF) return static_cast<double>(halfValue(halfBits(static_cast<float>(v))));
    return v;
}

HostTensors makeTensors(OpCase const& k, Dims4 const& x, DataType xType, DataType wType, uint64_t seed) {
    ConvAttrs const a = k.attrs();
    OpModel const& op = *k.op;
    HostTensors t;
    t.x = x;
    t.y = outputDims(k, x);
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> normal(0.0, 1.0);
    std::uniform_real_distribution<double> uniform(0.0, 1.0);
    t.xv.resize(static_cast<size_t>(x.n * x.c * x.h * x.w));
    for (double& v : t.xv) {
        double const r = normal(rng);
        switch (k.input) {
        case InputKind::kPostRelu: v = std::max(0.0, r + 0.2); break;
        case InputKind::kCentered: v = r; break;
        case InputKind::kSignsWithZeros: v = uniform(rng) < 0.2 ? 0.0 : r; break;
        }
        v = roundToType(v, xType);
    }
    if (op.inputPacked) {
        t.xPacked = packActivations(t.xv, x, static_cast<uint32_t>(rng()));
    }
    // The weights: one draw per case (std::hash of the label), whatever the shape and types.
    std::mt19937_64 wrng(std::hash<std::string>{}(k.label));
    int64_t const cg = x.c / a.group;
    t.wv.resize(static_cast<size_t>(k.m * cg * a.kh * a.kw));
    for (double& v : t.wv) {
        v = normal(wrng) * k.weightSigma;
        if (k.weightClip > 0) v = std::min(k.weightClip, std::max(-k.weightClip, v));
        if (!op.binaryWeights) v = roundToType(v, wType);
    }
    std::vector<double> const* w = &t.wv;
    std::vector<double> pm1;
    if (op.binaryWeights) {
        t.wPacked = pack(t.wv, k.m, cg, a.kh, a.kw);
        pm1 = unpack(t.wPacked, k.m, cg, a.kh, a.kw);
        w = &pm1;
    }
    std::vector<double> const raw = rawSums(k, x, t.xv, *w);
    // A folded BatchNorm fitted to this layer's output: per channel (A - mean) / std, plus an offset
    // so that a ReLU keeps a little over half. The mean dwarfs the signal for AdderConv (sums of |x - w|).
    int64_t const plane = t.y.h * t.y.w;
    t.scale.resize(static_cast<size_t>(k.m));
    t.shift.resize(static_cast<size_t>(k.m));
    for (int64_t o = 0; o < k.m; ++o) {
        double s = 0, s2 = 0;
        int64_t cnt = 0;
        for (int64_t n = 0; n < t.y.n; ++n)
            for (int64_t p = 0; p < plane; ++p) {
                double const v = raw[static_cast<size_t>((n * k.m + o) * plane + p)];
                s += v;
                s2 += v * v;
                ++cnt;
            }
        double const mean = cnt ? s / static_cast<double>(cnt) : 0.0;
        double const var = cnt ? std::max(0.0, s2 / static_cast<double>(cnt) - mean * mean) : 0.0;
        double const sd = std::sqrt(var) > 1e-6 ? std::sqrt(var) : 1.0;
        t.scale[static_cast<size_t>(o)] = static_cast<float>(1.0 / sd);
        t.shift[static_cast<size_t>(o)] = static_cast<float>(-mean / sd + 0.1);
    }
    t.yRef.resize(raw.size());
    double maxRef = 0;
    for (int64_t n = 0; n < t.y.n; ++n)
        for (int64_t o = 0; o < k.m; ++o)
            for (int64_t p = 0; p < plane; ++p) {
                size_t const i = static_cast<size_t>((n * k.m + o) * plane + p);
                double const y = static_cast<double>(t.scale[static_cast<size_t>(o)]) * raw[i] +
                                 static_cast<double>(t.shift[static_cast<size_t>(o)]);
                t.yRef[i] = a.relu ? std::max(0.0, y) : y;
                maxRef = std::max(maxRef, std::fabs(t.yRef[i]));
            }
    if (op.outputPacked) {
        // The sign the next layer would take of the unpacked Y: the epilogue's value rounded to float32
        // (one fused multiply-add) and then to X's type (a float16 value below 2^-25 becomes -0 or +0,
        // both >= 0). With binarize_input the float64 value is exact, so the bits must match exactly.
        DataType const rounding = op.epilogueType(xType);
        std::vector<double> rounded(t.yRef.size());
        for (size_t i = 0; i < rounded.size(); ++i) {
            rounded[i] = roundToType(roundToType(t.yRef[i], DataType::kFLOAT), rounding);
        }
        t.yPackedRef = packActivations(rounded, t.y, 0);
        double const tol = rounding == DataType::kHALF ? op.tolFloat16 : op.tolFloat32;
        t.signMargin = a.binarizeInput ? 0.0 : tol * maxRef;
    }
    return t;
}

namespace {

template <class T>
bool writeRaw(std::string const& path, std::vector<T> const& v) {
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<char const*>(v.data()), static_cast<std::streamsize>(v.size() * sizeof(T)));
    return static_cast<bool>(out);
}

std::string jsonInts(std::vector<int64_t> const& v) {
    std::string s = "[";
    for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
    return s + "]";
}

}  // namespace

bool dumpReferenceCases(std::string const& dir, std::string& why) {
    for (auto const& k : opCases()) {
        OpModel const& op = *k.op;
        DataType const xType = op.inputPacked ? DataType::kINT32 : DataType::kFLOAT;
        HostTensors const t = makeTensors(k, k.opt, xType, DataType::kFLOAT, 7);
        std::string const base = dir + "/" + k.label;
        std::string attrs;
        cmc::plugin::ContractInfo const& c = *op.contract;
        for (int32_t i = 0; i < c.nbFields; ++i) {
            std::vector<int64_t> v(k.fieldValues[static_cast<size_t>(i)].begin(), k.fieldValues[static_cast<size_t>(i)].end());
            attrs += std::string(i ? ", " : "") + "\"" + c.fields[i].name + "\": " +
                     (c.fields[i].kind == cmc::plugin::FieldKind::kInt ? std::to_string(v[0]) : jsonInts(v));
        }
        // X and Y as the plugin takes / gives them (packed int32 for the packed variants), plus the float
        // X behind a packed X and the float64 Y behind a packed Y.
        bool ok = writeRaw(base + ".x_float.bin", t.xv) && writeRaw(base + ".y_float.bin", t.yRef) &&
                  writeRaw(base + ".scale.bin", t.scale) && writeRaw(base + ".shift.bin", t.shift);
        ok = ok && (op.inputPacked ? writeRaw(base + ".x.bin", t.xPacked) : writeRaw(base + ".x.bin", t.xv));
        ok = ok && (op.outputPacked ? writeRaw(base + ".y.bin", t.yPackedRef) : writeRaw(base + ".y.bin", t.yRef));
        ok = ok && (op.binaryWeights ? writeRaw(base + ".w.bin", t.wPacked) : writeRaw(base + ".w.bin", t.wv));
        std::ofstream meta(base + ".json");
        meta << "{\"op\": \"" << op.pluginName << "\", \"folder\": \"" << op.folder << "\", \"attrs\": {" << attrs
             << "}, \"x_shape\": " << jsonInts(xDims(op, t.x)) << ", \"x_dtype\": \""
             << (op.inputPacked ? "int32" : "float64") << "\", \"x_float_shape\": "
             << jsonInts({t.x.n, t.x.c, t.x.h, t.x.w}) << ", \"w_shape\": " << jsonInts(weightDims(k))
             << ", \"w_dtype\": \"" << (op.binaryWeights ? "int32" : "float64") << "\", \"scale_dtype\": \"float32\""
             << ", \"y_shape\": " << jsonInts(yDims(op, t.y)) << ", \"y_dtype\": \""
             << (op.outputPacked ? "int32" : "float64") << "\", \"y_float_shape\": "
             << jsonInts({t.y.n, t.y.c, t.y.h, t.y.w}) << ", \"input\": \""
             << (k.input == InputKind::kPostRelu ? "post_relu" : k.input == InputKind::kCentered ? "centered" : "signs_with_zeros")
             << "\"}\n";
        if (!ok || !meta) {
            why = "cannot write " + base + ".*";
            return false;
        }
    }
    return true;
}

}  // namespace cmcharness
