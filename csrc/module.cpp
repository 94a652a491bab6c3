// pybind11 module prlf_fast._C: build metadata and CPU features. Loading it registers the ops.
#include <ATen/Parallel.h>
#include <torch/extension.h>

#include "cuda/fisher_limits.h"

namespace {

pybind11::dict build_info() {
  pybind11::dict d;
  d["torch"] = PRLF_TORCH_VERSION;
  d["torch_cuda"] = PRLF_TORCH_CUDA;
  d["nvcc"] = PRLF_NVCC_VERSION;
  d["python"] = PRLF_PYTHON_VERSION;
  d["cuda_archs"] = PRLF_CUDA_ARCHS;
#ifdef PRLF_WITH_CUDA
  d["cuda_built"] = true;
#else
  d["cuda_built"] = false;
#endif
  d["cuda_max_classes"] = prlf::cuda::kMaxClasses;
  d["cuda_max_modalities"] = prlf::cuda::kMaxModalities;
  d["cxx11_abi"] = static_cast<bool>(_GLIBCXX_USE_CXX11_ABI);
  d["openmp"] = at::get_parallel_info();
  return d;
}

pybind11::dict cpu_features() {
  pybind11::dict d;
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  d["avx2"] = static_cast<bool>(__builtin_cpu_supports("avx2"));
  d["fma"] = static_cast<bool>(__builtin_cpu_supports("fma"));
  d["avx512f"] = static_cast<bool>(__builtin_cpu_supports("avx512f"));
#endif
  d["threads"] = at::get_num_threads();
  return d;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "prlf_fast compiled extension";
  m.def("build_info", &build_info, "Versions and flags this extension was built with");
  m.def("cpu_features", &cpu_features, "SIMD features of this CPU and ATen's thread count");
}
