#include "harness_fields.h"

#include <cstring>

namespace cmcharness {

using nvinfer1::PluginFieldType;

nvinfer1::PluginFieldCollection const* RawFields::collection() {
    mFields.clear();
    for (auto const& f : list) {
        mFields.emplace_back(f.nullName ? nullptr : f.name.c_str(),
                             f.nullData ? nullptr : static_cast<void const*>(f.bytes.data()), f.type, f.length);
    }
    mFC.nbFields = static_cast<int32_t>(mFields.size());
    mFC.fields = mFields.data();
    return &mFC;
}

namespace {

template <class T>
void append(std::vector<uint8_t>& bytes, T v) {
    uint8_t b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));
    bytes.insert(bytes.end(), b, b + sizeof(T));
}

// onnx-tensorrt's conversion of one attribute.
RawField convert(OnnxAttr const& a) {
    RawField f;
    f.name = a.name;
    switch (a.type) {
    case OnnxAttrType::kINT:
    case OnnxAttrType::kINTS:
    case OnnxAttrType::kTENSOR_INT32:
        f.type = PluginFieldType::kINT32;
        for (int64_t v : a.ints) append(f.bytes, static_cast<int32_t>(v));
        f.length = static_cast<int32_t>(a.ints.size());
        break;
    case OnnxAttrType::kFLOAT:
    case OnnxAttrType::kFLOATS:
        f.type = PluginFieldType::kFLOAT32;
        for (double v : a.floats) append(f.bytes, static_cast<float>(v));
        f.length = static_cast<int32_t>(a.floats.size());
        break;
    case OnnxAttrType::kSTRING:
    case OnnxAttrType::kSTRINGS:
        f.type = PluginFieldType::kCHAR;
        for (auto const& s : a.strings) {
            f.bytes.insert(f.bytes.end(), s.begin(), s.end());
            f.bytes.push_back(0);  // the parser appends the NUL and counts it
        }
        f.length = static_cast<int32_t>(f.bytes.size());
        break;
    case OnnxAttrType::kTENSOR_INT8:
        f.type = PluginFieldType::kINT8;
        for (int64_t v : a.ints) append(f.bytes, static_cast<int8_t>(v));
        f.length = static_cast<int32_t>(a.ints.size());
        break;
    case OnnxAttrType::kTENSOR_FLOAT16:
        f.type = PluginFieldType::kFLOAT16;
        for (int64_t v : a.ints) append(f.bytes, static_cast<uint16_t>(v == 1 ? 0x3C00 : 0x4000));  // 1.0 / 2.0
        f.length = static_cast<int32_t>(a.ints.size());
        break;
    case OnnxAttrType::kTENSOR_DOUBLE:
        f.type = PluginFieldType::kFLOAT64;
        for (int64_t v : a.ints) append(f.bytes, static_cast<double>(v));
        f.length = static_cast<int32_t>(a.ints.size());
        break;
    }
    return f;
}

OnnxAttr intsAttr(cmc::plugin::FieldSpec const& s, std::vector<int32_t> const& v) {
    OnnxAttr a;
    a.name = s.name;
    a.type = s.kind == cmc::plugin::FieldKind::kInt ? OnnxAttrType::kINT : OnnxAttrType::kINTS;
    a.ints.assign(v.begin(), v.end());
    return a;
}

OnnxAttr* find(OnnxNode& node, std::string const& name) {
    for (auto& a : node) {
        if (a.name == name) return &a;
    }
    return nullptr;
}

}  // namespace

RawField int32Field(std::string const& name, std::vector<int32_t> const& v) {
    OnnxAttr a;
    a.name = name;
    a.type = OnnxAttrType::kINTS;
    a.ints.assign(v.begin(), v.end());
    return convert(a);
}

RawFields parserFields(nvinfer1::PluginFieldCollection const& names, OnnxNode const& node,
                       std::vector<std::string>* missing) {
    RawFields out;
    for (int32_t i = 0; i < names.nbFields; ++i) {
        char const* name = names.fields[i].name;
        OnnxAttr const* attr = nullptr;
        for (auto const& a : node) {
            if (name != nullptr && a.name == name) attr = &a;
        }
        if (attr == nullptr) {
            if (missing != nullptr) missing->push_back(name != nullptr ? name : "");
            continue;
        }
        out.list.push_back(convert(*attr));
    }
    return out;
}

OnnxNode fullNode(cmc::plugin::ContractInfo const& c, std::vector<std::vector<int32_t>> const& values) {
    OnnxNode node;
    for (int32_t i = 0; i < c.nbFields; ++i) {
        node.push_back(intsAttr(c.fields[i], values[static_cast<size_t>(i)]));
    }
    // What every cmc node also carries; not a field, so the parser never passes it.
    OnnxAttr ns;
    ns.name = "plugin_namespace";
    ns.type = OnnxAttrType::kSTRING;
    ns.strings = {c.pluginNamespace};
    node.push_back(ns);
    return node;
}

OnnxNode requiredOnlyNode(cmc::plugin::ContractInfo const& c, std::vector<std::vector<int32_t>> const& values) {
    OnnxNode node;
    for (int32_t i = 0; i < c.nbFields; ++i) {
        if (c.fields[i].required) {
            node.push_back(intsAttr(c.fields[i], values[static_cast<size_t>(i)]));
        }
    }
    return node;
}

std::vector<BadFieldSet> badFieldSets(cmc::plugin::ContractInfo const& c, nvinfer1::PluginFieldCollection const& names,
                                      std::vector<std::vector<int32_t>> const& values) {
    std::vector<BadFieldSet> out;
    OnnxNode const valid = fullNode(c, values);
    auto viaParser = [&](std::string const& what, std::string const& needle, OnnxNode const& node) {
        out.push_back({what, needle, true, parserFields(names, node)});
    };
    auto raw = [&](std::string const& what, std::string const& needle, RawFields const& f) {
        out.push_back({what, needle, false, f});
    };
    RawFields const validRaw = parserFields(names, valid);

    for (int32_t i = 0; i < c.nbFields; ++i) {
        cmc::plugin::FieldSpec const& s = c.fields[i];
        std::string const n = s.name;
        std::vector<int32_t> const& v = values[static_cast<size_t>(i)];
        auto with = [&](OnnxAttrType t, std::vector<int64_t> ints, std::vector<double> floats,
                        std::vector<std::string> strings) {
            OnnxNode node = valid;
            OnnxAttr* a = find(node, n);
            a->type = t;
            a->ints = std::move(ints);
            a->floats = std::move(floats);
            a->strings = std::move(strings);
            return node;
        };
        std::vector<int64_t> const asInts(v.begin(), v.end());
        std::vector<double> const asFloats(v.begin(), v.end());
        // ---- producible by the ONNX parser ----
        if (s.required) {
            OnnxNode node = valid;
            node.erase(node.begin() + static_cast<long>(find(node, n) - node.data()));
            viaParser(n + " missing (required)", n, node);
        }
        viaParser(n + " as FLOAT", n, with(OnnxAttrType::kFLOAT, {}, {asFloats[0]}, {}));
        viaParser(n + " as FLOATS", n, with(OnnxAttrType::kFLOATS, {}, asFloats, {}));
        viaParser(n + " as STRING (NUL counted)", n, with(OnnxAttrType::kSTRING, {}, {}, {std::to_string(v[0])}));
        std::vector<std::string> strs;
        for (int32_t x : v) strs.push_back(std::to_string(x));
        viaParser(n + " as STRINGS", n, with(OnnxAttrType::kSTRINGS, {}, {}, strs));
        viaParser(n + " as an int8 TENSOR", n, with(OnnxAttrType::kTENSOR_INT8, asInts, {}, {}));
        viaParser(n + " as a float16 TENSOR", n, with(OnnxAttrType::kTENSOR_FLOAT16, asInts, {}, {}));
        viaParser(n + " as a double TENSOR", n, with(OnnxAttrType::kTENSOR_DOUBLE, asInts, {}, {}));
        if (s.kind == cmc::plugin::FieldKind::kInts) {
            viaParser(n + " as INT (one value)", n, with(OnnxAttrType::kINT, {asInts[0]}, {}, {}));
            std::vector<int64_t> shorter(asInts.begin(), asInts.end() - 1);
            viaParser(n + " with one value too few", n, with(OnnxAttrType::kINTS, shorter, {}, {}));
        } else {
            viaParser(n + " as INTS of two values", n, with(OnnxAttrType::kINTS, {asInts[0], asInts[0]}, {}, {}));
        }
        std::vector<int64_t> longer = asInts;
        longer.push_back(asInts.back());
        viaParser(n + " with one value too many", n, with(OnnxAttrType::kINTS, longer, {}, {}));
        viaParser(n + " as an empty INTS", n, with(OnnxAttrType::kINTS, {}, {}, {}));
        if (s.hasMin) {
            std::vector<int64_t> low = asInts;
            low.back() = static_cast<int64_t>(s.minValue) - 1;
            viaParser(n + " below its minimum", n, with(s.kind == cmc::plugin::FieldKind::kInt ? OnnxAttrType::kINT
                                                                                          : OnnxAttrType::kINTS,
                                                        low, {}, {}));
        }
        if (s.hasMax) {
            std::vector<int64_t> high = asInts;
            high.front() = static_cast<int64_t>(s.maxValue) + 1;
            viaParser(n + " above its maximum", n, with(s.kind == cmc::plugin::FieldKind::kInt ? OnnxAttrType::kINT
                                                                                          : OnnxAttrType::kINTS,
                                                        high, {}, {}));
        }
        // ---- other callers ----
        size_t const idx = static_cast<size_t>(i);
        {
            RawFields f = validRaw;
            f.list[idx].nullData = true;
            raw(n + " with null data", n, f);
        }
        {
            RawFields f = validRaw;
            f.list[idx].length = -1;
            raw(n + " with length -1", n, f);
        }
        {
            RawFields f = validRaw;
            f.list[idx].type = PluginFieldType::kINT64;
            f.list[idx].bytes.clear();
            for (size_t k = 0; k < v.size(); ++k) append(f.list[idx].bytes, int64_t(1) << 40);
            raw(n + " as int64 beyond int32", n, f);
        }
        {
            RawFields f = validRaw;
            f.list[idx].type = PluginFieldType::kUNKNOWN;
            raw(n + " of type kUNKNOWN", n, f);
        }
        {
            RawFields f = validRaw;
            f.list.push_back(f.list[idx]);
            raw(n + " given twice", n, f);
        }
    }
    {
        RawFields f = validRaw;
        f.list.push_back(int32Field("plugin_namespace", {1}));
        raw("an unknown field", "plugin_namespace", f);
    }
    {
        RawFields f = validRaw;
        RawField unnamed = int32Field("", {1});
        unnamed.nullName = true;
        f.list.push_back(unnamed);
        raw("a field without a name", "no name", f);
    }
    return out;
}

}  // namespace cmcharness
