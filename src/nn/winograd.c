/* Conv2d with a 3x3 kernel and stride 1 between wide layers (the MNIST CNN's
 * 32 -> 64 on 26x26, 74% of its training step), by Winograd's minimal
 * filtering F(2x2, 3x3) (Lavin and Gray, "Fast Algorithms for Convolutional
 * Neural Networks", 2016).
 *
 * Why: through im2col + GEMM each output value costs 9 multiply-adds per
 * input channel. F(2x2, 3x3) computes a 2x2 output tile from a 4x4 input
 * tile with 16 products per channel pair instead of 36: 2.25 times fewer,
 * and the transforms that buy this are additions over one tile.
 *
 * How, per block of images (NHWC, channels contiguous):
 *   V[xi][tile][ci] = (B^T d B)[xi]   d the 4x4 input tile at (2ty, 2tx)
 *   U[xi][ci][co]   = (G g G^T)[xi]   g the 3x3 kernel of (co, ci)
 *   M[xi] = V[xi] U[xi]               16 products [tiles x ci] x [ci x co]
 *   out tile        = A^T M A         (bias added after)
 * The input gradient is the same convolution of the output gradient, padded
 * by 2 - pad, with the kernels turned 180 degrees and their channels swapped.
 * The weight gradient, the derivative of out = A^T ((G g G^T) . V) A in g:
 *   dU[xi] = sum over tiles of V[xi]^T Z[xi],  Z = A dy A^T (dy: 2x2 tile)
 *   dg = G^T dU G
 * Every sum runs in a fixed order (images in order, tiles in order), so the
 * results do not depend on the thread count. The rounding differs from
 * im2col's (the transforms add before they multiply): PyTorch's reference
 * tensors and the finite-difference checks bound it (tests/test_grad.c,
 * tests/test_torch_ref.c). */
#include <string.h>

#include "core/core.h"
#include "nn/layers.h"

typedef float v8f __attribute__((vector_size(32)));
typedef float v8f_u __attribute__((vector_size(32), aligned(4), may_alias));
#define LOAD8(p) ((v8f)(*(const v8f_u *)(p)))
#define STORE8(p, v) (*(v8f_u *)(p) = (v))

/* Floats of V and M (or Z) per block: 1 MiB, the L2 cache of one core here,
 * so a block's transforms and products stay in cache. At least one image. */
#define WINO_BLOCK ((size_t)1 << 18)

int lt_wino_applies(const lt_conv_geom *g)
{
    /* Narrow layers gain nothing: their products are too small for the
     * transforms to pay. Channels in whole vectors keep the loops simple. */
    return g->k == 3 && g->stride == 1 && g->pad <= 1 && g->opad == 0 && g->c >= 16 && g->oc >= 16 &&
           g->c % 8 == 0 && g->oc % 8 == 0;
}

/* One direction of the convolution: ci channels in on an ih x iw grid padded
 * by pad, co channels out on oh x ow, in tiles of 2x2. */
typedef struct pass {
    int ih, iw, ci, oh, ow, co, pad;
    int th, tw;   /* tiles down and across */
    int ph, pw;   /* the padded input buffer: 2 * tiles + 2 */
    int bi;       /* images per block */
} pass;

static pass make_pass(int ih, int iw, int ci, int oh, int ow, int co, int pad, int n)
{
    pass p = {ih, iw, ci, oh, ow, co, pad, (oh + 1) / 2, (ow + 1) / 2, 0, 0, 1};
    p.ph = 2 * p.th + 2, p.pw = 2 * p.tw + 2;
    const size_t per = (size_t)16 * p.th * p.tw * (size_t)(ci + co);
    const size_t b = WINO_BLOCK / per;
    p.bi = b >= (size_t)n ? n : b < 1 ? 1 : (int)b;
    return p;
}

/* The forward pass, the input-gradient pass and the weight-gradient pass (V
 * of the input, Z of the output gradient): the largest of their needs. */
static pass fwd_pass(const lt_conv_geom *g, int n)
{
    return make_pass(g->h, g->w, g->c, g->oh, g->ow, g->oc, g->pad, n);
}
static pass bwd_pass(const lt_conv_geom *g, int n)
{
    return make_pass(g->oh, g->ow, g->oc, g->h, g->w, g->c, 2 - g->pad, n);
}

static size_t round16(size_t x) { return (x + 15) / 16 * 16; }

static size_t pass_floats(const pass *p)
{
    return round16((size_t)p->ph * p->pw * p->ci) + round16((size_t)16 * p->bi * p->th * p->tw * (p->ci + p->co));
}

/* The scratch: U, dU, then what the larger pass needs. */
static size_t kernel_floats(const lt_conv_geom *g) { return round16((size_t)16 * g->c * g->oc); }

size_t lt_wino_scratch_size(const lt_conv_geom *g, int n)
{
    const pass f = fwd_pass(g, n), b = bwd_pass(g, n);
    const size_t a = pass_floats(&f), c = pass_floats(&b);
    return 2 * kernel_floats(g) + (a > c ? a : c);
}

/* U[xi][i][o] = (G g G^T)[xi] for the kernel g of output o and input i. For
 * the forward pass g = w[o][i] (PyTorch's [oc][c][3][3]); with flip, the
 * input-gradient pass, g = w[i][o] turned 180 degrees. */
static void weight_transform(float *U, const float *w, int ci, int co, int flip)
{
    for (int o = 0; o < co; o++)
        for (int i = 0; i < ci; i++) {
            float g[3][3], t[4][3];
            const float *src = flip ? w + ((size_t)i * co + o) * 9 : w + ((size_t)o * ci + i) * 9;
            for (int r = 0; r < 3; r++)
                for (int c = 0; c < 3; c++) g[r][c] = flip ? src[(2 - r) * 3 + (2 - c)] : src[r * 3 + c];
            for (int c = 0; c < 3; c++) {
                t[0][c] = g[0][c];
                t[1][c] = 0.5f * ((g[0][c] + g[1][c]) + g[2][c]);
                t[2][c] = 0.5f * ((g[0][c] - g[1][c]) + g[2][c]);
                t[3][c] = g[2][c];
            }
            for (int r = 0; r < 4; r++) {
                const float u[4] = {t[r][0], 0.5f * ((t[r][0] + t[r][1]) + t[r][2]),
                                    0.5f * ((t[r][0] - t[r][1]) + t[r][2]), t[r][2]};
                for (int c = 0; c < 4; c++) U[((size_t)(r * 4 + c) * ci + i) * co + o] = u[c];
            }
        }
}

/* dw[o][i] += G^T dU[.][i][o] G, PyTorch's layout. */
static void weight_grad_back(float *dw, const float *dU, int c, int oc)
{
    for (int o = 0; o < oc; o++)
        for (int i = 0; i < c; i++) {
            float x[4][4], t[3][4];
            for (int xi = 0; xi < 16; xi++) x[xi / 4][xi % 4] = dU[((size_t)xi * c + i) * oc + o];
            for (int b = 0; b < 4; b++) {
                t[0][b] = x[0][b] + 0.5f * (x[1][b] + x[2][b]);
                t[1][b] = 0.5f * (x[1][b] - x[2][b]);
                t[2][b] = 0.5f * (x[1][b] + x[2][b]) + x[3][b];
            }
            float *d = dw + ((size_t)o * c + i) * 9;
            for (int r = 0; r < 3; r++) {
                d[r * 3 + 0] += t[r][0] + 0.5f * (t[r][1] + t[r][2]);
                d[r * 3 + 1] += 0.5f * (t[r][1] - t[r][2]);
                d[r * 3 + 2] += 0.5f * (t[r][1] + t[r][2]) + t[r][3];
            }
        }
}

/* V[xi][t][ci] for bn images: each copied into the zero-bordered buffer
 * (whose border the caller zeroed; only the inside is written), then each
 * 4x4 tile transformed, eight channels at a time. */
LT_VECTOR_CLONES static void input_transform(float *restrict V, const float *restrict img, int bn, const pass *p,
                                             float *restrict buf)
{
    const int ci = p->ci, T = p->th * p->tw;
    const size_t xs = (size_t)bn * T * ci; /* one xi's matrix */
    for (int s = 0; s < bn; s++) {
        const float *im = img + (size_t)s * p->ih * p->iw * ci;
        for (int y = 0; y < p->ih; y++)
            memcpy(buf + ((size_t)(y + p->pad) * p->pw + p->pad) * ci, im + (size_t)y * p->iw * ci,
                   sizeof(float) * p->iw * ci);
        for (int ty = 0; ty < p->th; ty++)
            for (int tx = 0; tx < p->tw; tx++) {
                const float *d0 = buf + ((size_t)(2 * ty) * p->pw + 2 * tx) * ci;
                float *v = V + ((size_t)s * T + (size_t)ty * p->tw + tx) * ci;
                for (int c = 0; c < ci; c += 8) {
                    v8f r[4][4];
                    for (int j = 0; j < 4; j++) {
                        const v8f a0 = LOAD8(d0 + (size_t)(0 * p->pw + j) * ci + c);
                        const v8f a1 = LOAD8(d0 + (size_t)(1 * p->pw + j) * ci + c);
                        const v8f a2 = LOAD8(d0 + (size_t)(2 * p->pw + j) * ci + c);
                        const v8f a3 = LOAD8(d0 + (size_t)(3 * p->pw + j) * ci + c);
                        r[0][j] = a0 - a2, r[1][j] = a1 + a2, r[2][j] = a2 - a1, r[3][j] = a1 - a3;
                    }
                    for (int i = 0; i < 4; i++) {
                        STORE8(v + (size_t)(i * 4 + 0) * xs + c, r[i][0] - r[i][2]);
                        STORE8(v + (size_t)(i * 4 + 1) * xs + c, r[i][1] + r[i][2]);
                        STORE8(v + (size_t)(i * 4 + 2) * xs + c, r[i][2] - r[i][1]);
                        STORE8(v + (size_t)(i * 4 + 3) * xs + c, r[i][1] - r[i][3]);
                    }
                }
            }
    }
}

/* out = (bias +) A^T M A for every tile of bn images, the parts of edge
 * tiles inside the output only. */
LT_VECTOR_CLONES static void output_transform(float *restrict out, const float *restrict M, const float *restrict b,
                                              int bn, const pass *p)
{
    const int co = p->co, T = p->th * p->tw;
    const size_t xs = (size_t)bn * T * co;
    for (int s = 0; s < bn; s++)
        for (int ty = 0; ty < p->th; ty++)
            for (int tx = 0; tx < p->tw; tx++) {
                const float *m = M + ((size_t)s * T + (size_t)ty * p->tw + tx) * co;
                const int rows = 2 * ty + 1 < p->oh ? 2 : 1, cols = 2 * tx + 1 < p->ow ? 2 : 1;
                float *o = out + (((size_t)s * p->oh + 2 * ty) * p->ow + 2 * tx) * co;
                for (int c = 0; c < co; c += 8) {
                    v8f s0[4], s1[4];
                    for (int j = 0; j < 4; j++) {
                        const v8f m0 = LOAD8(m + (size_t)(0 + j) * xs + c), m1 = LOAD8(m + (size_t)(4 + j) * xs + c);
                        const v8f m2 = LOAD8(m + (size_t)(8 + j) * xs + c), m3 = LOAD8(m + (size_t)(12 + j) * xs + c);
                        s0[j] = (m0 + m1) + m2, s1[j] = (m1 - m2) - m3;
                    }
                    v8f y[2][2] = {{(s0[0] + s0[1]) + s0[2], (s0[1] - s0[2]) - s0[3]},
                                   {(s1[0] + s1[1]) + s1[2], (s1[1] - s1[2]) - s1[3]}};
                    if (b) {
                        const v8f bv = LOAD8(b + c);
                        for (int i = 0; i < 2; i++) y[i][0] = bv + y[i][0], y[i][1] = bv + y[i][1];
                    }
                    for (int i = 0; i < rows; i++)
                        for (int j = 0; j < cols; j++) STORE8(o + ((size_t)i * p->ow + j) * co + c, y[i][j]);
                }
            }
}

/* Z[xi][t][co] = (A dy A^T)[xi] for the output gradient's 2x2 tiles (zero
 * outside the output) of bn images; here p is the forward pass. */
LT_VECTOR_CLONES static void grad_transform(float *restrict Z, const float *restrict dout, int bn, const pass *p)
{
    const int co = p->co, T = p->th * p->tw;
    const size_t xs = (size_t)bn * T * co;
    for (int s = 0; s < bn; s++)
        for (int ty = 0; ty < p->th; ty++)
            for (int tx = 0; tx < p->tw; tx++) {
                const float *d = dout + (((size_t)s * p->oh + 2 * ty) * p->ow + 2 * tx) * co;
                const int down = 2 * ty + 1 < p->oh, right = 2 * tx + 1 < p->ow;
                float *z = Z + ((size_t)s * T + (size_t)ty * p->tw + tx) * co;
                for (int c = 0; c < co; c += 8) {
                    const v8f zero = {0};
                    const v8f y00 = LOAD8(d + c), y01 = right ? LOAD8(d + co + c) : zero;
                    const v8f y10 = down ? LOAD8(d + (size_t)p->ow * co + c) : zero;
                    const v8f y11 = down && right ? LOAD8(d + ((size_t)p->ow + 1) * co + c) : zero;
                    /* A dy: rows y0, y0 + y1, y0 - y1, -y1; then the same on columns. */
                    const v8f q[4][2] = {{y00, y01}, {y00 + y10, y01 + y11}, {y00 - y10, y01 - y11}, {-y10, -y11}};
                    for (int i = 0; i < 4; i++) {
                        STORE8(z + (size_t)(i * 4 + 0) * xs + c, q[i][0]);
                        STORE8(z + (size_t)(i * 4 + 1) * xs + c, q[i][0] + q[i][1]);
                        STORE8(z + (size_t)(i * 4 + 2) * xs + c, q[i][0] - q[i][1]);
                        STORE8(z + (size_t)(i * 4 + 3) * xs + c, -q[i][1]);
                    }
                }
            }
}

/* out[n, oh, ow, co] = (b +) the convolution of img[n, ih, iw, ci] with the
 * transformed kernels U, block by block. */
static void convolve(float *out, const float *img, const float *U, const float *b, int n, const pass *p,
                     float *scratch)
{
    const int T = p->th * p->tw;
    float *buf = scratch, *V = buf + round16((size_t)p->ph * p->pw * p->ci);
    memset(buf, 0, sizeof(float) * (size_t)p->ph * p->pw * p->ci);
    for (int s = 0; s < n; s += p->bi) {
        const int bn = n - s < p->bi ? n - s : p->bi, rows = bn * T;
        float *M = V + (size_t)16 * rows * p->ci;
        input_transform(V, img + (size_t)s * p->ih * p->iw * p->ci, bn, p, buf);
        for (int xi = 0; xi < 16; xi++)
            lt_gemm(0, 0, rows, p->co, p->ci, V + (size_t)xi * rows * p->ci, p->ci, U + (size_t)xi * p->ci * p->co,
                    p->co, 0, M + (size_t)xi * rows * p->co, p->co);
        output_transform(out + (size_t)s * p->oh * p->ow * p->co, M, b, bn, p);
    }
}

void lt_wino_forward(float *out, const float *inp, const float *w, const float *b, int n, const lt_conv_geom *g,
                     float *scratch)
{
    const pass p = fwd_pass(g, n);
    float *U = scratch, *rest = U + 2 * kernel_floats(g);
    weight_transform(U, w, g->c, g->oc, 0);
    convolve(out, inp, U, b, n, &p, rest);
}

void lt_wino_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w, int n,
                      const lt_conv_geom *g, float *scratch)
{
    float *U = scratch, *dU = U + kernel_floats(g), *rest = U + 2 * kernel_floats(g);
    if (dw) {
        const pass p = fwd_pass(g, n);
        const int T = p.th * p.tw;
        float *buf = rest, *V = buf + round16((size_t)p.ph * p.pw * p.ci);
        memset(buf, 0, sizeof(float) * (size_t)p.ph * p.pw * p.ci);
        for (int s = 0; s < n; s += p.bi) {
            const int bn = n - s < p.bi ? n - s : p.bi, rows = bn * T;
            float *Z = V + (size_t)16 * rows * p.ci;
            input_transform(V, inp + (size_t)s * p.ih * p.iw * p.ci, bn, &p, buf);
            grad_transform(Z, dout + (size_t)s * p.oh * p.ow * p.co, bn, &p);
            for (int xi = 0; xi < 16; xi++)
                lt_gemm(1, 0, p.ci, p.co, rows, V + (size_t)xi * rows * p.ci, p.ci, Z + (size_t)xi * rows * p.co,
                        p.co, s > 0, dU + (size_t)xi * p.ci * p.co, p.co);
        }
        weight_grad_back(dw, dU, g->c, g->oc);
    }
    if (dinp) {
        const pass p = bwd_pass(g, n);
        weight_transform(U, w, g->oc, g->c, 1);
        convolve(dinp, dout, U, NULL, n, &p, rest);
    }
}
