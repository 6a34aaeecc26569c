#include "harness_formats.h"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <map>
#include <utility>
#include <sstream>

namespace cmcharness {

using nvinfer1::DataType;
using nvinfer1::TensorFormat;

namespace {

// Indexed by the enum values, which are the same in the 10.x and 11.x headers (11.x appends values).
char const* const kTypeNames[] = {"float32", "float16", "int8", "int32", "bool", "uint8",
                                  "fp8",     "bfloat16", "int64", "int4", "fp4", "e8m0"};
char const* const kFormatNames[] = {"kLINEAR",     "kCHW2",      "kHWC8",  "kCHW4", "kCHW16",
                                    "kCHW32",      "kDHWC8",     "kCDHW32", "kHWC",  "kDLA_LINEAR",
                                    "kDLA_HWC4",   "kHWC16",     "kDHWC"};
constexpr int32_t kNbTypeNames = static_cast<int32_t>(sizeof(kTypeNames) / sizeof(kTypeNames[0]));
constexpr int32_t kNbFormatNames = static_cast<int32_t>(sizeof(kFormatNames) / sizeof(kFormatNames[0]));

std::string trim(std::string s) {
    auto notSpace = [](unsigned char c) { return !std::isspace(c) && c != '`'; };
    s.erase(s.begin(), std::find_if(s.begin(), s.end(), notSpace));
    s.erase(std::find_if(s.rbegin(), s.rend(), notSpace).base(), s.end());
    return s;
}

std::vector<std::string> cells(std::string const& line) {
    std::vector<std::string> out;
    std::string t = trim(line);
    if (t.empty() || t.front() != '|') {
        return out;
    }
    if (t.back() == '|') {
        t.pop_back();
    }
    std::stringstream ss(t.substr(1));
    std::string cell;
    while (std::getline(ss, cell, '|')) {
        out.push_back(trim(cell));
    }
    return out;
}

bool isSeparator(std::vector<std::string> const& c) {
    for (auto const& s : c) {
        if (s.empty() || s.find_first_not_of(":-") != std::string::npos) {
            return false;
        }
    }
    return !c.empty();
}

}  // namespace

std::string typeName(DataType t) {
    auto const i = static_cast<int32_t>(t);
    return i >= 0 && i < kNbTypeNames ? kTypeNames[i] : "type#" + std::to_string(i);
}

std::string formatName(TensorFormat f) {
    auto const i = static_cast<int32_t>(f);
    return i >= 0 && i < kNbFormatNames ? kFormatNames[i] : "format#" + std::to_string(i);
}

bool parseTypeName(std::string const& s, DataType& t) {
    for (int32_t i = 0; i < kNbTypeNames && i < nvinfer1::EnumMax<DataType>(); ++i) {
        if (s == kTypeNames[i]) {
            t = static_cast<DataType>(i);
            return true;
        }
    }
    return false;
}

bool parseFormatName(std::string const& s, TensorFormat& f) {
    // "kLINEAR", "LINEAR" and "linear" all name TensorFormat::kLINEAR.
    auto norm = [](std::string v) {
        std::transform(v.begin(), v.end(), v.begin(), [](unsigned char c) { return std::toupper(c); });
        return v.size() > 1 && v[0] == 'K' ? v.substr(1) : v;
    };
    for (int32_t i = 0; i < kNbFormatNames && i < nvinfer1::EnumMax<TensorFormat>(); ++i) {
        if (norm(s) == norm(kFormatNames[i])) {
            f = static_cast<TensorFormat>(i);
            return true;
        }
    }
    return false;
}

std::string rowText(FormatRow const& row, std::vector<std::string> const& ioNames) {
    std::string s;
    for (size_t i = 0; i < row.size(); ++i) {
        s += (i ? " " : "") + (i < ioNames.size() ? ioNames[i] : "#" + std::to_string(i)) + "=" +
             typeName(row[i].type) + ":" + formatName(row[i].format);
    }
    return s;
}

namespace {

// "<!-- cmc-formats:begin NAME -->" (kind "begin") -> true with `name` = "NAME" ("" when unnamed).
bool marker(std::string const& t, std::string const& kind, std::string& name) {
    std::string const open = "<!-- cmc-formats:" + kind;
    std::string const close = "-->";
    if (t.rfind(open, 0) != 0 || t.size() < open.size() + close.size() ||
        t.compare(t.size() - close.size(), close.size(), close) != 0) {
        return false;
    }
    std::string const rest = t.substr(open.size(), t.size() - open.size() - close.size());
    if (!rest.empty() && !std::isspace(static_cast<unsigned char>(rest[0]))) {
        return false;  // "cmc-formats:beginning": not a marker
    }
    name = trim(rest);
    return true;
}

struct TableLines {
    int beginLine = 0;
    std::vector<std::pair<int, std::string>> lines;  // (line number, text) between the markers
};

// Every table of a README by name; false with the reason for malformed markers.
bool scanTables(std::string const& path, std::map<std::string, TableLines>& tables, std::vector<std::string>& order,
                std::string& why) {
    std::ifstream in(path);
    if (!in) {
        why = path + ": cannot be read";
        return false;
    }
    std::string line, name, current;
    bool inside = false;
    int lineNo = 0;
    auto shown = [](std::string const& n) { return n.empty() ? std::string("the unnamed table") : "table '" + n + "'"; };
    while (std::getline(in, line)) {
        ++lineNo;
        std::string const t = trim(line);
        std::string const where = path + ":" + std::to_string(lineNo) + ": ";
        if (marker(t, "begin", name)) {
            if (inside) {
                why = where + "a format table begins inside " + shown(current);
                return false;
            }
            if (tables.count(name) != 0) {
                why = where + "a second " + shown(name);
                return false;
            }
            tables[name].beginLine = lineNo;
            order.push_back(name);
            current = name;
            inside = true;
            continue;
        }
        if (marker(t, "end", name)) {
            if (!inside || name != current) {
                why = where + "end marker of " + shown(name) + (inside ? " inside " + shown(current) : " outside any table");
                return false;
            }
            inside = false;
            continue;
        }
        if (inside && !t.empty()) {
            tables[current].lines.emplace_back(lineNo, line);
        }
    }
    if (inside) {
        why = path + ": " + shown(current) + " has no end marker";
        return false;
    }
    return true;
}

}  // namespace

bool readmeFormatTables(std::string const& path, std::vector<std::string>& names, std::string& why) {
    std::map<std::string, TableLines> tables;
    names.clear();
    return scanTables(path, tables, names, why);
}

bool readReadmeFormats(std::string const& path, std::string const& table, std::vector<std::string> const& ioNames,
                       std::vector<FormatRow>& rows, std::string& why) {
    std::map<std::string, TableLines> tables;
    std::vector<std::string> order;
    rows.clear();
    if (!scanTables(path, tables, order, why)) {
        return false;
    }
    std::string const begin = "<!-- cmc-formats:begin" + (table.empty() ? "" : " " + table) + " -->";
    std::string const end = "<!-- cmc-formats:end" + (table.empty() ? "" : " " + table) + " -->";
    auto const it = tables.find(table);
    if (it == tables.end()) {
        why = path + ": no format table between '" + begin + "' and '" + end + "'";
        return false;
    }
    bool sawHeader = false;
    for (auto const& [lineNo, line] : it->second.lines) {
        std::vector<std::string> const c = cells(line);
        std::string const where = path + ":" + std::to_string(lineNo) + ": ";
        if (c.empty()) {
            why = where + "not a table row inside the format table";
            return false;
        }
        if (!sawHeader) {
            std::vector<std::string> expected = ioNames;
            expected.push_back("format");
            if (c != expected) {
                std::string e;
                for (auto const& n : expected) e += "| " + n + " ";
                why = where + "the format table's header must be `" + e + "|` (the plugin's tensors in position order)";
                return false;
            }
            sawHeader = true;
            continue;
        }
        if (isSeparator(c)) {
            continue;
        }
        if (c.size() != ioNames.size() + 1) {
            why = where + "expected " + std::to_string(ioNames.size() + 1) + " cells, found " + std::to_string(c.size());
            return false;
        }
        TensorFormat f{};
        if (!parseFormatName(c.back(), f)) {
            why = where + "unknown TensorFormat '" + c.back() + "'";
            return false;
        }
        FormatRow row;
        for (size_t i = 0; i < ioNames.size(); ++i) {
            DataType dt{};
            if (!parseTypeName(c[i], dt)) {
                why = where + "unknown data type '" + c[i] + "' for " + ioNames[i];
                return false;
            }
            row.push_back({dt, f});
        }
        rows.push_back(row);
    }
    if (rows.empty()) {
        why = path + ": the format table between '" + begin + "' and '" + end + "' has no rows";
        return false;
    }
    std::vector<FormatRow> sorted = rows;
    std::sort(sorted.begin(), sorted.end());
    if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end()) {
        why = path + ": the format table '" + begin + "' lists a row twice";
        return false;
    }
    return true;
}

namespace {

struct Search {
    nvinfer1::IPluginV3OneBuild& build;
    int32_t nbInputs, nbOutputs, nbIo;
    std::vector<nvinfer1::DynamicPluginTensorDesc> io;
    std::vector<FormatRow>& found;
    std::vector<std::string>& problems;
    std::vector<std::string> names;

    // Garbage after `pos`: filling 0 repeats a plausible combination (float32, kLINEAR), filling 1 an
    // implausible one; a plugin that decides from inOut[pos] and below answers the same for both.
    void fill(int32_t pos, int32_t filling) {
        for (int32_t i = pos + 1; i < nbIo; ++i) {
            io[static_cast<size_t>(i)].desc.type = filling == 0 ? DataType::kFLOAT : DataType::kINT8;
            io[static_cast<size_t>(i)].desc.format = filling == 0 ? TensorFormat::kLINEAR : TensorFormat::kCHW32;
        }
    }

    void visit(int32_t pos, FormatRow& prefix) {
        if (pos == nbIo) {
            found.push_back(prefix);
            return;
        }
        for (int32_t t = 0; t < nvinfer1::EnumMax<DataType>(); ++t) {
            for (int32_t f = 0; f < nvinfer1::EnumMax<TensorFormat>(); ++f) {
                IoFormat const cand{static_cast<DataType>(t), static_cast<TensorFormat>(f)};
                io[static_cast<size_t>(pos)].desc.type = cand.type;
                io[static_cast<size_t>(pos)].desc.format = cand.format;
                fill(pos, 0);
                bool const a = build.supportsFormatCombination(pos, io.data(), nbInputs, nbOutputs);
                fill(pos, 1);
                bool const b = build.supportsFormatCombination(pos, io.data(), nbInputs, nbOutputs);
                if (a != b && problems.size() < 8) {
                    FormatRow shown = prefix;
                    shown.push_back(cand);
                    problems.push_back("supportsFormatCombination(pos=" + std::to_string(pos) +
                                       ") depends on positions after pos, for " + rowText(shown, names));
                }
                if (a && b) {
                    prefix.push_back(cand);
                    io[static_cast<size_t>(pos)].desc.type = cand.type;
                    io[static_cast<size_t>(pos)].desc.format = cand.format;
                    visit(pos + 1, prefix);
                    prefix.pop_back();
                }
            }
        }
    }
};

}  // namespace

std::vector<FormatRow> acceptedCombinations(nvinfer1::IPluginV3OneBuild& build,
                                            std::vector<nvinfer1::DynamicPluginTensorDesc> const& templ,
                                            int32_t nbInputs, int32_t nbOutputs, std::vector<std::string> const& ioNames,
                                            std::vector<std::string>& problems) {
    std::vector<FormatRow> found;
    Search s{build, nbInputs, nbOutputs, nbInputs + nbOutputs, templ, found, problems, ioNames};
    FormatRow prefix;
    s.visit(0, prefix);
    std::sort(found.begin(), found.end());
    return found;
}

}  // namespace cmcharness
