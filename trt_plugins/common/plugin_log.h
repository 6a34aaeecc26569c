// Error reporting for the cmc TensorRT plugins: every failure is reported to TensorRT's error
// recorder (when one is attached) and to TensorRT's logger, never thrown across the API and never
// allowed to crash the process.
#pragma once

#include <string>

#include <NvInferRuntime.h>

namespace cmc {
namespace plugin {

// Where the messages go. Each library variant defines these two functions in its entry file:
//  - cmc_trt_plugins (self-registering, plugin_entry_static.cpp): libnvinfer's getLogger() and the
//    global plugin registry's error recorder;
//  - cmc_trt_plugins_dynamic (getCreators, plugin_entry_dynamic.cpp): the ILoggerFinder TensorRT
//    hands to setLoggerFinder(), and no registry recorder (the library must not call libnvinfer).
// Either may return nullptr.
nvinfer1::ILogger* entryLogger() noexcept;
nvinfer1::IErrorRecorder* entryErrorRecorder() noexcept;

// Reports `message` (prefixed "cmc: ") as an error: to `recorder` if given, else to the entry's
// recorder, and always to the entry's logger at kERROR.
void reportError(std::string const& message, nvinfer1::IErrorRecorder* recorder = nullptr,
                 nvinfer1::ErrorCode code = nvinfer1::ErrorCode::kINVALID_ARGUMENT) noexcept;

void logMessage(nvinfer1::ILogger::Severity severity, std::string const& message) noexcept;

}  // namespace plugin
}  // namespace cmc
