/* Element-wise layers: ReLU, sigmoid and dropout. */
#include <math.h>
#include <string.h>

#include "core/core.h"
#include "nn/layers.h"

LT_VECTOR_CLONES static void relu_forward_impl(float *restrict out, const float *restrict inp, size_t len)
{
    for (size_t i = 0; i < len; i++) out[i] = inp[i] > 0.0f ? inp[i] : 0.0f;
}

LT_VECTOR_CLONES static void relu_in_place_impl(float *x, size_t len)
{
    for (size_t i = 0; i < len; i++) x[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

/* out == inp is allowed (the network runs a ReLU after a convolution in place). */
void lt_relu_forward(float *out, const float *inp, size_t len)
{
    if (out == inp) relu_in_place_impl(out, len);
    else relu_forward_impl(out, inp, len);
}

/* out > 0 exactly when inp > 0, so the saved output is enough. dout is read
 * whatever the sign: a load under the condition would keep the loop scalar. */
LT_VECTOR_CLONES static void relu_backward_impl(float *restrict dinp, const float *restrict dout, const float *restrict out, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        float g = dout[i];
        dinp[i] = out[i] > 0.0f ? g : 0.0f;
    }
}

LT_VECTOR_CLONES static void relu_backward_in_place_impl(float *restrict d, const float *restrict out, size_t len)
{
    for (size_t i = 0; i < len; i++) d[i] = out[i] > 0.0f ? d[i] : 0.0f;
}

/* dinp == dout is allowed (in place). */
void lt_relu_backward(float *dinp, const float *dout, const float *out, size_t len)
{
    if (dinp == dout) relu_backward_in_place_impl(dinp, out, len);
    else relu_backward_impl(dinp, dout, out, len);
}

/* The bias of the layer before a ReLU, added in the ReLU's pass: the layer
 * writes its products alone (no pass to fill its output with the bias
 * first) and the ReLU makes x = max(x + b, 0) in place. Written with
 * vectors of 8 (GCC's vector extension) over up to 64 channels at a time,
 * the bias in registers: left to itself GCC vectorised across rows with
 * shuffles, at twice the instructions of the plain ReLU. */
typedef float v8f __attribute__((vector_size(32)));
typedef int v8i __attribute__((vector_size(32)));

/* max(v, 0), with NaN to 0 as in x > 0 ? x : 0 (a macro: a function
 * returning a 32-byte vector has a different ABI with and without AVX). */
#define RELU8(v, zero) ((v8f)((v8i)(v) & ((v) > (zero))))

static inline __attribute__((always_inline)) void bias_relu_v(float *restrict x, const float *restrict b,
                                                              size_t rows, size_t stride, const int nv)
{
    v8f bv[8];
    const v8f zero = {0};
    memcpy(bv, b, sizeof(v8f) * nv);
    for (size_t r = 0; r < rows; r++, x += stride)
        for (int v = 0; v < nv; v++) {
            v8f t;
            memcpy(&t, x + 8 * v, sizeof t);
            t = RELU8(t + bv[v], zero);
            memcpy(x + 8 * v, &t, sizeof t);
        }
}

LT_VECTOR_CLONES static void bias_relu_impl(float *x, const float *b, size_t rows, int channels)
{
    if (channels % 8) {
        for (size_t r = 0; r < rows; r++, x += channels)
            for (int c = 0; c < channels; c++) {
                const float v = x[c] + b[c];
                x[c] = v > 0.0f ? v : 0.0f;
            }
        return;
    }
    /* Constant vector counts for the channels of the default model. */
    for (int c0 = 0; c0 < channels; c0 += 64) {
        const int nv = channels - c0 < 64 ? (channels - c0) / 8 : 8;
        switch (nv) {
        case 1: bias_relu_v(x + c0, b + c0, rows, channels, 1); break;
        case 2: bias_relu_v(x + c0, b + c0, rows, channels, 2); break;
        case 4: bias_relu_v(x + c0, b + c0, rows, channels, 4); break;
        case 8: bias_relu_v(x + c0, b + c0, rows, channels, 8); break;
        default: bias_relu_v(x + c0, b + c0, rows, channels, nv);
        }
    }
}

void lt_bias_relu_forward(float *x, const float *b, size_t rows, int channels)
{
    bias_relu_impl(x, b, rows, channels);
}

/* The ReLU's backward in place, and the bias gradient of the layer before
 * in the same pass: db[c] += the sum over rows of the masked gradient, rows
 * in order (the sums the layer would make, in the same order). */
static inline __attribute__((always_inline)) void relu_bias_back_v(float *restrict d, float *restrict db,
                                                                   const float *restrict out, size_t rows,
                                                                   size_t stride, const int nv)
{
    v8f acc[8];
    memcpy(acc, db, sizeof(v8f) * nv);
    const v8f zero = {0};
    for (size_t r = 0; r < rows; r++, d += stride, out += stride)
        for (int v = 0; v < nv; v++) {
            v8f g, o;
            memcpy(&g, d + 8 * v, sizeof g);
            memcpy(&o, out + 8 * v, sizeof o);
            g = (v8f)((v8i)g & (o > zero)); /* the mask of out > 0 */
            memcpy(d + 8 * v, &g, sizeof g);
            acc[v] += g;
        }
    memcpy(db, acc, sizeof(v8f) * nv);
}

LT_VECTOR_CLONES static void relu_bias_back_impl(float *restrict d, float *restrict db, const float *restrict out,
                                                 size_t rows, int channels)
{
    if (channels % 8) {
        for (size_t r = 0; r < rows; r++, d += channels, out += channels)
            for (int c = 0; c < channels; c++) {
                const float g = out[c] > 0.0f ? d[c] : 0.0f;
                d[c] = g;
                db[c] += g;
            }
        return;
    }
    for (int c0 = 0; c0 < channels; c0 += 64) {
        const int nv = channels - c0 < 64 ? (channels - c0) / 8 : 8;
        switch (nv) {
        case 1: relu_bias_back_v(d + c0, db + c0, out + c0, rows, channels, 1); break;
        case 2: relu_bias_back_v(d + c0, db + c0, out + c0, rows, channels, 2); break;
        case 4: relu_bias_back_v(d + c0, db + c0, out + c0, rows, channels, 4); break;
        case 8: relu_bias_back_v(d + c0, db + c0, out + c0, rows, channels, 8); break;
        default: relu_bias_back_v(d + c0, db + c0, out + c0, rows, channels, nv);
        }
    }
}

void lt_relu_bias_backward(float *d, float *db, const float *out, size_t rows, int channels)
{
    if (db) relu_bias_back_impl(d, db, out, rows, channels);
    else relu_backward_in_place_impl(d, out, rows * (size_t)channels);
}

/* exp(x) for the sigmoid, written so the compiler can vectorise the loop that
 * calls it (libm's expf is a scalar call per element, and the sigmoid over
 * 784 pixels per image cost as much as a convolution). Cephes' expf: x/ln2 is
 * rounded with the 1.5*2^23 trick, the remainder r in [-ln2/2, ln2/2] goes
 * through a degree-6 polynomial, and 2^n is put into the exponent bits.
 * Relative error below 1e-7 on [-87, 87]; x is clamped there, so the sigmoid
 * never produces a subnormal, and NaN passes through the clamp unchanged. */
static inline float sigmoid_expf(float x)
{
    x = x < -87.0f ? -87.0f : x;
    x = x > 87.0f ? 87.0f : x;
    /* t = 1.5*2^23 + n, n = round(x/ln2): in [2^23, 2^24) floats are the
     * integers, so n is also the low bits of t's representation. Taken from
     * there, not by converting fn to an integer: that conversion is undefined
     * for NaN in C, and guarding it made the compiler keep two versions of
     * everything after it, two divisions included. NaN stays NaN through r
     * and p below, whatever n it leaves. */
    const float t = x * 1.44269504088896341f + 12582912.0f, fn = t - 12582912.0f;
    uint32_t tb, mb;
    const float magic = 12582912.0f;
    memcpy(&tb, &t, sizeof tb);
    memcpy(&mb, &magic, sizeof mb);
    float r = x - fn * 0.693359375f + fn * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    uint32_t bits = (tb - mb + 127u) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

LT_VECTOR_CLONES static void sigmoid_forward_impl(float *restrict out, const float *restrict inp, size_t len)
{
    for (size_t i = 0; i < len; i++) out[i] = 1.0f / (1.0f + sigmoid_expf(-inp[i]));
}

void lt_sigmoid_forward(float *restrict out, const float *restrict inp, size_t len)
{
    sigmoid_forward_impl(out, inp, len);
}

LT_VECTOR_CLONES static void sigmoid_backward_impl(float *restrict dinp, const float *restrict dout, const float *restrict out, size_t len)
{
    for (size_t i = 0; i < len; i++) dinp[i] = dout[i] * out[i] * (1.0f - out[i]);
}

void lt_sigmoid_backward(float *restrict dinp, const float *restrict dout, const float *restrict out, size_t len)
{
    sigmoid_backward_impl(dinp, dout, out, len);
}

/* out may be inp (dropout in place): each value is read before it is written. */
LT_VECTOR_CLONES static void dropout_select(float *out, float *restrict mask, const float *inp,
                                            const float *restrict u, size_t len, float p, float scale)
{
    for (size_t i = 0; i < len; i++) {
        mask[i] = u[i] < p ? 0.0f : scale;
        out[i] = inp[i] * mask[i];
    }
}

void lt_dropout_forward(float *out, float *mask, const float *inp, int n, size_t size, float p,
                        int train, uint64_t seed, uint64_t step, uint64_t first, uint64_t salt)
{
    if (!train || p <= 0.0f) {
        for (size_t i = 0; i < (size_t)n * size; i++) out[i] = inp[i];
        return;
    }
    const float scale = 1.0f / (1.0f - p);
    /* The draws first, then the masks from them in a loop of its own, which
     * compiles to vector selects: kept or dropped is a coin toss a branch
     * predictor loses half the time at p = 0.5, and as a branch in one loop
     * (which GCC made of every select written there) the CNN's 9216-value
     * dropout took 6% of its step, 4.8 ns per value. The same draws and the
     * same comparison: the same masks. */
    float u[256];
    for (int s = 0; s < n; s++) {
        lt_rng r = lt_rng_for(seed, step, first + (uint64_t)s, salt);
        for (size_t i0 = 0; i0 < size; i0 += 256) {
            const size_t len = size - i0 < 256 ? size - i0 : 256, j0 = (size_t)s * size + i0;
            for (size_t i = 0; i < len; i++) u[i] = lt_rng_uniform_next(&r);
            dropout_select(out + j0, mask + j0, inp + j0, u, len, p, scale);
        }
    }
}

LT_VECTOR_CLONES static void dropout_backward_impl(float *dinp, const float *dout, const float *mask, size_t len)
{
    for (size_t i = 0; i < len; i++) dinp[i] = dout[i] * mask[i];
}

void lt_dropout_backward(float *dinp, const float *dout, const float *mask, size_t len)
{
    dropout_backward_impl(dinp, dout, mask, len);
}
