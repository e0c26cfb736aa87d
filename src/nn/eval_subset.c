/* Reconstruction error over an arbitrary list of images (a cross-validation
 * fold), built on the public inference path so the model code stays as it is. */
#include <stdlib.h>
#include <string.h>

#include "nn/net.h"

/* Images per forward pass; fixed so the sum's order, and so the result, never
 * depends on anything but the list. */
#define SUBSET_BATCH 500

int lt_model_eval_mse_idx(lt_model *m, const lt_dataset *ds, const int *idx, int count, int threads, double *mse,
                          lt_err *err)
{
    if (ds->c != m->c || ds->h != m->h || ds->w != m->w)
        return lt_errf(err, LT_EINVAL, "the data has %dx%dx%d images but the model takes %dx%dx%d", ds->c, ds->h,
                       ds->w, m->c, m->h, m->w);
    if (count <= 0) return lt_errf(err, LT_EINVAL, "no images to evaluate (count %d)", count);
    for (int i = 0; i < count; i++)
        if (idx[i] < 0 || idx[i] >= ds->n)
            return lt_errf(err, LT_EINVAL, "image index %d is outside the dataset of %d", idx[i], ds->n);
    const size_t sz = (size_t)m->c * m->h * m->w;
    const int ib = count < SUBSET_BATCH ? count : SUBSET_BATCH;
    float *buf = lt_malloc(sizeof(float) * sz * (size_t)ib * 3, err);
    if (!buf) return LT_ENOMEM;
    float *clean = buf, *in = buf + sz * ib, *out = buf + 2 * sz * ib;
    double sum = 0.0;
    int rc = 0;
    for (int s = 0; s < count && !rc; s += ib) {
        int bn = count - s < ib ? count - s : ib;
        lt_images_to_float(clean, ds, idx + s, 0, bn, threads);
        memcpy(in, clean, sizeof(float) * sz * bn);
        /* Noise keyed by the image's index in its split, as lt_model_eval_mse does. */
        for (int i = 0; i < bn; i++)
            lt_noise_apply(&m->noise, in + sz * i, 1, sz, LT_EVAL_NOISE_SEED, ~0ull, (uint64_t)idx[s + i]);
        rc = lt_model_reconstruct(m, in, bn, out, threads, err);
        if (!rc) sum += lt_mse_loss(NULL, out, clean, sz * bn, 1.0);
    }
    free(buf);
    if (!rc) *mse = sum / ((double)count * (double)sz);
    return rc;
}
