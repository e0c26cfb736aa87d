/* Max-pooling (channels last).
 *
 * The loops run over the channels innermost: a window's k*k taps are k*k
 * runs of c contiguous floats, so each comparison is a vector compare and
 * blend over the channels, where a loop over the taps of one channel at a
 * time stayed scalar (the CNN's max-pool cost a fifth of its convolution). */
#include "core/core.h"
#include "nn/layers.h"

/* Strictly greater: the first maximum in (di, dj) order wins, and a NaN
 * never displaces a number (nor hides: it wins at first). */
LT_VECTOR_CLONES static void maxpool_fwd(float *restrict out, float *restrict arg, const float *restrict inp, int n,
                                         int h, int w, int c, int k)
{
    const int oh = h / k, ow = w / k;
    for (int s = 0; s < n; s++) {
        const float *x = inp + (size_t)s * h * w * c;
        float *y = out + (size_t)s * oh * ow * c;
        float *a = arg ? arg + (size_t)s * oh * ow * c : NULL;
        for (int i = 0; i < oh; i++)
            for (int j = 0; j < ow; j++) {
                float *yo = y + ((size_t)i * ow + j) * c;
                float *ao = a ? a + ((size_t)i * ow + j) * c : NULL;
                for (int di = 0; di < k; di++)
                    for (int dj = 0; dj < k; dj++) {
                        const int p = ((i * k + di) * w + j * k + dj) * c;
                        const float *xp = x + p;
                        if (di == 0 && dj == 0) {
                            for (int ch = 0; ch < c; ch++) yo[ch] = xp[ch];
                            if (ao)
                                for (int ch = 0; ch < c; ch++) ao[ch] = (float)(p + ch);
                        } else if (ao) {
                            for (int ch = 0; ch < c; ch++) {
                                const int better = xp[ch] > yo[ch];
                                yo[ch] = better ? xp[ch] : yo[ch];
                                ao[ch] = better ? (float)(p + ch) : ao[ch];
                            }
                        } else {
                            for (int ch = 0; ch < c; ch++) yo[ch] = xp[ch] > yo[ch] ? xp[ch] : yo[ch];
                        }
                    }
            }
    }
}

void lt_maxpool_forward(float *out, float *arg, const float *inp, int n, int h, int w, int c, int k)
{
    maxpool_fwd(out, arg, inp, n, h, w, c, k);
}

void lt_maxpool_backward(float *dinp, const float *dout, const float *arg, int n, int h, int w, int c, int k)
{
    const size_t isz = (size_t)h * w * c, osz = (size_t)(h / k) * (w / k) * c;
    for (int s = 0; s < n; s++) {
        float *dx = dinp + (size_t)s * isz;
        for (size_t i = 0; i < isz; i++) dx[i] = 0.0f;
        for (size_t o = 0; o < osz; o++) dx[(size_t)arg[(size_t)s * osz + o]] += dout[(size_t)s * osz + o];
    }
}
