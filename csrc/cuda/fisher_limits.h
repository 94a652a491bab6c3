// Input limits of the CUDA kernel of prlf_fast::fisher_reliability, in plain C++: the launch checks
// them (fisher_cuda.cu), and build_info() reports them (module.cpp) so that the op's selection
// (prlf_fast/ops/fisher.py) sends inputs beyond them to the reference instead.
#pragma once

namespace prlf::cuda {

constexpr int kMaxClasses = 32;        // largest K: the per-sample softmax lives in registers
constexpr int kMaxModalities = 65535;  // M blocks on the grid's axis 1

}  // namespace prlf::cuda
