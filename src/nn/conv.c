/* Conv2d and ConvTranspose2d through im2col + GEMM.
 *
 * A convolution is a matrix product once each receptive field is unfolded into
 * a column (im2col). A transposed convolution is the adjoint of a convolution:
 * its forward pass is the convolution's input-gradient pass and vice versa, so
 * both share the same two unfolding routines and never loop over kernel taps
 * in scalar code. The n samples a kernel gets are unfolded side by side so one
 * GEMM covers them all: per-sample products of 8 or 16 rows are too small for
 * BLAS to run near its speed. */
#include <cblas.h>
#include <limits.h>
#include <string.h>

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

size_t lt_conv_scratch_size(const lt_conv_geom *g, int transposed, int n)
{
    /* Conv2d unfolds its input into (c*k*k) x (n*oh*ow) columns; ConvTranspose2d
     * unfolds its output into (oc*k*k) x (n*h*w). Both also stage one side of
     * the product as channels x (n*plane), the layout one GEMM over all n
     * samples needs. */
    size_t in_plane = (size_t)g->h * g->w, out_plane = (size_t)g->oh * g->ow;
    size_t kk = (size_t)g->k * g->k;
    size_t cols = transposed ? g->oc * kk * in_plane : g->c * kk * out_plane;
    size_t stage = transposed ? g->c * in_plane : g->oc * out_plane;
    return ((size_t)n * cols + 15) / 16 * 16 + (size_t)n * stage;
}

/* Unfold img [c, h, w] into columns [c*k*k rows, oh*ow of them] of a matrix
 * whose rows are ld floats long, for a convolution with the given stride and
 * padding; out-of-image taps read as zero. The x range of taps inside the
 * image is computed once per row so the inner loop has no branches. */
static void im2col(float *cols, size_t ld, const float *img, int c, int h, int w, int k, int stride,
                   int pad, int oh, int ow)
{
    for (int ch = 0; ch < c; ch++)
        for (int ki = 0; ki < k; ki++)
            for (int kj = 0; kj < k; kj++) {
                float *row = cols + (size_t)((ch * k + ki) * k + kj) * ld;
                const float *src = img + (size_t)ch * h * w;
                /* x in [x0, x1) reads inside the image: 0 <= x*stride - pad + kj < w */
                int x0 = pad - kj > 0 ? (pad - kj + stride - 1) / stride : 0;
                int x1 = w - 1 + pad - kj < 0 ? 0 : (w - 1 + pad - kj) / stride + 1;
                if (x1 > ow) x1 = ow;
                if (x0 > x1) x0 = x1;
                for (int y = 0; y < oh; y++) {
                    int iy = y * stride - pad + ki;
                    float *dst = row + (size_t)y * ow;
                    if (iy < 0 || iy >= h) {
                        memset(dst, 0, sizeof(float) * ow);
                        continue;
                    }
                    const float *line = src + (size_t)iy * w - pad + kj;
                    for (int x = 0; x < x0; x++) dst[x] = 0.0f;
                    if (stride == 1) memcpy(dst + x0, line + x0, sizeof(float) * (x1 - x0));
                    else
                        for (int x = x0; x < x1; x++) dst[x] = line[x * stride];
                    for (int x = x1; x < ow; x++) dst[x] = 0.0f;
                }
            }
}

/* The adjoint of im2col: add every column entry back to the pixel it came from.
 * img must be zeroed (or hold what should be added to) by the caller. */
static void col2im(float *img, const float *cols, size_t ld, int c, int h, int w, int k, int stride,
                   int pad, int oh, int ow)
{
    for (int ch = 0; ch < c; ch++)
        for (int ki = 0; ki < k; ki++)
            for (int kj = 0; kj < k; kj++) {
                const float *row = cols + (size_t)((ch * k + ki) * k + kj) * ld;
                float *dst = img + (size_t)ch * h * w;
                int x0 = pad - kj > 0 ? (pad - kj + stride - 1) / stride : 0;
                int x1 = w - 1 + pad - kj < 0 ? 0 : (w - 1 + pad - kj) / stride + 1;
                if (x1 > ow) x1 = ow;
                for (int y = 0; y < oh; y++) {
                    int iy = y * stride - pad + ki;
                    if (iy < 0 || iy >= h) continue;
                    float *line = dst + (size_t)iy * w - pad + kj;
                    const float *r = row + (size_t)y * ow;
                    for (int x = x0; x < x1; x++) line[x * stride] += r[x];
                }
            }
}

/* stage[ch, s*plane + i] = src[s, ch, i]: samples side by side, per channel. */
static void gather(float *stage, const float *src, int n, int channels, int plane)
{
    const size_t ld = (size_t)n * plane;
    for (int s = 0; s < n; s++)
        for (int ch = 0; ch < channels; ch++)
            memcpy(stage + ch * ld + (size_t)s * plane, src + ((size_t)s * channels + ch) * plane,
                   sizeof(float) * plane);
}

/* The inverse of gather, adding the bias of each channel on the way if given. */
static void scatter(float *dst, const float *stage, const float *b, int n, int channels, int plane)
{
    const size_t ld = (size_t)n * plane;
    for (int s = 0; s < n; s++)
        for (int ch = 0; ch < channels; ch++) {
            float *d = dst + ((size_t)s * channels + ch) * plane;
            const float *st = stage + ch * ld + (size_t)s * plane;
            const float bias = b ? b[ch] : 0.0f;
            for (int i = 0; i < plane; i++) d[i] = st[i] + bias;
        }
}

static void add_bias(float *out, const float *b, int n, int channels, int plane)
{
    for (int s = 0; s < n; s++)
        for (int o = 0; o < channels; o++) {
            float *p = out + ((size_t)s * channels + o) * plane;
            for (int i = 0; i < plane; i++) p[i] += b[o];
        }
}

/* db[o] += sum over samples and positions, samples in order. */
static void sum_bias_grad(float *db, const float *dout, int n, int channels, int plane)
{
    for (int s = 0; s < n; s++)
        for (int o = 0; o < channels; o++) {
            const float *p = dout + ((size_t)s * channels + o) * plane;
            float sum = 0.0f;
            for (int i = 0; i < plane; i++) sum += p[i];
            db[o] += sum;
        }
}

/* Split the scratch into the unfolded columns and the staging matrix. */
static void split_scratch(const lt_conv_geom *g, int transposed, int n, float *scratch, float **cols,
                          float **stage)
{
    size_t plane = transposed ? (size_t)g->h * g->w : (size_t)g->oh * g->ow;
    size_t rows = (size_t)(transposed ? g->oc : g->c) * g->k * g->k;
    *cols = scratch;
    *stage = scratch + (rows * n * plane + 15) / 16 * 16;
}

/* One GEMM over all n samples: out = W [oc, c*k*k] x cols [c*k*k, n*oh*ow]. */
void lt_conv2d_forward(float *out, const float *inp, const float *w, const float *b, int n,
                       const lt_conv_geom *g, float *scratch)
{
    const int ckk = g->c * g->k * g->k, plane = g->oh * g->ow;
    const size_t isz = (size_t)g->c * g->h * g->w, ld = (size_t)n * plane;
    float *cols, *stage;
    split_scratch(g, 0, n, scratch, &cols, &stage);
    for (int s = 0; s < n; s++)
        im2col(cols + (size_t)s * plane, ld, inp + s * isz, g->c, g->h, g->w, g->k, g->stride, g->pad,
               g->oh, g->ow);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->oc, (int)ld, ckk, 1.0f, w, ckk, cols,
                (int)ld, 0.0f, stage, (int)ld);
    scatter(out, stage, b, n, g->oc, plane);
}

void lt_conv2d_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                        const float *w, int n, const lt_conv_geom *g, float *scratch, int cols_ready)
{
    const int ckk = g->c * g->k * g->k, plane = g->oh * g->ow;
    const size_t isz = (size_t)g->c * g->h * g->w, ld = (size_t)n * plane;
    float *cols, *stage;
    split_scratch(g, 0, n, scratch, &cols, &stage);
    if (db) sum_bias_grad(db, dout, n, g->oc, plane);
    if (!dw && !dinp) return;
    gather(stage, dout, n, g->oc, plane);
    if (dw) {
        for (int s = 0; !cols_ready && s < n; s++)
            im2col(cols + (size_t)s * plane, ld, inp + s * isz, g->c, g->h, g->w, g->k, g->stride,
                   g->pad, g->oh, g->ow);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, g->oc, ckk, (int)ld, 1.0f, stage, (int)ld,
                    cols, (int)ld, 1.0f, dw, ckk);
    }
    if (dinp) {
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, ckk, (int)ld, g->oc, 1.0f, w, ckk, stage,
                    (int)ld, 0.0f, cols, (int)ld);
        memset(dinp, 0, sizeof(float) * isz * n);
        for (int s = 0; s < n; s++)
            col2im(dinp + s * isz, cols + (size_t)s * plane, ld, g->c, g->h, g->w, g->k, g->stride,
                   g->pad, g->oh, g->ow);
    }
}

/* For the transposed convolution, the unfolded image is the OUTPUT (oc, oh, ow)
 * and the "convolution output" grid is the input's (h, w). Output padding only
 * adds rows/columns at the bottom/right that no input tap reaches except through
 * the bias, which is exactly what col2im over the larger image gives. */
void lt_convt2d_forward(float *out, const float *inp, const float *w, const float *b, int n,
                        const lt_conv_geom *g, float *scratch)
{
    const int okk = g->oc * g->k * g->k, plane = g->h * g->w;
    const size_t osz = (size_t)g->oc * g->oh * g->ow, ld = (size_t)n * plane;
    float *cols, *stage;
    split_scratch(g, 1, n, scratch, &cols, &stage);
    gather(stage, inp, n, g->c, plane);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, okk, (int)ld, g->c, 1.0f, w, okk, stage,
                (int)ld, 0.0f, cols, (int)ld);
    memset(out, 0, sizeof(float) * osz * n);
    for (int s = 0; s < n; s++)
        col2im(out + s * osz, cols + (size_t)s * plane, ld, g->oc, g->oh, g->ow, g->k, g->stride, g->pad,
               g->h, g->w);
    if (b) add_bias(out, b, n, g->oc, g->oh * g->ow);
}

void lt_convt2d_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                         const float *w, int n, const lt_conv_geom *g, float *scratch)
{
    const int okk = g->oc * g->k * g->k, plane = g->h * g->w;
    const size_t osz = (size_t)g->oc * g->oh * g->ow, ld = (size_t)n * plane;
    float *cols, *stage;
    split_scratch(g, 1, n, scratch, &cols, &stage);
    if (db) sum_bias_grad(db, dout, n, g->oc, g->oh * g->ow);
    if (!dw && !dinp) return;
    for (int s = 0; s < n; s++)
        im2col(cols + (size_t)s * plane, ld, dout + s * osz, g->oc, g->oh, g->ow, g->k, g->stride, g->pad,
               g->h, g->w);
    if (dw) {
        gather(stage, inp, n, g->c, plane);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, g->c, okk, (int)ld, 1.0f, stage, (int)ld,
                    cols, (int)ld, 1.0f, dw, okk);
    }
    if (dinp) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->c, (int)ld, okk, 1.0f, w, okk, cols,
                    (int)ld, 0.0f, stage, (int)ld);
        scatter(dinp, stage, NULL, n, g->c, plane);
    }
}
