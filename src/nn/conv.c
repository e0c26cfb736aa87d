/* Conv2d and ConvTranspose2d through im2col + GEMM, on channels-last (NHWC)
 * activations.
 *
 * A convolution is a matrix product once each receptive field is unfolded into
 * a row (im2col). A transposed convolution is the adjoint of a convolution:
 * its forward pass is the convolution's input-gradient pass and vice versa, so
 * both share the same two unfolding routines.
 *
 * Why channels last: a receptive field is then k*k runs of C contiguous
 * floats, so unfolding is a few vector copies per tap. With channels first
 * (PyTorch's NCHW) each tap is a strided gather of a few pixels, and the
 * unfolding cost more than the products themselves. The n samples of a chunk
 * are unfolded into one matrix, so one GEMM covers them all and writes its
 * output straight into the NHWC activation. Weights stay in PyTorch's layouts
 * in the parameter block; each call reorders them (a few thousand floats)
 * into the kernel's order in its scratch.
 *
 * A wide convolution (the MNIST CNN's 32->64 on 26x26: 166k floats unfolded
 * per image, 21 MB for a chunk of 32) is unfolded and multiplied a few
 * images at a time instead (COLS_BLOCK): the unfolded block then stays in
 * cache between im2col, OpenBLAS's packing and col2im, where a whole chunk's
 * went out to memory and back three times per pass. The small layers of the
 * autoencoder still go in one block, as before.
 *
 * A convolution of a one-channel image (the first layer) is direct: 9
 * products per output value are too few to pay for unfolding and packing.
 * So is the transposed convolution back to one channel (the last layer), in
 * convt1.c. A 3x3 convolution with stride 1 between wide layers (the CNN's
 * 32->64) goes through Winograd's F(2x2, 3x3) in winograd.c: 2.25 times
 * fewer multiplications (that layer, one thread: 217 -> 135 us per image
 * forward, 428 -> 290 backward). */
#include <limits.h>
#include <string.h>

#include "core/core.h"
#include "nn/layers.h"

int lt_conv_geom_init(lt_conv_geom *g, int transposed)
{
    if (g->c <= 0 || g->h <= 0 || g->w <= 0 || g->oc <= 0 || g->k <= 0 || g->stride <= 0 ||
        g->pad < 0 || g->opad < 0)
        return -1;
    /* In 64 bits: the sizes can come from a checkpoint made elsewhere. */
    long long h = g->h, w = g->w, k = g->k, s = g->stride, p = g->pad, op = g->opad, oh, ow;
    if (transposed) {
        /* PyTorch requires output_padding < stride (or dilation). */
        if (op >= s) return -1;
        oh = (h - 1) * s - 2 * p + k + op;
        ow = (w - 1) * s - 2 * p + k + op;
    } else {
        if (op != 0 || h + 2 * p < k || w + 2 * p < k) return -1;
        oh = (h + 2 * p - k) / s + 1;
        ow = (w + 2 * p - k) / s + 1;
    }
    if (oh <= 0 || ow <= 0 || oh > INT_MAX || ow > INT_MAX) return -1;
    g->oh = (int)oh;
    g->ow = (int)ow;
    return 0;
}

static size_t round16(size_t x) { return (x + 15) / 16 * 16; }

/* 8 floats (GCC's vector extension): two SSE halves in the baseline build,
 * one register in the AVX2 clones. */
typedef float v8f __attribute__((vector_size(32)));

/* One sample of the unfolded image with its zero border: the input for a
 * convolution, the output for a transposed one. The border may need one
 * stride more on the bottom/right, where the last taps of a row can reach. */
static size_t pad_size(const lt_conv_geom *g, int transposed)
{
    size_t h = transposed ? (size_t)g->oh : (size_t)g->h, w = transposed ? (size_t)g->ow : (size_t)g->w;
    size_t c = transposed ? (size_t)g->oc : (size_t)g->c;
    return (h + 2 * (size_t)g->pad + g->stride) * (w + 2 * (size_t)g->pad + g->stride) * c;
}

/* Unfolded floats per block of a Conv2d: 1 MiB, the size of the L2 caches
 * of both cores here together; a block holds at least one image. */
#define COLS_BLOCK ((size_t)1 << 18)

static size_t cols_per_image(const lt_conv_geom *g, int transposed)
{
    size_t kk = (size_t)g->k * g->k;
    return transposed ? (size_t)g->h * g->w * kk * g->oc : (size_t)g->oh * g->ow * kk * g->c;
}

/* Images per unfolded block of a Conv2d (n, all of them, when they fit). */
static int block_images(const lt_conv_geom *g, int n)
{
    size_t per = cols_per_image(g, 0), b = per ? COLS_BLOCK / per : (size_t)n;
    return b >= (size_t)n ? n : b < 1 ? 1 : (int)b;
}

static int direct(const lt_conv_geom *g) { return g->c == 1 && g->oc % 8 == 0 && g->oc <= 64; }

size_t lt_conv_scratch_size(const lt_conv_geom *g, int transposed, int n)
{
    /* Conv2d unfolds its input into (n*oh*ow) rows of k*k*c, block by block;
     * ConvTranspose2d unfolds its output into (n*h*w) rows of k*k*oc. Plus
     * the reordered weight and its gradient. */
    size_t kk = (size_t)g->k * g->k, wsz = kk * g->c * g->oc;
    size_t cols = cols_per_image(g, transposed) * (size_t)(transposed ? n : block_images(g, n));
    size_t size = round16(cols) + 2 * round16(wsz) + round16(pad_size(g, transposed));
    if (transposed && lt_convt1_applies(g) && lt_convt1_scratch_size(g) > size) size = lt_convt1_scratch_size(g);
    if (!transposed && lt_wino_applies(g)) size = lt_wino_scratch_size(g, n);
    return size;
}

typedef struct scratch {
    float *cols, *wr, *dwr, *pad;
} scratch;

static scratch split(const lt_conv_geom *g, int transposed, int n, float *p)
{
    size_t kk = (size_t)g->k * g->k, wsz = kk * g->c * g->oc;
    size_t cols = cols_per_image(g, transposed) * (size_t)(transposed ? n : block_images(g, n));
    scratch s = {p, p + round16(cols), p + round16(cols) + round16(wsz), p + round16(cols) + 2 * round16(wsz)};
    return s;
}

/* Unfold n images [h, w, c] into rows [k*k*c], one per position of the
 * (oh, ow) output grid, for a convolution with the given stride and padding.
 * Each image is first copied into a zero border of `pad` pixels (buf), so
 * every tap is inside and the k taps of a kernel row are k*c contiguous
 * floats: one copy each, with no bounds checks. Written once and specialised
 * below for the channel counts of the default model, so that the copies have
 * constant sizes and compile to a few vector moves. */
static inline __attribute__((always_inline)) void im2col_c(float *restrict cols, const float *restrict img, int n,
                                                           int h, int w, const int c, int k, int stride, int pad,
                                                           int oh, int ow, float *restrict buf)
{
    const size_t rowlen = (size_t)k * k * c, kc = (size_t)k * c;
    const int pw = w + 2 * pad, ph = h + 2 * pad;
    memset(buf, 0, sizeof(float) * (size_t)ph * pw * c);
    for (int s = 0; s < n; s++) {
        const float *im = img + (size_t)s * h * w * c;
        for (int y = 0; y < h; y++) memcpy(buf + ((size_t)(y + pad) * pw + pad) * c, im + (size_t)y * w * c, sizeof(float) * w * c);
        float *row = cols + (size_t)s * oh * ow * rowlen;
        for (int y = 0; y < oh; y++)
            for (int x = 0; x < ow; x++)
                for (int ki = 0; ki < k; ki++, row += kc)
                    memcpy(row, buf + ((size_t)(y * stride + ki) * pw + (size_t)x * stride) * c, sizeof(float) * kc);
    }
}

LT_VECTOR_CLONES static void im2col(float *cols, const float *img, int n, int h, int w, int c, int k, int stride, int pad, int oh,
                   int ow, float *buf)
{
    if (k == 3) {
        switch (c) {
        case 1: im2col_c(cols, img, n, h, w, 1, 3, stride, pad, oh, ow, buf); return;
        case 8: im2col_c(cols, img, n, h, w, 8, 3, stride, pad, oh, ow, buf); return;
        case 16: im2col_c(cols, img, n, h, w, 16, 3, stride, pad, oh, ow, buf); return;
        case 32: im2col_c(cols, img, n, h, w, 32, 3, stride, pad, oh, ow, buf); return;
        }
    }
    im2col_c(cols, img, n, h, w, c, k, stride, pad, oh, ow, buf);
}

/* One sample's rows of cols added to the pixels they came from, in a zeroed
 * image of pw columns (the bordered buffer, or the image itself). */
static inline __attribute__((always_inline)) void scatter_rows(float *restrict dst, const float *restrict row, int pw,
                                                               const int c, int k, int stride, int oh, int ow)
{
    const size_t kc = (size_t)k * c;
    for (int y = 0; y < oh; y++)
        for (int x = 0; x < ow; x++)
            for (int ki = 0; ki < k; ki++, row += kc) {
                float *d = dst + ((size_t)(y * stride + ki) * pw + (size_t)x * stride) * c;
                for (size_t t = 0; t < kc; t++) d[t] += row[t];
            }
}

/* The adjoint of im2col: add every row entry back to the pixel it came from,
 * through the same zero border, then keep the inside. With add == 0 the
 * images are overwritten, else added to. */
static inline __attribute__((always_inline)) void col2im_c(float *restrict img, const float *restrict cols, int n,
                                                           int h, int w, const int c, int k, int stride, int pad,
                                                           int oh, int ow, float *restrict buf, int add)
{
    const size_t rowlen = (size_t)k * k * c;
    const int pw = w + 2 * pad, ph = h + 2 * pad;
    for (int s = 0; s < n; s++) {
        const float *row = cols + (size_t)s * oh * ow * rowlen;
        float *im = img + (size_t)s * h * w * c;
        if (pad == 0 && !add) {
            /* Without a border an overwrite can add straight into the
             * image: no copy back (the copies were 6% of inference). */
            memset(im, 0, sizeof(float) * (size_t)h * w * c);
            scatter_rows(im, row, w, c, k, stride, oh, ow);
            continue;
        }
        memset(buf, 0, sizeof(float) * (size_t)ph * pw * c);
        scatter_rows(buf, row, pw, c, k, stride, oh, ow);
        for (int y = 0; y < h; y++) {
            const float *src = buf + ((size_t)(y + pad) * pw + pad) * c;
            float *d = im + (size_t)y * w * c;
            if (add)
                for (size_t t = 0; t < (size_t)w * c; t++) d[t] += src[t];
            else
                memcpy(d, src, sizeof(float) * w * c);
        }
    }
}

LT_VECTOR_CLONES static void col2im(float *img, const float *cols, int n, int h, int w, int c, int k, int stride, int pad, int oh,
                   int ow, float *buf, int add)
{
    if (k == 3) {
        switch (c) {
        case 1: col2im_c(img, cols, n, h, w, 1, 3, stride, pad, oh, ow, buf, add); return;
        case 8: col2im_c(img, cols, n, h, w, 8, 3, stride, pad, oh, ow, buf, add); return;
        case 16: col2im_c(img, cols, n, h, w, 16, 3, stride, pad, oh, ow, buf, add); return;
        case 32: col2im_c(img, cols, n, h, w, 32, 3, stride, pad, oh, ow, buf, add); return;
        }
    }
    col2im_c(img, cols, n, h, w, c, k, stride, pad, oh, ow, buf, add);
}

/* PyTorch's Conv2d weight [oc][c][ki][kj] <-> the kernel's [oc][ki][kj][c];
 * ConvTranspose2d's [c][oc][ki][kj] <-> [c][ki][kj][oc]. Both are "move the
 * second index last" over an [a][b][kk] array. */
static void reorder(float *dst, const float *src, int a, int b, int kk)
{
    for (int i = 0; i < a; i++)
        for (int j = 0; j < b; j++)
            for (int t = 0; t < kk; t++) dst[((size_t)i * kk + t) * b + j] = src[((size_t)i * b + j) * kk + t];
}

/* [a][b][kk] -> [kk][b][a]: the transpose of reorder's result, for the
 * products that need the weight as B^T (LIBXSMM takes no transposed B). */
static void reorder_t(float *dst, const float *src, int a, int b, int kk)
{
    for (int i = 0; i < a; i++)
        for (int j = 0; j < b; j++)
            for (int t = 0; t < kk; t++) dst[((size_t)t * b + j) * a + i] = src[((size_t)i * b + j) * kk + t];
}

/* The inverse of reorder, added into dst (parameter gradients accumulate). */
static void unreorder_add(float *dst, const float *src, int a, int b, int kk)
{
    for (int i = 0; i < a; i++)
        for (int j = 0; j < b; j++)
            for (int t = 0; t < kk; t++) dst[((size_t)i * b + j) * kk + t] += src[((size_t)i * kk + t) * b + j];
}

/* A loop, not a memcpy per row: rows of 8 to 32 floats made hundreds of
 * library calls per image. */
static inline __attribute__((always_inline)) void fill_bias_c(float *restrict out, const float *restrict b,
                                                              size_t rows, const int channels)
{
    for (size_t r = 0; r < rows; r++)
        for (int c = 0; c < channels; c++) out[r * channels + c] = b[c];
}

LT_VECTOR_CLONES static void fill_bias(float *restrict out, const float *restrict b, size_t rows, int channels)
{
    switch (channels) {
    case 1: fill_bias_c(out, b, rows, 1); return;
    case 8: fill_bias_c(out, b, rows, 8); return;
    case 16: fill_bias_c(out, b, rows, 16); return;
    case 32: fill_bias_c(out, b, rows, 32); return;
    case 64: fill_bias_c(out, b, rows, 64); return;
    }
    fill_bias_c(out, b, rows, channels);
}

/* db[o] += the sum of column o over all rows, rows in order; constant
 * channel counts let the running sums stay in vector registers. */
static inline __attribute__((always_inline)) void sum_bias_c(float *restrict db, const float *restrict dout,
                                                             size_t rows, const int channels)
{
    float acc[64];
    for (int o = 0; o < channels; o++) acc[o] = db[o];
    for (size_t r = 0; r < rows; r++)
        for (int o = 0; o < channels; o++) acc[o] += dout[r * channels + o];
    for (int o = 0; o < channels; o++) db[o] = acc[o];
}

LT_VECTOR_CLONES static void sum_bias_grad(float *restrict db, const float *restrict dout, size_t rows, int channels)
{
    switch (channels) {
    case 8: sum_bias_c(db, dout, rows, 8); return;
    case 16: sum_bias_c(db, dout, rows, 16); return;
    case 32: sum_bias_c(db, dout, rows, 32); return;
    case 64: sum_bias_c(db, dout, rows, 64); return;
    }
    if (channels == 1) {
        /* One running sum made each addition wait for the last (2% of a
         * training step, for the last layer's bias): 32 partial sums in
         * four vectors instead, combined in a fixed order. */
        v8f acc[4] = {{0}};
        size_t r = 0;
        for (; r + 32 <= rows; r += 32)
            for (int v = 0; v < 4; v++) {
                v8f t;
                memcpy(&t, dout + r + 8 * v, sizeof t);
                acc[v] += t;
            }
        const v8f a = (acc[0] + acc[1]) + (acc[2] + acc[3]);
        float sum = 0.0f;
        for (int l = 0; l < 8; l++) sum += a[l];
        for (; r < rows; r++) sum += dout[r];
        db[0] += sum;
        return;
    }
    for (size_t r = 0; r < rows; r++)
        for (int o = 0; o < channels; o++) db[o] += dout[r * channels + o];
}

/* Direct convolution of one-channel images: per output pixel, oc sums of
 * k*k taps, the oc of them side by side in vector registers (GCC's vector
 * extension, v8f above). wt is the weight as [k*k][oc], oc a multiple of 8
 * up to 64; buf is scratch for one zero-bordered image. */
static inline __attribute__((always_inline)) void conv1_c(float *restrict out, const float *restrict img,
                                                          const float *restrict wt, const float *restrict b, int n,
                                                          const lt_conv_geom *g, const int k, const int oc,
                                                          float *restrict buf)
{
    const int st = g->stride, pad = g->pad, pw = g->w + 2 * pad, ph = g->h + 2 * pad, nv = oc / 8;
    memset(buf, 0, sizeof(float) * (size_t)ph * pw);
    for (int s = 0; s < n; s++) {
        const float *im = img + (size_t)s * g->h * g->w;
        for (int y = 0; y < g->h; y++) memcpy(buf + (size_t)(y + pad) * pw + pad, im + (size_t)y * g->w, sizeof(float) * g->w);
        float *o = out + (size_t)s * g->oh * g->ow * oc;
        for (int y = 0; y < g->oh; y++) {
            int x = 0;
            if (oc == 8)
                /* Four pixels at a time: each pixel's sum is a chain of k*k
                 * dependent additions; four independent chains side by side
                 * keep the adder busy. Each pixel adds its taps in the same
                 * order: the same bits. */
                for (; x + 4 <= g->ow; x += 4, o += 4 * oc) {
                    v8f a0, a1, a2, a3;
                    if (b) memcpy(&a0, b, sizeof a0);
                    else memset(&a0, 0, sizeof a0);
                    a1 = a0, a2 = a0, a3 = a0;
                    const float *px = buf + (size_t)y * st * pw + (size_t)x * st;
                    for (int ki = 0; ki < k; ki++)
                        for (int kj = 0; kj < k; kj++) {
                            const float *p = px + (size_t)ki * pw + kj;
                            v8f w;
                            memcpy(&w, wt + (size_t)(ki * k + kj) * oc, sizeof w);
                            a0 += p[0] * w, a1 += p[st] * w, a2 += p[2 * st] * w, a3 += p[3 * st] * w;
                        }
                    memcpy(o, &a0, sizeof a0), memcpy(o + 8, &a1, sizeof a1);
                    memcpy(o + 16, &a2, sizeof a2), memcpy(o + 24, &a3, sizeof a3);
                }
            for (; x < g->ow; x++, o += oc) {
                v8f acc[8];
                if (b) memcpy(acc, b, sizeof(float) * oc);
                else memset(acc, 0, sizeof(float) * oc);
                const float *px = buf + (size_t)y * st * pw + (size_t)x * st;
                for (int ki = 0; ki < k; ki++)
                    for (int kj = 0; kj < k; kj++) {
                        const float t = px[(size_t)ki * pw + kj], *wk = wt + (size_t)(ki * k + kj) * oc;
                        for (int v = 0; v < nv; v++) {
                            v8f w;
                            memcpy(&w, wk + 8 * v, sizeof w);
                            acc[v] += t * w;
                        }
                    }
                memcpy(o, acc, sizeof(float) * oc);
            }
        }
    }
}

LT_VECTOR_CLONES static void conv1(float *out, const float *img, const float *wt, const float *b, int n,
                                   const lt_conv_geom *g, float *buf)
{
    /* Constant sizes: the taps unroll and the sums stay in registers. */
    if (g->k == 3) {
        switch (g->oc) {
        case 8: conv1_c(out, img, wt, b, n, g, 3, 8, buf); return;
        case 16: conv1_c(out, img, wt, b, n, g, 3, 16, buf); return;
        case 32: conv1_c(out, img, wt, b, n, g, 3, 32, buf); return;
        case 64: conv1_c(out, img, wt, b, n, g, 3, 64, buf); return;
        }
    }
    conv1_c(out, img, wt, b, n, g, g->k, g->oc, buf);
}

/* The weight gradient of conv1: acc[t][o] (zeroed by the caller) += the sum
 * over output pixels of tap t's input value times dout[pixel][o]. Per pixel
 * one multiply-add per tap and vector of outputs, k*k independent sums: a
 * GEMM with a depth of 9 spent more in packing than in multiplying. */
static inline __attribute__((always_inline)) void conv1_dw_c(float *restrict acc, const float *restrict dout,
                                                             const float *restrict img, int n, const lt_conv_geom *g,
                                                             const int k, const int oc, float *restrict buf)
{
    const int st = g->stride, pad = g->pad, pw = g->w + 2 * pad, ph = g->h + 2 * pad, nv = oc / 8;
    memset(buf, 0, sizeof(float) * (size_t)ph * pw);
    v8f a[25 * 8];
    memcpy(a, acc, sizeof(float) * (size_t)k * k * oc);
    for (int s = 0; s < n; s++) {
        const float *im = img + (size_t)s * g->h * g->w;
        for (int y = 0; y < g->h; y++) memcpy(buf + (size_t)(y + pad) * pw + pad, im + (size_t)y * g->w, sizeof(float) * g->w);
        const float *d = dout + (size_t)s * g->oh * g->ow * oc;
        for (int y = 0; y < g->oh; y++)
            for (int x = 0; x < g->ow; x++, d += oc) {
                v8f dv[8];
                memcpy(dv, d, sizeof(float) * oc);
                const float *px = buf + (size_t)y * st * pw + (size_t)x * st;
                for (int ki = 0; ki < k; ki++)
                    for (int kj = 0; kj < k; kj++) {
                        const float t = px[(size_t)ki * pw + kj];
                        for (int v = 0; v < nv; v++) a[(ki * k + kj) * nv + v] += t * dv[v];
                    }
            }
    }
    memcpy(acc, a, sizeof(float) * (size_t)k * k * oc);
}

LT_VECTOR_CLONES static void conv1_dw(float *acc, const float *dout, const float *img, int n, const lt_conv_geom *g,
                                      float *buf)
{
    if (g->k == 3) {
        switch (g->oc) {
        case 8: conv1_dw_c(acc, dout, img, n, g, 3, 8, buf); return;
        case 16: conv1_dw_c(acc, dout, img, n, g, 3, 16, buf); return;
        case 32: conv1_dw_c(acc, dout, img, n, g, 3, 32, buf); return;
        case 64: conv1_dw_c(acc, dout, img, n, g, 3, 64, buf); return;
        }
    }
    conv1_dw_c(acc, dout, img, n, g, g->k, g->oc, buf);
}

/* out [n*oh*ow, oc] = bias + cols [n*oh*ow, kkc] x Wt, Wt [kkc, oc]. */
void lt_conv2d_forward(float *out, const float *inp, const float *w, const float *b, int n,
                       const lt_conv_geom *g, float *scratch_p)
{
    const int kk = g->k * g->k, kkc = kk * g->c, per = g->oh * g->ow, bi = block_images(g, n);
    const size_t isz = (size_t)g->h * g->w * g->c;
    scratch sc = split(g, 0, n, scratch_p);
    if (direct(g)) {
        /* With one channel the weight [oc][kk] is the transpose of what the
         * kernel wants. */
        reorder(sc.wr, w, 1, g->oc, kk);
        conv1(out, inp, sc.wr, b, n, g, sc.pad);
        return;
    }
    if (lt_wino_applies(g)) {
        lt_wino_forward(out, inp, w, b, n, g, scratch_p);
        return;
    }
    reorder_t(sc.wr, w, g->oc, g->c, kk);
    /* The bias goes in first and the product adds to it: no separate pass.
     * Without a bias the product writes the output. */
    if (b) fill_bias(out, b, (size_t)n * per, g->oc);
    for (int s = 0; s < n; s += bi) {
        const int bn = n - s < bi ? n - s : bi;
        im2col(sc.cols, inp + s * isz, bn, g->h, g->w, g->c, g->k, g->stride, g->pad, g->oh, g->ow, sc.pad);
        lt_gemm(0, 0, bn * per, g->oc, kkc, sc.cols, kkc, sc.wr, g->oc, b != NULL, out + (size_t)s * per * g->oc,
                g->oc);
    }
}

/* cols_ready: the forward pass left the unfolded input in the scratch, which
 * it does only when it was one block and not direct. */
void lt_conv2d_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                        const float *w, int n, const lt_conv_geom *g, float *scratch_p, int cols_ready)
{
    const int kk = g->k * g->k, kkc = kk * g->c, per = g->oh * g->ow, bi = block_images(g, n);
    const size_t isz = (size_t)g->h * g->w * g->c, osz = (size_t)per * g->oc;
    scratch sc = split(g, 0, n, scratch_p);
    cols_ready = cols_ready && bi == n && !direct(g);
    if (db) sum_bias_grad(db, dout, (size_t)n * per, g->oc);
    if (lt_wino_applies(g)) {
        lt_wino_backward(dinp, dw, dout, inp, w, n, g, scratch_p);
        return;
    }
    if (dw && direct(g) && g->k <= 5) {
        memset(sc.dwr, 0, sizeof(float) * (size_t)kk * g->oc);
        conv1_dw(sc.dwr, dout, inp, n, g, sc.pad);
        /* [k*k][oc] -> PyTorch's [oc][1][k][k] */
        unreorder_add(dw, sc.dwr, 1, g->oc, kk);
    } else if (dw) {
        for (int s = 0; s < n; s += bi) {
            const int bn = n - s < bi ? n - s : bi;
            if (!cols_ready)
                im2col(sc.cols, inp + s * isz, bn, g->h, g->w, g->c, g->k, g->stride, g->pad, g->oh, g->ow, sc.pad);
            lt_gemm(1, 0, g->oc, kkc, bn * per, dout + s * osz, g->oc, sc.cols, kkc, s > 0, sc.dwr, kkc);
        }
        unreorder_add(dw, sc.dwr, g->oc, g->c, kk);
    }
    if (dinp) {
        reorder(sc.wr, w, g->oc, g->c, kk);
        for (int s = 0; s < n; s += bi) {
            const int bn = n - s < bi ? n - s : bi;
            lt_gemm(0, 0, bn * per, kkc, g->oc, dout + s * osz, g->oc, sc.wr, kkc, 0, sc.cols, kkc);
            col2im(dinp + s * isz, sc.cols, bn, g->h, g->w, g->c, g->k, g->stride, g->pad, g->oh, g->ow, sc.pad, 0);
        }
    }
}

/* For the transposed convolution, the unfolded image is the OUTPUT (oh, ow,
 * oc) and the grid of rows is the input's (h, w). Output padding only adds
 * rows/columns at the bottom/right that no input tap reaches, so they get the
 * bias alone, as in PyTorch. */
void lt_convt2d_forward(float *out, const float *inp, const float *w, const float *b, int n,
                        const lt_conv_geom *g, float *scratch_p)
{
    if (lt_convt1_applies(g)) {
        lt_convt1_forward(out, inp, w, b, n, g, scratch_p);
        return;
    }
    const int kk = g->k * g->k, kko = kk * g->oc, rows = n * g->h * g->w;
    scratch sc = split(g, 1, n, scratch_p);
    reorder(sc.wr, w, g->c, g->oc, kk);
    lt_gemm(0, 0, rows, kko, g->c, inp, g->c, sc.wr, kko, 0, sc.cols, kko);
    /* Without a bias (the ReLU after it adds it) col2im writes the output. */
    if (b) fill_bias(out, b, (size_t)n * g->oh * g->ow, g->oc);
    col2im(out, sc.cols, n, g->oh, g->ow, g->oc, g->k, g->stride, g->pad, g->h, g->w, sc.pad, b != NULL);
}

void lt_convt2d_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                         const float *w, int n, const lt_conv_geom *g, float *scratch_p)
{
    if (db) sum_bias_grad(db, dout, (size_t)n * g->oh * g->ow, g->oc);
    /* Back to one channel, the adjoint is a convolution of the one-channel
     * output gradient, with the same kernels as the first layer: the input
     * gradient is conv1's forward, the weight gradient conv1_dw. Measured
     * against convt1.c's phase sums: 4.3 -> 2.2 us per image. */
    const lt_conv_geom cg = {.c = 1, .h = g->oh, .w = g->ow, .oc = g->c, .k = g->k, .stride = g->stride,
                             .pad = g->pad, .oh = g->h, .ow = g->w};
    if (g->oc == 1 && direct(&cg) && g->k <= 5) {
        const int kk = g->k * g->k;
        scratch sc = split(g, 1, n, scratch_p);
        if (dw) {
            memset(sc.dwr, 0, sizeof(float) * (size_t)kk * g->c);
            conv1_dw(sc.dwr, inp, dout, n, &cg, sc.pad);
            unreorder_add(dw, sc.dwr, 1, g->c, kk);
        }
        if (dinp) {
            reorder(sc.wr, w, 1, g->c, kk);
            conv1(dinp, dout, sc.wr, NULL, n, &cg, sc.pad);
        }
        return;
    }
    if (lt_convt1_applies(g)) {
        lt_convt1_backward(dinp, dw, dout, inp, w, n, g, scratch_p);
        return;
    }
    const int kk = g->k * g->k, kko = kk * g->oc, rows = n * g->h * g->w;
    scratch sc = split(g, 1, n, scratch_p);
    if (!dw && !dinp) return;
    im2col(sc.cols, dout, n, g->oh, g->ow, g->oc, g->k, g->stride, g->pad, g->h, g->w, sc.pad);
    if (dw) {
        lt_gemm(1, 0, g->c, kko, rows, inp, g->c, sc.cols, kko, 0, sc.dwr, kko);
        unreorder_add(dw, sc.dwr, g->c, g->oc, kk);
    }
    if (dinp) {
        reorder_t(sc.wr, w, g->c, g->oc, kk);
        lt_gemm(0, 0, rows, g->c, kko, sc.cols, kko, sc.wr, g->c, 0, dinp, g->c);
    }
}
