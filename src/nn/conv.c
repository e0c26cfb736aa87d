/* Conv2d and ConvTranspose2d through im2col + GEMM.
 *
 * A convolution is a matrix product once each receptive field is unfolded into
 * a column (im2col). A transposed convolution is the adjoint of a convolution:
 * its forward pass is the convolution's input-gradient pass and vice versa, so
 * both share the same two unfolding routines and never loop over kernel taps
 * in scalar code. */
#include <cblas.h>
#include <string.h>

#include "nn/layers.h"

int lt_conv_geom_init(lt_conv_geom *g, int transposed)
{
    if (g->c <= 0 || g->h <= 0 || g->w <= 0 || g->oc <= 0 || g->k <= 0 || g->stride <= 0 ||
        g->pad < 0 || g->opad < 0)
        return -1;
    if (transposed) {
        /* PyTorch requires output_padding < stride (or dilation). */
        if (g->opad >= g->stride) return -1;
        g->oh = (g->h - 1) * g->stride - 2 * g->pad + g->k + g->opad;
        g->ow = (g->w - 1) * g->stride - 2 * g->pad + g->k + g->opad;
    } else {
        if (g->opad != 0) return -1;
        if (g->h + 2 * g->pad < g->k || g->w + 2 * g->pad < g->k) return -1;
        g->oh = (g->h + 2 * g->pad - g->k) / g->stride + 1;
        g->ow = (g->w + 2 * g->pad - g->k) / g->stride + 1;
    }
    return (g->oh > 0 && g->ow > 0) ? 0 : -1;
}

size_t lt_conv_cols_size(const lt_conv_geom *g, int transposed)
{
    /* Conv2d unfolds its input: (c*k*k) x (oh*ow). ConvTranspose2d unfolds its
     * output: (oc*k*k) x (h*w). */
    if (transposed) return (size_t)g->oc * g->k * g->k * g->h * g->w;
    return (size_t)g->c * g->k * g->k * g->oh * g->ow;
}

/* Unfold img [c, h, w] into cols [c*k*k, oh*ow] for a convolution with the given
 * stride and padding; out-of-image taps read as zero. */
static void im2col(float *cols, const float *img, int c, int h, int w, int k, int stride, int pad,
                   int oh, int ow)
{
    for (int ch = 0; ch < c; ch++)
        for (int ki = 0; ki < k; ki++)
            for (int kj = 0; kj < k; kj++) {
                float *row = cols + ((size_t)(ch * k + ki) * k + kj) * oh * ow;
                const float *src = img + (size_t)ch * h * w;
                for (int y = 0; y < oh; y++) {
                    int iy = y * stride - pad + ki;
                    float *dst = row + (size_t)y * ow;
                    if (iy < 0 || iy >= h) {
                        memset(dst, 0, sizeof(float) * ow);
                        continue;
                    }
                    for (int x = 0; x < ow; x++) {
                        int ix = x * stride - pad + kj;
                        dst[x] = (ix >= 0 && ix < w) ? src[(size_t)iy * w + ix] : 0.0f;
                    }
                }
            }
}

/* The adjoint of im2col: add every column entry back to the pixel it came from.
 * img must be zeroed (or hold what should be added to) by the caller. */
static void col2im(float *img, const float *cols, int c, int h, int w, int k, int stride, int pad,
                   int oh, int ow)
{
    for (int ch = 0; ch < c; ch++)
        for (int ki = 0; ki < k; ki++)
            for (int kj = 0; kj < k; kj++) {
                const float *row = cols + ((size_t)(ch * k + ki) * k + kj) * oh * ow;
                float *dst = img + (size_t)ch * h * w;
                for (int y = 0; y < oh; y++) {
                    int iy = y * stride - pad + ki;
                    if (iy < 0 || iy >= h) continue;
                    for (int x = 0; x < ow; x++) {
                        int ix = x * stride - pad + kj;
                        if (ix >= 0 && ix < w) dst[(size_t)iy * w + ix] += row[(size_t)y * ow + x];
                    }
                }
            }
}

static void add_bias(float *out, const float *b, int channels, int plane)
{
    for (int o = 0; o < channels; o++) {
        float *p = out + (size_t)o * plane;
        for (int i = 0; i < plane; i++) p[i] += b[o];
    }
}

static void sum_bias_grad(float *db, const float *dout, int channels, int plane)
{
    for (int o = 0; o < channels; o++) {
        const float *p = dout + (size_t)o * plane;
        float s = 0.0f;
        for (int i = 0; i < plane; i++) s += p[i];
        db[o] += s;
    }
}

void lt_conv2d_forward(float *out, const float *inp, const float *w, const float *b, int n,
                       const lt_conv_geom *g, float *cols)
{
    const int ckk = g->c * g->k * g->k, plane = g->oh * g->ow;
    const size_t isz = (size_t)g->c * g->h * g->w, osz = (size_t)g->oc * plane;
    for (int s = 0; s < n; s++) {
        im2col(cols, inp + s * isz, g->c, g->h, g->w, g->k, g->stride, g->pad, g->oh, g->ow);
        float *o = out + s * osz;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->oc, plane, ckk, 1.0f, w, ckk,
                    cols, plane, 0.0f, o, plane);
        if (b) add_bias(o, b, g->oc, plane);
    }
}

void lt_conv2d_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                        const float *w, int n, const lt_conv_geom *g, float *cols)
{
    const int ckk = g->c * g->k * g->k, plane = g->oh * g->ow;
    const size_t isz = (size_t)g->c * g->h * g->w, osz = (size_t)g->oc * plane;
    for (int s = 0; s < n; s++) {
        const float *dos = dout + s * osz;
        if (db) sum_bias_grad(db, dos, g->oc, plane);
        if (dw) {
            im2col(cols, inp + s * isz, g->c, g->h, g->w, g->k, g->stride, g->pad, g->oh, g->ow);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, g->oc, ckk, plane, 1.0f, dos,
                        plane, cols, plane, 1.0f, dw, ckk);
        }
        if (dinp) {
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, ckk, plane, g->oc, 1.0f, w, ckk,
                        dos, plane, 0.0f, cols, plane);
            float *di = dinp + s * isz;
            memset(di, 0, sizeof(float) * isz);
            col2im(di, cols, g->c, g->h, g->w, g->k, g->stride, g->pad, g->oh, g->ow);
        }
    }
}

/* For the transposed convolution, the unfolded image is the OUTPUT (oc, oh, ow)
 * and the "convolution output" grid is the input's (h, w). Output padding only
 * adds rows/columns at the bottom/right that no input tap reaches except through
 * the bias, which is exactly what col2im over the larger image gives. */
void lt_convt2d_forward(float *out, const float *inp, const float *w, const float *b, int n,
                        const lt_conv_geom *g, float *cols)
{
    const int okk = g->oc * g->k * g->k, plane = g->h * g->w;
    const size_t isz = (size_t)g->c * plane, osz = (size_t)g->oc * g->oh * g->ow;
    for (int s = 0; s < n; s++) {
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, okk, plane, g->c, 1.0f, w, okk,
                    inp + s * isz, plane, 0.0f, cols, plane);
        float *o = out + s * osz;
        memset(o, 0, sizeof(float) * osz);
        col2im(o, cols, g->oc, g->oh, g->ow, g->k, g->stride, g->pad, g->h, g->w);
        if (b) add_bias(o, b, g->oc, g->oh * g->ow);
    }
}

void lt_convt2d_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                         const float *w, int n, const lt_conv_geom *g, float *cols)
{
    const int okk = g->oc * g->k * g->k, plane = g->h * g->w;
    const size_t isz = (size_t)g->c * plane, osz = (size_t)g->oc * g->oh * g->ow;
    for (int s = 0; s < n; s++) {
        const float *dos = dout + s * osz;
        if (db) sum_bias_grad(db, dos, g->oc, g->oh * g->ow);
        if (!dw && !dinp) continue;
        im2col(cols, dos, g->oc, g->oh, g->ow, g->k, g->stride, g->pad, g->h, g->w);
        if (dw)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, g->c, okk, plane, 1.0f,
                        inp + s * isz, plane, cols, plane, 1.0f, dw, okk);
        if (dinp)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->c, plane, okk, 1.0f, w, okk,
                        cols, plane, 0.0f, dinp + s * isz, plane);
    }
}
