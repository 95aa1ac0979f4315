// CPU kernels called through XLA's FFI (see cpu_kernels.py), all float32, channels last:
// - a depthwise convolution's forward for kernels larger than 3x3 (a 3x3 forward stays in XLA, which fuses it with
//   the BatchNorm around it; a larger kernel's k*k shifted slices are slow for XLA to compile and to run) and its
//   gradients, input gradient and kernel gradient;
// - BatchNorm's per-channel statistics in training: the mean and variance of the forward, and the two
//   sums its backward needs, each in one pass over its inputs. XLA:CPU first writes out every elementwise
//   product it reduces (x - mean, the masked output gradient, its product with the normalised input) and then
//   reads it back, ~3x the memory traffic.
//
// Depthwise: NHWC activations, kernel (k, k, C) (the (k, k, 1, C) kernel of a feature_group_count=C convolution,
// squeezed), any stride, zero padding `pad_top`/`pad_left` at the top/left (and whatever the output size
// implies at the bottom/right). Each call walks its inputs row by row, the k rows a window needs staying in cache,
// so XLA:CPU never materialises the k*k shifted windows that a composition of slices needs.
//
// Work is split into chunks of rows handed out through an atomic counter to the calling thread and to tasks on
// XLA's intra-op thread pool. The calling thread takes chunks too and then waits only for chunks already
// started, so the call cannot deadlock when the pool is busy. Every output element is summed in a fixed
// order, and the kernel gradient's per-chunk partial sums are added in chunk order: results do not depend on
// the number of threads or on scheduling.

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

struct Geometry {
  int64_t n, h, w, c, k, out_h, out_w, stride, pad_top, pad_left;

  // The output columns [lo, hi) whose input column ow * stride + j - pad_left lies inside the image.
  void columns(int64_t j, int64_t& lo, int64_t& hi) const {
    int64_t first = pad_left - j;  // ow * stride >= first
    lo = first > 0 ? (first + stride - 1) / stride : 0;
    int64_t last = w - 1 + pad_left - j;  // ow * stride <= last
    hi = last < 0 ? 0 : std::min(out_w, last / stride + 1);
  }

  // The input row read by output row oh for kernel row i, or -1 if it is padding.
  int64_t input_row(int64_t oh, int64_t i) const {
    int64_t row = oh * stride + i - pad_top;
    return row >= 0 && row < h ? row : -1;
  }
};

// Runs body(chunk) for chunk in [0, num_chunks) on the calling thread and the pool's threads.
void parallel_for(ffi::ThreadPool& pool, int64_t num_chunks, std::function<void(int64_t)> body) {
  struct State {
    std::atomic<int64_t> next{0}, done{0};
    int64_t num_chunks;
    std::function<void(int64_t)> body;
  };
  auto state = std::make_shared<State>();
  state->num_chunks = num_chunks;
  state->body = std::move(body);
  auto work = [state] {
    for (int64_t chunk; (chunk = state->next.fetch_add(1)) < state->num_chunks;) {
      state->body(chunk);
      state->done.fetch_add(1, std::memory_order_release);
    }
  };
  int64_t helpers = std::min<int64_t>(pool.num_threads(), num_chunks) - 1;
  for (int64_t t = 0; t < helpers; ++t) pool.Schedule(decltype(work)(work));
  work();
  while (state->done.load(std::memory_order_acquire) < num_chunks) std::this_thread::yield();
}

// For stride 1: each tap repeated for every output column, (k, k, out_w, C), so that a row's multiply-add is one
// contiguous loop.
std::vector<float> repeat_taps(const Geometry& g, const float* taps) {
  std::vector<float> rows(g.stride == 1 ? g.k * g.k * g.out_w * g.c : 0);
  for (int64_t tap = 0; tap < (g.stride == 1 ? g.k * g.k : 0); ++tap)
    for (int64_t ow = 0; ow < g.out_w; ++ow)
      std::memcpy(&rows[(tap * g.out_w + ow) * g.c], taps + tap * g.c, sizeof(float) * g.c);
  return rows;
}

int64_t num_row_chunks(int64_t rows) { return std::min<int64_t>(rows, 64); }

Geometry geometry(ffi::AnyBuffer::Dimensions x_dims, ffi::AnyBuffer::Dimensions kernel_dims, int64_t out_h,
                  int64_t out_w, int64_t stride, int64_t pad_top, int64_t pad_left) {
  return {x_dims[0], x_dims[1], x_dims[2], x_dims[3], kernel_dims[0], out_h, out_w, stride, pad_top, pad_left};
}

// out[b, oh, ow] = sum over (i, j) of x[b, oh * stride + i - pad_top, ow * stride + j - pad_left] * kernel[i, j]
ffi::Error Forward(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> kernel,
                   ffi::ResultBuffer<ffi::F32> out, int64_t stride, int64_t pad_top, int64_t pad_left) {
  auto out_dims = out->dimensions();
  Geometry g = geometry(x.dimensions(), kernel.dimensions(), out_dims[1], out_dims[2], stride, pad_top, pad_left);
  const float* xs = x.typed_data();
  const float* ks = kernel.typed_data();
  float* outs = out->typed_data();
  std::vector<float> tap_rows = repeat_taps(g, ks);
  int64_t rows = g.n * g.out_h, chunks = num_row_chunks(rows);
  parallel_for(pool, chunks, [&](int64_t chunk) {
    for (int64_t row = rows * chunk / chunks; row < rows * (chunk + 1) / chunks; ++row) {
      int64_t b = row / g.out_h, oh = row % g.out_h;
      float* out_row = outs + row * g.out_w * g.c;
      std::memset(out_row, 0, sizeof(float) * g.out_w * g.c);
      for (int64_t i = 0; i < g.k; ++i) {
        int64_t ih = g.input_row(oh, i);
        if (ih < 0) continue;
        const float* in_row = xs + (b * g.h + ih) * g.w * g.c;
        for (int64_t j = 0; j < g.k; ++j) {
          int64_t lo, hi;
          g.columns(j, lo, hi);
          if (g.stride == 1) {
            const float* __restrict in = in_row + (lo + j - g.pad_left) * g.c;
            const float* __restrict tap = tap_rows.data() + ((i * g.k + j) * g.out_w + lo) * g.c;
            float* __restrict o = out_row + lo * g.c;
            for (int64_t t = 0; t < (hi - lo) * g.c; ++t) o[t] += in[t] * tap[t];
            continue;
          }
          const float* __restrict tap = ks + (i * g.k + j) * g.c;
          for (int64_t ow = lo; ow < hi; ++ow) {
            const float* __restrict in = in_row + (ow * g.stride + j - g.pad_left) * g.c;
            float* __restrict o = out_row + ow * g.c;
            for (int64_t ch = 0; ch < g.c; ++ch) o[ch] += in[ch] * tap[ch];
          }
        }
      }
    }
  });
  return ffi::Error::Success();
}

// dx[b, ih, iw] = sum over (i, j, oh, ow) with ih = oh * stride + i - pad_top, iw = ow * stride + j - pad_left of
// grad[b, oh, ow] * kernel[i, j]; one chunk owns whole input rows, so nothing is written twice at once.
ffi::Error InputGrad(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> grad, ffi::Buffer<ffi::F32> kernel,
                     ffi::ResultBuffer<ffi::F32> dx, int64_t stride, int64_t pad_top, int64_t pad_left) {
  auto grad_dims = grad.dimensions();
  Geometry g = geometry(dx->dimensions(), kernel.dimensions(), grad_dims[1], grad_dims[2], stride, pad_top,
                        pad_left);
  const float* gs = grad.typed_data();
  const float* ks = kernel.typed_data();
  float* dxs = dx->typed_data();
  std::vector<float> tap_rows = repeat_taps(g, ks);
  int64_t rows = g.n * g.h, chunks = num_row_chunks(rows);
  parallel_for(pool, chunks, [&](int64_t chunk) {
    for (int64_t row = rows * chunk / chunks; row < rows * (chunk + 1) / chunks; ++row) {
      int64_t b = row / g.h, ih = row % g.h;
      float* in_row = dxs + row * g.w * g.c;
      std::memset(in_row, 0, sizeof(float) * g.w * g.c);
      for (int64_t i = 0; i < g.k; ++i) {
        int64_t shifted = ih + g.pad_top - i;  // = oh * stride
        if (shifted < 0 || shifted % g.stride != 0 || shifted / g.stride >= g.out_h) continue;
        const float* grad_row = gs + (b * g.out_h + shifted / g.stride) * g.out_w * g.c;
        for (int64_t j = 0; j < g.k; ++j) {
          int64_t lo, hi;
          g.columns(j, lo, hi);
          if (g.stride == 1) {
            const float* __restrict go = grad_row + lo * g.c;
            const float* __restrict tap = tap_rows.data() + ((i * g.k + j) * g.out_w + lo) * g.c;
            float* __restrict o = in_row + (lo + j - g.pad_left) * g.c;
            for (int64_t t = 0; t < (hi - lo) * g.c; ++t) o[t] += go[t] * tap[t];
            continue;
          }
          const float* __restrict tap = ks + (i * g.k + j) * g.c;
          for (int64_t ow = lo; ow < hi; ++ow) {
            const float* __restrict go = grad_row + ow * g.c;
            float* __restrict o = in_row + (ow * g.stride + j - g.pad_left) * g.c;
            for (int64_t ch = 0; ch < g.c; ++ch) o[ch] += go[ch] * tap[ch];
          }
        }
      }
    }
  });
  return ffi::Error::Success();
}

// dkernel[i, j] = sum over (b, oh, ow) of x[b, oh * stride + i - pad_top, ow * stride + j - pad_left] * grad[b, oh, ow]
ffi::Error KernelGrad(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> grad,
                      ffi::ResultBuffer<ffi::F32> dkernel, int64_t stride, int64_t pad_top, int64_t pad_left) {
  auto grad_dims = grad.dimensions();
  Geometry g = geometry(x.dimensions(), dkernel->dimensions(), grad_dims[1], grad_dims[2], stride, pad_top,
                        pad_left);
  const float* xs = x.typed_data();
  const float* gs = grad.typed_data();
  int64_t taps = g.k * g.k * g.c;
  int64_t rows = g.n * g.out_h, chunks = num_row_chunks(rows);
  std::vector<float> partials(chunks * taps, 0.0f);
  parallel_for(pool, chunks, [&](int64_t chunk) {
    float* acc = partials.data() + chunk * taps;
    for (int64_t row = rows * chunk / chunks; row < rows * (chunk + 1) / chunks; ++row) {
      int64_t b = row / g.out_h, oh = row % g.out_h;
      const float* grad_row = gs + row * g.out_w * g.c;
      for (int64_t i = 0; i < g.k; ++i) {
        int64_t ih = g.input_row(oh, i);
        if (ih < 0) continue;
        const float* in_row = xs + (b * g.h + ih) * g.w * g.c;
        for (int64_t j = 0; j < g.k; ++j) {
          float* __restrict a = acc + (i * g.k + j) * g.c;
          int64_t lo, hi;
          g.columns(j, lo, hi);
          for (int64_t ow = lo; ow < hi; ++ow) {
            const float* __restrict in = in_row + (ow * g.stride + j - g.pad_left) * g.c;
            const float* __restrict go = grad_row + ow * g.c;
            for (int64_t ch = 0; ch < g.c; ++ch) a[ch] += in[ch] * go[ch];
          }
        }
      }
    }
  });
  float* out = dkernel->typed_data();
  std::memcpy(out, partials.data(), sizeof(float) * taps);
  for (int64_t chunk = 1; chunk < chunks; ++chunk) {
    const float* p = partials.data() + chunk * taps;
    for (int64_t t = 0; t < taps; ++t) out[t] += p[t];
  }
  return ffi::Error::Success();
}

// Sums, over all rows of a (rows, c) array, of row_terms(row, acc), which adds the `width` terms of one row (e.g.
// two per channel) into acc. Accumulates in double (a float sum of ~10^5 terms of the same sign is off by ~1e-6 of
// the mean, enough to change BatchNorm gradients by 1e-4); each chunk of rows sums into its own partials, which
// are added in chunk order.
template <typename RowTerms>
std::vector<double> sum_rows(ffi::ThreadPool& pool, int64_t rows, int64_t width, RowTerms row_terms) {
  int64_t chunks = num_row_chunks(rows);
  std::vector<double> partials(chunks * width, 0.0);
  parallel_for(pool, chunks, [&](int64_t chunk) {
    double* acc = partials.data() + chunk * width;
    for (int64_t row = rows * chunk / chunks; row < rows * (chunk + 1) / chunks; ++row) row_terms(row, acc);
  });
  std::vector<double> sums(width, 0.0);
  for (int64_t chunk = 0; chunk < chunks; ++chunk)
    for (int64_t t = 0; t < width; ++t) sums[t] += partials[chunk * width + t];
  return sums;
}

constexpr int64_t kMaxChannels = 256;  // the channels of a row that BatchNormActGradSums handles at a time

int64_t channels(const ffi::Buffer<ffi::F32>& x) {
  auto dims = x.dimensions();
  return dims[dims.size() - 1];
}

// mean[c] and the biased variance var[c] = mean of (x - mean[c])^2, over all but the last axis of x, in one pass:
// sums of d = x - x[0] and of d^2 per channel, in double. Shifting by the first row keeps the terms of the order of
// the spread, so var = mean(d^2) - mean(d)^2 does not cancel as E[x^2] - E[x]^2 does for channels with a large mean.
ffi::Error ChannelMoments(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::ResultBuffer<ffi::F32> mean,
                          ffi::ResultBuffer<ffi::F32> var) {
  int64_t c = channels(x), rows = x.element_count() / c;
  const float* xs = x.typed_data();
  const float* __restrict shift = xs;
  std::vector<double> sums = sum_rows(pool, rows, 2 * c, [&](int64_t row, double* __restrict acc) {
    const float* __restrict in = xs + row * c;
    for (int64_t ch = 0; ch < c; ++ch) {
      double d = static_cast<double>(in[ch]) - shift[ch];
      acc[ch] += d;
      acc[c + ch] += d * d;
    }
  });
  for (int64_t ch = 0; ch < c; ++ch) {
    double mean_d = sums[ch] / rows;
    mean->typed_data()[ch] = static_cast<float>(shift[ch] + mean_d);
    var->typed_data()[ch] = static_cast<float>(std::max(sums[c + ch] / rows - mean_d * mean_d, 0.0));
  }
  return ffi::Error::Success();
}

// The backward of y = clip(xhat * scale + bias, 0, upper), xhat = (x - mean) * rstd, needs per channel the sums
// of g and of g * xhat, where g = dy where 0 < xhat * scale + bias < upper and 0 elsewhere (the activation's
// gradient as JAX defines it). sums is (2, c): sums[0] = sum of g, sums[1] = sum of g * xhat.
ffi::Error BatchNormActGradSums(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> dy, ffi::Buffer<ffi::F32> x,
                                ffi::Buffer<ffi::F32> mean, ffi::Buffer<ffi::F32> rstd, ffi::Buffer<ffi::F32> scale,
                                ffi::Buffer<ffi::F32> bias, ffi::ResultBuffer<ffi::F32> sums, float upper) {
  int64_t c = channels(x), rows = x.element_count() / c;
  const float* dys = dy.typed_data();
  const float* xs = x.typed_data();
  const float* __restrict m = mean.typed_data();
  const float* __restrict r = rstd.typed_data();
  const float* __restrict s = scale.typed_data();
  const float* __restrict b = bias.typed_data();
  std::vector<double> totals = sum_rows(pool, rows, 2 * c, [&](int64_t row, double* __restrict acc) {
    const float* __restrict in = xs + row * c;
    const float* __restrict grad = dys + row * c;
    float terms[2 * kMaxChannels];  // this row's g and g * xhat, in float (two loops, so that both vectorise)
    for (int64_t start = 0; start < c; start += kMaxChannels) {
      int64_t n = std::min(kMaxChannels, c - start);
      for (int64_t i = 0; i < n; ++i) {
        int64_t ch = start + i;
        float xhat = (in[ch] - m[ch]) * r[ch];
        float z = xhat * s[ch] + b[ch];
        float g = (z > 0.0f) & (z < upper) ? grad[ch] : 0.0f;
        terms[i] = g;
        terms[kMaxChannels + i] = g * xhat;
      }
      for (int64_t i = 0; i < n; ++i) {
        acc[start + i] += terms[i];
        acc[c + start + i] += terms[kMaxChannels + i];
      }
    }
  });
  for (int64_t t = 0; t < 2 * c; ++t) sums->typed_data()[t] = static_cast<float>(totals[t]);
  return ffi::Error::Success();
}

}  // namespace

#define MNET_DEPTHWISE_HANDLER(symbol, impl)                                                                  \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(symbol, impl,                                                                \
                                ffi::Ffi::Bind()                                                             \
                                    .Ctx<ffi::ThreadPool>()                                                  \
                                    .Arg<ffi::Buffer<ffi::F32>>()                                            \
                                    .Arg<ffi::Buffer<ffi::F32>>()                                            \
                                    .Ret<ffi::Buffer<ffi::F32>>()                                            \
                                    .Attr<int64_t>("stride")                                                 \
                                    .Attr<int64_t>("pad_top")                                                \
                                    .Attr<int64_t>("pad_left"));

MNET_DEPTHWISE_HANDLER(MnetDepthwiseForward, Forward)
MNET_DEPTHWISE_HANDLER(MnetDepthwiseInputGrad, InputGrad)
MNET_DEPTHWISE_HANDLER(MnetDepthwiseKernelGrad, KernelGrad)

XLA_FFI_DEFINE_HANDLER_SYMBOL(MnetChannelMoments, ChannelMoments,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(MnetBatchNormActGradSums, BatchNormActGradSums,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // dy
                                  .Arg<ffi::Buffer<ffi::F32>>()  // x
                                  .Arg<ffi::Buffer<ffi::F32>>()  // mean
                                  .Arg<ffi::Buffer<ffi::F32>>()  // rstd
                                  .Arg<ffi::Buffer<ffi::F32>>()  // scale
                                  .Arg<ffi::Buffer<ffi::F32>>()  // bias
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<float>("upper"));
