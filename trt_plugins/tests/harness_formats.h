// Type/format combinations: the names used in the plugin READMEs, the machine-checkable format
// tables each trt_plugins/<op>/README.md carries, and the enumeration of what a plugin's
// supportsFormatCombination accepts, queried the way TensorRT's builder does.
//
// A README holds one table per plugin, each between its markers:
//     <!-- cmc-formats:begin -->        ...  <!-- cmc-formats:end -->         the folder's own operator
//     <!-- cmc-formats:begin NAME -->   ...  <!-- cmc-formats:end NAME -->    the plugin NAME (e.g. the
//                                                                             BinaryConvPackedOut variant)
// (one column per plugin input/output in position order, headed by the contract's tensor names,
// cells are type names such as float32 / float16 / int32; a last column `format` holds the
// TensorFormat of every tensor of that row, e.g. kLINEAR).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <NvInferRuntime.h>

namespace cmcharness {

struct IoFormat {
    nvinfer1::DataType type;
    nvinfer1::TensorFormat format;
    bool operator==(IoFormat const& o) const { return type == o.type && format == o.format; }
    bool operator<(IoFormat const& o) const {
        return type != o.type ? type < o.type : format < o.format;
    }
};
using FormatRow = std::vector<IoFormat>;  // one entry per input, then per output

std::string typeName(nvinfer1::DataType t);        // "float32", "float16", "int32", ... ("type#12" beyond)
std::string formatName(nvinfer1::TensorFormat f);  // "kLINEAR", "kCHW32", ...
bool parseTypeName(std::string const& s, nvinfer1::DataType& t);
bool parseFormatName(std::string const& s, nvinfer1::TensorFormat& f);  // "kLINEAR" or "linear"

// "X=float32:kLINEAR W=float32:kLINEAR ..." (the form the harness prints and pytest reads back).
std::string rowText(FormatRow const& row, std::vector<std::string> const& ioNames);

// Reads the format table `table` ("" = the unnamed one) of a plugin README; false with the reason when
// it is missing or malformed (unknown type names, a header that does not name the tensors `ioNames` in
// order, ...) or when the README's markers are (two tables of one name, an end marker of another name,
// a table left open, ...).
bool readReadmeFormats(std::string const& path, std::string const& table, std::vector<std::string> const& ioNames,
                       std::vector<FormatRow>& rows, std::string& why);
// The names of every format table in a README ("" for the unnamed one); false with the reason when its
// markers are malformed.
bool readmeFormatTables(std::string const& path, std::vector<std::string>& names, std::string& why);

// Every combination over all DataType x TensorFormat values that `build` accepts, found the way the
// builder asks: position by position, with positions < pos set to accepted values and positions > pos
// holding garbage. Each question is asked with two different garbage fillings; an answer that changes
// with them (the plugin read inOut[pos+1..]) is reported in `problems`. `templ` supplies the dims.
std::vector<FormatRow> acceptedCombinations(nvinfer1::IPluginV3OneBuild& build,
                                            std::vector<nvinfer1::DynamicPluginTensorDesc> const& templ,
                                            int32_t nbInputs, int32_t nbOutputs, std::vector<std::string> const& ioNames,
                                            std::vector<std::string>& problems);

}  // namespace cmcharness
