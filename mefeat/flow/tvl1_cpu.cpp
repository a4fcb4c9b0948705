// The inner iterations of OpenCV's Dual TV-L1 (cv::optflow::DualTVL1OpticalFlow, after
// Sánchez, Meinhardt-Llopis & Facciolo, IPOL 2013), fused into one pass over the image.
//
// OpenCV runs each step of one iteration as its own loop over the whole image
// (estimateV, two divergences, estimateU, two forward gradients, estimateDualVariables),
// in code built for SSE3, with a scalar call to hypot for every pixel. Here one pass does
// all of them, one row behind for the dual step (it needs the new flow of the next row),
// with the same formulas, the same order of operations and no fused multiply-adds, so the
// arithmetic is OpenCV's, and every decision to stop is the one OpenCV's float sum takes.
// gamma (the illumination term) is not implemented: mefeat.flow.tvl1 uses OpenCV for it.
//
// A plain C function, built on first use and called through ctypes (mefeat/_cpp.py).

#include <cfloat>
#include <cmath>
#include <algorithm>
#include <vector>

namespace {

struct Fields {
    const float* ix;   // I1 warped, x derivative
    const float* iy;   // y derivative
    const float* grad; // ix² + iy²
    const float* rho;  // constant part of the data residual
    float* u1;
    float* u2;
    float* p11;
    float* p12;
    float* p21;
    float* p22;
    int h;
    int w;
};

// The thresholding step (estimateV) at one pixel, then the primal update (estimateU) with
// the divergence `div1, div2` of the dual fields; writes the new flow, returns the update.
static inline float primal_step(float ix, float iy, float g, float rc, float& u1, float& u2,
                                float div1, float div2, float l_t, float theta) {
    const float a = u1, b = u2;
    const float rho = rc + (ix * a + iy * b);
    // the three cases of TH, computed unconditionally and selected (vectorisable)
    const float fi = -rho / g;
    const bool below = rho < -l_t * g, above = rho > l_t * g, flat = g > FLT_EPSILON;
    const float d1 = below ? l_t * ix : above ? -l_t * ix : flat ? fi * ix : 0.0f;
    const float d2 = below ? l_t * iy : above ? -l_t * iy : flat ? fi * iy : 0.0f;
    const float n1 = (a + d1) + theta * div1;
    const float n2 = (b + d2) + theta * div2;
    u1 = n1;
    u2 = n2;
    return (n1 - a) * (n1 - a) + (n2 - b) * (n2 - b);
}

typedef float v16f __attribute__((vector_size(64)));

// The sum of a row of squared updates, in sixteen float lanes then double: an estimate of
// the row's share of OpenCV's sequential float sum (see stopping_error).
static double row_sum(const float* e, int w) {
    v16f acc = {};
    int x = 0;
    for (; x + 16 <= w; x += 16) {
        v16f v;
        __builtin_memcpy(&v, e + x, sizeof v);
        acc += v;
    }
    double s = 0.0;
    for (int i = 0; i < 16; ++i) s += acc[i];
    for (; x < w; ++x) s += e[x];
    return s;
}

// estimateV + divergence + estimateU on row y. Writes each pixel's squared update to `e`
// (this row's part of a full-image buffer) and returns the row's sum estimate.
template <bool FirstRow>
double primal_row(const Fields& f, int y, float l_t, float theta, float* __restrict e) {
    const int w = f.w;
    const size_t o = (size_t)y * w;
    const float* __restrict ix = f.ix + o;
    const float* __restrict iy = f.iy + o;
    const float* __restrict gr = f.grad + o;
    const float* __restrict rc = f.rho + o;
    float* __restrict u1 = f.u1 + o;
    float* __restrict u2 = f.u2 + o;
    const float* __restrict p11 = f.p11 + o;
    const float* __restrict p21 = f.p21 + o;
    const float* __restrict p12 = f.p12 + o;
    const float* __restrict p22 = f.p22 + o;
    const float* __restrict p12u = FirstRow ? p12 : p12 - w;  // the row above
    const float* __restrict p22u = FirstRow ? p22 : p22 - w;

    // column 0: OpenCV's border forms of the divergence
    const float div1 = FirstRow ? p11[0] + p12[0] : p11[0] + p12[0] - p12u[0];
    const float div2 = FirstRow ? p21[0] + p22[0] : p21[0] + p22[0] - p22u[0];
    e[0] = primal_step(ix[0], iy[0], gr[0], rc[0], u1[0], u2[0], div1, div2, l_t, theta);
#pragma GCC ivdep
    for (int x = 1; x < w; ++x) {
        const float d1 = FirstRow ? p11[x] - p11[x - 1] + p12[x]
                                  : (p11[x] - p11[x - 1]) + (p12[x] - p12u[x]);
        const float d2 = FirstRow ? p21[x] - p21[x - 1] + p22[x]
                                  : (p21[x] - p21[x - 1]) + (p22[x] - p22u[x]);
        e[x] = primal_step(ix[x], iy[x], gr[x], rc[x], u1[x], u2[x], d1, d2, l_t, theta);
    }
    return row_sum(e, w);
}

// glibc's hypotf: the sum of squares and its root in double, rounded once to float.
static inline float hypot_f(float a, float b) {
    const double x = a, y = b;
    return (float)std::sqrt(x * x + y * y);
}

// estimateDualVariables at one pixel, from the forward differences of the new flow.
static inline void dual_step(int x, float u1x, float u1y, float u2x, float u2y,
                             float* __restrict p11, float* __restrict p12,
                             float* __restrict p21, float* __restrict p22, float taut) {
    const float ng1 = 1.0f + taut * hypot_f(u1x, u1y);
    const float ng2 = 1.0f + taut * hypot_f(u2x, u2y);
    p11[x] = (p11[x] + taut * u1x) / ng1;
    p12[x] = (p12[x] + taut * u1y) / ng1;
    p21[x] = (p21[x] + taut * u2x) / ng2;
    p22[x] = (p22[x] + taut * u2y) / ng2;
}

// forwardGradient of the new flow + estimateDualVariables on row y.
template <bool LastRow>
void dual_row(const Fields& f, int y, float taut) {
    const int w = f.w;
    const float* __restrict u1 = f.u1 + (size_t)y * w;
    const float* __restrict u2 = f.u2 + (size_t)y * w;
    const float* __restrict u1d = LastRow ? u1 : u1 + w;  // the row below
    const float* __restrict u2d = LastRow ? u2 : u2 + w;
    float* __restrict p11 = f.p11 + (size_t)y * w;
    float* __restrict p12 = f.p12 + (size_t)y * w;
    float* __restrict p21 = f.p21 + (size_t)y * w;
    float* __restrict p22 = f.p22 + (size_t)y * w;

#pragma GCC ivdep
    for (int x = 0; x < w - 1; ++x) {
        const float u1y = LastRow ? 0.0f : u1d[x] - u1[x];
        const float u2y = LastRow ? 0.0f : u2d[x] - u2[x];
        dual_step(x, u1[x + 1] - u1[x], u1y, u2[x + 1] - u2[x], u2y, p11, p12, p21, p22, taut);
    }
    const int x = w - 1;
    dual_step(x, 0.0f, LastRow ? 0.0f : u1d[x] - u1[x], 0.0f, LastRow ? 0.0f : u2d[x] - u2[x],
              p11, p12, p21, p22, taut);
}

}  // namespace

// OpenCV's stopping error is the squared updates summed one by one into a float, in row
// order. That chain of dependent additions would cost more than the rest of an iteration,
// so the sum is estimated in parallel lanes instead, and the float sum is formed only when
// the estimate cannot tell on which side of `eps` it lies. With S the exact sum of the
// n ≥ 0 terms and γ_k = k·u/(1 − k·u), u = 2⁻²⁴ (Higham, Accuracy and Stability of
// Numerical Algorithms, §4.2): OpenCV's float sum is within γ_n·S of S; the estimate adds
// at most m = ⌈w/16⌉ floats in a lane before going to double, so it is within δ·S of S,
// δ = γ_m + 2⁻⁴⁰ (the double additions, for fewer than 8192 rows). Hence |float sum − estimate| ≤ (γ_n + δ)/(1 − δ)
// · estimate, and a decision taken outside that band is the one OpenCV's float sum takes.
static float stopping_error(double estimate, const float* e, size_t n, int w, float eps) {
    const double u = std::ldexp(1.0, -24);
    const double nu = (double)n * u, mu = (double)((w + 15) / 16) * u;
    if (nu < 0.5 && n / (size_t)w < 8192) {
        const double delta = mu / (1.0 - mu) + std::ldexp(1.0, -40);
        const double band = (nu / (1.0 - nu) + delta) / (1.0 - delta) * estimate + DBL_MIN;
        if (estimate - band > (double)eps) return (float)estimate;
        if (estimate + band <= (double)eps) return std::min((float)estimate, eps);
    }
    float sum = 0.0f;  // undecided: OpenCV's sum itself
    for (size_t i = 0; i < n; ++i) sum += e[i];
    return sum;
}

// Up to `iterations` inner iterations while the summed squared update exceeds `eps`.
// Every array is h × w, C order. Updates u1, u2 and the dual fields p11..p22 in place;
// stores the last error in *error and returns the number of iterations done.
extern "C" int tvl1_inner_iterations(const float* ix, const float* iy, const float* grad,
                                     const float* rho, float* u1, float* u2, float* p11,
                                     float* p12, float* p21, float* p22, int h, int w,
                                     float l_t, float theta, float taut, float eps,
                                     int iterations, float* error_out) {
    if (h < 2 || w < 2) return -1;
    Fields f{ix, iy, grad, rho, u1, u2, p11, p12, p21, p22, h, w};
    const size_t npx = (size_t)h * w;
    std::vector<float> updates(npx);
    float* e = updates.data();
    float error = FLT_MAX;
    int n = 0;
    for (; error > eps && n < iterations; ++n) {
        double estimate = primal_row<true>(f, 0, l_t, theta, e);
        for (int y = 1; y < h; ++y) {
            estimate += primal_row<false>(f, y, l_t, theta, e + (size_t)y * w);
            dual_row<false>(f, y - 1, taut);
        }
        dual_row<true>(f, h - 1, taut);
        error = stopping_error(estimate, e, npx, w, eps);
    }
    *error_out = error;
    return n;
}
