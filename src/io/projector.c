/* TensorBoard projector export: the codes as TSV, their labels, a sprite of
 * the digits and the config that ties them together, so the codes can be
 * explored in a tool users already know (tensorboard --logdir DIR, or
 * projector.tensorflow.org with the files loaded by hand). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

typedef struct text {
    char *p;
    size_t n, cap;
    int oom;
} text;

static void put(text *t, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static void put(text *t, const char *fmt, ...)
{
    if (t->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(t->p ? t->p + t->n : NULL, t->p ? t->cap - t->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) {
            t->oom = 1;
            return;
        }
        if (t->p && t->n + (size_t)k < t->cap) {
            t->n += (size_t)k;
            return;
        }
        size_t cap = t->cap ? t->cap * 2 : 1 << 16;
        while (cap < t->n + (size_t)k + 1) cap *= 2;
        char *p = realloc(t->p, cap);
        if (!p) {
            t->oom = 1;
            return;
        }
        t->p = p;
        t->cap = cap;
    }
}

static int flush(text *t, const char *dir, const char *name, lt_err *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int rc = t->oom ? lt_errf(err, LT_ENOMEM, "%s: out of memory", path) : lt_write_file_atomic(path, t->p, t->n, err);
    free(t->p);
    memset(t, 0, sizeof *t);
    return rc;
}

#define SPRITE_MAX 8192

int lt_projector_export(const char *dir, const char *tensor_name, const float *x, int n, int d,
                        const uint8_t *labels, const int32_t *index, const uint8_t *images, int h, int w,
                        int *sprite, lt_err *err)
{
    if (n < 1 || d < 1) return lt_errf(err, LT_EINVAL, "projector: nothing to export (%d points of %d values)", n, d);
    int rc = lt_mkdir_p(dir, err);
    if (rc) return rc;
    text t = {0};
    for (int i = 0; i < n; i++)
        for (int j = 0; j < d; j++) put(&t, "%.7g%c", x[(size_t)i * d + j], j + 1 < d ? '\t' : '\n');
    if ((rc = flush(&t, dir, "tensors.tsv", err))) return rc;
    /* Two columns need a header row (one column must not have one). */
    put(&t, "label\tindex\n");
    for (int i = 0; i < n; i++) put(&t, "%d\t%d\n", labels[i], (int)index[i]);
    if ((rc = flush(&t, dir, "metadata.tsv", err))) return rc;
    /* The sprite: images in a square grid, row-major in the order of the
     * points, as the projector expects; at most 8192 pixels a side. */
    const int cols = (int)ceil(sqrt((double)n));
    *sprite = images && h > 0 && w > 0 && (long)cols * (h > w ? h : w) <= SPRITE_MAX;
    if (*sprite) {
        const int W = cols * w, H = ((n + cols - 1) / cols) * h;
        uint8_t *pix = lt_calloc((size_t)W * H, 1, err);
        if (!pix) return LT_ENOMEM;
        for (int i = 0; i < n; i++)
            for (int r = 0; r < h; r++)
                memcpy(pix + (size_t)((i / cols) * h + r) * W + (size_t)(i % cols) * w, images + (size_t)i * h * w + (size_t)r * w,
                       (size_t)w);
        char path[4096];
        snprintf(path, sizeof path, "%s/sprite.png", dir);
        rc = lt_png_write_gray(path, pix, W, H, err);
        free(pix);
        if (rc) return rc;
    }
    put(&t, "embeddings {\n  tensor_name: \"%s\"\n  tensor_path: \"tensors.tsv\"\n  metadata_path: \"metadata.tsv\"\n",
        tensor_name ? tensor_name : "codes");
    if (*sprite) put(&t, "  sprite {\n    image_path: \"sprite.png\"\n    single_image_dim: %d\n    single_image_dim: %d\n  }\n", w, h);
    put(&t, "}\n");
    return flush(&t, dir, "projector_config.pbtxt", err);
}
