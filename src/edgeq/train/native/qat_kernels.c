/*
 * Fused elementwise kernels of the QAT quantisers: one pass over a float32 tensor instead
 * of the dozen PyTorch operations (and their temporaries) of the reference code in
 * edgeq/train/algorithms/pact.py and ana.py.
 *
 * Bit-identity contract: per element, every kernel performs the same IEEE-754 binary32
 * operations, on the same operands and in the same order, as the PyTorch code it stands
 * for, so outputs and gradients are equal bit for bit (tested against that code). Hence
 * the build flags: no -ffast-math, and -ffp-contract=off (a fused multiply-add rounds
 * once where the reference rounds twice).
 *
 * Layout: a contiguous tensor viewed as [outer, channels, inner]; eps (and the PACT
 * bound) has one value per channel (channels = 1 for a per-tensor scale).
 */
#include <math.h>
#include <stdint.h>

/* PACT mask codes: which side of the clip interval [lo·ε, hi·ε) an element is on */
#define EQ_BELOW 1u /* x < lo·ε */
#define EQ_ABOVE 2u /* x >= hi·ε */
#define EQ_SIDES 3u /* the bits above */
#define EQ_ZERO 4u  /* relu: x <= 0, where relu's backward passes no gradient */

/* clip(t, lo, hi) as torch.clamp_: NaN stays NaN (both comparisons are false) */
static inline float clip(float t, float lo, float hi)
{
    return t < lo ? lo : (t > hi ? hi : t);
}

/*
 * PACT forward for the integer range [qlo, qhi] (unit step) and the positive bounds
 * bound[c], ε = bound[c]/divisor, of v = x, or of v = relu(x) if relu:
 *   y    = ε·clip(floor(v/ε + 1/2), qlo, qhi)
 *   code = EQ_BELOW if v < qlo·ε, EQ_ABOVE if v >= qhi·ε, plus EQ_ZERO if relu and x <= 0
 * The reference computes ε = b/m, v/ε + 1/2 (one addcdiv or a division then an
 * addition: the same two roundings), floor, clamp, ·ε; its clip values are the float32
 * products qlo·ε, qhi·ε, and its masks compare v with them. relu(x) is 0 for x < 0 and x
 * otherwise (NaN stays NaN; torch may keep -0 or not, which changes neither y nor code).
 * Returns 0, writing nothing, if a bound is below min_bound or NaN (the reference then
 * takes |b| clamped to min_bound, which the caller's PyTorch code does); else 1.
 */
int eq_pact_forward(const float *x, float *y, uint8_t *code, int64_t outer, int64_t channels,
                    int64_t inner, const float *bound, float divisor, float min_bound,
                    float qlo, float qhi, int relu)
{
    for (int64_t c = 0; c < channels; ++c)
        if (!(bound[c] >= min_bound))
            return 0;
    for (int64_t o = 0; o < outer; ++o) {
        for (int64_t c = 0; c < channels; ++c) {
            const float e = bound[c] / divisor;
            const float clip_lo = qlo * e, clip_hi = qhi * e;
            const int64_t base = (o * channels + c) * inner;
            const float *restrict xs = x + base;
            float *restrict ys = y + base;
            uint8_t *restrict cs = code + base;
            /* separate loops: each vectorises (one loop mixing float and byte stores
             * does not) */
            if (relu) {
                for (int64_t i = 0; i < inner; ++i) {
                    const float v = xs[i] < 0.0f ? 0.0f : xs[i];
                    ys[i] = clip(floorf(v / e + 0.5f), qlo, qhi) * e;
                }
                for (int64_t i = 0; i < inner; ++i) {
                    const float v = xs[i] < 0.0f ? 0.0f : xs[i];
                    cs[i] = (uint8_t)((v < clip_lo ? EQ_BELOW : 0u) |
                                      (v >= clip_hi ? EQ_ABOVE : 0u) |
                                      (xs[i] <= 0.0f ? EQ_ZERO : 0u));
                }
            } else {
                for (int64_t i = 0; i < inner; ++i)
                    ys[i] = clip(floorf(xs[i] / e + 0.5f), qlo, qhi) * e;
                for (int64_t i = 0; i < inner; ++i)
                    cs[i] = (uint8_t)((xs[i] < clip_lo ? EQ_BELOW : 0u) |
                                      (xs[i] >= clip_hi ? EQ_ABOVE : 0u));
            }
        }
    }
    return 1;
}

/*
 * PACT backward, elementwise part, from the forward's codes:
 *   grad_x = g·inside if clip_gradient, else g   (inside = 1 - below - above: 1.0 or +0.0)
 *            and then 0 where EQ_ZERO             (relu's backward: a literal +0)
 *   prod   = g·local   (local = c_hi·above + c_lo·below: c_hi, c_lo or +0.0)
 * The bound gradient is the sum of prod over everything or all but the channel axis,
 * which the caller leaves to torch.sum (same summation order as the reference).
 * grad_x may be NULL (the gradient passes as is); prod may be NULL (the bound needs no
 * gradient).
 */
void eq_pact_backward(const float *restrict g, const uint8_t *restrict code,
                      float *restrict grad_x, float *restrict prod, int64_t n, float c_hi,
                      float c_lo, int clip_gradient)
{
    if (grad_x != 0) {
        if (clip_gradient)
            for (int64_t i = 0; i < n; ++i) {
                const float passed = g[i] * ((code[i] & EQ_SIDES) == 0 ? 1.0f : 0.0f);
                grad_x[i] = (code[i] & EQ_ZERO) ? 0.0f : passed;
            }
        else
            for (int64_t i = 0; i < n; ++i)
                grad_x[i] = (code[i] & EQ_ZERO) ? 0.0f : g[i];
    }
    if (prod != 0) {
        for (int64_t i = 0; i < n; ++i) {
            const unsigned k = code[i] & EQ_SIDES;
            prod[i] = g[i] * (k == EQ_ABOVE ? c_hi : (k == EQ_BELOW ? c_lo : 0.0f));
        }
    }
}

/*
 * ANA forward with uniform noise and the expectation strategy, where the reference takes
 * its window-first fast path (edgeq/train/algorithms/ana.py, uniform_expectation): a
 * window of n_terms < 8 thresholds around v = x/ε (+ μ), in units of ε; levels
 * lo + step·k, k = 0 .. n_thr; thresholds t_i = lo + step·(i + 1/2), i = 0 .. n_thr - 1.
 *
 *   y     = ε·E[q],  E[q] = lo + step·(below + Σ_i F((v - t_i)/σ))   (F: uniform CDF)
 *   deriv = dE[q]/dv = step·(1/2)·#{i : |v - t_i| <= σ}/σ              (if deriv != NULL)
 *
 * dense (n_terms = n_thr): every threshold, none below the window. Otherwise the window
 * is t_(c + o), o = -reach .. reach, around c = floor((v - lo)/step - 1/2), and the
 * thresholds below it count as crossed. The operations, their operands and the order of
 * the window sum (terms 0, 4, 5, 6, then 1, 2, 3) are those of the reference.
 */
#define EQ_ANA_MAX_TERMS 7
#define EQ_ANA_BLOCK 256 /* elements per block: the window terms of a block stay in L1 */

/* one block of n <= EQ_ANA_BLOCK elements, all of channel scale e (see above) */
static void ana_block(const float *restrict x, float *restrict y, float *restrict deriv,
                      int64_t n, float e, float mu, float sigma, float lo, float step,
                      int64_t n_thr, int64_t reach, int dense, int n_terms,
                      const int *order, int n_order, const float *offset)
{
    float v[EQ_ANA_BLOCK], below[EQ_ANA_BLOCK], acc[EQ_ANA_BLOCK];
    float d[EQ_ANA_MAX_TERMS][EQ_ANA_BLOCK], valid[EQ_ANA_MAX_TERMS][EQ_ANA_BLOCK];
    const float top = (float)n_thr - 0.5f;
    for (int64_t i = 0; i < n; ++i)
        v[i] = x[i] / e;
    if (mu != 0.0f)
        for (int64_t i = 0; i < n; ++i)
            v[i] = v[i] + mu;
    if (dense) {
        for (int j = 0; j < n_terms; ++j)
            for (int64_t i = 0; i < n; ++i) {
                d[j][i] = v[i] - offset[j];
                valid[j][i] = 1.0f;
            }
    } else {
        float centre[EQ_ANA_BLOCK];
        for (int64_t i = 0; i < n; ++i) {
            float c = v[i];
            if (lo != 0.0f)
                c = c - lo;
            if (step != 1.0f)
                c = c / step;
            centre[i] = floorf(c - 0.5f);
            below[i] = clip(centre[i] - (float)reach, 0.0f, (float)n_thr);
        }
        for (int j = 0; j < n_terms; ++j)
            for (int64_t i = 0; i < n; ++i) {
                float t = centre[i] + offset[j]; /* i + 1/2 */
                valid[j][i] = clip(t, 0.5f, top) == t ? 1.0f : 0.0f;
                if (step != 1.0f)
                    t = t * step;
                if (lo != 0.0f)
                    t = t + lo;
                d[j][i] = v[i] - t;
            }
    }
    if (sigma != 1.0f)
        for (int j = 0; j < n_terms; ++j)
            for (int64_t i = 0; i < n; ++i)
                d[j][i] = d[j][i] / sigma;
    if (deriv != 0) {
        for (int64_t i = 0; i < n; ++i)
            acc[i] = 0.0f; /* a sum of 0/1 terms: exact in any order */
        for (int j = 0; j < n_terms; ++j)
            for (int64_t i = 0; i < n; ++i)
                acc[i] = acc[i] + (fabsf(d[j][i]) <= 1.0f ? 1.0f : 0.0f) * valid[j][i];
        for (int64_t i = 0; i < n; ++i) {
            float dq = acc[i] * 0.5f;
            if (step != 1.0f)
                dq = step * dq;
            if (sigma != 1.0f)
                dq = dq / sigma;
            deriv[i] = dq;
        }
    }
    for (int j = 0; j < n_terms; ++j)
        for (int64_t i = 0; i < n; ++i)
            d[j][i] = clip(d[j][i] + 1.0f, 0.0f, 2.0f) * valid[j][i]; /* 2·F(z) */
    if (n_terms == 1) {
        for (int64_t i = 0; i < n; ++i)
            acc[i] = d[0][i];
    } else {
        for (int64_t i = 0; i < n; ++i)
            acc[i] = d[order[0]][i] + d[order[1]][i];
        for (int k = 2; k < n_order; ++k)
            for (int64_t i = 0; i < n; ++i)
                acc[i] = acc[i] + d[order[k]][i];
    }
    for (int64_t i = 0; i < n; ++i) {
        float q = dense ? acc[i] * 0.5f : below[i] + 0.5f * acc[i];
        if (step != 1.0f)
            q = q * step;
        if (lo != 0.0f)
            q = q + lo;
        y[i] = q * e;
    }
}

void eq_ana_uniform_forward(const float *x, float *y, float *deriv, int64_t outer,
                            int64_t channels, int64_t inner, const float *eps, float mu,
                            float sigma, float lo, float step, int64_t n_thr, int64_t reach,
                            int dense)
{
    const int n_terms = dense ? (int)n_thr : (int)(2 * reach + 1);
    static const int order4[EQ_ANA_MAX_TERMS] = {0, 4, 5, 6, 1, 2, 3};
    int order[EQ_ANA_MAX_TERMS];
    int n_order = 0;
    if (n_terms < 1 || n_terms > EQ_ANA_MAX_TERMS)
        return; /* the caller checks this; never reached */
    for (int k = 0; k < EQ_ANA_MAX_TERMS; ++k) {
        const int j = n_terms >= 4 ? order4[k] : k;
        if (j < n_terms)
            order[n_order++] = j;
    }
    /* the window's offsets o + 1/2 (windowed) or thresholds (dense), exact in float32 */
    float offset[EQ_ANA_MAX_TERMS];
    for (int j = 0; j < n_terms; ++j)
        offset[j] = dense ? lo + step * ((float)j + 0.5f) : (float)(j - reach) + 0.5f;
    for (int64_t o = 0; o < outer; ++o) {
        for (int64_t c = 0; c < channels; ++c) {
            const int64_t base = (o * channels + c) * inner;
            for (int64_t b = 0; b < inner; b += EQ_ANA_BLOCK) {
                const int64_t n = inner - b < EQ_ANA_BLOCK ? inner - b : EQ_ANA_BLOCK;
                ana_block(x + base + b, y + base + b, deriv != 0 ? deriv + base + b : 0, n,
                          eps[c], mu, sigma, lo, step, n_thr, reach, dense, n_terms, order,
                          n_order, offset);
            }
        }
    }
}

/*
 * The weight scale re-fitted every step (STE, ANA) with the minmax init, per row c of
 * `inner` contiguous elements (one row per output channel, or one row for all):
 *   a = min, b = max of the row (NaN if the row holds a NaN)
 *   ε = max(max(b/hi, 0), a/lo)      (the a/lo term only for lo < 0)
 *   ε = fallback unless 0 < ε < inf
 * as edgeq/train/observe.py (minmax_bounds) and edgeq/train/quantiser.py (eps_covering)
 * compute it. Where the reference may return either zero (+0 or -0), ε is 0 and so
 * replaced by the fallback either way.
 */
void eq_minmax_eps(const float *restrict w, int64_t rows, int64_t inner, float lo, float hi,
                   float fallback, float *restrict eps)
{
    for (int64_t c = 0; c < rows; ++c) {
        const float *restrict row = w + c * inner;
        float a = row[0], b = row[0];
        int nan = 0;
        for (int64_t i = 0; i < inner; ++i) {
            const float v = row[i];
            nan |= v != v;
            a = v < a ? v : a;
            b = v > b ? v : b;
        }
        float e = b / hi;
        if (e < 0.0f)
            e = 0.0f;
        if (lo < 0.0f) {
            const float t = a / lo;
            if (t > e)
                e = t;
        }
        eps[c] = (!nan && e > 0.0f && e < INFINITY) ? e : fallback;
    }
}
