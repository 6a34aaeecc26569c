#include "harness_check.h"

#include <cstdio>

namespace cmcharness {
namespace {
int gChecks = 0;
int gFailures = 0;
int gSkipped = 0;
std::string gContext;
}  // namespace

bool check(bool ok, std::string const& what) {
    ++gChecks;
    if (!ok) {
        ++gFailures;
        std::fprintf(stderr, "FAIL [%s] %s\n", gContext.c_str(), what.c_str());
        std::fflush(stderr);
    }
    return ok;
}

void skip(std::string const& what) {
    ++gSkipped;
    std::printf("SKIPPED [%s] %s\n", gContext.c_str(), what.c_str());
}

int nbChecks() { return gChecks; }
int nbFailures() { return gFailures; }
int nbSkipped() { return gSkipped; }
std::string const& context() { return gContext; }

Context::Context(std::string const& part) : mPrevious(gContext.size()) {
    gContext += gContext.empty() ? part : " / " + part;
}

Context::~Context() { gContext.resize(mPrevious); }

}  // namespace cmcharness
