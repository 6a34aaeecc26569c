// Plugin fields: the table types the generated contract headers fill in, and the one parser that
// turns a PluginFieldCollection into validated values.
//
// The tables themselves (names, kinds, lengths, defaults, min/max) are generated at CMake configure
// time from plugins/<op>/contract.json into <build>/generated/cmc_contract_<op>.h (see
// trt_plugins/cmake/plugins.cmake), so the C++ field names cannot drift from the contract.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace nvinfer1 {
struct PluginFieldCollection;
}  // namespace nvinfer1

namespace cmc {
namespace plugin {

// Longest "ints" field any contract may declare; the generator refuses longer ones.
constexpr int32_t kMaxFieldLength = 8;

enum class FieldKind : int32_t {
    kInt = 0,   // ONNX INT: one value
    kInts = 1,  // ONNX INTS: exactly `length` values
};

struct FieldSpec {
    char const* name;
    FieldKind kind;
    int32_t length;  // 1 for kInt
    bool required;
    int32_t nbDefault;  // 0 when there is no default (then `required` is true)
    int32_t defaultValue[kMaxFieldLength];
    bool hasMin;
    int32_t minValue;
    bool hasMax;
    int32_t maxValue;
};

// What a generated contract header provides for one operator.
struct ContractInfo {
    char const* opType;
    char const* domain;
    int32_t opsetVersion;
    char const* pluginName;
    char const* pluginVersion;
    char const* pluginNamespace;
    FieldSpec const* fields;
    int32_t nbFields;
    char const* const* inputNames;
    int32_t nbInputs;
};

// One validated value list per contract field, in the contract's order.
using FieldValues = std::vector<std::vector<int32_t>>;

// Reads `fc` against the contract's field table into `out` (defaults filled in). Every problem is
// described in `error` (one line, all problems joined by "; ") and the result is false; the data
// behind a field is read only after its name, type and length have been checked, so a malformed
// collection cannot make this read out of bounds. Accepted value types: kINT32 (what the ONNX
// parser passes for INT and INTS attributes) and kINT64 (range-checked into int32).
bool parseFields(ContractInfo const& contract, nvinfer1::PluginFieldCollection const* fc, FieldValues& out,
                 std::string& error);

}  // namespace plugin
}  // namespace cmc
