// Input checks of prlf_fast::fisher_reliability shared by the CPU and CUDA implementations.
#pragma once
#include <ATen/ATen.h>

namespace prlf {

// Sizes of one call: z (B, M, d), w1 (M, h, d), b1 (M, h), w2 (M, K, h), b2 (M, K).
struct FisherShape {
  int64_t B, M, d, h, K;
};

inline FisherShape check_fisher_inputs(const at::Tensor& z, const at::Tensor& w1,
                                       const at::Tensor& b1, const at::Tensor& w2,
                                       const at::Tensor& b2) {
  TORCH_CHECK(z.dim() == 3, "fisher_reliability: z must be (B, M, d), got shape ", z.sizes());
  TORCH_CHECK(w1.dim() == 3 && w2.dim() == 3 && b1.dim() == 2 && b2.dim() == 2,
              "fisher_reliability: expected w1 (M, d_h, d), b1 (M, d_h), w2 (M, K, d_h), b2 (M, K); "
              "got w1 ", w1.sizes(), ", b1 ", b1.sizes(), ", w2 ", w2.sizes(), ", b2 ", b2.sizes());
  const FisherShape s{z.size(0), z.size(1), z.size(2), w1.size(1), w2.size(1)};
  TORCH_CHECK(s.M >= 1 && s.d >= 1 && s.h >= 1 && s.K >= 1,
              "fisher_reliability: M, d, d_h and K must be >= 1; got z ", z.sizes(), ", w1 ",
              w1.sizes(), ", w2 ", w2.sizes());
  TORCH_CHECK(w1.sizes() == at::IntArrayRef({s.M, s.h, s.d}) &&
                  b1.sizes() == at::IntArrayRef({s.M, s.h}) &&
                  w2.sizes() == at::IntArrayRef({s.M, s.K, s.h}) &&
                  b2.sizes() == at::IntArrayRef({s.M, s.K}),
              "fisher_reliability: shapes do not match z (B, M, d) = ", z.sizes(),
              "; expected w1 (M, d_h, d), b1 (M, d_h), w2 (M, K, d_h), b2 (M, K); got w1 ",
              w1.sizes(), ", b1 ", b1.sizes(), ", w2 ", w2.sizes(), ", b2 ", b2.sizes());
  const std::pair<const char*, const at::Tensor*> others[] = {
      {"w1", &w1}, {"b1", &b1}, {"w2", &w2}, {"b2", &b2}};
  for (const auto& [name, t] : others) {
    TORCH_CHECK(t->scalar_type() == z.scalar_type(), "fisher_reliability: ", name, " has dtype ",
                t->scalar_type(), " but z has ", z.scalar_type(), "; all inputs need one dtype");
    TORCH_CHECK(t->device() == z.device(), "fisher_reliability: ", name, " is on ", t->device(),
                " but z is on ", z.device(), "; all inputs need one device");
  }
  TORCH_CHECK(at::isFloatingType(z.scalar_type()),
              "fisher_reliability: inputs must be floating point, got ", z.scalar_type());
  return s;
}

}  // namespace prlf
