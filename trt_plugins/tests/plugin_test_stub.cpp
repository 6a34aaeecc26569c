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

bool CapturingLogger::errorSince(size_t since, std::string const& needle) const {
    for (size_t i = since; i < messages.size(); ++i) {
        if (messages[i].first <= Severity::kERROR && messages[i].second.find(needle) != std::string::npos) {
            return true;
        }
    }
    return false;
}

namespace {

bool sameText(char const* a, char const* b) {
    return std::strcmp(a != nullptr ? a : "", b != nullptr ? b : "") == 0;
}

// The name and version of any creator kind (V3One creators; the V1 kind is never registered here).
bool creatorKey(nvinfer1::IPluginCreatorInterface const* c, char const*& name, char const*& version) {
    if (c == nullptr || !sameText(c->getInterfaceInfo().kind, "PLUGIN CREATOR_V3ONE")) {
        return false;
    }
    auto* v3 = const_cast<nvinfer1::IPluginCreatorV3One*>(static_cast<nvinfer1::IPluginCreatorV3One const*>(c));
    name = v3->getPluginName();
    version = v3->getPluginVersion();
    return true;
}

}  // namespace

bool HarnessRegistry::registerCreator(nvinfer1::IPluginCreatorInterface& creator,
                                      nvinfer1::AsciiChar const* const pluginNamespace) noexcept {
    try {
        char const* name = nullptr;
        char const* version = nullptr;
        if (!creatorKey(&creator, name, version) || getCreator(name, version, pluginNamespace) != nullptr) {
            // TensorRT refuses a second creator with the same name, version and namespace.
            ++refusedRegistrations;
            return false;
        }
        registrations.push_back({&creator, pluginNamespace != nullptr ? pluginNamespace : ""});
        creators.push_back(&creator);
        return true;
    } catch (...) {
        return false;
    }
}

nvinfer1::IPluginCreatorInterface* const* HarnessRegistry::getAllCreators(int32_t* const numCreators) const noexcept {
    *numCreators = static_cast<int32_t>(creators.size());
    return creators.empty() ? nullptr : creators.data();
}

nvinfer1::IPluginCreatorInterface* const* HarnessRegistry::getAllCreatorsRecursive(int32_t* const numCreators) noexcept {
    return getAllCreators(numCreators);
}

nvinfer1::IPluginCreatorInterface* HarnessRegistry::getCreator(nvinfer1::AsciiChar const* const pluginName,
                                                               nvinfer1::AsciiChar const* const pluginVersion,
                                                               nvinfer1::AsciiChar const* const pluginNamespace) noexcept {
    for (auto const& r : registrations) {
        char const* name = nullptr;
        char const* version = nullptr;
        if (creatorKey(r.creator, name, version) && sameText(name, pluginName) && sameText(version, pluginVersion) &&
            sameText(r.pluginNamespace.c_str(), pluginNamespace)) {
            return r.creator;
        }
    }
    return nullptr;
}

bool HarnessRegistry::deregisterCreator(nvinfer1::IPluginCreatorInterface const& creator) noexcept {
    for (size_t i = 0; i < registrations.size(); ++i) {
        if (registrations[i].creator == &creator) {
            registrations.erase(registrations.begin() + static_cast<long>(i));
            creators.erase(creators.begin() + static_cast<long>(i));
            return true;
        }
    }
    return false;
}

HarnessRegistry& stubRegistry() {
    static HarnessRegistry r;
    return r;
}

CapturingLogger& stubLogger() {
    static CapturingLogger logger;
    return logger;
}

}  // namespace cmctest

// The libnvinfer symbols libcmc_trt_plugins.so references (exported from the test executable).
extern "C" __attribute__((visibility("default"))) nvinfer1::IPluginRegistry* getPluginRegistry() noexcept {
    return &cmctest::stubRegistry();
}

extern "C" __attribute__((visibility("default"))) nvinfer1::ILogger* getLogger() noexcept {
    return &cmctest::stubLogger();
}
