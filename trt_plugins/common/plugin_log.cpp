#include "plugin_log.h"

namespace cmc {
namespace plugin {

void logMessage(nvinfer1::ILogger::Severity severity, std::string const& message) noexcept {
    try {
        if (nvinfer1::ILogger* logger = entryLogger()) {
            std::string const line = "cmc: " + message;
            logger->log(severity, line.c_str());
        }
    } catch (...) {
        // Out of memory while formatting a log line: nothing sensible is left to do.
    }
}

void reportError(std::string const& message, nvinfer1::IErrorRecorder* recorder, nvinfer1::ErrorCode code) noexcept {
    try {
        std::string const line = "cmc: " + message;
        nvinfer1::IErrorRecorder* target = recorder != nullptr ? recorder : entryErrorRecorder();
        if (target != nullptr) {
            // Recorders may keep at most kMAX_DESC_LENGTH characters; the logger gets the whole line.
            std::string const desc = line.size() > nvinfer1::IErrorRecorder::kMAX_DESC_LENGTH
                ? line.substr(0, nvinfer1::IErrorRecorder::kMAX_DESC_LENGTH - 3) + "..."
                : line;
            target->reportError(code, desc.c_str());
        }
        if (nvinfer1::ILogger* logger = entryLogger()) {
            logger->log(nvinfer1::ILogger::Severity::kERROR, line.c_str());
        }
    } catch (...) {
    }
}

}  // namespace plugin
}  // namespace cmc
