#include "harness_ops.h"

#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
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
OpModel model(std::string folder, bool binaryWeights) {
    OpModel m;
    m.pluginName = C::kPluginName;
    m.folder = std::move(folder);
    m.contract = &C::info();
    for (int32_t i = 0; i < C::kNbInputs; ++i) m.ioNames.push_back(C::kInputNames[i]);
    for (int32_t i = 0; i < C::kNbOutputs; ++i) m.ioNames.push_back(C::kOutputNames[i]);
    m.nbInputs = C::kNbInputs;
    m.nbOutputs = C::kNbOutputs;
    m.tolFloat32 = C::kToleranceFloat32;
    m.tolFloat16 = C::kToleranceFloat16;
    m.binaryWeights = binaryWeights;
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
    OpModel const* adder = findModel(cmc::plugin::contract::AdderConv::kPluginName);
    OpModel const* binary = findModel(cmc::plugin::contract::BinaryConv::kPluginName);
    std::vector<OpCase> cases;
    auto add = [&](std::string label, OpModel const* op, std::map<std::string, std::vector<int32_t>> given, int64_t c,
                   int64_t m, Dims4 mn, Dims4 opt, Dims4 mx, Dims4 extra, InputKind input, double sigma, double clip) {
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
    static std::vector<OpModel> const models = {
        model<cmc::plugin::contract::AdderConv>("adder_conv", false),
        model<cmc::plugin::contract::BinaryConv>("binary_conv", true),
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
    HostTensors t;
    t.x = x;
    t.y = outputDims(k, x);
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> normal(0.0, 1.0);
    t.xv.resize(static_cast<size_t>(x.n * x.c * x.h * x.w));
    for (double& v : t.xv) {
        double const r = normal(rng);
        v = roundToType(k.input == InputKind::kPostRelu ? std::max(0.0, r + 0.2) : r, xType);
    }
    int64_t const cg = x.c / a.group;
    t.wv.resize(static_cast<size_t>(k.m * cg * a.kh * a.kw));
    for (double& v : t.wv) {
        v = normal(rng) * k.weightSigma;
        if (k.weightClip > 0) v = std::min(k.weightClip, std::max(-k.weightClip, v));
        if (!k.op->binaryWeights) v = roundToType(v, wType);
    }
    std::vector<double> const* w = &t.wv;
    std::vector<double> pm1;
    if (k.op->binaryWeights) {
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
    for (int64_t n = 0; n < t.y.n; ++n)
        for (int64_t o = 0; o < k.m; ++o)
            for (int64_t p = 0; p < plane; ++p) {
                size_t const i = static_cast<size_t>((n * k.m + o) * plane + p);
                double const y = static_cast<double>(t.scale[static_cast<size_t>(o)]) * raw[i] +
                                 static_cast<double>(t.shift[static_cast<size_t>(o)]);
                t.yRef[i] = a.relu ? std::max(0.0, y) : y;
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
        HostTensors const t = makeTensors(k, k.opt, DataType::kFLOAT, DataType::kFLOAT, 7);
        std::string const base = dir + "/" + k.label;
        std::string attrs;
        cmc::plugin::ContractInfo const& c = *k.op->contract;
        for (int32_t i = 0; i < c.nbFields; ++i) {
            std::vector<int64_t> v(k.fieldValues[static_cast<size_t>(i)].begin(), k.fieldValues[static_cast<size_t>(i)].end());
            attrs += std::string(i ? ", " : "") + "\"" + c.fields[i].name + "\": " +
                     (c.fields[i].kind == cmc::plugin::FieldKind::kInt ? std::to_string(v[0]) : jsonInts(v));
        }
        bool ok = writeRaw(base + ".x.bin", t.xv) && writeRaw(base + ".scale.bin", t.scale) &&
                  writeRaw(base + ".shift.bin", t.shift) && writeRaw(base + ".y.bin", t.yRef);
        ok = ok && (k.op->binaryWeights ? writeRaw(base + ".w.bin", t.wPacked) : writeRaw(base + ".w.bin", t.wv));
        std::ofstream meta(base + ".json");
        meta << "{\"op\": \"" << k.op->pluginName << "\", \"folder\": \"" << k.op->folder << "\", \"attrs\": {" << attrs
             << "}, \"x_shape\": " << jsonInts({t.x.n, t.x.c, t.x.h, t.x.w}) << ", \"x_dtype\": \"float64\""
             << ", \"w_shape\": " << jsonInts(weightDims(k)) << ", \"w_dtype\": \""
             << (k.op->binaryWeights ? "int32" : "float64") << "\", \"scale_dtype\": \"float32\""
             << ", \"y_shape\": " << jsonInts({t.y.n, t.y.c, t.y.h, t.y.w}) << ", \"y_dtype\": \"float64\"}\n";
        if (!ok || !meta) {
            why = "cannot write " + base + ".*";
            return false;
        }
    }
    return true;
}

}  // namespace cmcharness
