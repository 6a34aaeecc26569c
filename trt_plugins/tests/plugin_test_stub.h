// Test-only stand-ins for the few libnvinfer pieces the cmc plugin libraries touch: a capturing
// ILogger, an in-memory IPluginRegistry (what the self-registering library registers into), and the
// extern "C" getLogger()/getPluginRegistry() symbols themselves (plugin_test_stub.cpp). Compiled only
// into cmc_plugin_contract_test; never into a plugin library.
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
    std::string last() const { return messages.empty() ? std::string() : messages.back().second; }
};

struct Registration {
    nvinfer1::IPluginCreatorInterface* creator;
    std::string pluginNamespace;  // as passed to registerCreator
};

// The registry and logger the stub's getPluginRegistry()/getLogger() return.
std::vector<Registration> const& stubRegistrations();
CapturingLogger& stubLogger();

}  // namespace cmctest
