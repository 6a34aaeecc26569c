// Entry of libcmc_trt_plugins_dynamic.so, the variant for IPluginRegistry::loadLibrary (C++ and
// Python: trt.get_plugin_registry().load_library), trtexec --dynamicPlugins and plans built with
// plugins serialized into them: nothing is registered when the library is loaded; TensorRT calls
// setLoggerFinder() and getCreators() and registers the creators itself. The library references no
// libnvinfer symbol, so it also works with the lean/dispatch runtimes.
#include <atomic>
#include <cstdint>

#include <NvInferRuntime.h>

#include "AdderConvPlugin.h"
#include "BinaryConvPlugin.h"
#include "plugin_log.h"

#define CMC_PLUGIN_EXPORT extern "C" __attribute__((visibility("default")))

namespace cmc {
namespace plugin {
namespace {
std::atomic<nvinfer1::ILoggerFinder*> gLoggerFinder{nullptr};
}  // namespace

nvinfer1::ILogger* entryLogger() noexcept {
    nvinfer1::ILoggerFinder* finder = gLoggerFinder.load();
    if (finder == nullptr) {
        return nullptr;
    }
    try {
        return finder->findLogger();
    } catch (...) {
        return nullptr;
    }
}

nvinfer1::IErrorRecorder* entryErrorRecorder() noexcept { return nullptr; }

}  // namespace plugin
}  // namespace cmc

CMC_PLUGIN_EXPORT void setLoggerFinder(nvinfer1::ILoggerFinder* finder) { cmc::plugin::gLoggerFinder.store(finder); }

CMC_PLUGIN_EXPORT nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators) {
    static cmc::plugin::AdderConvPluginCreator adderConv;
    static cmc::plugin::BinaryConvPluginCreator binaryConv;
    static cmc::plugin::BinaryConvPackedOutPluginCreator binaryConvPackedOut;
    static cmc::plugin::BinaryConvPackedInPluginCreator binaryConvPackedIn;
    static cmc::plugin::BinaryConvPackedInOutPluginCreator binaryConvPackedInOut;
    static nvinfer1::IPluginCreatorInterface* const creators[] = {&adderConv, &binaryConv, &binaryConvPackedOut,
                                                                  &binaryConvPackedIn, &binaryConvPackedInOut};
    nbCreators = static_cast<int32_t>(sizeof(creators) / sizeof(creators[0]));
    return creators;
}
