// Check bookkeeping of the plugin lifecycle harness: every check is counted; a failing one prints
// "FAIL [context] what" on stderr. Skipped work is counted apart and never as passed.
#pragma once

#include <string>

namespace cmcharness {

// Returns `ok`, so that a caller can stop a step whose precondition failed.
bool check(bool ok, std::string const& what);
void skip(std::string const& what);  // prints "SKIPPED [context] what" on stdout

int nbChecks();
int nbFailures();
int nbSkipped();

// The context printed with each failure ("round 1 / dlopen / AdderConv k3x3 / formats").
std::string const& context();
class Context {
public:
    explicit Context(std::string const& part);  // appends " / part" for the lifetime of this object
    ~Context();
    Context(Context const&) = delete;
    Context& operator=(Context const&) = delete;

private:
    size_t mPrevious;
};

}  // namespace cmcharness
