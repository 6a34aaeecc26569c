// Index arithmetic shared by the CUDA kernels and the host code (and so unit-tested on the CPU):
// valid-tap counting for zero padding, and a mixed-radix counter that walks a flattened reduction
// index (for example k = (c * kh + p) * kw + q) without a division per step.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define CMC_HD __host__ __device__ __forceinline__
#else
#define CMC_HD inline
#endif

namespace cmc {
namespace math {

// The epilogue's arithmetic, the contract's rule for every representation: scale * a rounded to float32,
// then + shift rounded again — two roundings, never one fused multiply-add — because the PyTorch op and the
// ONNX body (Mul, Add) compute it so, and a packed sign must not depend on which implementation ran.
CMC_HD float mulThenAdd(float scale, float a, float shift) {
#if defined(__CUDA_ARCH__)
    return __fadd_rn(__fmul_rn(scale, a), shift);  // the _rn intrinsics are never contracted into an FFMA
#else
    volatile float product = scale * a;  // a separate rounding: the compiler may not fuse it with the add
    return product + shift;
#endif
}

// BinaryConv's float16 rounding (binary_conv/contract.json "float16_rounding"), given the round-to-nearest
// float16 bits of v: a nonzero v whose rounding is +-0 (|v| <= 2^-25) is stored as +-2^-24 (bits 0x0001 /
// 0x8001) instead, so the next binarization (and a Sign) sees v's sign. NaN and zeros pass through.
CMC_HD uint16_t keepNonzeroHalfBits(float v, uint16_t rnBits) {
    if (v != 0.0f && (rnBits & 0x7FFFu) == 0u) return static_cast<uint16_t>(v < 0.0f ? 0x8001u : 0x0001u);
    return rnBits;
}

// float -> float16 bits, round to nearest even (what __float2half_rn computes), in integer arithmetic so
// that host code (the CPU kernel model) rounds exactly as the device does.
CMC_HD uint16_t halfBitsRoundNearest(float f) {
    union { float f; uint32_t u; } in{f};
    const uint32_t sign = (in.u >> 16) & 0x8000u;
    const uint32_t absx = in.u & 0x7FFFFFFFu;
    if (absx > 0x7F800000u) return static_cast<uint16_t>(sign | 0x7E00u);  // NaN
    if (absx >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7C00u);  // >= 65520 rounds to infinity
    if (absx >= 0x38800000u) {  // a normal float16: rebias the exponent, round 23 mantissa bits to 10
        const uint32_t r = absx - 0x38000000u;
        return static_cast<uint16_t>(sign | ((r + 0xFFFu + ((r >> 13) & 1u)) >> 13));
    }
    const int32_t shift = 126 - static_cast<int32_t>(absx >> 23);  // subnormal: units of 2^-24
    if (shift > 24) return static_cast<uint16_t>(sign);              // below 2^-25: zero
    const uint32_t m = (absx & 0x7FFFFFu) | 0x800000u;
    uint32_t q = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1u))) ++q;  // ties to even (2^-25 itself rounds to 0)
    return static_cast<uint16_t>(sign | q);
}

// floor(a / b) for b > 0 and any a.
CMC_HD int32_t floorDiv(int32_t a, int32_t b) { return (a >= 0) ? a / b : -((-a + b - 1) / b); }

// Number of taps p in [0, k) with 0 <= o*stride - padBegin + p*dilation < size.
CMC_HD int32_t validTaps1D(int32_t o, int32_t size, int32_t k, int32_t stride, int32_t padBegin, int32_t dilation) {
    const int32_t base = o * stride - padBegin;  // input coordinate of tap 0
    // smallest p with base + p*d >= 0, i.e. ceil(-base / d) when base < 0
    int32_t lo = (base >= 0) ? 0 : ((-base) + dilation - 1) / dilation;
    // largest p with base + p*d <= size - 1, i.e. floor((size - 1 - base) / d)
    int32_t hi = floorDiv(size - 1 - base, dilation);
    if (lo < 0) lo = 0;
    if (hi > k - 1) hi = k - 1;
    return hi >= lo ? hi - lo + 1 : 0;
}

// Digits (d0, d1, d2) of value = (d0 * r1 + d1) * r2 + d2 with 0 <= d1 < r1, 0 <= d2 < r2.
struct Radix3 {
    int32_t d0 = 0, d1 = 0, d2 = 0;
};

CMC_HD Radix3 radix3(int32_t value, int32_t r1, int32_t r2) {
    Radix3 v;
    v.d2 = value % r2;
    const int32_t rest = value / r2;
    v.d1 = rest % r1;
    v.d0 = rest / r1;
    return v;
}

// v += step, where step is itself in canonical digits (step = radix3(s, r1, r2)).
CMC_HD void radix3Add(Radix3& v, const Radix3& step, int32_t r1, int32_t r2) {
    v.d2 += step.d2;
    int32_t carry = v.d2 >= r2 ? 1 : 0;
    v.d2 -= carry * r2;
    v.d1 += step.d1 + carry;
    carry = v.d1 >= r1 ? 1 : 0;
    v.d1 -= carry * r1;
    v.d0 += step.d0 + carry;
}

// v += 1.
CMC_HD void radix3Inc(Radix3& v, int32_t r1, int32_t r2) {
    if (++v.d2 == r2) {
        v.d2 = 0;
        if (++v.d1 == r1) {
            v.d1 = 0;
            ++v.d0;
        }
    }
}

// Division by a runtime divisor d >= 1 without a division instruction (a 32-bit divide by a variable
// is a ~20-instruction sequence on the GPU; the BMMA kernel's per-column set-up did four per column):
// q = (umulhi(n, mul) + n) >> shift with shift = ceil(log2 d), mul = floor(2^32 (2^shift - d) / d) + 1,
// exact for every 0 <= n < 2^31 (the sum then stays below 2^32). Host-tested against / and %.
struct FastDivmod {
    uint32_t div = 1, mul = 1, shift = 0;
};

inline FastDivmod makeFastDivmod(int32_t d) {
    FastDivmod f;
    if (d < 1) return f;  // callers pass validated extents; 1 keeps the arithmetic defined
    f.div = static_cast<uint32_t>(d);
    while ((uint64_t(1) << f.shift) < f.div) ++f.shift;
    f.mul = static_cast<uint32_t>(((uint64_t(1) << 32) * ((uint64_t(1) << f.shift) - f.div)) / f.div + 1);
    return f;
}

CMC_HD uint32_t fastDiv(const FastDivmod& f, uint32_t n) {
#if defined(__CUDA_ARCH__)
    const uint32_t hi = __umulhi(n, f.mul);
#else
    const uint32_t hi = static_cast<uint32_t>((uint64_t(n) * f.mul) >> 32);
#endif
    return (hi + n) >> f.shift;
}

// n = q * div + r for 0 <= n < 2^31.
CMC_HD void fastDivmod(const FastDivmod& f, int32_t n, int32_t& q, int32_t& r) {
    q = static_cast<int32_t>(fastDiv(f, static_cast<uint32_t>(n)));
    r = n - q * static_cast<int32_t>(f.div);
}

}  // namespace math
}  // namespace cmc
