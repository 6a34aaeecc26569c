#include "plugin_test_stub.h"

#include <cstring>

namespace cmctest {

void CapturingLogger::log(Severity severity, nvinfer1::AsciiChar const* msg) noexcept {
    try {
        messages.emplace_back(severity, msg != nullptr ? msg : "");
    } catch (...) {
    }
}

size_t CapturingLogger::errors() const {
    size_t n = 0;
    for (auto const& m : messages) {
        n += m.first <= Severity::kERROR ? 1 : 0;
    }
    return n;
}

namespace {

class FakeRegistry final : public nvinfer1::IPluginRegistry {
public:
    std::vector<Registration> registrations;
    std::vector<nvinfer1::IPluginCreatorInterface*> creators;

    bool registerCreator(nvinfer1::IPluginCreatorInterface& creator,
                         nvinfer1::AsciiChar const* const pluginNamespace) noexcept override {
        try {
            registrations.push_back({&creator, pluginNamespace != nullptr ? pluginNamespace : ""});
            creators.push_back(&creator);
            return true;
        } catch (...) {
            return false;
        }
    }
    nvinfer1::IPluginCreatorInterface* const* getAllCreators(int32_t* const numCreators) const noexcept override {
        *numCreators = static_cast<int32_t>(creators.size());
        return creators.empty() ? nullptr : creators.data();
    }
    // Not pure in every TensorRT version (added after 10.3), so no `override`.
    nvinfer1::IPluginCreatorInterface* const* getAllCreatorsRecursive(int32_t* const numCreators) noexcept {
        return getAllCreators(numCreators);
    }
    nvinfer1::IPluginCreatorInterface* getCreator(nvinfer1::AsciiChar const* const, nvinfer1::AsciiChar const* const,
                                                  nvinfer1::AsciiChar const* const) noexcept override {
        return nullptr;
    }
    bool deregisterCreator(nvinfer1::IPluginCreatorInterface const&) noexcept override { return false; }
    void setErrorRecorder(nvinfer1::IErrorRecorder* const) noexcept override {}
    nvinfer1::IErrorRecorder* getErrorRecorder() const noexcept override { return nullptr; }
    bool isParentSearchEnabled() const override { return false; }
    void setParentSearchEnabled(bool const) override {}
    PluginLibraryHandle loadLibrary(nvinfer1::AsciiChar const*) noexcept override { return nullptr; }
    void deregisterLibrary(PluginLibraryHandle) noexcept override {}
    nvinfer1::IPluginResource* acquirePluginResource(nvinfer1::AsciiChar const*,
                                                     nvinfer1::IPluginResource*) noexcept override {
        return nullptr;
    }
    int32_t releasePluginResource(nvinfer1::AsciiChar const*) noexcept override { return 0; }
#if NV_TENSORRT_MAJOR < 11
    // IPluginV2-era entry points, pure virtual until TensorRT 11 removed them.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    bool registerCreator(nvinfer1::IPluginCreator&, nvinfer1::AsciiChar const* const) noexcept override { return false; }
    nvinfer1::IPluginCreator* const* getPluginCreatorList(int32_t* const numCreators) const noexcept override {
        *numCreators = 0;
        return nullptr;
    }
    nvinfer1::IPluginCreator* getPluginCreator(nvinfer1::AsciiChar const* const, nvinfer1::AsciiChar const* const,
                                               nvinfer1::AsciiChar const* const) noexcept override {
        return nullptr;
    }
    bool deregisterCreator(nvinfer1::IPluginCreator const&) noexcept override { return false; }
#pragma GCC diagnostic pop
#endif
};

FakeRegistry& registry() {
    static FakeRegistry r;
    return r;
}

}  // namespace

std::vector<Registration> const& stubRegistrations() { return registry().registrations; }

CapturingLogger& stubLogger() {
    static CapturingLogger logger;
    return logger;
}

}  // namespace cmctest

// The libnvinfer symbols libcmc_trt_plugins.so references (exported from the test executable).
extern "C" __attribute__((visibility("default"))) nvinfer1::IPluginRegistry* getPluginRegistry() noexcept {
    return &cmctest::registry();
}

extern "C" __attribute__((visibility("default"))) nvinfer1::ILogger* getLogger() noexcept {
    return &cmctest::stubLogger();
}
