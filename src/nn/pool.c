/* Max-pooling (channels last). */
#include "nn/layers.h"

void lt_maxpool_forward(float *out, float *arg, const float *inp, int n, int h, int w, int c, int k)
{
    const int oh = h / k, ow = w / k;
    for (int s = 0; s < n; s++) {
        const float *x = inp + (size_t)s * h * w * c;
        float *y = out + (size_t)s * oh * ow * c;
        float *a = arg ? arg + (size_t)s * oh * ow * c : NULL;
        for (int i = 0; i < oh; i++)
            for (int j = 0; j < ow; j++)
                for (int ch = 0; ch < c; ch++) {
                    int best = ((i * k) * w + j * k) * c + ch;
                    float v = x[best];
                    for (int di = 0; di < k; di++)
                        for (int dj = 0; dj < k; dj++) {
                            int p = ((i * k + di) * w + j * k + dj) * c + ch;
                            /* Strictly greater: the first maximum wins, and a NaN
                             * never displaces a number (nor hides: it wins at first). */
                            if (x[p] > v) v = x[p], best = p;
                        }
                    size_t o = ((size_t)i * ow + j) * c + ch;
                    y[o] = v;
                    if (a) a[o] = (float)best;
                }
    }
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
