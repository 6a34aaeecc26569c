// CPU-only contract test of the cmc TensorRT plugins: no GPU, no libnvinfer.
//
//   cmc_plugin_contract_test <libcmc_trt_plugins.so> <libcmc_trt_plugins_dynamic.so>
//
// Loads both libraries the way TensorRT's tools do (dlopen; the self-registering one registers into
// the stub registry of plugin_test_stub.cpp, the dynamic one is asked through getCreators and
// setLoggerFinder) and, for the creators reached both ways, checks against the operator contracts
// (the same generated tables the plugins use, plugins/<op>/contract.json):
//   names/version/namespace, getFieldNames, creation from fields with defaults filled in, the
//   serialization round trip (getFieldsToSerialize -> createPlugin(kRUNTIME)), clone and
//   attachToContext, output types, output shapes through a fake IExprBuilder (constant and symbolic
//   dimensions), supportsFormatCombination, configurePlugin/onShapeChange validation, and the
//   rejection of bad fields (missing, unknown, duplicate, wrong type, wrong length, out of range,
//   null data) reported through the logger / error recorder.
// No CUDA call is made: enqueue and the kernels are exercised only where TensorRT runs.
#include <dlfcn.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <NvInferRuntime.h>

#include "cmc_contract_adder_conv.h"
#include "cmc_contract_binary_conv.h"
#include "plugin_test_stub.h"

using namespace nvinfer1;
using cmc::plugin::ContractInfo;
using cmc::plugin::FieldKind;
using cmc::plugin::FieldSpec;

namespace {

int gChecks = 0;
int gFailures = 0;
std::string gContext;

void check(bool ok, std::string const& what) {
    ++gChecks;
    if (!ok) {
        ++gFailures;
        std::fprintf(stderr, "FAIL [%s] %s\n", gContext.c_str(), what.c_str());
    }
}

// ---- fake shape expressions -------------------------------------------------------------------
// Every expression carries a value: constants report theirs, symbolic ones hide it (isConstant() is
// false) so the test can still evaluate what the plugin built for one binding of the dynamic dims.
class FakeDimImpl final : public apiv::VDimensionExpr {
public:
    FakeDimImpl(bool constant, int64_t value) : mConstant(constant), mValue(value) {}
    bool isConstant() const override { return mConstant; }
    int64_t getConstantValue() const override { return mConstant ? mValue : -1; }
    bool isSizeTensor() const override { return false; }
    bool mConstant;
    int64_t mValue;
};

class FakeDim final : public IDimensionExpr {
public:
    FakeDim(bool constant, int64_t value) : mFake(constant, value) { mImpl = &mFake; }
    ~FakeDim() noexcept override = default;
    int64_t hidden() const { return mFake.mValue; }
    FakeDimImpl mFake;
};

int64_t floorDiv(int64_t a, int64_t b) {
    int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0))) {
        --q;
    }
    return q;
}

class FakeBuilderImpl final : public apiv::VExprBuilder {
public:
    IDimensionExpr const* constant(int64_t value) override { return make(true, value); }
    IDimensionExpr const* operation(DimensionOperation op, IDimensionExpr const& a, IDimensionExpr const& b) override {
        int64_t const x = static_cast<FakeDim const&>(a).hidden();
        int64_t const y = static_cast<FakeDim const&>(b).hidden();
        int64_t v = 0;
        switch (op) {
        case DimensionOperation::kSUM: v = x + y; break;
        case DimensionOperation::kPROD: v = x * y; break;
        case DimensionOperation::kMAX: v = x > y ? x : y; break;
        case DimensionOperation::kMIN: v = x < y ? x : y; break;
        case DimensionOperation::kSUB: v = x - y; break;
        case DimensionOperation::kEQUAL: v = x == y; break;
        case DimensionOperation::kLESS: v = x < y; break;
        case DimensionOperation::kFLOOR_DIV: v = floorDiv(x, y); break;
        case DimensionOperation::kCEIL_DIV: v = -floorDiv(-x, y); break;
        }
        return make(a.isConstant() && b.isConstant(), v);
    }
    IDimensionExpr const* declareSizeTensor(int32_t, IDimensionExpr const&, IDimensionExpr const&) override {
        return nullptr;
    }
    FakeDim const* make(bool constant, int64_t value) {
        mDims.emplace_back(new FakeDim(constant, value));
        return mDims.back().get();
    }
    std::deque<std::unique_ptr<FakeDim>> mDims;
};

class FakeExprBuilder final : public IExprBuilder {
public:
    FakeExprBuilder() { mImpl = &mFake; }
    ~FakeExprBuilder() noexcept override = default;
    FakeDim const* dim(bool constant, int64_t value) { return mFake.make(constant, value); }
    FakeBuilderImpl mFake;
};

// ---- fake error recorder / resource context ---------------------------------------------------
class FakeRecorder final : public IErrorRecorder {
public:
    int32_t getNbErrors() const noexcept override { return static_cast<int32_t>(mErrors.size()); }
    ErrorCode getErrorCode(int32_t i) const noexcept override { return mErrors[static_cast<size_t>(i)].first; }
    ErrorDesc getErrorDesc(int32_t i) const noexcept override { return mErrors[static_cast<size_t>(i)].second.c_str(); }
    bool hasOverflowed() const noexcept override { return false; }
    void clear() noexcept override { mErrors.clear(); }
    bool reportError(ErrorCode code, ErrorDesc desc) noexcept override {
        try {
            mErrors.emplace_back(code, desc != nullptr ? desc : "");
        } catch (...) {
        }
        return true;
    }
    RefCount incRefCount() noexcept override { return 1; }
    RefCount decRefCount() noexcept override { return 0; }
    std::vector<std::pair<ErrorCode, std::string>> mErrors;
};

class FakeContext final : public IPluginResourceContext {
public:
    explicit FakeContext(IErrorRecorder* r) : mRecorder(r) {}
    ~FakeContext() noexcept override = default;
    IGpuAllocator* getGpuAllocator() const noexcept override { return nullptr; }
    IErrorRecorder* getErrorRecorder() const noexcept override { return mRecorder; }
    IErrorRecorder* mRecorder;
};

class FakeLoggerFinder final : public ILoggerFinder {
public:
    explicit FakeLoggerFinder(ILogger* l) : mLogger(l) {}
    ILogger* findLogger() override { return mLogger; }
    ILogger* mLogger;
};

// ---- helpers ----------------------------------------------------------------------------------
struct Field {
    std::string name;
    PluginFieldType type = PluginFieldType::kINT32;
    std::vector<int32_t> i32;
    std::vector<int64_t> i64;
    std::vector<float> f32;
    int32_t length = -1;  // -1: the data's size
    bool nullData = false;
};

struct Fields {
    std::vector<Field> list;
    std::vector<PluginField> pf;
    PluginFieldCollection fc{};

    Field* find(std::string const& n) {
        for (auto& f : list) {
            if (f.name == n) {
                return &f;
            }
        }
        return nullptr;
    }
    void erase(std::string const& n) {
        for (size_t i = 0; i < list.size(); ++i) {
            if (list[i].name == n) {
                list.erase(list.begin() + static_cast<long>(i));
                return;
            }
        }
    }
    PluginFieldCollection const* collection() {
        pf.clear();
        for (auto const& f : list) {
            void const* data = nullptr;
            int32_t n = 0;
            if (f.type == PluginFieldType::kINT64) {
                data = f.i64.data();
                n = static_cast<int32_t>(f.i64.size());
            } else if (f.type == PluginFieldType::kFLOAT32) {
                data = f.f32.data();
                n = static_cast<int32_t>(f.f32.size());
            } else {
                data = f.i32.data();
                n = static_cast<int32_t>(f.i32.size());
            }
            pf.emplace_back(f.name.c_str(), f.nullData ? nullptr : data, f.type, f.length >= 0 ? f.length : n);
        }
        fc.nbFields = static_cast<int32_t>(pf.size());
        fc.fields = pf.data();
        return &fc;
    }
};

std::vector<int32_t> defaultsOf(FieldSpec const& s) {
    return std::vector<int32_t>(s.defaultValue, s.defaultValue + s.nbDefault);
}

// A valid, non-default value for every field (kernel 3x3, stride 2, pads 1, dilation 1, group 2, ...).
std::vector<int32_t> sampleValue(FieldSpec const& s) {
    std::string const n = s.name;
    if (n == "kernel_shape") return {3, 3};
    if (n == "strides") return {2, 1};
    if (n == "pads") return {1, 1, 1, 0};
    if (n == "dilations") return {1, 2};
    if (n == "group") return {2};
    if (n == "activation") return {1};
    if (n == "binarize_input") return {0};
    std::vector<int32_t> v(static_cast<size_t>(s.length), s.hasMin ? s.minValue : 0);
    return v;
}

Fields allFields(ContractInfo const& c) {
    Fields f;
    for (int32_t i = 0; i < c.nbFields; ++i) {
        Field x;
        x.name = c.fields[i].name;
        x.i32 = sampleValue(c.fields[i]);
        f.list.push_back(x);
    }
    return f;
}

Fields requiredFields(ContractInfo const& c) {
    Fields f;
    for (int32_t i = 0; i < c.nbFields; ++i) {
        if (c.fields[i].required) {
            Field x;
            x.name = c.fields[i].name;
            x.i32 = sampleValue(c.fields[i]);
            f.list.push_back(x);
        }
    }
    return f;
}

std::vector<std::vector<int32_t>> serialized(IPluginV3* p) {
    auto* rt = static_cast<IPluginV3OneRuntime*>(p->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    std::vector<std::vector<int32_t>> out;
    if (rt == nullptr) {
        return out;
    }
    PluginFieldCollection const* fc = rt->getFieldsToSerialize();
    if (fc == nullptr) {
        return out;
    }
    for (int32_t i = 0; i < fc->nbFields; ++i) {
        PluginField const& f = fc->fields[i];
        if (f.type != PluginFieldType::kINT32 || f.data == nullptr || f.length < 0) {
            out.push_back({-999});
            continue;
        }
        auto const* d = static_cast<int32_t const*>(f.data);
        out.emplace_back(d, d + f.length);
    }
    return out;
}

struct Destroy {
    void operator()(IPluginV3* p) const { delete p; }
};
using PluginPtr = std::unique_ptr<IPluginV3, Destroy>;

// Where the errors of one library variant end up.
struct Sink {
    cmctest::CapturingLogger* logger;
};

bool reportedSince(Sink const& sink, size_t before, std::string const& needle) {
    auto const& m = sink.logger->messages;
    for (size_t i = before; i < m.size(); ++i) {
        if (m[i].first <= ILogger::Severity::kERROR && m[i].second.find(needle) != std::string::npos) {
            return true;
        }
    }
    return false;
}

DynamicPluginTensorDesc desc(DataType t, std::vector<int64_t> const& dims, TensorFormat fmt = TensorFormat::kLINEAR) {
    DynamicPluginTensorDesc d{};
    d.desc.type = t;
    d.desc.format = fmt;
    d.desc.scale = 1.f;
    d.desc.dims.nbDims = static_cast<int32_t>(dims.size());
    for (size_t i = 0; i < dims.size(); ++i) {
        d.desc.dims.d[i] = dims[i];
    }
    d.min = d.desc.dims;
    d.max = d.desc.dims;
    d.opt = d.desc.dims;
    return d;
}

// ---- the contract suite for one creator ---------------------------------------------------------
struct OpCase {
    ContractInfo const* contract;
    bool binary;
    // The W dims for X channels c, M outputs, group g, kernel kh x kw.
    std::vector<int64_t> weightDims(int64_t c, int64_t m, int64_t g, int64_t kh, int64_t kw) const {
        if (binary) {
            return {m, kh, kw, (c / g + 31) / 32};
        }
        return {m, c / g, kh, kw};
    }
    // BinaryConv: packed int32. AdderConv: float32 whatever X is (FP16 = FP16 activations, float32 weights).
    DataType weightType(DataType /*x*/) const { return binary ? DataType::kINT32 : DataType::kFLOAT; }
};

int64_t convOut(int64_t in, int64_t k, int64_t s, int64_t pb, int64_t pe, int64_t d) {
    return (in + pb + pe - d * (k - 1) - 1) / s + 1;
}

void testCreator(IPluginCreatorV3One* creator, OpCase const& op, Sink const& sink) {
    ContractInfo const& c = *op.contract;
    std::string const base = gContext;

    // Names.
    check(std::strcmp(creator->getPluginName(), c.pluginName) == 0, "creator plugin name");
    check(std::strcmp(creator->getPluginVersion(), c.pluginVersion) == 0, "creator plugin version");
    check(std::strcmp(creator->getPluginNamespace(), c.pluginNamespace) == 0, "creator plugin namespace");
    check(std::string(creator->getInterfaceInfo().kind) == "PLUGIN CREATOR_V3ONE", "creator interface kind");

    // getFieldNames is the contract's attribute list, in order, as int32 fields.
    PluginFieldCollection const* names = creator->getFieldNames();
    check(names != nullptr && names->nbFields == c.nbFields, "getFieldNames count");
    if (names != nullptr && names->nbFields == c.nbFields) {
        for (int32_t i = 0; i < c.nbFields; ++i) {
            check(std::strcmp(names->fields[i].name, c.fields[i].name) == 0,
                  std::string("getFieldNames[") + std::to_string(i) + "] = " + c.fields[i].name);
            check(names->fields[i].type == PluginFieldType::kINT32, std::string("field type int32: ") + c.fields[i].name);
            check(names->fields[i].length == c.fields[i].length, std::string("field length: ") + c.fields[i].name);
        }
    }

    // Creation from every field, explicitly.
    Fields full = allFields(c);
    PluginPtr plugin(creator->createPlugin("layer_full", full.collection(), TensorRTPhase::kBUILD));
    check(plugin != nullptr, "createPlugin with every field");
    if (!plugin) {
        return;
    }
    auto* core = static_cast<IPluginV3OneCore*>(plugin->getCapabilityInterface(PluginCapabilityType::kCORE));
    auto* build = static_cast<IPluginV3OneBuild*>(plugin->getCapabilityInterface(PluginCapabilityType::kBUILD));
    auto* runtime = static_cast<IPluginV3OneRuntime*>(plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    check(core && build && runtime, "capability interfaces");
    if (!(core && build && runtime)) {
        return;
    }
    check(std::string(plugin->getInterfaceInfo().kind) == "PLUGIN", "IPluginV3 interface kind");
    check(std::string(core->getInterfaceInfo().kind) == "PLUGIN_V3ONE_CORE", "core interface kind");
    check(std::string(build->getInterfaceInfo().kind) == "PLUGIN_V3ONE_BUILD", "build interface kind");
    check(std::string(runtime->getInterfaceInfo().kind) == "PLUGIN_V3ONE_RUNTIME", "runtime interface kind");
    check(std::strcmp(core->getPluginName(), c.pluginName) == 0, "plugin name");
    check(std::strcmp(core->getPluginVersion(), c.pluginVersion) == 0, "plugin version");
    check(std::strcmp(core->getPluginNamespace(), c.pluginNamespace) == 0, "plugin namespace");

    // Serialization: exactly the contract's fields with the given values; round trip through
    // createPlugin(kRUNTIME), clone and attachToContext keeps them.
    auto const ser = serialized(plugin.get());
    check(static_cast<int32_t>(ser.size()) == c.nbFields, "getFieldsToSerialize count");
    for (int32_t i = 0; i < c.nbFields && i < static_cast<int32_t>(ser.size()); ++i) {
        check(ser[static_cast<size_t>(i)] == full.list[static_cast<size_t>(i)].i32,
              std::string("serialized value of ") + c.fields[i].name);
    }
    {
        PluginFieldCollection const* fc = runtime->getFieldsToSerialize();
        PluginPtr again(creator->createPlugin("layer_full", fc, TensorRTPhase::kRUNTIME));
        check(again != nullptr, "createPlugin(kRUNTIME) from getFieldsToSerialize");
        if (again) {
            check(serialized(again.get()) == ser, "serialization round trip");
        }
        PluginPtr cloned(plugin->clone());
        check(cloned != nullptr && serialized(cloned.get()) == ser, "clone keeps the fields");
        FakeRecorder recorder;
        FakeContext context(&recorder);
        PluginPtr attached(runtime->attachToContext(&context));
        check(attached != nullptr && serialized(attached.get()) == ser, "attachToContext keeps the fields");
        if (attached) {
            // Errors of an attached plugin go to the context's error recorder.
            auto* rt2 = static_cast<IPluginV3OneRuntime*>(attached->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
            PluginTensorDesc in[4]{};
            PluginTensorDesc out[1]{};
            for (auto& d : in) {
                d.dims.nbDims = 1;
                d.dims.d[0] = 1;
            }
            check(rt2->onShapeChange(in, 4, out, 1) != 0, "onShapeChange rejects rank-1 X");
            check(recorder.getNbErrors() >= 1, "attached plugin reports to the context's error recorder");
            check(recorder.getNbErrors() >= 1 &&
                      std::strlen(recorder.getErrorDesc(0)) <= IErrorRecorder::kMAX_DESC_LENGTH,
                  "recorder descriptions fit kMAX_DESC_LENGTH");
        }
    }

    // Only the required fields: the rest take the contract defaults.
    {
        Fields req = requiredFields(c);
        PluginPtr p(creator->createPlugin("layer_defaults", req.collection(), TensorRTPhase::kBUILD));
        check(p != nullptr, "createPlugin with only the required fields");
        if (p) {
            auto const s = serialized(p.get());
            for (int32_t i = 0; i < c.nbFields && i < static_cast<int32_t>(s.size()); ++i) {
                FieldSpec const& spec = c.fields[i];
                std::vector<int32_t> const expect = spec.required ? sampleValue(spec) : defaultsOf(spec);
                check(s[static_cast<size_t>(i)] == expect, std::string("default of ") + spec.name);
            }
        }
    }

    // int64 data is accepted (range-checked).
    {
        Fields f = allFields(c);
        Field* g = f.find("group");
        if (g != nullptr) {
            g->type = PluginFieldType::kINT64;
            g->i64 = {2};
            PluginPtr p(creator->createPlugin("layer_i64", f.collection(), TensorRTPhase::kBUILD));
            check(p != nullptr, "int64 field accepted");
            g->i64 = {int64_t(1) << 40};
            size_t const before = sink.logger->messages.size();
            PluginPtr q(creator->createPlugin("layer_i64_big", f.collection(), TensorRTPhase::kBUILD));
            check(q == nullptr && reportedSince(sink, before, "group"), "int64 beyond int32 rejected");
        }
    }

    // ---- bad fields: each one rejected (nullptr) and reported with the field's name ----
    auto expectReject = [&](Fields& f, std::string const& needle, std::string const& what) {
        size_t const before = sink.logger->messages.size();
        IPluginV3* p = creator->createPlugin("layer_bad", f.collection(), TensorRTPhase::kBUILD);
        check(p == nullptr, "rejects " + what);
        delete p;
        check(reportedSince(sink, before, needle), "reports '" + needle + "' for " + what);
    };
    for (int32_t i = 0; i < c.nbFields; ++i) {
        FieldSpec const& spec = c.fields[i];
        std::string const n = spec.name;
        gContext = base + " field " + n;
        if (spec.required) {
            Fields f = allFields(c);
            f.erase(n);
            expectReject(f, n, "missing required field");
        } else {
            Fields f = allFields(c);
            f.erase(n);
            PluginPtr p(creator->createPlugin("layer_missing", f.collection(), TensorRTPhase::kBUILD));
            check(p != nullptr, "missing optional field takes its default");
            if (p) {
                check(serialized(p.get())[static_cast<size_t>(i)] == defaultsOf(spec), "default value used");
            }
        }
        {
            Fields f = allFields(c);
            Field* x = f.find(n);
            x->type = PluginFieldType::kFLOAT32;
            x->f32.assign(static_cast<size_t>(spec.length), 1.f);
            expectReject(f, n, "float32 data");
        }
        {
            Fields f = allFields(c);
            Field* x = f.find(n);
            x->type = PluginFieldType::kCHAR;
            x->i32.assign(static_cast<size_t>(spec.length), 1);
            expectReject(f, n, "char data");
        }
        {
            Fields f = allFields(c);
            Field* x = f.find(n);
            x->i32.push_back(1);  // one value too many
            expectReject(f, n, "too many values");
        }
        if (spec.length > 1) {
            Fields f = allFields(c);
            Field* x = f.find(n);
            x->i32.pop_back();
            expectReject(f, n, "too few values");
        }
        {
            Fields f = allFields(c);
            Field* x = f.find(n);
            x->length = 0;
            expectReject(f, n, "length 0");
        }
        {
            Fields f = allFields(c);
            f.find(n)->nullData = true;
            expectReject(f, n, "null data");
        }
        if (spec.hasMin) {
            Fields f = allFields(c);
            f.find(n)->i32.back() = spec.minValue - 1;
            expectReject(f, n, "below min");
        }
        if (spec.hasMax) {
            Fields f = allFields(c);
            f.find(n)->i32.front() = spec.maxValue + 1;
            expectReject(f, n, "above max");
        }
        {
            Fields f = allFields(c);
            f.list.push_back(*f.find(n));
            expectReject(f, n, "duplicate field");
        }
    }
    gContext = base;
    {
        Fields f = allFields(c);
        Field extra;
        extra.name = "plugin_namespace";
        extra.i32 = {1};
        f.list.push_back(extra);
        expectReject(f, "plugin_namespace", "unknown field");
    }
    {
        Fields f = allFields(c);
        Field unnamed;
        unnamed.name = "";
        f.list.push_back(unnamed);
        f.collection();
        f.pf.back().name = nullptr;
        size_t const before = sink.logger->messages.size();
        IPluginV3* p = creator->createPlugin("layer_bad", &f.fc, TensorRTPhase::kBUILD);
        check(p == nullptr && reportedSince(sink, before, "no name"), "rejects a field without a name");
        delete p;
    }
    {
        size_t const before = sink.logger->messages.size();
        IPluginV3* p = creator->createPlugin("layer_null", nullptr, TensorRTPhase::kBUILD);
        check(p == nullptr && reportedSince(sink, before, "kernel_shape"), "null collection: kernel_shape missing");
        delete p;
        PluginFieldCollection bad{};
        bad.nbFields = 3;
        bad.fields = nullptr;
        p = creator->createPlugin("layer_malformed", &bad, TensorRTPhase::kBUILD);
        check(p == nullptr && reportedSince(sink, before, "malformed"), "malformed collection rejected");
        delete p;
        bad.nbFields = -1;
        p = creator->createPlugin("layer_malformed", &bad, TensorRTPhase::kBUILD);
        check(p == nullptr, "negative nbFields rejected");
        delete p;
    }

    // ---- build-time interface of the full plugin (kernel 3x3, strides [2,1], pads [1,1,1,0],
    //      dilations [1,2], group 2) ----
    int64_t const kh = 3, kw = 3, sh = 2, sw = 1, pt = 1, pl = 1, pb = 1, pr = 0, dh = 1, dw = 2, g = 2;
    check(build->getNbOutputs() == 1, "getNbOutputs");

    // Output types.
    {
        DataType out[1];
        DataType const wf = op.weightType(DataType::kFLOAT);
        DataType in32[4] = {DataType::kFLOAT, wf, DataType::kFLOAT, DataType::kFLOAT};
        check(build->getOutputDataTypes(out, 1, in32, 4) == 0 && out[0] == DataType::kFLOAT, "float32 in -> float32 out");
        DataType in16[4] = {DataType::kHALF, op.weightType(DataType::kHALF), DataType::kFLOAT, DataType::kFLOAT};
        check(build->getOutputDataTypes(out, 1, in16, 4) == 0 && out[0] == DataType::kHALF, "float16 in -> float16 out");
        size_t before = sink.logger->messages.size();
        DataType bad[4] = {DataType::kINT32, wf, DataType::kFLOAT, DataType::kFLOAT};
        check(build->getOutputDataTypes(out, 1, bad, 4) != 0 && reportedSince(sink, before, "X has type"),
              "int32 X rejected");
        DataType badScale[4] = {DataType::kFLOAT, wf, DataType::kHALF, DataType::kFLOAT};
        check(build->getOutputDataTypes(out, 1, badScale, 4) != 0 && reportedSince(sink, before, "scale"),
              "float16 scale rejected");
        DataType badW[4] = {DataType::kFLOAT, op.binary ? DataType::kFLOAT : DataType::kINT32, DataType::kFLOAT,
                            DataType::kFLOAT};
        check(build->getOutputDataTypes(out, 1, badW, 4) != 0 && reportedSince(sink, before, c.inputNames[1]),
              "wrong weight type rejected");
        if (!op.binary) {
            DataType halfW[4] = {DataType::kHALF, DataType::kHALF, DataType::kFLOAT, DataType::kFLOAT};
            check(build->getOutputDataTypes(out, 1, halfW, 4) != 0 && reportedSince(sink, before, c.inputNames[1]),
                  "float16 W rejected (weights stay float32 with float16 X)");
        }
        check(build->getOutputDataTypes(out, 1, in32, 3) != 0, "three inputs rejected");
    }

    // Output shapes: constant dims, then symbolic N/H/W evaluated for one binding.
    {
        int64_t const n = 3, ch = 64, h = 17, w = 12, m = 8;
        auto const wd = op.weightDims(ch, m, g, kh, kw);
        for (bool symbolic : {false, true}) {
            gContext = base + (symbolic ? " shapes symbolic" : " shapes constant");
            FakeExprBuilder eb;
            DimsExprs in[4];
            in[0].nbDims = 4;
            in[0].d[0] = eb.dim(!symbolic, n);
            in[0].d[1] = eb.dim(true, ch);
            in[0].d[2] = eb.dim(!symbolic, h);
            in[0].d[3] = eb.dim(!symbolic, w);
            in[1].nbDims = 4;
            for (int32_t d = 0; d < 4; ++d) {
                in[1].d[d] = eb.dim(true, wd[static_cast<size_t>(d)]);
            }
            in[2].nbDims = 1;
            in[2].d[0] = eb.dim(true, m);
            in[3].nbDims = 1;
            in[3].d[0] = eb.dim(true, m);
            DimsExprs out[1];
            int32_t const rc = build->getOutputShapes(in, 4, nullptr, 0, out, 1, eb);
            check(rc == 0, "getOutputShapes succeeds");
            if (rc == 0) {
                check(out[0].nbDims == 4, "output rank 4");
                auto val = [](IDimensionExpr const* e) { return static_cast<FakeDim const*>(e)->hidden(); };
                check(out[0].d[0] == in[0].d[0], "N passes through");
                check(out[0].d[1]->isConstant() && out[0].d[1]->getConstantValue() == m, "M from W");
                check(val(out[0].d[2]) == convOut(h, kh, sh, pt, pb, dh), "Ho formula");
                check(val(out[0].d[3]) == convOut(w, kw, sw, pl, pr, dw), "Wo formula");
                check(out[0].d[2]->isConstant() == !symbolic && out[0].d[3]->isConstant() == !symbolic,
                      "spatial dims constant iff input constant");
            }
        }
        gContext = base + " shapes inconsistent";
        // Inconsistent constant shapes are rejected at network-build time.
        struct Bad {
            std::string what, needle;
            int64_t c, m, scale, h;
            std::vector<int64_t> w;
        };
        std::vector<Bad> bads = {
            {"C not divisible by group", "group", 63, m, m, h, op.weightDims(64, m, g, kh, kw)},
            {"M not divisible by group", "group", ch, 7, 7, h, op.weightDims(ch, 7, g, kh, kw)},
            {"W channel/word dim", c.inputNames[1], op.binary ? 128 : 32, m, m, h, wd},
            {"W kernel dims", c.inputNames[1], ch, m, m, h, op.weightDims(ch, m, g, kh + 2, kw)},
            {"scale length", "scale", ch, m, m + 1, h, wd},
            {"X too small", "too small", ch, m, m, 0, wd},
        };
        for (auto const& b : bads) {
            FakeExprBuilder eb;
            DimsExprs in[4];
            in[0].nbDims = 4;
            in[0].d[0] = eb.dim(false, 1);
            in[0].d[1] = eb.dim(true, b.c);
            in[0].d[2] = eb.dim(true, b.h);
            in[0].d[3] = eb.dim(true, w);
            in[1].nbDims = 4;
            for (int32_t d = 0; d < 4; ++d) {
                in[1].d[d] = eb.dim(true, b.w[static_cast<size_t>(d)]);
            }
            in[2].nbDims = 1;
            in[2].d[0] = eb.dim(true, b.scale);
            in[3].nbDims = 1;
            in[3].d[0] = eb.dim(true, b.m);
            DimsExprs out[1];
            size_t const before = sink.logger->messages.size();
            check(build->getOutputShapes(in, 4, nullptr, 0, out, 1, eb) != 0, "rejects " + b.what);
            check(reportedSince(sink, before, b.needle), "reports '" + b.needle + "' for " + b.what);
        }
        {
            FakeExprBuilder eb;
            DimsExprs in[4];
            in[0].nbDims = 3;
            for (int32_t d = 0; d < 3; ++d) {
                in[0].d[d] = eb.dim(true, 4);
            }
            for (int32_t i = 1; i < 4; ++i) {
                in[i].nbDims = 1;
                in[i].d[0] = eb.dim(true, 4);
            }
            DimsExprs out[1];
            check(build->getOutputShapes(in, 4, nullptr, 0, out, 1, eb) != 0, "rejects rank-3 X");
        }
    }
    gContext = base;

    // Formats: linear only; X/Y float32 or float16 alike; scale/shift float32; W per contract (AdderConv:
    // float32 also with float16 X/Y; BinaryConv: int32).
    {
        std::vector<int64_t> const xd = {2, 64, 16, 16};
        auto const wd = op.weightDims(64, 8, g, kh, kw);
        DataType const types[] = {DataType::kFLOAT, DataType::kHALF, DataType::kINT32, DataType::kINT8, DataType::kBF16};
        for (DataType xt : types) {
            for (DataType wt : types) {
                for (DataType st : types) {
                    for (DataType yt : types) {
                        DynamicPluginTensorDesc io[5] = {desc(xt, xd), desc(wt, wd), desc(st, {8}), desc(DataType::kFLOAT, {8}),
                                                         desc(yt, {2, 8, 8, 16})};
                        bool const xok = xt == DataType::kFLOAT || xt == DataType::kHALF;
                        bool const wok = wt == op.weightType(xt);
                        bool const sok = st == DataType::kFLOAT;
                        bool const yok = yt == xt;
                        check(build->supportsFormatCombination(0, io, 4, 1) == xok, "format pos 0");
                        if (xok) {
                            check(build->supportsFormatCombination(1, io, 4, 1) == wok, "format pos 1");
                            check(build->supportsFormatCombination(2, io, 4, 1) == sok, "format pos 2");
                            check(build->supportsFormatCombination(4, io, 4, 1) == yok, "format pos 4");
                        }
                    }
                }
            }
        }
        DynamicPluginTensorDesc io[5] = {desc(DataType::kFLOAT, xd, TensorFormat::kHWC), desc(op.weightType(DataType::kFLOAT), wd),
                                         desc(DataType::kFLOAT, {8}), desc(DataType::kFLOAT, {8}),
                                         desc(DataType::kFLOAT, {2, 8, 8, 16})};
        check(!build->supportsFormatCombination(0, io, 4, 1), "non-linear format rejected");
        check(!build->supportsFormatCombination(5, io, 4, 1), "position out of range rejected");
        check(!build->supportsFormatCombination(-1, io, 4, 1), "negative position rejected");
        check(!build->supportsFormatCombination(0, io, 3, 1), "wrong input count rejected");
    }

    // configurePlugin / onShapeChange: consistent shapes pass, inconsistent ones are reported.
    {
        int64_t const ho = convOut(16, kh, sh, pt, pb, dh), wo = convOut(16, kw, sw, pl, pr, dw);
        auto const wd = op.weightDims(64, 8, g, kh, kw);
        DataType const wt = op.weightType(DataType::kFLOAT);
        DynamicPluginTensorDesc in[4] = {desc(DataType::kFLOAT, {-1, 64, -1, -1}), desc(wt, wd), desc(DataType::kFLOAT, {8}),
                                         desc(DataType::kFLOAT, {8})};
        in[0].min.d[0] = 1;
        in[0].min.d[2] = 16;
        in[0].min.d[3] = 16;
        in[0].max.d[0] = 8;
        in[0].max.d[2] = 64;
        in[0].max.d[3] = 64;
        in[0].opt = in[0].min;
        DynamicPluginTensorDesc out[1] = {desc(DataType::kFLOAT, {-1, 8, -1, -1})};
        check(build->configurePlugin(in, 4, out, 1) == 0, "configurePlugin with a dynamic profile");
        size_t const before = sink.logger->messages.size();
        in[0].min.d[3] = 0;  // an empty input width: no output
        check(build->configurePlugin(in, 4, out, 1) != 0 && reportedSince(sink, before, "profile min"),
              "configurePlugin rejects a profile min with an empty output");
        in[0].min.d[3] = 16;
        DynamicPluginTensorDesc badScale[4] = {in[0], in[1], desc(DataType::kFLOAT, {9}), in[3]};
        check(build->configurePlugin(badScale, 4, out, 1) != 0, "configurePlugin rejects scale of the wrong length");
        check(build->configurePlugin(in, 3, out, 1) != 0, "configurePlugin rejects 3 inputs");

        PluginTensorDesc rin[4] = {desc(DataType::kFLOAT, {2, 64, 16, 16}).desc, in[1].desc, in[2].desc, in[3].desc};
        PluginTensorDesc rout[1] = {desc(DataType::kFLOAT, {2, 8, ho, wo}).desc};
        check(runtime->onShapeChange(rin, 4, rout, 1) == 0, "onShapeChange with consistent shapes");
        rout[0].dims.d[2] = ho + 1;
        check(runtime->onShapeChange(rin, 4, rout, 1) != 0, "onShapeChange rejects a wrong output shape");
        rout[0].dims.d[2] = ho;
        rin[0].dims.d[1] = op.binary ? 130 : 62;  // no longer matches W's C/group (or its words per tap)
        check(runtime->onShapeChange(rin, 4, rout, 1) != 0, "onShapeChange rejects X/W channel mismatch");
    }
}

template <class Fn>
Fn symbol(void* lib, char const* name) {
    return reinterpret_cast<Fn>(dlsym(lib, name));
}

IPluginCreatorV3One* asV3One(IPluginCreatorInterface* c) {
    if (c == nullptr || std::string(c->getInterfaceInfo().kind) != "PLUGIN CREATOR_V3ONE") {
        return nullptr;
    }
    return static_cast<IPluginCreatorV3One*>(c);
}

OpCase const* caseFor(IPluginCreatorV3One* c, OpCase const* cases, size_t n) {
    for (size_t i = 0; i < n; ++i) {
        if (std::strcmp(c->getPluginName(), cases[i].contract->pluginName) == 0) {
            return &cases[i];
        }
    }
    return nullptr;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: %s <libcmc_trt_plugins.so> <libcmc_trt_plugins_dynamic.so>\n", argv[0]);
        return 2;
    }
    std::printf("cmc plugin contract test against TensorRT %d.%d.%d headers\n", NV_TENSORRT_MAJOR, NV_TENSORRT_MINOR,
                NV_TENSORRT_PATCH);
    OpCase const cases[] = {
        {&cmc::plugin::contract::AdderConv::info(), false},
        {&cmc::plugin::contract::BinaryConv::info(), true},
    };
    size_t const nCases = sizeof(cases) / sizeof(cases[0]);

    // 1. The self-registering library registers both creators, under namespace "cmc", when loaded.
    gContext = "static library";
    void* staticLib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    check(staticLib != nullptr, std::string("dlopen: ") + (staticLib ? "" : dlerror()));
    auto const& regs = cmctest::stubRegistrations();
    check(regs.size() == nCases, "registers one creator per operator at load time");
    check(staticLib == nullptr || symbol<void*>(staticLib, "getCreators") == nullptr,
          "does not export getCreators (loadLibrary would find its creators already registered)");
    std::vector<IPluginCreatorV3One*> staticCreators;
    for (auto const& r : regs) {
        IPluginCreatorV3One* c = asV3One(r.creator);
        check(c != nullptr, "registered creator is IPluginCreatorV3One");
        if (c != nullptr) {
            check(r.pluginNamespace == c->getPluginNamespace(), "registered under the creator's namespace");
            staticCreators.push_back(c);
        }
    }

    // 2. The dynamic library registers nothing by itself and serves getCreators/setLoggerFinder.
    gContext = "dynamic library";
    size_t const nRegs = regs.size();
    void* dynamicLib = dlopen(argv[2], RTLD_NOW | RTLD_LOCAL);
    check(dynamicLib != nullptr, std::string("dlopen: ") + (dynamicLib ? "" : dlerror()));
    check(cmctest::stubRegistrations().size() == nRegs, "registers nothing when loaded");
    using GetCreators = IPluginCreatorInterface* const* (*)(int32_t&);
    using SetLoggerFinder = void (*)(ILoggerFinder*);
    GetCreators getCreators = dynamicLib ? symbol<GetCreators>(dynamicLib, "getCreators") : nullptr;
    SetLoggerFinder setLoggerFinder = dynamicLib ? symbol<SetLoggerFinder>(dynamicLib, "setLoggerFinder") : nullptr;
    check(getCreators != nullptr, "exports getCreators");
    check(setLoggerFinder != nullptr, "exports setLoggerFinder");
    cmctest::CapturingLogger finderLogger;
    FakeLoggerFinder finder(&finderLogger);
    std::vector<IPluginCreatorV3One*> dynamicCreators;
    if (getCreators != nullptr && setLoggerFinder != nullptr) {
        setLoggerFinder(&finder);
        int32_t n = -1;
        IPluginCreatorInterface* const* list = getCreators(n);
        check(list != nullptr && n == static_cast<int32_t>(nCases), "getCreators returns one creator per operator");
        for (int32_t i = 0; list != nullptr && i < n; ++i) {
            IPluginCreatorV3One* c = asV3One(list[i]);
            check(c != nullptr, "getCreators entry is IPluginCreatorV3One");
            if (c != nullptr) {
                dynamicCreators.push_back(c);
            }
        }
    }

    // 3. The contract suite on every creator, each variant reporting through its own logger.
    for (auto* c : staticCreators) {
        OpCase const* op = caseFor(c, cases, nCases);
        gContext = std::string("static ") + c->getPluginName();
        check(op != nullptr, "creator matches a contract");
        if (op) {
            testCreator(c, *op, Sink{&cmctest::stubLogger()});
        }
    }
    for (auto* c : dynamicCreators) {
        OpCase const* op = caseFor(c, cases, nCases);
        gContext = std::string("dynamic ") + c->getPluginName();
        check(op != nullptr, "creator matches a contract");
        if (op) {
            testCreator(c, *op, Sink{&finderLogger});
        }
    }
    gContext = "summary";
    check(staticCreators.size() == nCases && dynamicCreators.size() == nCases, "both variants tested");
    check(cmctest::stubLogger().errors() > 0 && finderLogger.errors() > 0, "both variants reported errors to their logger");

    int const passed = gChecks - gFailures;
    std::printf("%d passed, %d failed\n", passed, gFailures);
    return gFailures == 0 ? 0 : 1;
}
