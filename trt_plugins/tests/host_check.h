// The small check framework of the CPU ctests (test_host.cpp, test_host_bmma.cpp): a counting CHECK that
// reports file:line and goes on, and a ConvGeometry builder. Header-only; each test is one executable.
#pragma once

#include <cstdio>

#include "cmc_types.h"

namespace cmc_test {

inline int gFailed = 0, gChecks = 0;

inline cmc::ConvGeometry geom(int n, int c, int h, int w, int m, int kh, int kw, int sh = 1, int sw = 1, int pt = 0,
                              int pl = 0, int pb = 0, int pr = 0, int dh = 1, int dw = 1, int groups = 1) {
    cmc::ConvGeometry g;
    g.n = n; g.c = c; g.h = h; g.w = w; g.m = m; g.kh = kh; g.kw = kw;
    g.strideH = sh; g.strideW = sw; g.padTop = pt; g.padLeft = pl; g.padBottom = pb; g.padRight = pr;
    g.dilationH = dh; g.dilationW = dw; g.groups = groups;
    return g;
}

}  // namespace cmc_test

#define CHECK(cond)                                                                       \
    do {                                                                                  \
        ++cmc_test::gChecks;                                                              \
        if (!(cond)) {                                                                    \
            ++cmc_test::gFailed;                                                          \
            std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                                 \
    } while (0)
