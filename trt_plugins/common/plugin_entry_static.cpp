// Entry of libcmc_trt_plugins.so, the self-registering variant: loading the library (dlopen,
// LD_PRELOAD, Polygraphy --plugins, trtexec --staticPlugins, ORT's trt_extra_plugin_lib_paths,
// DeepStream custom-lib-path, ctypes.CDLL) registers every creator in libnvinfer's global plugin
// registry. It exports no getCreators on purpose: IPluginRegistry::loadLibrary and trtexec
// --dynamicPlugins would then find the creators already registered and fail; use
// libcmc_trt_plugins_dynamic.so for those.
#include <NvInferRuntime.h>

#include "AdderConvPlugin.h"
#include "BinaryConvPlugin.h"
#include "plugin_log.h"

namespace cmc {
namespace plugin {

nvinfer1::ILogger* entryLogger() noexcept { return ::getLogger(); }

nvinfer1::IErrorRecorder* entryErrorRecorder() noexcept {
    nvinfer1::IPluginRegistry* registry = ::getPluginRegistry();
    return registry != nullptr ? registry->getErrorRecorder() : nullptr;
}

namespace {

// What REGISTER_TENSORRT_PLUGIN does, except that the creator is registered under its own namespace
// ("cmc", from the contract) rather than "": the ONNX parser looks creators up by the node's
// plugin_namespace, and TensorRT's Python plugin registration passes the namespace the same way.
template <class Creator>
class Registrar {
public:
    Registrar() noexcept {
        nvinfer1::IPluginRegistry* registry = ::getPluginRegistry();
        if (registry == nullptr) {
            return;
        }
        if (!registry->registerCreator(mCreator, mCreator.getPluginNamespace())) {
            try {
                logMessage(nvinfer1::ILogger::Severity::kWARNING,
                           std::string("plugin creator ") + mCreator.getPluginNamespace() + "::" +
                               mCreator.getPluginName() + " v" + mCreator.getPluginVersion() +
                               " was not registered (already registered by another library?)");
            } catch (...) {
            }
        }
    }

private:
    Creator mCreator{};
};

Registrar<AdderConvPluginCreator> const gAdderConvRegistrar{};
Registrar<BinaryConvPluginCreator> const gBinaryConvRegistrar{};
Registrar<BinaryConvPackedOutPluginCreator> const gBinaryConvPackedOutRegistrar{};
Registrar<BinaryConvPackedInPluginCreator> const gBinaryConvPackedInRegistrar{};
Registrar<BinaryConvPackedInOutPluginCreator> const gBinaryConvPackedInOutRegistrar{};

}  // namespace
}  // namespace plugin
}  // namespace cmc
