/* Map files: what `latent embed` computed and `latent generate` needs to go
 * back from the map to codes, in one safetensors file. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "embed/embed.h"
#include "io/safetensors.h"

void lt_map_free(lt_map *m)
{
    if (!m) return;
    free(m->coords);
    free(m->codes);
    free(m->labels);
    free(m->index);
    lt_pca_free(&m->pca);
    memset(m, 0, sizeof *m);
}

int lt_map_save(const lt_map *m, const char *path, lt_err *err)
{
    const int pixels = !strcmp(m->input, "pixels"), pca = !strcmp(m->method, "pca");
    if (pca && (m->pca.k != 2 || m->pca.d != m->d))
        return lt_errf(err, LT_EINVAL, "%s: a PCA map needs its 2 components over %d values", path, m->d);
    uint8_t *px = NULL;
    if (pixels) {
        px = lt_malloc((size_t)m->n * m->d, err);
        if (!px) return LT_ENOMEM;
        for (size_t i = 0; i < (size_t)m->n * m->d; i++) {
            float v = m->codes[i] * 255.0f + 0.5f;
            px[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    }
    int64_t s_coords[2] = {m->n, 2}, s_codes[2] = {m->n, m->d}, s_n[1] = {m->n}, s_d[1] = {m->d}, s_c[2] = {2, m->d};
    lt_st_entry t[6] = {
        {"coords", LT_DT_F32, 2, s_coords, m->coords},
        {"codes", pixels ? LT_DT_U8 : LT_DT_F32, 2, s_codes, pixels ? (const void *)px : (const void *)m->codes},
        {"labels", LT_DT_U8, 1, s_n, m->labels},
        {"index", LT_DT_I32, 1, s_n, m->index},
        {"pca_mean", LT_DT_F32, 1, s_d, m->pca.mean},
        {"pca_components", LT_DT_F32, 2, s_c, m->pca.components},
    };
    char ev[64];
    snprintf(ev, sizeof ev, "%.17g,%.17g", pca ? m->pca.variance_ratio[0] : 0.0, pca ? m->pca.variance_ratio[1] : 0.0);
    char shape[32];
    snprintf(shape, sizeof shape, "%dx%d", m->h, m->w);
    const char *meta[] = {"format", LT_MAP_FORMAT, "version", LT_MAP_VERSION, "method", m->method, "input", m->input,
                          "split", m->split, "params", m->params, "image_shape", shape, "pca_variance_ratio", ev};
    int rc = lt_st_write(path, t, pca ? 6 : 4, meta, pca ? 8 : 7, err);
    free(px);
    return rc;
}

/* Copy tensor name of the given dtype and shape [a] or [a, b] (b 0: rank 1) out of f. */
static int take(const lt_st_file *f, const char *path, const char *name, lt_dtype dt, int64_t a, int64_t b, void **out,
                lt_err *err)
{
    const lt_st_tensor *t = lt_st_find(f, name);
    if (!t) return lt_errf(err, LT_EFORMAT, "%s: not a complete map: no tensor '%s'", path, name);
    int rank = b ? 2 : 1;
    if (t->dtype != dt || t->rank != rank || t->shape[0] != a || (b && t->shape[1] != b))
        return lt_errf(err, LT_EFORMAT, "%s: tensor '%s' should be %s [%lld%s%lld], found %s of rank %d [%lld, %lld]", path,
                       name, lt_dtype_name(dt), (long long)a, b ? ", " : "", b ? (long long)b : 0LL,
                       lt_dtype_name(t->dtype), t->rank, (long long)t->shape[0], (long long)t->shape[1]);
    *out = lt_malloc(t->nbytes ? t->nbytes : 1, err);
    if (!*out) return LT_ENOMEM;
    memcpy(*out, t->data, t->nbytes);
    return 0;
}

static int all_finite(const float *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i])) return 0;
    return 1;
}

int lt_map_load(lt_map *m, const char *path, lt_err *err)
{
    memset(m, 0, sizeof *m);
    lt_st_file f;
    int rc = lt_st_read(path, &f, err);
    if (rc) return rc;
    const char *fmt = lt_st_meta(&f, "format"), *ver = lt_st_meta(&f, "version");
    const char *method = lt_st_meta(&f, "method"), *input = lt_st_meta(&f, "input"), *split = lt_st_meta(&f, "split");
    const char *params = lt_st_meta(&f, "params");
    const lt_st_tensor *tc = lt_st_find(&f, "coords"), *tk = lt_st_find(&f, "codes");
    if (!fmt || strcmp(fmt, LT_MAP_FORMAT))
        rc = lt_errf(err, LT_EFORMAT, "%s: not a map written by latent embed (metadata format '%s', expected '%s')", path,
                     fmt ? fmt : "(none)", LT_MAP_FORMAT);
    else if (!ver || strcmp(ver, LT_MAP_VERSION))
        rc = lt_errf(err, LT_EFORMAT, "%s: map version '%s', this latent reads version %s", path, ver ? ver : "(none)",
                     LT_MAP_VERSION);
    else if (!method || (strcmp(method, "pca") && strcmp(method, "tsne")) || !input ||
             (strcmp(input, "latent") && strcmp(input, "pixels")))
        rc = lt_errf(err, LT_EFORMAT, "%s: unknown method '%s' or input '%s'", path, method ? method : "(none)",
                     input ? input : "(none)");
    else if (!tc || tc->rank != 2 || !tk || tk->rank != 2 || tc->shape[0] < 1 || tc->shape[0] > (1 << 28) ||
             tk->shape[1] < 1 || tk->shape[1] > (1 << 24))
        rc = lt_errf(err, LT_EFORMAT, "%s: 'coords' and 'codes' must be matrices of at least one point", path);
    if (rc) {
        lt_st_free(&f);
        return rc;
    }
    snprintf(m->method, sizeof m->method, "%s", method);
    snprintf(m->input, sizeof m->input, "%s", input);
    snprintf(m->split, sizeof m->split, "%s", split ? split : "");
    snprintf(m->params, sizeof m->params, "%s", params ? params : "");
    const char *shape = lt_st_meta(&f, "image_shape");
    if (!shape || sscanf(shape, "%dx%d", &m->h, &m->w) != 2 || m->h < 1 || m->w < 1 || m->h > 65536 || m->w > 65536)
        m->h = m->w = 0;
    m->n = (int)tc->shape[0];
    m->d = (int)tk->shape[1];
    const int pixels = !strcmp(input, "pixels");
    void *raw = NULL;
    rc = take(&f, path, "coords", LT_DT_F32, m->n, 2, (void **)&m->coords, err);
    if (!rc) rc = take(&f, path, "codes", pixels ? LT_DT_U8 : LT_DT_F32, m->n, m->d, &raw, err);
    if (!rc && pixels) {
        m->codes = lt_malloc(sizeof(float) * (size_t)m->n * m->d, err);
        if (!m->codes) rc = LT_ENOMEM;
        for (size_t i = 0; !rc && i < (size_t)m->n * m->d; i++) m->codes[i] = ((uint8_t *)raw)[i] / 255.0f;
        free(raw);
    } else if (!rc) {
        m->codes = raw;
    }
    if (!rc) rc = take(&f, path, "labels", LT_DT_U8, m->n, 0, (void **)&m->labels, err);
    if (!rc) rc = take(&f, path, "index", LT_DT_I32, m->n, 0, (void **)&m->index, err);
    if (!rc && !strcmp(method, "pca")) {
        rc = take(&f, path, "pca_mean", LT_DT_F32, m->d, 0, (void **)&m->pca.mean, err);
        if (!rc) rc = take(&f, path, "pca_components", LT_DT_F32, 2, m->d, (void **)&m->pca.components, err);
        if (!rc) {
            m->pca.d = m->d, m->pca.k = 2;
            m->pca.variance = lt_calloc(2, sizeof(double), err);
            m->pca.variance_ratio = lt_calloc(2, sizeof(double), err);
            const char *ev = lt_st_meta(&f, "pca_variance_ratio");
            if (!m->pca.variance || !m->pca.variance_ratio) rc = LT_ENOMEM;
            else if (!ev || sscanf(ev, "%lf,%lf", &m->pca.variance_ratio[0], &m->pca.variance_ratio[1]) != 2)
                rc = lt_errf(err, LT_EFORMAT, "%s: PCA map without its explained variance", path);
        }
        if (!rc && (!all_finite(m->pca.mean, m->d) || !all_finite(m->pca.components, 2 * (size_t)m->d)))
            rc = lt_errf(err, LT_EFORMAT, "%s: the PCA mean or components hold non-finite values", path);
    }
    if (!rc && (!all_finite(m->coords, 2 * (size_t)m->n) || !all_finite(m->codes, (size_t)m->n * m->d)))
        rc = lt_errf(err, LT_EFORMAT, "%s: coordinates or codes hold non-finite values", path);
    lt_st_free(&f);
    if (rc) lt_map_free(m);
    return rc;
}
