// Build-phase steps that negotiate shapes, formats and memory (see harness_lifecycle.h).
#include <algorithm>
#include <array>
#include <cstdio>

#include "harness_check.h"
#include "harness_lifecycle.h"

namespace cmcharness {

using namespace nvinfer1;

namespace {

// X [N, C, H, W] with N, H, W symbolic (or the constants of `x`), W/scale/shift constant.
std::array<DimsExprs, 4> convInputs(SymExprBuilder& eb, bool symbolic, Dims4 const& x, std::vector<int64_t> const& w,
                                    int64_t scaleLen, int64_t shiftLen) {
    std::array<DimsExprs, 4> in{};
    in[0].nbDims = 4;
    in[0].d[0] = symbolic ? eb.symbol("N") : eb.literal(x.n);
    in[0].d[1] = eb.literal(x.c);
    in[0].d[2] = symbolic ? eb.symbol("H") : eb.literal(x.h);
    in[0].d[3] = symbolic ? eb.symbol("W") : eb.literal(x.w);
    in[1].nbDims = static_cast<int32_t>(w.size());
    for (size_t d = 0; d < w.size(); ++d) in[1].d[d] = eb.literal(w[d]);
    in[2].nbDims = 1;
    in[2].d[0] = eb.literal(scaleLen);
    in[3].nbDims = 1;
    in[3].d[0] = eb.literal(shiftLen);
    return in;
}

}  // namespace

void Lifecycle::outputShapes() {
    Context ctx("getOutputShapes");
    IPluginV3OneBuild* b = buildOf(mBuild.get());
    OpCase const& k = mCase;
    std::vector<int64_t> const w = weightDims(k);
    {
        Context sym("symbolic N, H, W");
        SymExprBuilder eb;
        auto in = convInputs(eb, true, k.opt, w, k.m, k.m);
        DimsExprs out[1];
        if (check(b->getOutputShapes(in.data(), 4, nullptr, 0, out, 1, eb) == 0 && out[0].nbDims == 4,
                  "rank-4 output")) {
            bool owned = true;
            for (int32_t d = 0; d < 4; ++d) owned = owned && eb.ownsExpression(out[0].d[d]);
            check(owned, "every output dimension is an expression of this builder");
            check(out[0].d[1]->isConstant() && out[0].d[1]->getConstantValue() == k.m, "M is a constant");
            std::printf("  shape %s %s: Y = [%s, %s, %s, %s]\n", k.op->pluginName.c_str(), k.label.c_str(),
                        describe(out[0].d[0]).c_str(), describe(out[0].d[1]).c_str(), describe(out[0].d[2]).c_str(),
                        describe(out[0].d[3]).c_str());
            char const* names[] = {"profile min", "profile opt", "profile max"};
            Dims4 const points[] = {k.min, k.opt, k.max};
            for (int i = 0; i < 3 && owned; ++i) {
                Binding const bind{{"N", points[i].n}, {"H", points[i].h}, {"W", points[i].w}};
                Dims4 const want = outputDims(k, points[i]);
                int64_t v[4];
                std::string why;
                bool ok = true;
                for (int32_t d = 0; d < 4 && ok; ++d) ok = evaluate(out[0].d[d], bind, v[d], why);
                if (check(ok, std::string(names[i]) + ": output evaluates (" + why + ")")) {
                    check(v[0] == want.n && v[1] == want.c && v[2] == want.h && v[3] == want.w,
                          std::string(names[i]) + ": Y = " + dimsText({v[0], v[1], v[2], v[3]}) + ", the contract says " +
                              dimsText(want));
                    check(want.h > 0 && want.w > 0, std::string(names[i]) + " gives a non-empty output");
                }
            }
        }
        check(eb.nbSizeTensorDeclarations() == 0, "no size tensors declared");
    }
    {
        Context fold("constant dims fold");
        SymExprBuilder eb;
        auto in = convInputs(eb, false, k.opt, w, k.m, k.m);
        DimsExprs out[1];
        Dims4 const want = outputDims(k, k.opt);
        if (check(b->getOutputShapes(in.data(), 4, nullptr, 0, out, 1, eb) == 0 && out[0].nbDims == 4, "rank-4 output")) {
            bool constant = true;
            for (int32_t d = 0; d < 4; ++d) constant = constant && out[0].d[d] != nullptr && out[0].d[d]->isConstant();
            check(constant && out[0].d[0]->getConstantValue() == want.n && out[0].d[1]->getConstantValue() == want.c &&
                      out[0].d[2]->getConstantValue() == want.h && out[0].d[3]->getConstantValue() == want.w,
                  "constant input dims give the constant output " + dimsText(want));
        }
    }
    {
        Context fail("builder returns null");
        SymExprBuilder eb;
        auto in = convInputs(eb, true, k.opt, w, k.m, k.m);
        eb.failFromNow(true);
        DimsExprs out[1];
        size_t const before = logSize();
        check(b->getOutputShapes(in.data(), 4, nullptr, 0, out, 1, eb) != 0 && mEnv.sink.logger->errorSince(before, ""),
              "refused and reported, no crash");
    }
    {
        Context bad("inconsistent shapes");
        ConvAttrs const a = k.attrs();
        std::string const wName = k.op->ioNames[1];
        struct Bad {
            std::string what, needle;
            Dims4 x;
            std::vector<int64_t> w;
            int64_t scale, shift;
        };
        std::vector<int64_t> wWrongC = w, wWrongK = w;
        wWrongC[k.op->binaryWeights ? 3 : 1] += 1;
        wWrongK[k.op->binaryWeights ? 1 : 2] += 2;
        std::vector<Bad> bads = {
            {"W dims do not match X's channels", wName, k.opt, wWrongC, k.m, k.m},
            {"W dims do not match kernel_shape", wName, k.opt, wWrongK, k.m, k.m},
            {"scale of the wrong length", "scale", k.opt, w, k.m + 1, k.m},
            {"shift of the wrong length", "shift", k.opt, w, k.m, k.m + 2},
            {"X too small for the kernel", "too small", {1, k.c, 0, 0}, w, k.m, k.m},
        };
        if (a.group > 1) {
            bads.push_back({"C not divisible by group", "group", {1, k.c + 1, 9, 9}, w, k.m, k.m});
        }
        for (auto const& bd : bads) {
            SymExprBuilder eb;
            auto in = convInputs(eb, false, bd.x, bd.w, bd.scale, bd.shift);
            in[0].d[0] = eb.symbol("N");
            DimsExprs out[1];
            size_t const logBefore = logSize();
            check(b->getOutputShapes(in.data(), 4, nullptr, 0, out, 1, eb) != 0 &&
                      mEnv.sink.logger->errorSince(logBefore, bd.needle),
                  bd.what + ": refused, the error names '" + bd.needle + "'");
        }
        SymExprBuilder eb;
        auto in = convInputs(eb, true, k.opt, w, k.m, k.m);
        in[0].nbDims = 3;
        DimsExprs out[1];
        check(b->getOutputShapes(in.data(), 4, nullptr, 0, out, 1, eb) != 0, "rank-3 X refused");
        check(b->getOutputShapes(in.data(), 3, nullptr, 0, out, 1, eb) != 0, "three inputs refused");
    }
}

void Lifecycle::formats() {
    Context ctx("supportsFormatCombination");
    OpModel const& op = *mCase.op;
    IPluginV3OneBuild* b = buildOf(mBuild.get());
    FormatRow const plain(op.ioNames.size(), IoFormat{DataType::kFLOAT, TensorFormat::kLINEAR});
    std::vector<DynamicPluginTensorDesc> templ = profileDescs(plain);
    std::vector<std::string> problems;
    mAccepted = acceptedCombinations(*b, templ, op.nbInputs, op.nbOutputs, op.ioNames, problems);
    for (auto const& p : problems) check(false, p);
    for (auto const& row : mAccepted) {
        std::printf("  accepted-format %s: %s\n", op.pluginName.c_str(), rowText(row, op.ioNames).c_str());
    }
    std::vector<FormatRow> readme = mEnv.readmeRows.at(op.pluginName);
    std::sort(readme.begin(), readme.end());
    for (auto const& row : mAccepted) {
        check(std::binary_search(readme.begin(), readme.end(), row),
              "accepted but not in trt_plugins/" + op.folder + "/README.md: " + rowText(row, op.ioNames));
    }
    for (auto const& row : readme) {
        check(std::binary_search(mAccepted.begin(), mAccepted.end(), row),
              "in trt_plugins/" + op.folder + "/README.md but refused: " + rowText(row, op.ioNames));
    }
    std::printf("  formats: %zu accepted combination(s) of %d types x %d formats per tensor; README lists %zu\n",
                mAccepted.size(), EnumMax<DataType>(), EnumMax<TensorFormat>(), readme.size());
    check(!mAccepted.empty(), "at least one combination accepted");
    check(static_cast<int32_t>(mAccepted.size()) <= b->getFormatCombinationLimit(),
          "no more combinations than getFormatCombinationLimit()");
    int32_t const nbIo = op.nbInputs + op.nbOutputs;
    check(!b->supportsFormatCombination(nbIo, templ.data(), op.nbInputs, op.nbOutputs), "position nbInputs+nbOutputs refused");
    check(!b->supportsFormatCombination(-1, templ.data(), op.nbInputs, op.nbOutputs), "position -1 refused");
    check(!b->supportsFormatCombination(0, templ.data(), op.nbInputs - 1, op.nbOutputs), "wrong input count refused");
}

void Lifecycle::configure() {
    Context ctx("configurePlugin");
    IPluginV3OneBuild* b = buildOf(mBuild.get());
    for (auto const& row : mAccepted) {
        auto io = profileDescs(row);
        check(b->configurePlugin(io.data(), 4, io.data() + 4, 1) == 0, "profile accepted for " + rowText(row, mCase.op->ioNames));
    }
    if (mAccepted.empty()) return;
    auto io = profileDescs(mAccepted.front());
    for (int32_t axis : {2, 3}) {
        auto bad = io;
        bad[0].min.d[axis] = 0;  // an empty input height/width at the profile's minimum
        size_t const before = logSize();
        check(b->configurePlugin(bad.data(), 4, bad.data() + 4, 1) != 0 && mEnv.sink.logger->errorSince(before, "profile min"),
              std::string("a profile min with X ") + (axis == 2 ? "height" : "width") + " 0 refused (profile min)");
    }
    auto badScale = io;
    badScale[2].desc.dims.d[0] = mCase.m + 1;
    badScale[2].min = badScale[2].max = badScale[2].opt = badScale[2].desc.dims;
    check(b->configurePlugin(badScale.data(), 4, badScale.data() + 4, 1) != 0, "scale of the wrong length refused");
    check(b->configurePlugin(io.data(), 3, io.data() + 4, 1) != 0, "three inputs refused");
}

void Lifecycle::workspace() {
    Context ctx("getWorkspaceSize");
    IPluginV3OneBuild* b = buildOf(mBuild.get());
    for (auto const& row : mAccepted) {
        auto io = profileDescs(row);
        size_t const ws = b->getWorkspaceSize(io.data(), 4, io.data() + 4, 1);
        mWorkspace[row] = ws;
        // What TensorRT allocates for the profile must cover every shape inside it.
        for (Dims4 const& x : mCase.runShapes) {
            auto at = io;
            Dims4 const y = outputDims(mCase, x);
            at[0].min = at[0].opt = at[0].max = at[0].desc.dims;
            at[0].min.d[0] = x.n;
            at[0].min.d[2] = x.h;
            at[0].min.d[3] = x.w;
            at[0].opt = at[0].max = at[0].min;
            at[4].min.d[0] = y.n;
            at[4].min.d[2] = y.h;
            at[4].min.d[3] = y.w;
            at[4].opt = at[4].max = at[4].min;
            size_t const need = b->getWorkspaceSize(at.data(), 4, at.data() + 4, 1);
            check(need <= ws, "X " + dimsText(x) + " needs " + std::to_string(need) + " bytes, the profile's size is " +
                                  std::to_string(ws));
        }
        std::printf("  workspace %s: %zu bytes for the profile\n", rowText(row, mCase.op->ioNames).c_str(), ws);
    }
}

}  // namespace cmcharness
