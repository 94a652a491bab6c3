// Op schemas of the prlf_fast library: the one place where they are declared.
// Implementations register per device in csrc/cpu/*.cpp and csrc/cuda/*.cu.
#include <torch/library.h>

TORCH_LIBRARY(prlf_fast, m) {
  // Build probe: returns x + 1 through the dispatcher; proves the extension loaded and dispatches.
  m.def("build_probe(Tensor x) -> Tensor");
}
