// CUDA implementation of prlf_fast::fisher_reliability: checks, dtype dispatch and the launch
// on the current stream. The device code is in fisher_kernel.cuh.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <limits>
#include <tuple>

#include "cuda/fisher_kernel.cuh"
#include "fisher_checks.h"

namespace prlf::cuda {
namespace {

template <typename T> struct DeviceType { using type = T; };
template <> struct DeviceType<at::Half> { using type = __half; };
template <> struct DeviceType<at::BFloat16> { using type = __nv_bfloat16; };

template <typename scalar_t>
const typename DeviceType<scalar_t>::type* device_ptr(const at::Tensor& t) {
  return reinterpret_cast<const typename DeviceType<scalar_t>::type*>(t.const_data_ptr<scalar_t>());
}

std::tuple<at::Tensor, at::Tensor> fisher_reliability_cuda(const at::Tensor& z, const at::Tensor& w1,
                                                           const at::Tensor& b1, const at::Tensor& w2,
                                                           const at::Tensor& b2) {
  const FisherShape s = check_fisher_inputs(z, w1, b1, w2, b2);
  TORCH_CHECK(s.K <= kMaxClasses, "fisher_reliability (CUDA): K = ", s.K,
              " classes; the kernel supports at most ", kMaxClasses);
  constexpr int64_t kIntMax = std::numeric_limits<int>::max();
  TORCH_CHECK(s.M <= kMaxModalities && s.d <= kIntMax && s.h <= kIntMax && s.B / kRows < kIntMax,
              "fisher_reliability (CUDA): sizes too large for the kernel: z ", z.sizes(), ", w1 ",
              w1.sizes());
  const c10::cuda::CUDAGuard guard(z.device());
  const at::Tensor zc = z.contiguous(), w1c = w1.contiguous(), b1c = b1.contiguous(),
                   w2c = w2.contiguous(), b2c = b2.contiguous();
  at::Tensor confidence = at::empty({s.B, s.M}, z.options());
  at::Tensor fisher = at::empty({s.B, s.M}, z.options());
  if (s.B == 0) return {confidence, fisher};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, z.scalar_type(), "fisher_reliability_cuda", [&] {
    using T = typename DeviceType<scalar_t>::type;
    const FisherArgs<T> args{device_ptr<scalar_t>(zc), device_ptr<scalar_t>(w1c), device_ptr<scalar_t>(b1c),
                             device_ptr<scalar_t>(w2c), device_ptr<scalar_t>(b2c),
                             reinterpret_cast<T*>(confidence.mutable_data_ptr<scalar_t>()),
                             reinterpret_cast<T*>(fisher.mutable_data_ptr<scalar_t>()),
                             s.B, static_cast<int>(s.M), static_cast<int>(s.d), static_cast<int>(s.h),
                             static_cast<int>(s.K)};
    C10_CUDA_CHECK(launch_fisher_kernel(args, c10::cuda::getCurrentCUDAStream()));
  });
  return {confidence, fisher};
}

}  // namespace
}  // namespace prlf::cuda

TORCH_LIBRARY_IMPL(prlf_fast, CUDA, m) {
  m.impl("fisher_reliability", &prlf::cuda::fisher_reliability_cuda);
}
