// cmc TensorRT plugin lifecycle harness: both plugin libraries, every plugin, the call order of
// TensorRT's builder and runtime (harness_lifecycle.h), twice in one process.
//
//   cmc_plugin_harness [--static-lib P] [--dynamic-lib P] [--plugins-root DIR]
//                      [--enqueue=auto|off|require] [--rounds N] [--dump-reference DIR]
//
// Library forms:
//   dlopen       libcmc_trt_plugins.so registers its creators while being loaded, into the registry
//                this executable's getPluginRegistry() returns (plugin_test_stub.cpp), as into
//                libnvinfer's (REGISTER_TENSORRT_PLUGIN style); errors reach that registry's recorder
//   getCreators  libcmc_trt_plugins_dynamic.so is loaded the way IPluginRegistry::loadLibrary does it:
//                setLoggerFinder, getCreators, then the loader registers the creators itself
// --enqueue=auto (default) runs enqueue where a CUDA device exists and reports it SKIPPED elsewhere;
// off never runs it; require exits 77 (ctest: skipped) after the CPU part when there is no device.
// --dump-reference writes the float64 reference cases for tests/trt_plugins (reference.py check).
// Exit: 0 all checks passed, 1 a check failed, 2 bad usage, 77 --enqueue=require without a GPU.
#include <dlfcn.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include <NvInferRuntime.h>

#include "harness_check.h"
#include "harness_lifecycle.h"
#include "plugin_test_stub.h"

using namespace nvinfer1;
using namespace cmcharness;

#ifndef CMC_HARNESS_STATIC_LIB
#define CMC_HARNESS_STATIC_LIB "libcmc_trt_plugins.so"
#endif
#ifndef CMC_HARNESS_DYNAMIC_LIB
#define CMC_HARNESS_DYNAMIC_LIB "libcmc_trt_plugins_dynamic.so"
#endif
#ifndef CMC_HARNESS_PLUGINS_ROOT
#define CMC_HARNESS_PLUGINS_ROOT "trt_plugins"
#endif

namespace {

struct Options {
    std::string staticLib = CMC_HARNESS_STATIC_LIB;
    std::string dynamicLib = CMC_HARNESS_DYNAMIC_LIB;
    std::string pluginsRoot = CMC_HARNESS_PLUGINS_ROOT;
    std::string enqueue = "auto";
    std::string dumpDir;
    int rounds = 2;
};

bool parseArgs(int argc, char** argv, Options& o) {
    for (int i = 1; i < argc; ++i) {
        std::string const a = argv[i];
        auto value = [&](std::string const& flag, std::string& out) {
            if (a.rfind(flag + "=", 0) == 0) {
                out = a.substr(flag.size() + 1);
                return true;
            }
            if (a == flag && i + 1 < argc) {
                out = argv[++i];
                return true;
            }
            return false;
        };
        std::string rounds;
        if (value("--static-lib", o.staticLib) || value("--dynamic-lib", o.dynamicLib) ||
            value("--plugins-root", o.pluginsRoot) || value("--enqueue", o.enqueue) || value("--dump-reference", o.dumpDir)) {
            continue;
        }
        if (value("--rounds", rounds)) {
            o.rounds = std::atoi(rounds.c_str());
            continue;
        }
        std::fprintf(stderr, "cmc_plugin_harness: unknown argument '%s'\n", a.c_str());
        return false;
    }
    if (o.enqueue != "auto" && o.enqueue != "off" && o.enqueue != "require") {
        std::fprintf(stderr, "cmc_plugin_harness: --enqueue must be auto, off or require\n");
        return false;
    }
    if (o.rounds < 1) {
        std::fprintf(stderr, "cmc_plugin_harness: --rounds must be at least 1\n");
        return false;
    }
    return true;
}

IPluginCreatorV3One* asV3One(IPluginCreatorInterface* c) {
    return c != nullptr && std::strcmp(c->getInterfaceInfo().kind, "PLUGIN CREATOR_V3ONE") == 0
               ? static_cast<IPluginCreatorV3One*>(c)
               : nullptr;
}

using GetCreators = IPluginCreatorInterface* const* (*)(int32_t&);
using SetLoggerFinder = void (*)(ILoggerFinder*);

// The self-registering library: loading it is all it takes.
void* loadStatic(Options const& o, int round, size_t& registered) {
    Context ctx("load " + o.staticLib);
    size_t const before = cmctest::stubRegistry().registrations.size();
    void* lib = dlopen(o.staticLib.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!check(lib != nullptr, std::string("dlopen: ") + (lib ? "" : dlerror()))) return nullptr;
    size_t const now = cmctest::stubRegistry().registrations.size();
    if (round == 1) {
        registered = now - before;
        check(registered == opModels().size(), "registers one creator per operator while loading (" +
                                                   std::to_string(registered) + ")");
        for (auto const& r : cmctest::stubRegistry().registrations) {
            IPluginCreatorV3One* c = asV3One(r.creator);
            check(c != nullptr && r.pluginNamespace == c->getPluginNamespace(),
                  "registered as IPluginCreatorV3One under its own namespace");
        }
        check(dlsym(lib, "getCreators") == nullptr,
              "exports no getCreators (loadLibrary would find its creators already registered)");
    } else {
        check(now == before, "loading it again registers nothing more");
    }
    return lib;
}

// The getCreators library, loaded as IPluginRegistry::loadLibrary does.
void* loadDynamic(Options const& o, int round, cmctest::HarnessRegistry& registry, FakeLoggerFinder& finder,
                  std::vector<IPluginCreatorInterface*>& creators) {
    Context ctx("load " + o.dynamicLib);
    size_t const stubBefore = cmctest::stubRegistry().registrations.size();
    void* lib = dlopen(o.dynamicLib.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!check(lib != nullptr, std::string("dlopen: ") + (lib ? "" : dlerror()))) return nullptr;
    check(cmctest::stubRegistry().registrations.size() == stubBefore, "registers nothing by being loaded");
    auto getCreators = reinterpret_cast<GetCreators>(dlsym(lib, "getCreators"));
    auto setLoggerFinder = reinterpret_cast<SetLoggerFinder>(dlsym(lib, "setLoggerFinder"));
    if (!check(getCreators != nullptr && setLoggerFinder != nullptr, "exports getCreators and setLoggerFinder")) {
        return lib;
    }
    setLoggerFinder(&finder);
    int32_t n = -1;
    IPluginCreatorInterface* const* list = getCreators(n);
    if (!check(list != nullptr && n == static_cast<int32_t>(opModels().size()), "getCreators lists one creator per operator")) {
        return lib;
    }
    std::vector<IPluginCreatorInterface*> const now(list, list + n);
    if (round == 1) {
        creators = now;
        for (auto* c : creators) {
            IPluginCreatorV3One* v3 = asV3One(c);
            if (check(v3 != nullptr, "creator is IPluginCreatorV3One")) {
                check(registry.registerCreator(*c, v3->getPluginNamespace()), "the loader registers it");
                // Both libraries in one process: TensorRT refuses the second registration.
                int32_t const refused = cmctest::stubRegistry().refusedRegistrations;
                check(!cmctest::stubRegistry().registerCreator(*c, v3->getPluginNamespace()) &&
                          cmctest::stubRegistry().refusedRegistrations == refused + 1,
                      "a registry that already holds the self-registering library's creator refuses it");
            }
        }
    } else {
        check(now == creators, "getCreators returns the same creators again");
        for (auto* c : creators) {
            IPluginCreatorV3One* v3 = asV3One(c);
            check(v3 != nullptr && !registry.registerCreator(*c, v3->getPluginNamespace()),
                  "registering them twice is refused");
        }
    }
    return lib;
}

}  // namespace

int main(int argc, char** argv) {
    Options o;
    if (!parseArgs(argc, argv, o)) return 2;
    std::printf("cmc plugin lifecycle harness, TensorRT %d.%d.%d headers\n", NV_TENSORRT_MAJOR, NV_TENSORRT_MINOR,
                NV_TENSORRT_PATCH);
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    if (!o.dumpDir.empty()) {
        std::string why;
        if (!dumpReferenceCases(o.dumpDir, why)) {
            std::fprintf(stderr, "cmc_plugin_harness: %s\n", why.c_str());
            return 1;
        }
        std::printf("reference cases written to %s\n", o.dumpDir.c_str());
        return 0;
    }

    std::map<std::string, std::vector<FormatRow>> readme;
    std::map<std::string, std::vector<std::string>> tablesOfFolder;  // the tables the plugins read, per README
    for (auto const& op : opModels()) {
        Context ctx("README " + op.folder + " " + op.pluginName);
        std::string why;
        std::vector<FormatRow> rows;
        std::string const path = o.pluginsRoot + "/" + op.folder + "/README.md";
        tablesOfFolder[op.folder].push_back(op.formatTable);
        bool const read = readReadmeFormats(path, op.formatTable, op.ioNames, rows, why);  // before `why` is read
        if (check(read, why)) {
            readme[op.pluginName] = rows;
            for (auto const& r : rows) std::printf("readme-format %s: %s\n", op.pluginName.c_str(), rowText(r, op.ioNames).c_str());
        }
    }
    // A table no plugin reads (a misspelt name) would state formats nobody checks.
    for (auto const& [folder, used] : tablesOfFolder) {
        Context ctx("README " + folder);
        std::string why;
        std::vector<std::string> names;
        std::string const path = o.pluginsRoot + "/" + folder + "/README.md";
        bool const read = readmeFormatTables(path, names, why);
        if (!check(read, why)) continue;
        for (auto const& n : names) {
            check(std::find(used.begin(), used.end(), n) != used.end(),
                  path + ": format table '" + n + "' belongs to no plugin of this folder");
        }
    }
    if (nbFailures() > 0) {
        std::printf("%d passed, %d failed (no usable README format table)\n", nbChecks() - nbFailures(), nbFailures());
        return 1;
    }

    checkPackedComparison();  // the host half of enqueue's packed-Y comparison, on any machine

    GpuStatus gpu;
    if (o.enqueue == "off") {
        gpu.reason = "--enqueue=off";
    } else {
        gpu = probeGpu();
        std::printf("GPU: %s\n", gpu.available ? gpu.device.c_str() : gpu.reason.c_str());
    }

    // The application's error recorder on the global registry, set before any plugin is loaded.
    FakeRecorder registryRecorder;
    cmctest::stubRegistry().setErrorRecorder(&registryRecorder);
    cmctest::CapturingLogger finderLogger;
    FakeLoggerFinder finder(&finderLogger);
    cmctest::HarnessRegistry loaderRegistry;  // what loadLibrary registers the getCreators library's creators into

    LifecycleEnv staticEnv, dynamicEnv;
    staticEnv.form = "dlopen (self-registering " + o.staticLib + ")";
    staticEnv.registry = &cmctest::stubRegistry();
    staticEnv.sink = Sink{&cmctest::stubLogger(), &registryRecorder};
    dynamicEnv.form = "getCreators (" + o.dynamicLib + ")";
    dynamicEnv.registry = &loaderRegistry;
    dynamicEnv.sink = Sink{&finderLogger, nullptr};
    for (LifecycleEnv* env : {&staticEnv, &dynamicEnv}) {
        env->gpu = gpu;
        env->enqueue = o.enqueue != "off";
        env->readmeRows = readme;
    }

    std::vector<void*> handles;
    void* dynamicHandle = nullptr;
    size_t registered = 0;
    std::vector<IPluginCreatorInterface*> dynamicCreators;
    for (int round = 1; round <= o.rounds; ++round) {
        Context ctx("round " + std::to_string(round));
        std::printf("==== round %d\n", round);
        if (void* h = loadStatic(o, round, registered)) {
            handles.push_back(h);
            Context form("dlopen");
            for (auto const& k : opCases()) Lifecycle(staticEnv, k).run();
        }
        if (void* h = loadDynamic(o, round, loaderRegistry, finder, dynamicCreators)) {
            if (dynamicHandle != nullptr) dlclose(h);  // same handle, reference count back to one
            dynamicHandle = h;
            Context form("getCreators");
            for (auto const& k : opCases()) Lifecycle(dynamicEnv, k).run();
        }
    }
    {
        Context ctx("summary");
        check(cmctest::stubLogger().errors() > 0 && finderLogger.errors() > 0,
              "both library forms reported errors through their logger");
        check(registryRecorder.getNbErrors() > 0, "the self-registering form reported to the registry's error recorder");
    }
    // What deregisterLibrary does for a loadLibrary'ed library. The self-registering library stays
    // loaded, as in TensorRT's tools: its creators live in the global registry until the process ends.
    if (dynamicHandle != nullptr) {
        for (auto* c : dynamicCreators) loaderRegistry.deregisterCreator(*c);
        check(dlclose(dynamicHandle) == 0, "the getCreators library unloads after deregistration");
    }
    for (size_t i = 1; i < handles.size(); ++i) dlclose(handles[i]);

    EnqueueStats const es{staticEnv.stats.passed + dynamicEnv.stats.passed, staticEnv.stats.failed + dynamicEnv.stats.failed};
    std::printf("enqueue: %s\n", gpu.available && o.enqueue != "off"
                                     ? (std::to_string(es.passed) + " passed, " + std::to_string(es.failed) + " failed on " +
                                        gpu.device).c_str()
                                     : ("SKIPPED (" + gpu.reason + ")").c_str());
    std::printf("%d passed, %d failed, %d skipped\n", nbChecks() - nbFailures(), nbFailures(), nbSkipped());
    if (nbFailures() > 0) return 1;
    if (o.enqueue == "require" && !gpu.available) return 77;
    return 0;
}
