#include "plugin_fields.h"

#include <cstring>
#include <limits>
#include <sstream>

#include <NvInferRuntime.h>

namespace cmc {
namespace plugin {
namespace {

char const* fieldTypeName(nvinfer1::PluginFieldType t) {
    switch (t) {
    case nvinfer1::PluginFieldType::kFLOAT16: return "float16";
    case nvinfer1::PluginFieldType::kFLOAT32: return "float32";
    case nvinfer1::PluginFieldType::kFLOAT64: return "float64";
    case nvinfer1::PluginFieldType::kINT8: return "int8";
    case nvinfer1::PluginFieldType::kINT16: return "int16";
    case nvinfer1::PluginFieldType::kINT32: return "int32";
    case nvinfer1::PluginFieldType::kCHAR: return "char";
    case nvinfer1::PluginFieldType::kDIMS: return "dims";
    case nvinfer1::PluginFieldType::kUNKNOWN: return "unknown";
    case nvinfer1::PluginFieldType::kBF16: return "bfloat16";
    case nvinfer1::PluginFieldType::kINT64: return "int64";
    default: return "other";
    }
}

std::string formatValues(std::vector<int32_t> const& v) {
    std::ostringstream os;
    os << '[';
    for (size_t i = 0; i < v.size(); ++i) {
        os << (i ? ", " : "") << v[i];
    }
    os << ']';
    return os.str();
}

// Copies one field's data into `values` after checking its name, type and length; false (with the
// reason appended to `problems`) without reading the data when any of them is wrong.
bool readField(ContractInfo const& contract, FieldSpec const& spec, nvinfer1::PluginField const& f,
               std::vector<int32_t>& values, std::vector<std::string>& problems) {
    std::string const where = std::string(contract.pluginName) + " field '" + spec.name + "'";
    if (f.type != nvinfer1::PluginFieldType::kINT32 && f.type != nvinfer1::PluginFieldType::kINT64) {
        problems.push_back(where + " has type " + fieldTypeName(f.type) + ", expected int32");
        return false;
    }
    if (f.length != spec.length) {
        problems.push_back(where + " has " + std::to_string(f.length) + " value(s), the contract says " +
                           std::to_string(spec.length));
        return false;
    }
    if (f.data == nullptr) {
        problems.push_back(where + " has no data");
        return false;
    }
    values.assign(static_cast<size_t>(spec.length), 0);
    if (f.type == nvinfer1::PluginFieldType::kINT32) {
        std::memcpy(values.data(), f.data, sizeof(int32_t) * static_cast<size_t>(spec.length));
    } else {
        for (int32_t i = 0; i < spec.length; ++i) {
            int64_t v = 0;
            std::memcpy(&v, static_cast<char const*>(f.data) + sizeof(int64_t) * static_cast<size_t>(i), sizeof(v));
            if (v < std::numeric_limits<int32_t>::min() || v > std::numeric_limits<int32_t>::max()) {
                problems.push_back(where + " value " + std::to_string(v) + " does not fit in int32");
                return false;
            }
            values[static_cast<size_t>(i)] = static_cast<int32_t>(v);
        }
    }
    return true;
}

}  // namespace

bool parseFields(ContractInfo const& contract, nvinfer1::PluginFieldCollection const* fc, FieldValues& out,
                 std::string& error) {
    std::vector<std::string> problems;
    int32_t const n = contract.nbFields;
    out.assign(static_cast<size_t>(n), {});
    std::vector<bool> seen(static_cast<size_t>(n), false);

    int32_t nbGiven = 0;
    nvinfer1::PluginField const* given = nullptr;
    if (fc != nullptr) {
        nbGiven = fc->nbFields;
        given = fc->fields;
        if (nbGiven < 0 || (nbGiven > 0 && given == nullptr)) {
            problems.push_back(std::string(contract.pluginName) + ": malformed PluginFieldCollection (nbFields " +
                               std::to_string(nbGiven) + (given == nullptr ? ", fields null)" : ")"));
            nbGiven = 0;
        }
    }

    for (int32_t k = 0; k < nbGiven; ++k) {
        nvinfer1::PluginField const& f = given[k];
        if (f.name == nullptr) {
            problems.push_back(std::string(contract.pluginName) + ": field #" + std::to_string(k) + " has no name");
            continue;
        }
        int32_t idx = -1;
        for (int32_t i = 0; i < n; ++i) {
            if (std::strcmp(f.name, contract.fields[i].name) == 0) {
                idx = i;
                break;
            }
        }
        if (idx < 0) {
            std::string known;
            for (int32_t i = 0; i < n; ++i) {
                known += (i ? ", " : "") + std::string(contract.fields[i].name);
            }
            problems.push_back(std::string(contract.pluginName) + ": unknown field '" + f.name + "' (the contract has " +
                               known + ")");
            continue;
        }
        if (seen[static_cast<size_t>(idx)]) {
            problems.push_back(std::string(contract.pluginName) + " field '" + f.name + "' given twice");
            continue;
        }
        seen[static_cast<size_t>(idx)] = true;
        readField(contract, contract.fields[idx], f, out[static_cast<size_t>(idx)], problems);
    }

    for (int32_t i = 0; i < n; ++i) {
        FieldSpec const& spec = contract.fields[i];
        std::vector<int32_t>& v = out[static_cast<size_t>(i)];
        if (!seen[static_cast<size_t>(i)]) {
            if (spec.required || spec.nbDefault == 0) {
                problems.push_back(std::string(contract.pluginName) + " field '" + spec.name +
                                   "' is required and missing");
                continue;
            }
            v.assign(spec.defaultValue, spec.defaultValue + spec.nbDefault);
            continue;
        }
        if (v.empty()) {
            continue;  // already reported by readField
        }
        for (int32_t x : v) {
            if ((spec.hasMin && x < spec.minValue) || (spec.hasMax && x > spec.maxValue)) {
                std::string range = spec.hasMin ? std::to_string(spec.minValue) : std::string("-inf");
                range += "..";
                range += spec.hasMax ? std::to_string(spec.maxValue) : std::string("inf");
                problems.push_back(std::string(contract.pluginName) + " field '" + spec.name + "' = " +
                                   formatValues(v) + " is out of range " + range);
                break;
            }
        }
    }

    if (problems.empty()) {
        error.clear();
        return true;
    }
    error.clear();
    for (size_t i = 0; i < problems.size(); ++i) {
        error += (i ? "; " : "") + problems[i];
    }
    return false;
}

}  // namespace plugin
}  // namespace cmc
