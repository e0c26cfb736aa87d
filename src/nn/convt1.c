/* The autoencoder's last layer, ConvTranspose2d to ONE channel with a 3x3
 * kernel, stride 2, padding 1, output padding 1 (c x h x w -> 1 x 2h x 2w),
 * computed directly.
 *
 * Why: through im2col + GEMM this layer was the slowest of the model (a
 * fifth of a training step, at 6-10% of peak). Its GEMMs have 9 columns or
 * a depth of 9, where OpenBLAS packs more than it multiplies, and the
 * unfolded 9 values per input pixel are then scattered into the image.
 *
 * How: with stride 2 every output pixel (2j+py, 2i+px) takes taps from a
 * fixed set per phase (py, px): kernel row 1 from input row j when py = 0;
 * rows 0 and 2 from input rows j+1 and j when py = 1; the same for columns.
 * The input is copied into one plane per channel with a stride of w+1 (a zero
 * column and zero rows after it), so each tap is the plane read at a fixed
 * offset, and one phase of the output is a sum of shifted planes: eight
 * outputs at a time in a vector register, one load and one multiply-add per
 * channel and tap. The backward pass is the same sums the other way round:
 * the output gradient split into its four phase planes (with zero rows in
 * front), the input gradient as shifted sums of those, the weight gradient as
 * dot products of the two. Every sum runs in a fixed order, so results do not
 * depend on the thread count. */
#include <string.h>

#include "core/core.h"
#include "nn/layers.h"

typedef float v8f __attribute__((vector_size(32)));
/* The same vector read or written at any float address. */
typedef float v8f_u __attribute__((vector_size(32), aligned(4), may_alias));
#define LOAD8(p) (*(const v8f_u *)(p))
#define STORE8(p, v) (*(v8f_u *)(p) = (v))

int lt_convt1_applies(const lt_conv_geom *g)
{
    return g->oc == 1 && g->k == 3 && g->stride == 2 && g->pad == 1 && g->oh == 2 * g->h && g->ow == 2 * g->w;
}

/* Plane geometry: row stride W1 = w + 1; L the h rows rounded up to groups
 * of four vectors (the loops below keep four sums going at once, so that
 * each addition need not wait for the previous one); a plane holds
 * L + W1 + 8 floats, so every shifted read of L floats stays inside it (the
 * largest shift is W1 + 1). */
typedef struct planes {
    int W1, L, PL;
} planes;

static planes geometry(const lt_conv_geom *g)
{
    planes p;
    p.W1 = g->w + 1;
    p.L = (g->h * p.W1 + 31) / 32 * 32;
    p.PL = p.L + p.W1 + 8;
    return p;
}

size_t lt_convt1_scratch_size(const lt_conv_geom *g)
{
    planes p = geometry(g);
    /* Input planes, four phase planes, the input gradient's planes, the
     * weight gradient's vector sums. */
    return (size_t)(2 * g->c + 4) * p.PL + (size_t)g->c * 9 * 8 + 16;
}

/* The taps of the four phases (ph = 2 py + px): offset into the input plane
 * and kernel index of each. */
typedef struct taps {
    int n[4], off[4][4], k[4][4];
} taps;

static taps phase_taps(int W1)
{
    static const int dy[2][2] = {{0, 0}, {1, 0}}, ky[2][2] = {{1, 0}, {0, 2}}, ny[2] = {1, 2};
    taps T;
    for (int ph = 0; ph < 4; ph++) {
        const int py = ph >> 1, px = ph & 1;
        int t = 0;
        for (int a = 0; a < ny[py]; a++)
            for (int b = 0; b < ny[px]; b++, t++) {
                T.off[ph][t] = dy[py][a] * W1 + dy[px][b];
                T.k[ph][t] = ky[py][a] * 3 + ky[px][b];
            }
        T.n[ph] = t;
    }
    return T;
}

/* An 8x8 block transposed in registers (24 shuffles, against 64 scalar
 * moves with strided stores, which were a third of the backward pass). */
static inline __attribute__((always_inline)) void transpose8(v8f r[8])
{
    /* __builtin_shufflevector: GCC 12 and clang alike; lanes 8-15 are b's. */
#define LO(a, b) __builtin_shufflevector(a, b, 0, 8, 1, 9, 4, 12, 5, 13)
#define HI(a, b) __builtin_shufflevector(a, b, 2, 10, 3, 11, 6, 14, 7, 15)
#define LO2(a, b) __builtin_shufflevector(a, b, 0, 1, 8, 9, 4, 5, 12, 13)
#define HI2(a, b) __builtin_shufflevector(a, b, 2, 3, 10, 11, 6, 7, 14, 15)
#define LO4(a, b) __builtin_shufflevector(a, b, 0, 1, 2, 3, 8, 9, 10, 11)
#define HI4(a, b) __builtin_shufflevector(a, b, 4, 5, 6, 7, 12, 13, 14, 15)
    v8f t[8], u[8];
    for (int k = 0; k < 8; k += 2) t[k] = LO(r[k], r[k + 1]), t[k + 1] = HI(r[k], r[k + 1]);
    for (int k = 0; k < 8; k += 4) {
        u[k] = LO2(t[k], t[k + 2]), u[k + 1] = HI2(t[k], t[k + 2]);
        u[k + 2] = LO2(t[k + 1], t[k + 3]), u[k + 3] = HI2(t[k + 1], t[k + 3]);
    }
    for (int k = 0; k < 4; k++) r[k] = LO4(u[k], u[k + 4]), r[k + 4] = HI4(u[k], u[k + 4]);
#undef LO
#undef HI
#undef LO2
#undef HI2
#undef LO4
#undef HI4
}

/* Between the channels-last image [h][w][c] and c planes of stride W1:
 * to_pl = 1 copies the image into the planes (only the inside: the border
 * stays as the caller zeroed it), 0 the planes' inside into the image. Blocks
 * of 8 pixels x 8 channels go through transpose8 (the last block of a row
 * overlaps the one before it when w is not a multiple of 8). */
static inline __attribute__((always_inline)) void planes_copy(float *P, float *img, const lt_conv_geom *g, planes p,
                                                              int to_pl)
{
    const int c = g->c, w = g->w;
    for (int y = 0; y < g->h; y++) {
        if (c % 8 == 0 && w >= 8) {
            for (int x0 = 0; x0 < w; x0 += 8) {
                const int xs = x0 + 8 > w ? w - 8 : x0;
                for (int cb = 0; cb < c; cb += 8) {
                    float *pl = P + (size_t)cb * p.PL + y * p.W1 + xs, *im = img + ((size_t)y * w + xs) * c + cb;
                    v8f r[8];
                    for (int k = 0; k < 8; k++) r[k] = to_pl ? LOAD8(im + (size_t)k * c) : LOAD8(pl + (size_t)k * p.PL);
                    transpose8(r);
                    for (int k = 0; k < 8; k++) {
                        if (to_pl) STORE8(pl + (size_t)k * p.PL, r[k]);
                        else STORE8(im + (size_t)k * c, r[k]);
                    }
                }
            }
            continue;
        }
        for (int x = 0; x < w; x++)
            for (int ch = 0; ch < c; ch++) {
                float *pl = P + (size_t)ch * p.PL + y * p.W1 + x, *im = img + ((size_t)y * w + x) * c + ch;
                if (to_pl) *pl = *im;
                else *im = *pl;
            }
    }
}

static inline __attribute__((always_inline)) void to_planes(float *P, const float *img, const lt_conv_geom *g, planes p)
{
    planes_copy(P, (float *)img, g, p, 1); /* only read when to_pl */
}

static inline __attribute__((always_inline)) void from_planes(float *img, const float *P, const lt_conv_geom *g, planes p)
{
    planes_copy((float *)P, img, g, p, 0); /* only read when !to_pl */
}

/* c is a compile-time constant in the specialisations below, so that the
 * loop over the channels unrolls. */
static inline __attribute__((always_inline)) void forward_c(float *out, const float *inp, const float *w,
                                                            const float *b, int n, const lt_conv_geom *g,
                                                            float *scratch, const int c)
{
    const planes p = geometry(g);
    const int ow = g->ow;
    float *P = scratch, *Q = P + (size_t)c * p.PL;
    const float bias = b ? b[0] : 0.0f;
    const taps T = phase_taps(p.W1);
    memset(P, 0, sizeof(float) * (size_t)c * p.PL);
    for (int s = 0; s < n; s++) {
        to_planes(P, inp + (size_t)s * g->h * g->w * c, g, p);
        for (int ph = 0; ph < 4; ph++) {
            float *q = Q + (size_t)ph * p.L;
            int i = 0;
            /* Eight sums at a time where the plane allows: with four, each
             * addition still waited on the one before it in its sum (the
             * adder's latency), a quarter of the time. Each output adds its
             * taps in the same order either way: the same bits. */
            for (; i + 64 <= p.L; i += 64) {
                v8f a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, a4 = {0}, a5 = {0}, a6 = {0}, a7 = {0};
                for (int t = 0; t < T.n[ph]; t++)
                    for (int ch = 0; ch < c; ch++) {
                        const float wk = w[ch * 9 + T.k[ph][t]], *x = P + (size_t)ch * p.PL + T.off[ph][t] + i;
                        a0 += wk * LOAD8(x), a1 += wk * LOAD8(x + 8), a2 += wk * LOAD8(x + 16), a3 += wk * LOAD8(x + 24);
                        a4 += wk * LOAD8(x + 32), a5 += wk * LOAD8(x + 40), a6 += wk * LOAD8(x + 48);
                        a7 += wk * LOAD8(x + 56);
                    }
                STORE8(q + i, a0), STORE8(q + i + 8, a1), STORE8(q + i + 16, a2), STORE8(q + i + 24, a3);
                STORE8(q + i + 32, a4), STORE8(q + i + 40, a5), STORE8(q + i + 48, a6), STORE8(q + i + 56, a7);
            }
            for (; i < p.L; i += 32) {
                v8f a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
                for (int t = 0; t < T.n[ph]; t++)
                    for (int ch = 0; ch < c; ch++) {
                        const float wk = w[ch * 9 + T.k[ph][t]], *x = P + (size_t)ch * p.PL + T.off[ph][t] + i;
                        a0 += wk * LOAD8(x), a1 += wk * LOAD8(x + 8), a2 += wk * LOAD8(x + 16), a3 += wk * LOAD8(x + 24);
                    }
                STORE8(q + i, a0), STORE8(q + i + 8, a1), STORE8(q + i + 16, a2), STORE8(q + i + 24, a3);
            }
        }
        float *o = out + (size_t)s * g->oh * ow;
        for (int j = 0; j < g->h; j++)
            for (int py = 0; py < 2; py++) {
                float *row = o + (size_t)(2 * j + py) * ow;
                const float *e = Q + (size_t)(py * 2) * p.L + j * p.W1, *od = e + p.L;
                for (int i = 0; i < g->w; i++) row[2 * i] = bias + e[i], row[2 * i + 1] = bias + od[i];
            }
    }
}

LT_VECTOR_CLONES static void forward_impl(float *out, const float *inp, const float *w, const float *b, int n,
                                          const lt_conv_geom *g, float *scratch)
{
    switch (g->c) {
    case 8: forward_c(out, inp, w, b, n, g, scratch, 8); return;
    case 16: forward_c(out, inp, w, b, n, g, scratch, 16); return;
    }
    forward_c(out, inp, w, b, n, g, scratch, g->c);
}

/* The weight gradient's running sums for channels ch..ch+nc-1 (at most 8)
 * of one tap: one sum per channel, so nc independent additions per output
 * gradient vector read. Constant nc keeps the sums in registers. */
static inline __attribute__((always_inline)) void dw_sums_c(float *restrict acc, const float *restrict P,
                                                            const float *restrict dq, int ch, const int nc, int k,
                                                            int off, planes p)
{
    v8f a[8];
    for (int u = 0; u < nc; u++) a[u] = LOAD8(acc + ((size_t)(ch + u) * 9 + k) * 8);
    const float *x = P + (size_t)ch * p.PL + off;
    for (int i = 0; i < p.L; i += 8) {
        const v8f d = LOAD8(dq + i);
        for (int u = 0; u < nc; u++) a[u] += LOAD8(x + (size_t)u * p.PL + i) * d;
    }
    for (int u = 0; u < nc; u++) STORE8(acc + ((size_t)(ch + u) * 9 + k) * 8, a[u]);
}

static inline __attribute__((always_inline)) void dw_sums(float *acc, const float *P, const float *dq, int ch,
                                                          int nc, int k, int off, planes p)
{
    if (nc == 8) dw_sums_c(acc, P, dq, ch, 8, k, off, p);
    else dw_sums_c(acc, P, dq, ch, nc, k, off, p);
}

LT_VECTOR_CLONES static void backward_impl(float *dinp, float *dw, const float *dout, const float *inp,
                                           const float *w, int n, const lt_conv_geom *g, float *scratch)
{
    const planes p = geometry(g);
    const int c = g->c, ow = g->ow, F = p.W1 + 1;
    float *P = scratch, *D = P + (size_t)c * p.PL, *dP = D + (size_t)4 * p.PL, *acc = dP + (size_t)c * p.PL;
    const taps T = phase_taps(p.W1);
    if (!dw && !dinp) return;
    memset(P, 0, sizeof(float) * (size_t)c * p.PL);
    memset(D, 0, sizeof(float) * (size_t)4 * p.PL);
    memset(acc, 0, sizeof(float) * (size_t)c * 9 * 8);
    for (int s = 0; s < n; s++) {
        /* The output gradient's four phases, each F floats in, so that a read
         * F - (largest tap offset) before a position is still inside. */
        const float *d = dout + (size_t)s * g->oh * ow;
        for (int j = 0; j < g->h; j++)
            for (int py = 0; py < 2; py++) {
                const float *row = d + (size_t)(2 * j + py) * ow;
                float *e = D + (size_t)(py * 2) * p.PL + F + j * p.W1, *o = e + p.PL;
                for (int i = 0; i < g->w; i++) e[i] = row[2 * i], o[i] = row[2 * i + 1];
            }
        if (dw) {
            to_planes(P, inp + (size_t)s * g->h * g->w * c, g, p);
            for (int ph = 0; ph < 4; ph++)
                for (int t = 0; t < T.n[ph]; t++)
                    for (int ch = 0; ch < c; ch += 8)
                        dw_sums(acc, P, D + (size_t)ph * p.PL + F, ch, c - ch < 8 ? c - ch : 8, T.k[ph][t],
                                T.off[ph][t], p);
        }
        if (dinp) {
            float *di = dinp + (size_t)s * g->h * g->w * c;
            for (int ch = 0; ch < c; ch++) {
                float *dp = dP + (size_t)ch * p.PL;
                for (int i = 0; i < p.L; i += 32) {
                    v8f a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
                    for (int ph = 0; ph < 4; ph++)
                        for (int t = 0; t < T.n[ph]; t++) {
                            const float wk = w[ch * 9 + T.k[ph][t]], *x = D + (size_t)ph * p.PL + F - T.off[ph][t] + i;
                            a0 += wk * LOAD8(x), a1 += wk * LOAD8(x + 8), a2 += wk * LOAD8(x + 16), a3 += wk * LOAD8(x + 24);
                        }
                    STORE8(dp + i, a0), STORE8(dp + i + 8, a1), STORE8(dp + i + 16, a2), STORE8(dp + i + 24, a3);
                }
            }
            from_planes(di, dP, g, p);
        }
    }
    if (dw)
        for (int r = 0; r < c * 9; r++) {
            float sum = 0.0f;
            for (int l = 0; l < 8; l++) sum += acc[r * 8 + l];
            dw[r] += sum;
        }
}

/* The cloned bodies are static: clang cannot clone a function other files
 * call (see LT_VECTOR_CLONES). */
void lt_convt1_forward(float *out, const float *inp, const float *w, const float *b, int n, const lt_conv_geom *g,
                       float *scratch)
{
    forward_impl(out, inp, w, b, n, g, scratch);
}

/* dw is added to; dinp is overwritten. */
void lt_convt1_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w, int n,
                        const lt_conv_geom *g, float *scratch)
{
    backward_impl(dinp, dw, dout, inp, w, n, g, scratch);
}
