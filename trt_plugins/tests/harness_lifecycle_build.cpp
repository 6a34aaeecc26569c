// Build-phase steps of the plugin lifecycle (see harness_lifecycle.h for the order).
#include <algorithm>
#include <cstdio>
#include <cstring>

#include "harness_check.h"
#include "harness_lifecycle.h"

namespace cmcharness {

using namespace nvinfer1;
using cmc::plugin::ContractInfo;
using cmc::plugin::FieldSpec;

nvinfer1::IPluginV3OneBuild* buildOf(IPluginV3* p) {
    return p != nullptr ? static_cast<IPluginV3OneBuild*>(p->getCapabilityInterface(PluginCapabilityType::kBUILD))
                        : nullptr;
}

nvinfer1::IPluginV3OneRuntime* runtimeOf(IPluginV3* p) {
    return p != nullptr ? static_cast<IPluginV3OneRuntime*>(p->getCapabilityInterface(PluginCapabilityType::kRUNTIME))
                        : nullptr;
}

RawFields serializedCopy(IPluginV3* p) {
    RawFields out;
    IPluginV3OneRuntime* rt = runtimeOf(p);
    PluginFieldCollection const* fc = rt != nullptr ? rt->getFieldsToSerialize() : nullptr;
    if (fc == nullptr || fc->nbFields < 0 || (fc->nbFields > 0 && fc->fields == nullptr)) {
        return out;
    }
    for (int32_t i = 0; i < fc->nbFields; ++i) {
        PluginField const& f = fc->fields[i];
        RawField r;
        r.name = f.name != nullptr ? f.name : "";
        r.nullName = f.name == nullptr;
        r.type = f.type;
        r.length = f.length;
        size_t const elem = f.type == PluginFieldType::kINT32 ? 4 : 0;  // cmc serializes int32 only
        if (f.data != nullptr && elem > 0 && f.length > 0) {
            auto const* b = static_cast<uint8_t const*>(f.data);
            r.bytes.assign(b, b + elem * static_cast<size_t>(f.length));
        }
        r.nullData = f.data == nullptr;
        out.list.push_back(r);
    }
    return out;
}

std::vector<std::vector<int32_t>> int32Values(RawFields const& f) {
    std::vector<std::vector<int32_t>> out;
    for (auto const& r : f.list) {
        std::vector<int32_t> v(r.bytes.size() / 4);
        if (!v.empty()) std::memcpy(v.data(), r.bytes.data(), r.bytes.size());
        out.push_back(r.type == PluginFieldType::kINT32 ? v : std::vector<int32_t>{-999});
    }
    return out;
}

namespace {

DynamicPluginTensorDesc dynDesc(IoFormat const& f, std::vector<int64_t> const& declared, std::vector<int64_t> const& mn,
                                std::vector<int64_t> const& opt, std::vector<int64_t> const& mx) {
    DynamicPluginTensorDesc d{};
    d.desc.type = f.type;
    d.desc.format = f.format;
    d.desc.scale = 1.f;
    auto fill = [](Dims& dims, std::vector<int64_t> const& v) {
        dims.nbDims = static_cast<int32_t>(v.size());
        for (size_t i = 0; i < v.size(); ++i) dims.d[i] = v[i];
    };
    fill(d.desc.dims, declared);
    fill(d.min, mn);
    fill(d.opt, opt);
    fill(d.max, mx);
    return d;
}

}  // namespace

std::vector<DynamicPluginTensorDesc> Lifecycle::profileDescs(FormatRow const& row) const {
    OpCase const& k = mCase;
    OpModel const& op = *k.op;
    std::vector<int64_t> const w = weightDims(k);
    Dims4 const ymin = outputDims(k, k.min), yopt = outputDims(k, k.opt), ymax = outputDims(k, k.max);
    // N, H, W dynamic; C (or a packed tensor's word count) fixed by the network.
    Dims4 const xDeclared{-1, k.c, -1, -1}, yDeclared{-1, k.m, -1, -1};
    return {dynDesc(row[0], xDims(op, xDeclared), xDims(op, k.min), xDims(op, k.opt), xDims(op, k.max)),
            dynDesc(row[1], w, w, w, w),
            dynDesc(row[2], {k.m}, {k.m}, {k.m}, {k.m}),
            dynDesc(row[3], {k.m}, {k.m}, {k.m}, {k.m}),
            dynDesc(row[4], yDims(op, yDeclared), yDims(op, ymin), yDims(op, yopt), yDims(op, ymax))};
}

bool Lifecycle::reported(size_t logBefore, size_t recBefore, std::string const& needle) const {
    bool const logged = mEnv.sink.logger->errorSince(logBefore, needle);
    bool const recorded = mEnv.sink.recorder == nullptr || mEnv.sink.recorder->errorSince(recBefore, needle);
    return logged && recorded;
}

bool Lifecycle::lookup() {
    Context ctx("creator lookup");
    ContractInfo const& c = *mCase.op->contract;
    IPluginCreatorInterface* found = mEnv.registry->getCreator(c.pluginName, c.pluginVersion, c.pluginNamespace);
    if (!check(found != nullptr, std::string("no creator for ") + c.pluginNamespace + "::" + c.pluginName + " v" +
                                     c.pluginVersion)) {
        return false;
    }
    if (!check(std::strcmp(found->getInterfaceInfo().kind, "PLUGIN CREATOR_V3ONE") == 0,
               std::string("creator kind ") + found->getInterfaceInfo().kind)) {
        return false;
    }
    mCreator = static_cast<IPluginCreatorV3One*>(found);
    check(mEnv.registry->getCreator(c.pluginName, "999", c.pluginNamespace) == nullptr, "no creator for version 999");
    check(mEnv.registry->getCreator(c.pluginName, c.pluginVersion, "") == nullptr,
          "not registered under the empty namespace (the ONNX node's plugin_namespace selects it)");
    PluginFieldCollection const* names = mCreator->getFieldNames();
    if (!check(names != nullptr && names->nbFields == c.nbFields, "getFieldNames lists the contract's fields")) {
        return false;
    }
    for (int32_t i = 0; i < c.nbFields; ++i) {
        check(names->fields[i].name != nullptr && std::strcmp(names->fields[i].name, c.fields[i].name) == 0 &&
                  names->fields[i].type == PluginFieldType::kINT32 && names->fields[i].length == c.fields[i].length,
              std::string("getFieldNames[") + std::to_string(i) + "] is int32 '" + c.fields[i].name + "' of length " +
                  std::to_string(c.fields[i].length));
    }
    return true;
}

bool Lifecycle::createFromFields() {
    Context ctx("createPlugin(kBUILD)");
    ContractInfo const& c = *mCase.op->contract;
    PluginFieldCollection const& names = *mCreator->getFieldNames();
    // The node as cmc writes it, converted the way the ONNX parser converts it.
    std::vector<std::string> missing;
    RawFields fields = parserFields(names, fullNode(c, mCase.fieldValues), &missing);
    check(missing.empty(), "the full node carries every field");
    mBuild.reset(mCreator->createPlugin(mCase.label.c_str(), fields.collection(), TensorRTPhase::kBUILD));
    if (!check(mBuild != nullptr, "createPlugin from the node's fields")) {
        return false;
    }
    check(int32Values(serializedCopy(mBuild.get())) == mCase.fieldValues, "fields kept as given");

    // Only the required attributes: the parser leaves the others out (with a warning); defaults apply.
    {
        missing.clear();
        RawFields req = parserFields(names, requiredOnlyNode(c, mCase.fieldValues), &missing);
        PluginPtr p(mCreator->createPlugin("required_only", req.collection(), TensorRTPhase::kBUILD));
        if (check(p != nullptr, "createPlugin with only the required fields (" + std::to_string(missing.size()) +
                                    " left to their defaults)")) {
            auto const got = int32Values(serializedCopy(p.get()));
            for (int32_t i = 0; i < c.nbFields && static_cast<size_t>(i) < got.size(); ++i) {
                FieldSpec const& s = c.fields[i];
                std::vector<int32_t> const want = s.required ? mCase.fieldValues[static_cast<size_t>(i)]
                                                             : std::vector<int32_t>(s.defaultValue, s.defaultValue + s.nbDefault);
                check(got[static_cast<size_t>(i)] == want, std::string("default of ") + s.name);
            }
        }
    }
    // Each optional field missing alone.
    for (int32_t i = 0; i < c.nbFields; ++i) {
        if (c.fields[i].required) continue;
        OnnxNode node = fullNode(c, mCase.fieldValues);
        node.erase(std::remove_if(node.begin(), node.end(), [&](OnnxAttr const& a) { return a.name == c.fields[i].name; }),
                   node.end());
        RawFields f = parserFields(names, node);
        PluginPtr p(mCreator->createPlugin("one_missing", f.collection(), TensorRTPhase::kBUILD));
        check(p != nullptr, std::string("createPlugin without ") + c.fields[i].name);
    }
    // Equivalent encodings: every field as an int32 TENSOR attribute (parser) and as int64 data (Python API).
    {
        OnnxNode node = fullNode(c, mCase.fieldValues);
        for (auto& a : node) {
            if (a.type == OnnxAttrType::kINT || a.type == OnnxAttrType::kINTS) a.type = OnnxAttrType::kTENSOR_INT32;
        }
        RawFields f = parserFields(names, node);
        PluginPtr p(mCreator->createPlugin("tensor_attrs", f.collection(), TensorRTPhase::kBUILD));
        check(p != nullptr && int32Values(serializedCopy(p.get())) == mCase.fieldValues,
              "fields given as int32 TENSOR attributes");
        for (auto& r : f.list) {
            std::vector<uint8_t> wide;
            for (size_t k = 0; k + 4 <= r.bytes.size(); k += 4) {
                int32_t v = 0;
                std::memcpy(&v, r.bytes.data() + k, 4);
                int64_t const w = v;
                uint8_t b[8];
                std::memcpy(b, &w, 8);
                wide.insert(wide.end(), b, b + 8);
            }
            r.bytes = wide;
            r.type = PluginFieldType::kINT64;
        }
        PluginPtr q(mCreator->createPlugin("int64_fields", f.collection(), TensorRTPhase::kBUILD));
        check(q != nullptr && int32Values(serializedCopy(q.get())) == mCase.fieldValues, "fields given as int64 data");
    }
    {
        PluginPtr p(mCreator->createPlugin(nullptr, fields.collection(), TensorRTPhase::kBUILD));
        check(p != nullptr, "createPlugin with a null layer name");
    }
    return true;
}

void Lifecycle::badFields() {
    Context ctx("bad fields");
    ContractInfo const& c = *mCase.op->contract;
    std::vector<BadFieldSet> bad = badFieldSets(c, *mCreator->getFieldNames(), mCase.fieldValues);
    int32_t rejected = 0, reportedCount = 0, viaParser = 0;
    for (auto& b : bad) {
        Context one(b.what);
        size_t const logBefore = logSize(), recBefore = recSize();
        IPluginV3* p = mCreator->createPlugin("bad_layer", b.fields.collection(), TensorRTPhase::kBUILD);
        rejected += check(p == nullptr, "createPlugin returns nullptr") ? 1 : 0;
        delete p;
        reportedCount += check(reported(logBefore, recBefore, b.needle), "error names '" + b.needle + "'") ? 1 : 0;
        viaParser += b.viaParser ? 1 : 0;
    }
    struct Collection {
        char const* what;
        char const* needle;
        PluginFieldCollection const* fc;
    };
    PluginFieldCollection nullFields{3, nullptr};
    PluginFieldCollection negative{-1, nullptr};
    char const* firstRequired = "required";
    for (int32_t i = c.nbFields - 1; i >= 0; --i) {
        if (c.fields[i].required) firstRequired = c.fields[i].name;
    }
    for (Collection const& col : {Collection{"a null collection", firstRequired, nullptr},
                                  Collection{"3 fields but a null array", "malformed", &nullFields},
                                  Collection{"nbFields -1", "malformed", &negative}}) {
        Context one(col.what);
        size_t const logBefore = logSize(), recBefore = recSize();
        IPluginV3* p = mCreator->createPlugin("bad_layer", col.fc, TensorRTPhase::kBUILD);
        rejected += check(p == nullptr, "createPlugin returns nullptr") ? 1 : 0;
        delete p;
        reportedCount += check(reported(logBefore, recBefore, col.needle), std::string("error names '") + col.needle + "'") ? 1 : 0;
    }
    // A field only another cmc plugin has (in_channels belongs to the packed-input variants: an unpacked X
    // gives C itself) is an unknown field here, as the ONNX parser would never pass it but a hand-made
    // network or a wrong op type could.
    size_t foreign = 0;
    RawFields const valid = parserFields(*mCreator->getFieldNames(), fullNode(c, mCase.fieldValues));
    std::vector<std::string> seen;
    for (auto const& other : opModels()) {
        for (int32_t i = 0; i < other.contract->nbFields; ++i) {
            std::string const n = other.contract->fields[i].name;
            bool const own = std::any_of(c.fields, c.fields + c.nbFields, [&](FieldSpec const& f) { return n == f.name; });
            if (own || std::find(seen.begin(), seen.end(), n) != seen.end()) continue;
            seen.push_back(n);
            Context one(n + " (a field of " + other.pluginName + ")");
            RawFields f = valid;
            f.list.push_back(int32Field(n, std::vector<int32_t>(static_cast<size_t>(other.contract->fields[i].length), 64)));
            size_t const logBefore = logSize(), recBefore = recSize();
            IPluginV3* p = mCreator->createPlugin("bad_layer", f.collection(), TensorRTPhase::kBUILD);
            rejected += check(p == nullptr, "createPlugin returns nullptr") ? 1 : 0;
            delete p;
            reportedCount += check(reported(logBefore, recBefore, n), "error names '" + n + "'") ? 1 : 0;
            ++foreign;
        }
    }
    if (mEnv.sink.recorder != nullptr) {
        check(mEnv.sink.recorder->tooLong == 0, "every recorded description fits kMAX_DESC_LENGTH");
    }
    std::printf("  bad fields: %d of %zu field sets rejected with nullptr (%d of them as the ONNX parser passes them, "
                "%zu with another plugin's field), %d reported to the logger%s\n",
                rejected, bad.size() + 3 + foreign, viaParser, foreign, reportedCount,
                mEnv.sink.recorder != nullptr ? " and the registry's error recorder" : "");
}

bool Lifecycle::capabilities() {
    Context ctx("getCapabilityInterface");
    ContractInfo const& c = *mCase.op->contract;
    check(std::strcmp(mBuild->getInterfaceInfo().kind, "PLUGIN") == 0 && mBuild->getInterfaceInfo().major == 1,
          "IPluginV3 interface kind/version");
    struct Cap {
        PluginCapabilityType type;
        char const* kind;
    };
    bool ok = true;
    for (Cap const& cap : {Cap{PluginCapabilityType::kCORE, "PLUGIN_V3ONE_CORE"},
                           Cap{PluginCapabilityType::kBUILD, "PLUGIN_V3ONE_BUILD"},
                           Cap{PluginCapabilityType::kRUNTIME, "PLUGIN_V3ONE_RUNTIME"}}) {
        IPluginCapability* i = mBuild->getCapabilityInterface(cap.type);
        ok = check(i != nullptr && std::strcmp(i->getInterfaceInfo().kind, cap.kind) == 0, std::string("capability ") + cap.kind) && ok;
    }
    check(mBuild->getCapabilityInterface(static_cast<PluginCapabilityType>(7)) == nullptr, "an unknown capability gives nullptr");
    auto* core = static_cast<IPluginV3OneCore*>(mBuild->getCapabilityInterface(PluginCapabilityType::kCORE));
    if (ok) {
        check(std::strcmp(core->getPluginName(), c.pluginName) == 0 && std::strcmp(core->getPluginVersion(), c.pluginVersion) == 0 &&
                  std::strcmp(core->getPluginNamespace(), c.pluginNamespace) == 0,
              "core names match the creator");
    }
    return ok;
}

void Lifecycle::outputTypes() {
    Context ctx("getNbOutputs/getOutputDataTypes");
    OpModel const& op = *mCase.op;
    IPluginV3OneBuild* b = buildOf(mBuild.get());
    check(b->getNbOutputs() == op.nbOutputs, "getNbOutputs = " + std::to_string(op.nbOutputs));
    auto const& rows = mEnv.readmeRows.at(op.pluginName);
    for (auto const& row : rows) {
        std::vector<DataType> in, out(static_cast<size_t>(op.nbOutputs));
        for (int32_t i = 0; i < op.nbInputs; ++i) in.push_back(row[static_cast<size_t>(i)].type);
        int32_t const rc = b->getOutputDataTypes(out.data(), op.nbOutputs, in.data(), op.nbInputs);
        check(rc == 0 && out[0] == row[static_cast<size_t>(op.nbInputs)].type,
              "README row " + rowText(row, op.ioNames) + ": output type");
        // One input type changed at a time: accepted means Y has the contract's type for that X (X's own, int32
        // for a packed Y, float32 for the float Y of a packed X); refused means an error naming that input.
        for (int32_t pos = 0; pos < op.nbInputs; ++pos) {
            for (int32_t t = 0; t < EnumMax<DataType>(); ++t) {
                std::vector<DataType> alt = in;
                alt[static_cast<size_t>(pos)] = static_cast<DataType>(t);
                size_t const before = logSize();
                DataType y = DataType::kBOOL;
                int32_t const r = b->getOutputDataTypes(&y, 1, alt.data(), op.nbInputs);
                if (r == 0) {
                    check(y == op.outputType(alt[0]), "accepted input types give Y " + typeName(op.outputType(alt[0])) +
                                                          " for X " + typeName(alt[0]) + " (got " + typeName(y) + ")");
                } else {
                    std::string const& name = op.ioNames[static_cast<size_t>(pos)];
                    check(mEnv.sink.logger->errorSince(before, name + " has type"),
                          "refused input types are reported, naming the input (" + name + " " +
                              typeName(alt[static_cast<size_t>(pos)]) + ")");
                }
            }
        }
    }
    DataType y{};
    DataType three[3] = {DataType::kFLOAT, DataType::kFLOAT, DataType::kFLOAT};
    check(b->getOutputDataTypes(&y, 1, three, 3) != 0, "three inputs refused");
}

}  // namespace cmcharness
