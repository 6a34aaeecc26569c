// Build-phase steps that negotiate shapes, formats and memory (see harness_lifecycle.h).
#include <algorithm>
#include <array>
#include <cstdio>

#include "harness_check.h"
#include "harness_lifecycle.h"

namespace cmcharness {

using namespace nvinfer1;

namespace {

// X as the plugin sees it ([N, C, H, W], or packed [N, H, W, words]) with N, H, W symbolic (or the
// constants of `x`) and C / the word count constant; W constant except its M when `symbolicM`;
// scale/shift constant.
std::array<DimsExprs, 4> convInputs(SymExprBuilder& eb, OpModel const& op, bool symbolic, Dims4 const& x,
                                    std::vector<int64_t> const& w, int64_t scaleLen, int64_t shiftLen,
                                    bool symbolicM = false) {
    std::array<DimsExprs, 4> in{};
    std::vector<int64_t> const xd = xDims(op, x);
    int32_t const h = xHeightAxis(op);
    in[0].nbDims = 4;
    for (int32_t d = 0; d < 4; ++d) {
        char const* sym = d == 0 ? "N" : d == h ? "H" : d == h + 1 ? "W" : nullptr;
        in[0].d[d] = symbolic && sym != nullptr ? eb.symbol(sym) : eb.literal(xd[static_cast<size_t>(d)]);
    }
    in[1].nbDims = static_cast<int32_t>(w.size());
    for (size_t d = 0; d < w.size(); ++d) in[1].d[d] = d == 0 && symbolicM ? eb.symbol("M") : eb.literal(w[d]);
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
    OpModel const& op = *k.op;
    std::vector<int64_t> const w = weightDims(k);
    int32_t const mAxis = op.outputPacked ? 3 : 1;  // Y's M (a packed Y: its word count 4*ceil(M/128))
    auto evaluateAll = [](DimsExprs const& out, Binding const& bind, std::vector<int64_t>& v, std::string& why) {
        v.assign(4, 0);
        for (int32_t d = 0; d < 4; ++d) {
            if (!evaluate(out.d[d], bind, v[static_cast<size_t>(d)], why)) return false;
        }
        return true;
    };
    auto text = [](std::vector<int64_t> const& v) { return dimsText({v[0], v[1], v[2], v[3]}); };
    {
        Context sym("symbolic N, H, W");
        SymExprBuilder eb;
        auto in = convInputs(eb, op, true, k.opt, w, k.m, k.m);
        DimsExprs out[1];
        if (check(b->getOutputShapes(in.data(), 4, nullptr, 0, out, 1, eb) == 0 && out[0].nbDims == 4,
                  "rank-4 output")) {
            bool owned = true;
            for (int32_t d = 0; d < 4; ++d) owned = owned && eb.ownsExpression(out[0].d[d]);
            check(owned, "every output dimension is an expression of this builder");
            int64_t const mDim = yDims(op, {1, k.m, 1, 1})[static_cast<size_t>(mAxis)];
            check(out[0].d[mAxis]->isConstant() && out[0].d[mAxis]->getConstantValue() == mDim,
                  std::string(op.outputPacked ? "the word count 4*ceil(M/128)" : "M") + " is the constant " +
                      std::to_string(mDim));
            std::printf("  shape %s %s: Y = [%s, %s, %s, %s]\n", k.op->pluginName.c_str(), k.label.c_str(),
                        describe(out[0].d[0]).c_str(), describe(out[0].d[1]).c_str(), describe(out[0].d[2]).c_str(),
                        describe(out[0].d[3]).c_str());
            char const* names[] = {"profile min", "profile opt", "profile max"};
            Dims4 const points[] = {k.min, k.opt, k.max};
            for (int i = 0; i < 3 && owned; ++i) {
                Binding const bind{{"N", points[i].n}, {"H", points[i].h}, {"W", points[i].w}};
                Dims4 const want = outputDims(k, points[i]);
                std::vector<int64_t> v;
                std::string why;
                bool const evaluated = evaluateAll(out[0], bind, v, why);  // before `why` is read
                if (check(evaluated, std::string(names[i]) + ": output evaluates (" + why + ")")) {
                    check(v == yDims(op, want), std::string(names[i]) + ": Y = " + text(v) + ", the contract says " +
                                                    text(yDims(op, want)));
                    check(want.h > 0 && want.w > 0, std::string(names[i]) + " gives a non-empty output");
                }
            }
        }
        check(eb.nbSizeTensorDeclarations() == 0, "no size tensors declared");
    }
    {
        // W's M symbolic too (a network whose weights come from a computation): Y's M is W's M, a packed
        // Y's word count the expression 4*ceil(M/128), evaluated here across 128-channel block edges.
        Context sym("symbolic N, H, W and M");
        SymExprBuilder eb;
        auto in = convInputs(eb, op, true, k.opt, w, k.m, k.m, true);
        DimsExprs out[1];
        if (check(b->getOutputShapes(in.data(), 4, nullptr, 0, out, 1, eb) == 0 && out[0].nbDims == 4,
                  "rank-4 output")) {
            check(!out[0].d[mAxis]->isConstant(), "Y's M axis is not a constant");
            std::printf("  shape %s %s (symbolic M): Y = [%s, %s, %s, %s]\n", op.pluginName.c_str(), k.label.c_str(),
                        describe(out[0].d[0]).c_str(), describe(out[0].d[1]).c_str(), describe(out[0].d[2]).c_str(),
                        describe(out[0].d[3]).c_str());
            // Block edges for a packed Y (group 1); multiples of the group otherwise.
            std::vector<int64_t> const ms = op.outputPacked ? std::vector<int64_t>{1, 127, 128, 129, 256, 257, k.m}
                                                            : std::vector<int64_t>{k.m, 3 * k.m};
            for (int64_t m : ms) {
                Binding const bind{{"N", k.opt.n}, {"H", k.opt.h}, {"W", k.opt.w}, {"M", m}};
                Dims4 want = outputDims(k, k.opt);
                want.c = m;
                std::vector<int64_t> v;
                std::string why;
                bool const evaluated = evaluateAll(out[0], bind, v, why);  // before `why` is read
                if (check(evaluated, "M = " + std::to_string(m) + ": output evaluates (" + why + ")")) {
                    check(v == yDims(op, want), "M = " + std::to_string(m) + ": Y = " + text(v) + ", the contract says " +
                                                    text(yDims(op, want)));
                }
            }
        }
    }
    {
        Context fold("constant dims fold");
        SymExprBuilder eb;
        auto in = convInputs(eb, op, false, k.opt, w, k.m, k.m);
        DimsExprs out[1];
        std::vector<int64_t> const want = yDims(op, outputDims(k, k.opt));
        if (check(b->getOutputShapes(in.data(), 4, nullptr, 0, out, 1, eb) == 0 && out[0].nbDims == 4, "rank-4 output")) {
            bool constant = true;
            std::vector<int64_t> got(4, -1);
            for (int32_t d = 0; d < 4; ++d) {
                constant = constant && out[0].d[d] != nullptr && out[0].d[d]->isConstant();
                if (constant) got[static_cast<size_t>(d)] = out[0].d[d]->getConstantValue();
            }
            check(constant && got == want, "constant input dims give the constant output " + text(want));
        }
    }
    {
        Context fail("builder returns null");
        SymExprBuilder eb;
        auto in = convInputs(eb, op, true, k.opt, w, k.m, k.m);
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
            int64_t xWordsDelta = 0;  // a packed X with this many words per pixel too many
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
        if (op.inputPacked) {
            // in_channels = C fixes the word count: another one is refused (C cannot be read from it).
            bads.push_back({"packed X word count not 4*ceil(in_channels/128)", "words per pixel", k.opt, w, k.m, k.m, 4});
        }
        for (auto const& bd : bads) {
            SymExprBuilder eb;
            auto in = convInputs(eb, op, false, bd.x, bd.w, bd.scale, bd.shift);
            in[0].d[0] = eb.symbol("N");
            if (bd.xWordsDelta != 0) in[0].d[3] = eb.literal(packedWords(bd.x.c) + bd.xWordsDelta);
            DimsExprs out[1];
            size_t const logBefore = logSize();
            check(b->getOutputShapes(in.data(), 4, nullptr, 0, out, 1, eb) != 0 &&
                      mEnv.sink.logger->errorSince(logBefore, bd.needle),
                  bd.what + ": refused, the error names '" + bd.needle + "'");
        }
        SymExprBuilder eb;
        auto in = convInputs(eb, op, true, k.opt, w, k.m, k.m);
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
    int32_t const h = xHeightAxis(*mCase.op);
    for (int32_t axis : {h, h + 1}) {
        auto bad = io;
        bad[0].min.d[axis] = 0;  // an empty input height/width at the profile's minimum
        size_t const before = logSize();
        check(b->configurePlugin(bad.data(), 4, bad.data() + 4, 1) != 0 && mEnv.sink.logger->errorSince(before, "profile min"),
              std::string("a profile min with X ") + (axis == h ? "height" : "width") + " 0 refused (profile min)");
    }
    if (mCase.op->inputPacked) {
        auto bad = io;
        bad[0].desc.dims.d[3] += 4;  // the declared word count no longer 4*ceil(in_channels/128)
        bad[0].min.d[3] = bad[0].opt.d[3] = bad[0].max.d[3] = bad[0].desc.dims.d[3];
        size_t const before = logSize();
        check(b->configurePlugin(bad.data(), 4, bad.data() + 4, 1) != 0 && mEnv.sink.logger->errorSince(before, "words per pixel"),
              "a packed X with the wrong word count refused");
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
            auto pin = [](DynamicPluginTensorDesc& d, std::vector<int64_t> const& dims) {  // min = opt = max = dims
                for (size_t i = 0; i < dims.size(); ++i) d.min.d[i] = dims[i];
                d.opt = d.max = d.min;
            };
            pin(at[0], xDims(*mCase.op, x));
            pin(at[4], yDims(*mCase.op, outputDims(mCase, x)));
            size_t const need = b->getWorkspaceSize(at.data(), 4, at.data() + 4, 1);
            check(need <= ws, "X " + dimsText(x) + " needs " + std::to_string(need) + " bytes, the profile's size is " +
                                  std::to_string(ws));
        }
        std::printf("  workspace %s: %zu bytes for the profile\n", rowText(row, mCase.op->ioNames).c_str(), ws);
    }
}

}  // namespace cmcharness
