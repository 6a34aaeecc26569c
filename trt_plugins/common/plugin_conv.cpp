#include "plugin_conv.h"

#include <exception>
#include <limits>
#include <sstream>

namespace cmc {
namespace plugin {

using nvinfer1::DataType;
using nvinfer1::TensorFormat;

char const* dataTypeName(DataType t) noexcept {
    switch (t) {
    case DataType::kFLOAT: return "float32";
    case DataType::kHALF: return "float16";
    case DataType::kINT8: return "int8";
    case DataType::kINT32: return "int32";
    case DataType::kBOOL: return "bool";
    case DataType::kUINT8: return "uint8";
    case DataType::kFP8: return "fp8";
    case DataType::kBF16: return "bfloat16";
    case DataType::kINT64: return "int64";
    default: return "other";
    }
}

namespace {

std::string dimsString(int64_t const* d, int32_t n) {
    std::ostringstream os;
    os << '[';
    for (int32_t i = 0; i < n; ++i) {
        os << (i ? ", " : "");
        if (d[i] < 0) {
            os << '?';
        } else {
            os << d[i];
        }
    }
    os << ']';
    return os.str();
}

std::string dimsString(nvinfer1::Dims const& d) {
    if (d.nbDims < 0 || d.nbDims > nvinfer1::Dims::MAX_DIMS) {
        return "[invalid rank " + std::to_string(d.nbDims) + "]";
    }
    return dimsString(d.d, d.nbDims);
}

bool isFloatType(DataType t) { return t == DataType::kFLOAT || t == DataType::kHALF; }

// -1 when `in` is unknown; 0 when the window does not fit (an empty output).
int64_t outSize(int64_t in, int32_t k, int32_t stride, int32_t padBegin, int32_t padEnd, int32_t dilation) {
    if (in < 0) {
        return -1;
    }
    int64_t const span = in + padBegin + padEnd - static_cast<int64_t>(dilation) * (k - 1) - 1;
    if (span < 0) {
        return 0;
    }
    return span / stride + 1;
}

constexpr int32_t kRanks[kNbConvInputs] = {4, 4, 1, 1};

}  // namespace

ConvPluginBase::ConvPluginBase(ContractInfo const& contract, std::string layerName, FieldValues values,
                               ConvParams params)
    : mContract(&contract), mLayerName(std::move(layerName)), mValues(std::move(values)), mParams(params) {}

void ConvPluginBase::fail(std::string const& what) const noexcept {
    try {
        reportError(std::string(mContract->pluginName) + " layer '" + mLayerName + "': " + what, mRecorder);
    } catch (...) {
        reportError("plugin error (out of memory while formatting it)", mRecorder);
    }
}

nvinfer1::IPluginCapability* ConvPluginBase::getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept {
    switch (type) {
    case nvinfer1::PluginCapabilityType::kCORE: return static_cast<nvinfer1::IPluginV3OneCore*>(this);
    case nvinfer1::PluginCapabilityType::kBUILD: return static_cast<nvinfer1::IPluginV3OneBuild*>(this);
    case nvinfer1::PluginCapabilityType::kRUNTIME: return static_cast<nvinfer1::IPluginV3OneRuntime*>(this);
    }
    return nullptr;
}

nvinfer1::IPluginV3* ConvPluginBase::clone() noexcept {
    try {
        ConvPluginBase* copy = cloneImpl();
        return static_cast<nvinfer1::IPluginV3*>(copy);
    } catch (std::exception const& e) {
        fail(std::string("clone failed: ") + e.what());
    } catch (...) {
        fail("clone failed");
    }
    return nullptr;
}

char const* ConvPluginBase::getPluginName() const noexcept { return mContract->pluginName; }
char const* ConvPluginBase::getPluginVersion() const noexcept { return mContract->pluginVersion; }
char const* ConvPluginBase::getPluginNamespace() const noexcept { return mContract->pluginNamespace; }
int32_t ConvPluginBase::getNbOutputs() const noexcept { return kNbConvOutputs; }

bool ConvPluginBase::checkShapes(ConvShapes const& s, std::string& why) const {
    ConvParams const& p = mParams;
    int64_t const c = s.x[1];
    int64_t const m = s.w[0];
    std::vector<std::string> problems;
    for (int64_t v : {s.x[0], s.x[1], s.x[2], s.x[3], s.w[0], s.w[1], s.w[2], s.w[3], s.scale, s.shift}) {
        if (v > std::numeric_limits<int32_t>::max()) {
            problems.push_back("a dimension of " + std::to_string(v) + " exceeds int32");
            break;
        }
    }
    if (c == 0 || m == 0) {
        problems.push_back("empty channel dimension");
    }
    if (c > 0 && c % p.group != 0) {
        problems.push_back("X has " + std::to_string(c) + " channels, not divisible by group " +
                           std::to_string(p.group));
    }
    if (m > 0 && m % p.group != 0) {
        problems.push_back(std::string(mContract->inputNames[kInputW]) + " has M = " + std::to_string(m) +
                           " output channels, not divisible by group " + std::to_string(p.group));
    }
    int64_t expected[4] = {-1, -1, -1, -1};
    expectedWeightDims(c > 0 && c % p.group == 0 ? c : -1, m, expected);
    for (int32_t d = 0; d < 4; ++d) {
        if (expected[d] >= 0 && s.w[d] >= 0 && expected[d] != s.w[d]) {
            problems.push_back(std::string(mContract->inputNames[kInputW]) + " has shape " + dimsString(s.w, 4) +
                               ", expected " + dimsString(expected, 4) + " = " + weightLayout() +
                               " for X " + dimsString(s.x, 4) + " and kernel_shape [" + std::to_string(p.kh) +
                               ", " + std::to_string(p.kw) + "]");
            break;
        }
    }
    if (m >= 0 && s.scale >= 0 && s.scale != m) {
        problems.push_back("scale has " + std::to_string(s.scale) + " values, expected M = " + std::to_string(m));
    }
    if (m >= 0 && s.shift >= 0 && s.shift != m) {
        problems.push_back("shift has " + std::to_string(s.shift) + " values, expected M = " + std::to_string(m));
    }
    if (inputPacked() && s.xWords >= 0 && c > 0 && s.xWords != binaryPackedWordsPerPixel(static_cast<int32_t>(c))) {
        problems.push_back("packed X has " + std::to_string(s.xWords) + " words per pixel; in_channels = " +
                           std::to_string(c) + " needs " + std::to_string(binaryPackedWordsPerPixel(static_cast<int32_t>(c))) +
                           " (4 * ceil(C / 128))");
    }
    int64_t const ho = outSize(s.x[2], p.kh, p.strideH, p.padTop, p.padBottom, p.dilationH);
    int64_t const wo = outSize(s.x[3], p.kw, p.strideW, p.padLeft, p.padRight, p.dilationW);
    if (ho == 0 || wo == 0) {
        problems.push_back("X " + dimsString(s.x, 4) + " is too small for kernel_shape/pads/dilations: the output would be empty");
    } else if (s.x[2] == 0 || s.x[3] == 0) {
        // Padding alone would give an output, but the kernels need H, W >= 1 (ConvGeometry::validate):
        // refuse it when the network is built, not at the first enqueue.
        problems.push_back("X " + dimsString(s.x, 4) + " has an empty spatial dimension (H and W must be at least 1)");
    }
    if (problems.empty()) {
        return true;
    }
    why.clear();
    for (size_t i = 0; i < problems.size(); ++i) {
        why += (i ? "; " : "") + problems[i];
    }
    return false;
}

ConvGeometry ConvPluginBase::geometry(int64_t const x[4], int64_t const w[4]) const {
    ConvGeometry g;
    g.n = static_cast<int32_t>(x[0]);
    g.c = static_cast<int32_t>(x[1]);
    g.h = static_cast<int32_t>(x[2]);
    g.w = static_cast<int32_t>(x[3]);
    g.m = static_cast<int32_t>(w[0]);
    g.kh = mParams.kh;
    g.kw = mParams.kw;
    g.strideH = mParams.strideH;
    g.strideW = mParams.strideW;
    g.padTop = mParams.padTop;
    g.padLeft = mParams.padLeft;
    g.padBottom = mParams.padBottom;
    g.padRight = mParams.padRight;
    g.dilationH = mParams.dilationH;
    g.dilationW = mParams.dilationW;
    g.groups = mParams.group;
    return g;
}

void ConvPluginBase::logicalX(int64_t const given[4], ConvShapes& s) const {
    if (!inputPacked()) {
        for (int32_t d = 0; d < 4; ++d) {
            s.x[d] = given[d];
        }
        s.xWords = -1;
        return;
    }
    // int32 [N, H, W, words]: C is not in the shape (only ceil(C/128) is), it is a field.
    s.x[0] = given[0];
    s.x[1] = packedInputChannels();
    s.x[2] = given[1];
    s.x[3] = given[2];
    s.xWords = given[3];
}

bool ConvPluginBase::xTypeOk(DataType t) const noexcept {
    return inputPacked() ? t == DataType::kINT32 : isFloatType(t);
}

DataType ConvPluginBase::outputType(DataType x) const noexcept {
    if (outputPacked()) {
        return DataType::kINT32;
    }
    return inputPacked() ? DataType::kFLOAT : x;
}

bool ConvPluginBase::shapesFromDims(nvinfer1::Dims const* dims, int32_t nbInputs, ConvShapes& s,
                                    std::string& why) const {
    for (int32_t i = 0; i < nbInputs; ++i) {
        if (dims[i].nbDims != kRanks[i]) {
            why = "input " + std::to_string(i) + " has rank " + std::to_string(dims[i].nbDims) + ", expected " +
                  std::to_string(kRanks[i]);
            return false;
        }
    }
    int64_t given[4];
    for (int32_t d = 0; d < 4; ++d) {
        given[d] = dims[kInputX].d[d] >= 0 ? dims[kInputX].d[d] : -1;
        s.w[d] = dims[kInputW].d[d] >= 0 ? dims[kInputW].d[d] : -1;
    }
    logicalX(given, s);
    s.scale = dims[kInputScale].d[0] >= 0 ? dims[kInputScale].d[0] : -1;
    s.shift = dims[kInputShift].d[0] >= 0 ? dims[kInputShift].d[0] : -1;
    return true;
}

int32_t ConvPluginBase::configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
                                        nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept {
    try {
        if (in == nullptr || out == nullptr || nbInputs != kNbConvInputs || nbOutputs != kNbConvOutputs) {
            fail("configurePlugin: expected 4 inputs and 1 output, got " + std::to_string(nbInputs) + " and " +
                 std::to_string(nbOutputs));
            return -1;
        }
        // The declared dims (with -1 for dynamic axes), then the profile's min and max.
        for (int32_t which = 0; which < 3; ++which) {
            nvinfer1::Dims dims[kNbConvInputs];
            for (int32_t i = 0; i < kNbConvInputs; ++i) {
                dims[i] = which == 0 ? in[i].desc.dims : (which == 1 ? in[i].min : in[i].max);
            }
            if (which > 0 && dims[0].nbDims <= 0) {
                continue;  // no profile information
            }
            ConvShapes s;
            std::string why;
            if (!shapesFromDims(dims, kNbConvInputs, s, why) || !checkShapes(s, why)) {
                fail(std::string("configurePlugin: ") + (which == 1 ? "profile min: " : which == 2 ? "profile max: " : "") + why);
                return -1;
            }
        }
        return 0;
    } catch (...) {
        fail("configurePlugin failed");
        return -1;
    }
}

int32_t ConvPluginBase::getOutputDataTypes(DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes,
                                           int32_t nbInputs) const noexcept {
    if (outputTypes == nullptr || inputTypes == nullptr || nbOutputs != kNbConvOutputs || nbInputs != kNbConvInputs) {
        fail("getOutputDataTypes: expected 4 inputs (" + std::string(mContract->inputNames[0]) + ", " +
             mContract->inputNames[1] + ", scale, shift) and 1 output, got " + std::to_string(nbInputs) + " and " +
             std::to_string(nbOutputs));
        return -1;
    }
    if (!xTypeOk(inputTypes[kInputX])) {
        fail(std::string("X has type ") + dataTypeName(inputTypes[kInputX]) + "; the contract allows " +
             (inputPacked() ? "int32 (packed 1-bit activations)" : "float32 or float16"));
        return -1;
    }
    if (!weightTypeSupported(inputTypes[kInputW], inputTypes[kInputX])) {
        fail(std::string(mContract->inputNames[kInputW]) + " has type " + dataTypeName(inputTypes[kInputW]) +
             ", which the contract does not allow");
        return -1;
    }
    for (int32_t i : {kInputScale, kInputShift}) {
        if (inputTypes[i] != DataType::kFLOAT) {
            fail(std::string(mContract->inputNames[i]) + " has type " + dataTypeName(inputTypes[i]) +
                 "; the contract requires float32");
            return -1;
        }
    }
    outputTypes[0] = outputType(inputTypes[kInputX]);
    return 0;
}

int32_t ConvPluginBase::getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
                                        nvinfer1::DimsExprs const* /*shapeInputs*/, int32_t nbShapeInputs,
                                        nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
                                        nvinfer1::IExprBuilder& exprBuilder) noexcept {
    try {
        if (inputs == nullptr || outputs == nullptr || nbInputs != kNbConvInputs || nbOutputs != kNbConvOutputs ||
            nbShapeInputs != 0) {
            fail("getOutputShapes: expected 4 inputs and 1 output, got " + std::to_string(nbInputs) + " and " +
                 std::to_string(nbOutputs));
            return -1;
        }
        ConvShapes s;
        for (int32_t i = 0; i < kNbConvInputs; ++i) {
            if (inputs[i].nbDims != kRanks[i]) {
                fail(std::string(mContract->inputNames[i]) + " has rank " + std::to_string(inputs[i].nbDims) +
                     ", expected " + std::to_string(kRanks[i]));
                return -1;
            }
            for (int32_t d = 0; d < kRanks[i]; ++d) {
                if (inputs[i].d[d] == nullptr) {
                    fail("getOutputShapes: null dimension expression");
                    return -1;
                }
            }
        }
        auto known = [](nvinfer1::IDimensionExpr const* e) -> int64_t {
            return e->isConstant() ? e->getConstantValue() : -1;
        };
        int64_t givenX[4];
        for (int32_t d = 0; d < 4; ++d) {
            givenX[d] = known(inputs[kInputX].d[d]);
            s.w[d] = known(inputs[kInputW].d[d]);
        }
        logicalX(givenX, s);
        s.scale = known(inputs[kInputScale].d[0]);
        s.shift = known(inputs[kInputShift].d[0]);
        std::string why;
        if (!checkShapes(s, why)) {
            fail(why);
            return -1;
        }

        ConvParams const& p = mParams;
        auto spatial = [&](nvinfer1::IDimensionExpr const* in, int32_t k, int32_t stride, int32_t pb, int32_t pe,
                           int32_t dil) -> nvinfer1::IDimensionExpr const* {
            if (in->isConstant()) {
                return exprBuilder.constant(outSize(in->getConstantValue(), k, stride, pb, pe, dil));
            }
            int64_t const offset = static_cast<int64_t>(pb) + pe - static_cast<int64_t>(dil) * (k - 1) - 1;
            nvinfer1::IDimensionExpr const* c = exprBuilder.constant(offset);
            nvinfer1::IDimensionExpr const* st = exprBuilder.constant(stride);
            nvinfer1::IDimensionExpr const* one = exprBuilder.constant(1);
            if (c == nullptr || st == nullptr || one == nullptr) {
                return nullptr;
            }
            nvinfer1::IDimensionExpr const* sum = exprBuilder.operation(nvinfer1::DimensionOperation::kSUM, *in, *c);
            if (sum == nullptr) {
                return nullptr;
            }
            nvinfer1::IDimensionExpr const* div =
                exprBuilder.operation(nvinfer1::DimensionOperation::kFLOOR_DIV, *sum, *st);
            if (div == nullptr) {
                return nullptr;
            }
            return exprBuilder.operation(nvinfer1::DimensionOperation::kSUM, *div, *one);
        };
        // H and W of X: dims 2, 3 (NCHW) or 1, 2 (packed NHWC words).
        int32_t const hAxis = inputPacked() ? 1 : 2;
        nvinfer1::IDimensionExpr const* ho =
            spatial(inputs[kInputX].d[hAxis], p.kh, p.strideH, p.padTop, p.padBottom, p.dilationH);
        nvinfer1::IDimensionExpr const* wo =
            spatial(inputs[kInputX].d[hAxis + 1], p.kw, p.strideW, p.padLeft, p.padRight, p.dilationW);
        outputs[0].nbDims = 4;
        outputs[0].d[0] = inputs[kInputX].d[0];
        if (outputPacked()) {
            // [N, Ho, Wo, 4 * ceil(M / 128)]
            nvinfer1::IDimensionExpr const* m = inputs[kInputW].d[0];
            nvinfer1::IDimensionExpr const* words =
                m->isConstant() ? exprBuilder.constant(binaryPackedWordsPerPixel(static_cast<int32_t>(m->getConstantValue())))
                                : nullptr;
            if (!m->isConstant()) {
                nvinfer1::IDimensionExpr const* block = exprBuilder.constant(128);
                nvinfer1::IDimensionExpr const* four = exprBuilder.constant(4);
                nvinfer1::IDimensionExpr const* blocks =
                    block != nullptr ? exprBuilder.operation(nvinfer1::DimensionOperation::kCEIL_DIV, *m, *block) : nullptr;
                words = blocks != nullptr && four != nullptr
                            ? exprBuilder.operation(nvinfer1::DimensionOperation::kPROD, *blocks, *four)
                            : nullptr;
            }
            outputs[0].d[1] = ho;
            outputs[0].d[2] = wo;
            outputs[0].d[3] = words;
        } else {
            outputs[0].d[1] = inputs[kInputW].d[0];
            outputs[0].d[2] = ho;
            outputs[0].d[3] = wo;
        }
        for (int32_t d = 1; d < 4; ++d) {
            if (outputs[0].d[d] == nullptr) {
                fail("getOutputShapes: the expression builder returned null");
                return -1;
            }
        }
        return 0;
    } catch (...) {
        fail("getOutputShapes failed");
        return -1;
    }
}

bool ConvPluginBase::supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut,
                                               int32_t nbInputs, int32_t nbOutputs) noexcept {
    if (inOut == nullptr || nbInputs != kNbConvInputs || nbOutputs != kNbConvOutputs || pos < 0 ||
        pos >= kNbConvInputs + kNbConvOutputs) {
        return false;
    }
    nvinfer1::PluginTensorDesc const& d = inOut[pos].desc;
    if (d.format != TensorFormat::kLINEAR) {
        return false;
    }
    switch (pos) {
    case kInputX: return xTypeOk(d.type);
    case kInputW: return weightTypeSupported(d.type, inOut[kInputX].desc.type);
    case kInputScale:
    case kInputShift: return d.type == DataType::kFLOAT;
    default: return d.type == outputType(inOut[kInputX].desc.type);  // Y
    }
}

size_t ConvPluginBase::getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
                                        nvinfer1::DynamicPluginTensorDesc const* outputs,
                                        int32_t nbOutputs) const noexcept {
    try {
        if (inputs == nullptr || nbInputs != kNbConvInputs || outputs == nullptr || nbOutputs != kNbConvOutputs) {
            return 0;
        }
        nvinfer1::Dims dims[kNbConvInputs];
        for (int32_t i = 0; i < kNbConvInputs; ++i) {
            dims[i] = inputs[i].max;
        }
        ConvShapes s;
        std::string why;
        if (!shapesFromDims(dims, kNbConvInputs, s, why)) {
            return 0;
        }
        for (int64_t v : s.x) {
            if (v < 0) {
                return 0;
            }
        }
        for (int64_t v : s.w) {
            if (v < 0) {
                return 0;
            }
        }
        if (!checkShapes(s, why)) {
            return 0;
        }
        return workspaceSize(geometry(s.x, s.w), inputs[kInputX].desc.type, inputs[kInputW].desc.type);
    } catch (...) {
        return 0;
    }
}

int32_t ConvPluginBase::onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
                                      nvinfer1::PluginTensorDesc const* out, int32_t nbOutputs) noexcept {
    try {
        if (in == nullptr || out == nullptr || nbInputs != kNbConvInputs || nbOutputs != kNbConvOutputs) {
            fail("onShapeChange: expected 4 inputs and 1 output");
            return -1;
        }
        nvinfer1::Dims dims[kNbConvInputs];
        for (int32_t i = 0; i < kNbConvInputs; ++i) {
            dims[i] = in[i].dims;
        }
        ConvShapes s;
        std::string why;
        if (!shapesFromDims(dims, kNbConvInputs, s, why) || !checkShapes(s, why)) {
            fail("onShapeChange: " + why);
            return -1;
        }
        ConvGeometry const g = geometry(s.x, s.w);
        if (g.n > 0 && g.validate() != Status::kSuccess) {
            fail("onShapeChange: the kernels reject the geometry of X " + dimsString(in[kInputX].dims) + " and " +
                 mContract->inputNames[kInputW] + " " + dimsString(in[kInputW].dims));
            return -1;
        }
        nvinfer1::Dims const& y = out[0].dims;
        int64_t const expectY[4] = {g.n, outputPacked() ? g.outH() : g.m, outputPacked() ? g.outW() : g.outH(),
                                    outputPacked() ? binaryPackedWordsPerPixel(g.m) : g.outW()};
        if (y.nbDims != 4 || y.d[0] != expectY[0] || y.d[1] != expectY[1] || y.d[2] != expectY[2] ||
            y.d[3] != expectY[3]) {
            fail("onShapeChange: output dims " + dimsString(y) + " do not match the inferred shape");
            return -1;
        }
        return 0;
    } catch (...) {
        fail("onShapeChange failed");
        return -1;
    }
}

int32_t ConvPluginBase::enqueue(nvinfer1::PluginTensorDesc const* inputDesc,
                                nvinfer1::PluginTensorDesc const* outputDesc, void const* const* inputs,
                                void* const* outputs, void* workspace, cudaStream_t stream) noexcept {
    try {
        if (inputDesc == nullptr || outputDesc == nullptr || inputs == nullptr || outputs == nullptr) {
            fail("enqueue: null descriptors or buffers");
            return -1;
        }
        nvinfer1::Dims dims[kNbConvInputs];
        for (int32_t i = 0; i < kNbConvInputs; ++i) {
            dims[i] = inputDesc[i].dims;
        }
        ConvShapes s;
        std::string why;
        if (!shapesFromDims(dims, kNbConvInputs, s, why) || !checkShapes(s, why)) {
            fail("enqueue: " + why);
            return -1;
        }
        ConvGeometry const g = geometry(s.x, s.w);
        if (g.n == 0) {
            return 0;  // empty batch: nothing to compute
        }
        DataType const xt = inputDesc[kInputX].type;
        DataType const wt = inputDesc[kInputW].type;
        if (!xTypeOk(xt) || outputDesc[0].type != outputType(xt) || !weightTypeSupported(wt, xt) ||
            inputDesc[kInputScale].type != DataType::kFLOAT || inputDesc[kInputShift].type != DataType::kFLOAT) {
            fail("enqueue: unsupported type combination");
            return -1;
        }
        Epilogue ep;
        ep.scale = static_cast<float const*>(inputs[kInputScale]);
        ep.shift = static_cast<float const*>(inputs[kInputShift]);
        ep.relu = mParams.relu;
        size_t const wsBytes = workspaceSize(g, xt, wt);
        Status const st = launch(g, xt, wt, inputs[kInputX], inputs[kInputW], ep, outputs[0], workspace, wsBytes, stream);
        if (st != Status::kSuccess) {
            std::string detail = statusString(st);
            if (st == Status::kCudaError) {
                detail += std::string(" (") + cudaGetErrorString(cudaGetLastError()) + ")";
            }
            fail("enqueue: kernel failed: " + detail);
            return -1;
        }
        return 0;
    } catch (...) {
        fail("enqueue failed");
        return -1;
    }
}

nvinfer1::IPluginV3* ConvPluginBase::attachToContext(nvinfer1::IPluginResourceContext* context) noexcept {
    nvinfer1::IPluginV3* copy = clone();
    if (copy != nullptr && context != nullptr) {
        static_cast<ConvPluginBase*>(copy)->mRecorder = context->getErrorRecorder();
        static_cast<ConvPluginBase*>(copy)->attached(context);
    }
    return copy;
}

nvinfer1::PluginFieldCollection const* ConvPluginBase::getFieldsToSerialize() noexcept {
    try {
        mSerialFields.clear();
        for (int32_t i = 0; i < mContract->nbFields; ++i) {
            std::vector<int32_t> const& v = mValues[static_cast<size_t>(i)];
            mSerialFields.emplace_back(mContract->fields[i].name, v.data(), nvinfer1::PluginFieldType::kINT32,
                                       static_cast<int32_t>(v.size()));
        }
        mSerialFC.nbFields = static_cast<int32_t>(mSerialFields.size());
        mSerialFC.fields = mSerialFields.data();
        return &mSerialFC;
    } catch (...) {
        fail("getFieldsToSerialize failed");
        return nullptr;
    }
}

}  // namespace plugin
}  // namespace cmc
