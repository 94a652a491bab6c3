// Op schemas of the prlf_fast library: the one place where they are declared.
// Implementations register per device in csrc/cpu/*.cpp and csrc/cuda/*.cu.
#include <torch/library.h>

TORCH_LIBRARY(prlf_fast, m) {
  // AMRE reliability (docs/design.md §4.2): z (B, M, d), w1 (M, d_h, d), b1 (M, d_h), w2 (M, K, d_h),
  // b2 (M, K) -> confidence max_k p_k and Fisher-information trace F, each (B, M). No autograd.
  m.def("fisher_reliability(Tensor z, Tensor w1, Tensor b1, Tensor w2, Tensor b2) -> (Tensor confidence, Tensor fisher)");
}
