// GELU (exact, erf-based) and its derivative, evaluated together for the fused Fisher pass.
//   u = a Φ(a),  g = GELU'(a) = Φ(a) + a φ(a)
// double: libm (erfc, exp). float: branch-free code the compiler vectorises inside
// `#pragma omp simd` loops: a Cephes-style exp and the Numerical Recipes erfc fit
// (fractional error < 1.2e-7), so u and g are within ~2e-7 relative of the exact values.
#pragma once
#include <cmath>
#include <cstdint>

#if defined(__GNUC__) || defined(__clang__)
#define PRLF_INLINE inline __attribute__((always_inline))
#else
#define PRLF_INLINE inline
#endif

namespace prlf::cpu {

constexpr double kInvSqrt2 = 0.70710678118654752440;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;

PRLF_INLINE void gelu_and_grad(double a, double& u, double& g) {
  const double cdf = 0.5 * std::erfc(-a * kInvSqrt2);
  u = a * cdf;
  g = cdf + a * std::exp(-0.5 * a * a) * kInvSqrt2Pi;
}

// exp(x) for float, ~1 ulp: x = n ln2 + r, |r| <= ln2/2, degree-6 polynomial, scale by 2^n.
PRLF_INLINE float exp_vec(float x) {
  x = x < -87.33654f ? -87.33654f : x;
  x = x > 88.72283f ? 88.72283f : x;
  constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  float nf = x * 1.44269504088896341f + kRound;
  const int32_t n = __builtin_bit_cast(int32_t, nf) - 0x4B400000;
  nf -= kRound;
  const float r = (x - nf * 0.693359375f) + nf * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float y = p * (r * r) + r + 1.0f;
  return y * __builtin_bit_cast(float, (n + 127) << 23);
}

PRLF_INLINE void gelu_and_grad(float a, float& u, float& g) {
  const float x = std::fabs(a) * static_cast<float>(kInvSqrt2);
  const float t = 1.0f / (1.0f + 0.5f * x);
  const float q =
      -1.26551223f +
      t * (1.00002368f +
           t * (0.37409196f +
                t * (0.09678418f +
                     t * (-0.18628806f +
                          t * (0.27886807f +
                               t * (-1.13520398f +
                                    t * (1.48851587f + t * (-0.82215223f + t * 0.17087277f))))))));
  const float gauss = exp_vec(-x * x);                  // exp(-a²/2)
  const float tail = 0.5f * t * gauss * exp_vec(q);     // Φ(-|a|) = erfc(|a|/√2) / 2
  const float upper = 1.0f - tail;
  const float cdf = a >= 0.0f ? upper : tail;
  u = a * cdf;
  g = cdf + a * gauss * static_cast<float>(kInvSqrt2Pi);
}

}  // namespace prlf::cpu
