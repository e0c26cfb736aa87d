/* Model checkpoints: safetensors holding only the model's tensors, under
 * PyTorch's names and layouts, with what is needed to rebuild the model
 * (spec, input shape, dropout) in the metadata. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"
#include "nn/net.h"

#define CHECKPOINT_FORMAT "1"

int lt_model_save(const lt_model *m, const char *path, lt_err *err)
{
    int n = 0;
    for (int i = 0; i < m->n_layers; i++) n += m->layers[i].w_len ? 2 : 0;
    lt_st_entry *e = lt_calloc((size_t)n, sizeof *e, err);
    char (*names)[64] = lt_calloc((size_t)n, sizeof *names, err);
    int64_t (*shapes)[4] = lt_calloc((size_t)n, sizeof *shapes, err);
    int rc = 0;
    if (!e || !names || !shapes) rc = LT_ENOMEM;
    for (int i = 0, k = 0; !rc && i < m->n_layers; i++) {
        const lt_layer *l = &m->layers[i];
        if (!l->w_len) continue;
        for (int which = 0; which < 2; which++, k++) {
            lt_param_name(l, which, names[k], sizeof names[k]);
            e[k].name = names[k];
            e[k].dtype = LT_DT_F32;
            e[k].rank = lt_param_shape(l, which, shapes[k]);
            e[k].shape = shapes[k];
            e[k].data = m->params + (which ? l->b_off : l->w_off);
        }
    }
    char input[48], dropout[32], noise[64], lik[64];
    snprintf(input, sizeof input, "%d,%d,%d", m->c, m->h, m->w);
    snprintf(dropout, sizeof dropout, "%.9g", m->dropout);
    lt_noise_format(&m->noise, noise, sizeof noise);
    lt_likelihood_format(&m->lik, lik, sizeof lik);
    /* "format": "pt" is what safetensors.torch writes and expects. */
    const char *meta[] = {"format", "pt", "latent.format", CHECKPOINT_FORMAT, "latent.version", LATENT_VERSION,
                          "latent.spec", m->spec, "latent.input", input, "latent.dropout", dropout,
                          "latent.model", lt_model_kind_name(m), "latent.noise", noise, "latent.likelihood", lik};
    if (!rc) rc = lt_st_write(path, e, n, meta, m->kind == LT_MODEL_VAE ? 9 : 8, err);
    free(e);
    free(names);
    free(shapes);
    return rc;
}

static int need_meta(const lt_st_file *f, const char *path, const char *key, const char **out, lt_err *err)
{
    *out = lt_st_meta(f, key);
    if (!*out)
        return lt_errf(err, LT_EFORMAT, "%s: not a latent model: metadata key '%s' is missing", path, key);
    return 0;
}

int lt_model_load(lt_model **out, const char *path, lt_err *err)
{
    *out = NULL;
    lt_st_file f;
    int rc = lt_st_read(path, &f, err);
    if (rc) return rc;
    const char *fmt, *spec, *input, *drop;
    lt_model *m = NULL;
    int c, h, w;
    float dropout;
    char tail;
    if ((rc = need_meta(&f, path, "latent.format", &fmt, err)) || (rc = need_meta(&f, path, "latent.spec", &spec, err)) ||
        (rc = need_meta(&f, path, "latent.input", &input, err)) || (rc = need_meta(&f, path, "latent.dropout", &drop, err)))
        goto done;
    if (strcmp(fmt, CHECKPOINT_FORMAT)) {
        rc = lt_errf(err, LT_EFORMAT, "%s: checkpoint format '%s' is not supported (this latent reads format %s)",
                     path, fmt, CHECKPOINT_FORMAT);
        goto done;
    }
    if (sscanf(input, "%d,%d,%d%c", &c, &h, &w, &tail) != 3 || sscanf(drop, "%f%c", &dropout, &tail) != 1) {
        rc = lt_errf(err, LT_EFORMAT, "%s: bad metadata: latent.input '%s' (expected C,H,W), latent.dropout '%s'",
                     path, input, drop);
        goto done;
    }
    /* Before allocating the model, check that the file holds as many floats as
     * the spec's parameters: a few bytes of spec must not make us allocate
     * gigabytes (the safetensors promise: no allocation beyond the file). */
    {
        lt_model probe = {0};
        probe.c = c, probe.h = h, probe.w = w;
        lt_err perr = {0};
        if (c > 0 && h > 0 && w > 0 && (long long)c * h * w <= (1LL << 26) && lt_spec_parse(&probe, spec, &perr) == 0) {
            /* Against the whole file: finer mismatches (a missing or misshapen
             * tensor) get their own message, naming the tensor, below. */
            size_t need = 0;
            for (int i = 0; i < probe.n_layers; i++) need += probe.layers[i].w_len + probe.layers[i].b_len;
            if (need > f.buf_len / sizeof(float))
                rc = lt_errf(err, LT_EFORMAT, "%s: its spec needs %zu parameters but the file has only %zu bytes",
                             path, need, f.buf_len);
        }
        free(probe.layers);
        if (rc) goto done;
    }
    if ((rc = lt_model_create(&m, spec, c, h, w, dropout, 0, err))) {
        /* Prefix the spec error with the file it came from. */
        char msg[sizeof err->msg];
        snprintf(msg, sizeof msg, "%s", err ? err->msg : "");
        rc = lt_errf(err, LT_EFORMAT, "%s: %s", path, msg);
        goto done;
    }
    /* latent.noise is optional: checkpoints of plain autoencoders may lack it. */
    const char *noise_text = lt_st_meta(&f, "latent.noise");
    if (noise_text) {
        lt_noise noise;
        lt_err e2 = {0};
        if (lt_noise_parse(noise_text, &noise, &e2)) {
            rc = lt_errf(err, LT_EFORMAT, "%s: bad metadata latent.noise: %s", path, e2.msg);
            goto done;
        }
        m->noise = noise;
    }
    const char *lik_text = lt_st_meta(&f, "latent.likelihood");
    if (lik_text && m->kind == LT_MODEL_VAE) {
        lt_likelihood lik;
        lt_err e2 = {0};
        if (lt_likelihood_parse(lik_text, &lik, &e2) || lt_model_set_likelihood(m, &lik, &e2)) {
            rc = lt_errf(err, LT_EFORMAT, "%s: bad metadata latent.likelihood: %s", path, e2.msg);
            goto done;
        }
    }
    /* The spec decides the kind; a file that says otherwise was tampered with
     * or written by something else. */
    const char *kind = lt_st_meta(&f, "latent.model");
    if (kind && strcmp(kind, lt_model_kind_name(m))) {
        rc = lt_errf(err, LT_EFORMAT, "%s: metadata says the model is '%s' but its spec and noise make a '%s'", path, kind,
                     lt_model_kind_name(m));
        goto done;
    }
    int expected = 0;
    for (int i = 0; i < m->n_layers; i++) {
        const lt_layer *l = &m->layers[i];
        if (!l->w_len) continue;
        for (int which = 0; which < 2; which++) {
            char name[64];
            int64_t shape[4];
            lt_param_name(l, which, name, sizeof name);
            int rank = lt_param_shape(l, which, shape);
            const lt_st_tensor *t = lt_st_find(&f, name);
            expected++;
            if (!t) { rc = lt_errf(err, LT_EFORMAT, "%s: tensor '%s' is missing", path, name); goto done; }
            if (t->dtype != LT_DT_F32) {
                rc = lt_errf(err, LT_EFORMAT, "%s: tensor '%s' is %s, expected F32", path, name, lt_dtype_name(t->dtype));
                goto done;
            }
            int same = t->rank == rank;
            for (int d = 0; same && d < rank; d++) same = t->shape[d] == shape[d];
            if (!same) {
                char want[64], got[64];
                int a = 0, b = 0;
                for (int d = 0; d < rank; d++) a += snprintf(want + a, sizeof want - (size_t)a, "%s%lld", d ? "," : "", (long long)shape[d]);
                for (int d = 0; d < t->rank && b < 40; d++) b += snprintf(got + b, sizeof got - (size_t)b, "%s%lld", d ? "," : "", (long long)t->shape[d]);
                want[rank ? a : 0] = 0, got[t->rank ? b : 0] = 0;
                rc = lt_errf(err, LT_EFORMAT, "%s: tensor '%s' has shape [%s] but the spec needs [%s]", path, name, got, want);
                goto done;
            }
            memcpy(m->params + (which ? l->b_off : l->w_off), t->data, t->nbytes);
        }
    }
    if (f.n != expected) {
        for (int i = 0; i < f.n; i++) {
            const char *nm = f.tensors[i].name;
            int known = 0;
            for (int j = 0; j < m->n_layers && !known; j++) {
                char a[64], b[64];
                lt_param_name(&m->layers[j], 0, a, sizeof a);
                lt_param_name(&m->layers[j], 1, b, sizeof b);
                known = m->layers[j].w_len && (!strcmp(nm, a) || !strcmp(nm, b));
            }
            if (!known) {
                rc = lt_errf(err, LT_EFORMAT, "%s: tensor '%s' does not belong to the model its spec describes", path, nm);
                goto done;
            }
        }
    }
done:
    lt_st_free(&f);
    if (rc) lt_model_free(m);
    else *out = m;
    return rc;
}

int lt_model_init_from(lt_model *m, const char *path, int *copied, lt_err *err)
{
    return lt_model_init_from_layers(m, path, copied, NULL, err);
}

int lt_model_init_from_layers(lt_model *m, const char *path, int *copied, int *last_layer, lt_err *err)
{
    lt_st_file f;
    int rc = lt_st_read(path, &f, err);
    if (rc) return rc;
    int n = 0;
    for (int i = 0; !rc && i < m->n_layers; i++) {
        const lt_layer *l = &m->layers[i];
        if (!l->w_len) continue;
        for (int which = 0; which < 2; which++) {
            char name[64];
            int64_t shape[4];
            lt_param_name(l, which, name, sizeof name);
            int rank = lt_param_shape(l, which, shape);
            const lt_st_tensor *t = lt_st_find(&f, name);
            if (!t) continue;
            int same = t->dtype == LT_DT_F32 && t->rank == rank;
            for (int d = 0; same && d < rank; d++) same = t->shape[d] == shape[d];
            /* A tensor with our name but another shape is a different model,
             * not a partial match to skip silently. */
            if (!same) {
                rc = lt_errf(err, LT_EFORMAT, "--init %s: tensor '%s' does not have the shape or type this model needs",
                             path, name);
                break;
            }
            memcpy(m->params + (which ? l->b_off : l->w_off), t->data, t->nbytes);
            n++;
            if (last_layer) *last_layer = i;
        }
    }
    if (!rc && n == 0)
        rc = lt_errf(err, LT_EINVAL, "--init %s: none of its tensors matches this model by name (expected names like '%s.weight')",
                     path, m->layers[0].name);
    lt_st_free(&f);
    if (!rc && copied) *copied = n;
    return rc;
}
