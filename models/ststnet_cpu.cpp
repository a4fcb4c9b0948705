// STSTNet's first stage on CPU, fused: 3x3 convolution (16 filters, padding 2) -> ReLU ->
// per-channel batch sums -> 3x3 stride-3 pooling (padding 1), without writing the 30x30
// maps to memory. Used by models/ststnet.py (``_ReluStatsPool`` path, see its docstring for
// the maths); built on first use with torch.utils.cpp_extension.
//
// Layouts: x is the input padded by 2 on each side, (N, 3, 32, 32) float32; w is (27, 16)
// with k = ci*9 + di*3 + dj; pooled/arg/grad_pooled are (N, 10, 10, 16) (channels last).
// Each pooling window (wi, wj) covers conv rows 3*wi-1 .. 3*wi+1 (likewise columns); row
// and column 29 belong to no window, as in nn.MaxPool2d(3, 3, padding=1).

#include <torch/extension.h>

#include <cstdint>
#include <limits>
#include <vector>

namespace {

constexpr int C = 16;    // 3 + 5 + 8 filters
constexpr int S = 30;    // conv output side
constexpr int P = 32;    // padded input side
constexpr int W = 10;    // pooled side
constexpr int K = 27;    // 3 channels x 3 x 3 taps

// The 16 channels of one position are one vector (GCC/Clang vector extension): the
// compiler maps it to one AVX-512 register, or two AVX2 ones, or scalar code.
typedef float vec16 __attribute__((vector_size(C * sizeof(float))));

inline vec16 load16(const float* p) {
  vec16 v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}

inline void store16(float* p, vec16 v) { __builtin_memcpy(p, &v, sizeof v); }

// Conv outputs of row i, all channels, into out[0..S): b + sum_k w[k] * (k-th tap).
// Six positions at a time: each weight vector load serves six FMAs, and six independent
// accumulators keep the FMA units busy instead of waiting on one chain's latency.
constexpr int J = 6;  // divides S
inline void conv_row(const float* xs, const vec16* wv, vec16 b, int i, vec16* out) {
  for (int j = 0; j < S; j += J) {
    vec16 a[J];
    for (int u = 0; u < J; ++u) a[u] = b;
    for (int ci = 0; ci < 3; ++ci)
      for (int di = 0; di < 3; ++di) {
        const float* row = xs + (ci * P + i + di) * P + j;
        for (int dj = 0; dj < 3; ++dj) {
          const vec16 w = wv[ci * 9 + di * 3 + dj];
          for (int u = 0; u < J; ++u) a[u] += row[dj + u] * w;
        }
      }
    for (int u = 0; u < J; ++u) out[j + u] = a[u];
  }
}

}  // namespace

// Returns pooled (N,10,10,16) f32, arg (N,10,10,16) f32 (the window position 0..8 of each
// maximum, as a float so that the backward pass compares it as a vector), sums (N,16) f64,
// sumsq (N,16) f64.
std::vector<torch::Tensor> forward(torch::Tensor x, torch::Tensor w, torch::Tensor b,
                                   torch::Tensor sign) {
  TORCH_CHECK(x.dtype() == torch::kFloat32 && x.dim() == 4 && x.size(1) == 3 &&
                  x.size(2) == P && x.size(3) == P && x.is_contiguous(),
              "x must be contiguous float32 (N, 3, 32, 32)");
  TORCH_CHECK(w.numel() == K * C && b.numel() == C && sign.numel() == C, "bad w/b/sign");
  const int64_t n = x.size(0);
  auto pooled = torch::empty({n, W, W, C}, x.options());
  auto arg = torch::empty({n, W, W, C}, x.options());
  auto sums = torch::empty({n, C}, x.options().dtype(torch::kFloat64));
  auto sumsq = torch::empty({n, C}, x.options().dtype(torch::kFloat64));
  const float* xp = x.data_ptr<float>();
  auto wc = w.contiguous(), bc = b.contiguous(), sc = sign.contiguous();
  vec16 wv[K];
  for (int k = 0; k < K; ++k) wv[k] = load16(wc.data_ptr<float>() + k * C);
  const vec16 bv = load16(bc.data_ptr<float>());
  const vec16 sv = load16(sc.data_ptr<float>());
  float* pp = pooled.data_ptr<float>();
  float* ap = arg.data_ptr<float>();
  double* s1p = sums.data_ptr<double>();
  double* s2p = sumsq.data_ptr<double>();

  at::parallel_for(0, n, 1, [&](int64_t begin, int64_t end) {
    for (int64_t s = begin; s < end; ++s) {
      const float* xs = xp + s * 3 * P * P;
      // Window maxima of sign * relu(y) and their positions q = 3 * row + col in the window.
      vec16 best[W * W];
      vec16 where[W * W];
      const vec16 lowest = {} ;
      for (int e = 0; e < W * W; ++e) {
        best[e] = lowest - std::numeric_limits<float>::infinity();
        where[e] = lowest;
      }
      double t1[C] = {0}, t2[C] = {0};
      vec16 yrow[S];
      for (int i = 0; i < S; ++i) {
        vec16 r1 = {}, r2 = {};
        const int wi = (i + 1) / 3, qi = (i + 1) % 3;
        conv_row(xs, wv, bv, i, yrow);
        for (int j = 0; j < S; ++j) {
          vec16 y = yrow[j];
          y = y > 0.f ? y : 0.f;
          r1 += y;
          r2 += y * y;
          if (i < S - 1 && j < S - 1) {
            const int e = wi * W + (j + 1) / 3;
            const vec16 v = sv * y;
            const auto more = v > best[e];
            best[e] = more ? v : best[e];
            where[e] = more ? float(qi * 3 + (j + 1) % 3) : where[e];
          }
        }
        for (int c = 0; c < C; ++c) {
          t1[c] += r1[c];
          t2[c] += r2[c];
        }
      }
      float* ps = pp + s * W * W * C;
      float* as = ap + s * W * W * C;
      for (int e = 0; e < W * W; ++e) {
        store16(ps + e * C, sv * best[e]);
        store16(as + e * C, where[e]);
      }
      for (int c = 0; c < C; ++c) {
        s1p[s * C + c] = t1[c];
        s2p[s * C + c] = t2[c];
      }
    }
  });
  return {pooled, arg, sums, sumsq};
}

// Gradient of the conv weights (27,16) and bias (16) given the gradient of the pooled maps
// (at each window's arg-max, if its ReLU is active) and of the statistics: at every conv
// output y > 0 the gradient is a[c] + k[c] * y (see models/ststnet.py).
std::vector<torch::Tensor> backward(torch::Tensor x, torch::Tensor w, torch::Tensor b,
                                    torch::Tensor grad_pooled, torch::Tensor arg,
                                    torch::Tensor a, torch::Tensor k) {
  const int64_t n = x.size(0);
  const float* xp = x.data_ptr<float>();
  auto wc = w.contiguous(), bc = b.contiguous(), ac = a.contiguous(), kc = k.contiguous();
  vec16 wv[K];
  for (int t = 0; t < K; ++t) wv[t] = load16(wc.data_ptr<float>() + t * C);
  const vec16 bv = load16(bc.data_ptr<float>());
  const vec16 av = load16(ac.data_ptr<float>());
  const vec16 kv = load16(kc.data_ptr<float>());
  auto gpc = grad_pooled.contiguous();
  const float* gp = gpc.data_ptr<float>();
  auto argc = arg.contiguous();
  const float* ap = argc.data_ptr<float>();
  const int64_t threads = at::get_num_threads();
  std::vector<double> gw(threads * K * C, 0.0), gb(threads * C, 0.0);

  at::parallel_for(0, n, 1, [&](int64_t begin, int64_t end) {
    const int t = at::get_thread_num();
    double* tw = gw.data() + t * K * C;
    double* tb = gb.data() + t * C;
    vec16 grow[S];  // the conv-output gradient of one row
    for (int64_t s = begin; s < end; ++s) {
      const float* xs = xp + s * 3 * P * P;
      const float* gs = gp + s * W * W * C;
      const float* as = ap + s * W * W * C;
      vec16 sw[K] = {};
      vec16 sb = {};
      vec16 yrow[S];
      for (int i = 0; i < S; ++i) {
        const int wi = (i + 1) / 3, qi = (i + 1) % 3;
        conv_row(xs, wv, bv, i, yrow);
        for (int j = 0; j < S; ++j) {
          const vec16 y = yrow[j];
          vec16 g = av + kv * y;
          if (i < S - 1 && j < S - 1) {
            const int off = (wi * W + (j + 1) / 3) * C;
            const float q = float(qi * 3 + (j + 1) % 3);
            const vec16 zero = {};
            g += load16(as + off) == q ? load16(gs + off) : zero;
          }
          grow[j] = y > 0.f ? g : 0.f;
          sb += grow[j];
        }
        // Weight gradient of this row: one accumulator per tap, kept in a register.
        for (int ci = 0; ci < 3; ++ci)
          for (int di = 0; di < 3; ++di) {
            const float* row = xs + (ci * P + i + di) * P;
            for (int dj = 0; dj < 3; ++dj) {
              // J independent sums: one chain would wait on each FMA's latency.
              vec16 a[J] = {};
              for (int j = 0; j < S; j += J)
                for (int u = 0; u < J; ++u) a[u] += row[j + dj + u] * grow[j + u];
              vec16 total = sw[ci * 9 + di * 3 + dj];
              for (int u = 0; u < J; ++u) total += a[u];
              sw[ci * 9 + di * 3 + dj] = total;
            }
          }
      }
      for (int e = 0; e < K; ++e)
        for (int c = 0; c < C; ++c) tw[e * C + c] += sw[e][c];
      for (int c = 0; c < C; ++c) tb[c] += sb[c];
    }
  });
  auto grad_w = torch::zeros({K, C}, torch::kFloat64);
  auto grad_b = torch::zeros({C}, torch::kFloat64);
  double* gwp = grad_w.data_ptr<double>();
  double* gbp = grad_b.data_ptr<double>();
  for (int64_t t = 0; t < threads; ++t) {
    for (int e = 0; e < K * C; ++e) gwp[e] += gw[t * K * C + e];
    for (int c = 0; c < C; ++c) gbp[c] += gb[t * C + c];
  }
  return {grad_w.to(torch::kFloat32), grad_b.to(torch::kFloat32)};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward, "conv3x3 + ReLU + batch sums + 3x3/3 pooling (STSTNet)");
  m.def("backward", &backward, "gradients of the conv weights and bias");
}
