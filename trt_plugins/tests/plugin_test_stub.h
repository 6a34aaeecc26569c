// Test-only stand-ins for the libnvinfer pieces the cmc plugin libraries touch: a capturing ILogger,
// an IPluginRegistry that behaves like TensorRT's for what plugins and loaders use (registration
// refused for a duplicate name/version/namespace, lookup by all three, deregistration, an error
// recorder), and the extern "C" getLogger()/getPluginRegistry() symbols the self-registering library
// calls (plugin_test_stub.cpp; exported from the harness executable). Never compiled into a plugin.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include <NvInferRuntime.h>

namespace cmctest {

class CapturingLogger : public nvinfer1::ILogger {
public:
    void log(Severity severity, nvinfer1::AsciiChar const* msg) noexcept override;
    std::vector<std::pair<Severity, std::string>> messages;
    size_t errors() const;
    // True when an error (kERROR or worse) containing `needle` was logged at index >= `since`.
    bool errorSince(size_t since, std::string const& needle) const;
};

struct Registration {
    nvinfer1::IPluginCreatorInterface* creator;
    std::string pluginNamespace;  // as passed to registerCreator
};

class HarnessRegistry final : public nvinfer1::IPluginRegistry {
public:
    std::vector<Registration> registrations;
    std::vector<nvinfer1::IPluginCreatorInterface*> creators;
    int32_t refusedRegistrations = 0;

    bool registerCreator(nvinfer1::IPluginCreatorInterface& creator,
                         nvinfer1::AsciiChar const* const pluginNamespace) noexcept override;
    nvinfer1::IPluginCreatorInterface* const* getAllCreators(int32_t* const numCreators) const noexcept override;
    // Not pure in every TensorRT version (added after 10.3), so no `override`.
    nvinfer1::IPluginCreatorInterface* const* getAllCreatorsRecursive(int32_t* const numCreators) noexcept;
    nvinfer1::IPluginCreatorInterface* getCreator(nvinfer1::AsciiChar const* const pluginName,
                                                  nvinfer1::AsciiChar const* const pluginVersion,
                                                  nvinfer1::AsciiChar const* const pluginNamespace) noexcept override;
    bool deregisterCreator(nvinfer1::IPluginCreatorInterface const& creator) noexcept override;
    void setErrorRecorder(nvinfer1::IErrorRecorder* const recorder) noexcept override { mRecorder = recorder; }
    nvinfer1::IErrorRecorder* getErrorRecorder() const noexcept override { return mRecorder; }
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
    // IPluginV2-era entry points, pure virtual until TensorRT 11 removed them; cmc has no V2 plugins.
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

private:
    nvinfer1::IErrorRecorder* mRecorder = nullptr;
};

// What the stub's getPluginRegistry()/getLogger() return: the process-wide registry and logger the
// self-registering library reaches.
HarnessRegistry& stubRegistry();
CapturingLogger& stubLogger();

}  // namespace cmctest
