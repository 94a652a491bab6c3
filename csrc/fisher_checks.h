// Input checks of prlf_fast::fisher_reliability shared by the CPU and CUDA implementations.
#pragma once
#include <ATen/ATen.h>

#include <utility>
#include <vector>

namespace prlf {

// Sizes of one call: z (B, M, d), w1 (M, h, d), b1 (M, h), w2 (M, K, h), b2 (M, K).
struct FisherShape {
  int64_t B, M, d, h, K;
};

// The op's only input checks on real tensors (its fake impl in prlf_fast/ops/fisher.py states the
// same with torch._check_value). TORCH_CHECK_VALUE: Python sees a ValueError.
inline FisherShape check_fisher_inputs(const at::Tensor& z, const at::Tensor& w1,
                                       const at::Tensor& b1, const at::Tensor& w2,
                                       const at::Tensor& b2) {
  TORCH_CHECK_VALUE(z.dim() == 3, "fisher_reliability: z must be (B, M, d), got shape ", z.sizes());
  TORCH_CHECK_VALUE(w1.dim() == 3 && w2.dim() == 3,
                    "fisher_reliability: w1 must be (M, d_h, d) and w2 (M, K, d_h), got ", w1.sizes(),
                    " and ", w2.sizes());
  const FisherShape s{z.size(0), z.size(1), z.size(2), w1.size(1), w2.size(1)};
  const std::pair<const char*, const at::Tensor*> named[] = {
      {"w1", &w1}, {"b1", &b1}, {"w2", &w2}, {"b2", &b2}};
  const std::vector<int64_t> expected[] = {{s.M, s.h, s.d}, {s.M, s.h}, {s.M, s.K, s.h}, {s.M, s.K}};
  for (size_t i = 0; i < 4; ++i) {
    TORCH_CHECK_VALUE(named[i].second->sizes() == at::IntArrayRef(expected[i]), "fisher_reliability: ",
                      named[i].first, " must have shape ", at::IntArrayRef(expected[i]),
                      " for z (B, M, d) = ", z.sizes(), ", w1 (M, d_h, d) and w2 (M, K, d_h); got ",
                      named[i].second->sizes());
  }
  TORCH_CHECK_VALUE(s.M >= 1 && s.d >= 1 && s.h >= 1 && s.K >= 1,
                    "fisher_reliability: M, d, d_h and K must be >= 1, got M=", s.M, ", d=", s.d,
                    ", d_h=", s.h, ", K=", s.K);
  for (const auto& [name, t] : named) {
    TORCH_CHECK_VALUE(t->scalar_type() == z.scalar_type(), "fisher_reliability: ", name, " has dtype ",
                      t->scalar_type(), " but z has ", z.scalar_type(), "; all inputs need one dtype");
    TORCH_CHECK_VALUE(t->device() == z.device(), "fisher_reliability: ", name, " is on ", t->device(),
                      " but z is on ", z.device(), "; all inputs need one device");
  }
  TORCH_CHECK_VALUE(at::isFloatingType(z.scalar_type()), "fisher_reliability: dtype ", z.scalar_type(),
                    " is not supported; use one of float16, bfloat16, float32, float64");
  return s;
}

}  // namespace prlf
