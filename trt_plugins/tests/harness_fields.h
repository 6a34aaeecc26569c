// Plugin fields as TensorRT's callers pass them to createPlugin.
//
// The ONNX parser (onnx-tensorrt loadFields) walks the creator's getFieldNames() in order and, for
// each name the node carries as an attribute, passes that attribute converted by its ONNX type, not
// by the declared field type: INT/INTS -> kINT32 (narrowed to int32), FLOAT/FLOATS -> kFLOAT32,
// STRING -> kCHAR with the terminating NUL counted in the length, STRINGS -> kCHAR (NUL after each),
// TENSOR -> its element type. Attributes that are not field names (plugin_version,
// plugin_namespace, ...) are never passed; fields missing from the node are left out (the parser
// only warns). Other callers (Python plugin API, hand-written C++) can pass anything, so the bad-field
// catalogue also has what the parser cannot produce (null data, duplicates, unknown names, ...).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <NvInferRuntime.h>

#include "plugin_fields.h"

namespace cmcharness {

enum class OnnxAttrType { kINT, kINTS, kFLOAT, kFLOATS, kSTRING, kSTRINGS, kTENSOR_INT32, kTENSOR_INT8,
                          kTENSOR_FLOAT16, kTENSOR_DOUBLE };

struct OnnxAttr {
    std::string name;
    OnnxAttrType type = OnnxAttrType::kINTS;
    std::vector<int64_t> ints;         // INT (one value), INTS, TENSOR_* values
    std::vector<std::string> strings;  // STRING (one value), STRINGS
    std::vector<double> floats;        // FLOAT (one value), FLOATS
};
using OnnxNode = std::vector<OnnxAttr>;  // one node's attributes (names unique, as in ONNX)

// One PluginField with storage the harness owns.
struct RawField {
    std::string name;
    bool nullName = false;
    nvinfer1::PluginFieldType type = nvinfer1::PluginFieldType::kINT32;
    std::vector<uint8_t> bytes;
    int32_t length = 0;
    bool nullData = false;
};

class RawFields {
public:
    std::vector<RawField> list;
    nvinfer1::PluginFieldCollection const* collection();  // valid until the next call / destruction

private:
    std::vector<nvinfer1::PluginField> mFields;
    nvinfer1::PluginFieldCollection mFC{};
};

RawField int32Field(std::string const& name, std::vector<int32_t> const& v);

// What the ONNX parser passes for `node` to a creator whose getFieldNames() is `names`; `missing`
// receives the field names the parser would warn about.
RawFields parserFields(nvinfer1::PluginFieldCollection const& names, OnnxNode const& node,
                       std::vector<std::string>* missing = nullptr);

// The node cmc's exporter writes: every contract attribute explicitly, as INT/INTS.
OnnxNode fullNode(cmc::plugin::ContractInfo const& c, std::vector<std::vector<int32_t>> const& values);
// The same node with only the required attributes.
OnnxNode requiredOnlyNode(cmc::plugin::ContractInfo const& c, std::vector<std::vector<int32_t>> const& values);

struct BadFieldSet {
    std::string what;     // "strides as FLOATS"
    std::string needle;   // text the error message must contain (the field's name)
    bool viaParser;       // producible by the ONNX parser
    RawFields fields;
};

// Every way to get one field wrong, starting from a valid node (values per contract field).
std::vector<BadFieldSet> badFieldSets(cmc::plugin::ContractInfo const& c, nvinfer1::PluginFieldCollection const& names,
                                      std::vector<std::vector<int32_t>> const& values);

}  // namespace cmcharness
