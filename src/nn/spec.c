/* The architecture spec: parsing, shape inference and parameter naming.
 *
 * A spec is "part: layer layer ...; part: ...". Parsing and shape inference
 * happen together so an error can name the layer (e.g. "decoder.6") and say
 * which shape it got and which it expected. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/net.h"

#define MAX_ARGS 5

typedef struct {
    const char *s;  /* cursor */
} cursor;

static void skip_space(cursor *c)
{
    for (;;) {
        while (isspace((unsigned char)*c->s)) c->s++;
        if (*c->s != '#') return;
        while (*c->s && *c->s != '\n') c->s++;
    }
}

static int read_word(cursor *c, char *buf, size_t size)
{
    size_t n = 0;
    while (isalnum((unsigned char)*c->s) || *c->s == '_') {
        if (n + 1 < size) buf[n++] = *c->s;
        c->s++;
    }
    buf[n] = 0;
    return (int)n;
}

/* "(a,b,c)" into args; returns the count or -1 on a syntax error. */
static int read_args(cursor *c, double *args)
{
    int n = 0;
    if (*c->s != '(') return 0;
    c->s++;
    for (;;) {
        skip_space(c);
        char *end;
        double v = strtod(c->s, &end);
        if (end == c->s || n == MAX_ARGS) return -1;
        args[n++] = v;
        c->s = end;
        skip_space(c);
        if (*c->s == ',') { c->s++; continue; }
        if (*c->s == ')') { c->s++; return n; }
        return -1;
    }
}

/* Layer arguments are small integers; the range test comes before the cast,
 * which would be undefined for 1e10, inf or NaN. */
#define MAX_ARG 65536
static int is_int(double v, int lo) { return v >= lo && v <= MAX_ARG && v == (double)(int)v; }

/* Checkpoints carry specs from elsewhere: shapes are computed in 64 bits and
 * bounded, so no product can overflow an int or a size_t later. */
#define MAX_VALUES_PER_SAMPLE (1LL << 26)
#define MAX_PARAMS_PER_LAYER (1LL << 28)

static int add_layer(lt_model *m, int *cap, lt_layer **out, lt_err *err)
{
    if (m->n_layers == *cap) {
        int nc = *cap ? *cap * 2 : 16;
        lt_layer *nl = realloc(m->layers, sizeof(lt_layer) * (size_t)nc);
        if (!nl) return lt_errf(err, LT_ENOMEM, "out of memory parsing the spec");
        m->layers = nl;
        *cap = nc;
    }
    *out = &m->layers[m->n_layers++];
    memset(*out, 0, sizeof **out);
    return 0;
}

/* Set the layer's output shape from its kind, arguments and input shape. */
static int infer(lt_layer *l, const char *kind, const double *a, int na, lt_err *err)
{
    const char *nm = l->name;
    l->out_c = l->in_c, l->out_h = l->in_h, l->out_w = l->in_w;
    if (!strcmp(kind, "conv") || !strcmp(kind, "convt")) {
        int t = kind[4] == 't';
        int want = t ? 5 : 4;
        if (na != want)
            return lt_errf(err, LT_EINVAL, "spec: %s: %s takes %d arguments (%s), found %d", nm,
                           kind, want, t ? "out,k,stride,pad,outpad" : "out,k,stride,pad", na);
        for (int i = 0; i < na; i++)
            if (!is_int(a[i], i < 3 ? 1 : 0))
                return lt_errf(err, LT_EINVAL, "spec: %s: argument %d of %s must be a %s integer up to %d, found %g",
                               nm, i + 1, kind, i < 3 ? "positive" : "non-negative", MAX_ARG, a[i]);
        l->kind = t ? LT_L_CONVT : LT_L_CONV;
        l->g = (lt_conv_geom){.c = l->in_c, .h = l->in_h, .w = l->in_w, .oc = (int)a[0],
                              .k = (int)a[1], .stride = (int)a[2], .pad = (int)a[3],
                              .opad = t ? (int)a[4] : 0};
        if (lt_conv_geom_init(&l->g, t) != 0)
            return lt_errf(err, LT_EINVAL,
                           "spec: %s: %s(%d,%d,%d,%d%s) does not fit its input %dx%dx%d "
                           "(empty output, or output padding not below the stride)",
                           nm, kind, l->g.oc, l->g.k, l->g.stride, l->g.pad, t ? ",..." : "",
                           l->in_c, l->in_h, l->in_w);
        l->out_c = l->g.oc, l->out_h = l->g.oh, l->out_w = l->g.ow;
        size_t wl;
        if (lt_mul_size((size_t)l->g.oc * l->g.k * l->g.k, (size_t)l->g.c, &wl) || wl > MAX_PARAMS_PER_LAYER)
            return lt_errf(err, LT_EINVAL, "spec: %s: %s has too many parameters", nm, kind);
        l->w_len = wl;
        l->b_len = (size_t)l->g.oc;
    } else if (!strcmp(kind, "dense")) {
        if (na != 1 || !is_int(a[0], 1))
            return lt_errf(err, LT_EINVAL, "spec: %s: dense takes one positive integer (its size)", nm);
        if (l->in_h != 1 || l->in_w != 1)
            return lt_errf(err, LT_EINVAL,
                           "spec: %s: dense needs a flat input, found %dx%dx%d (add flatten before it)",
                           nm, l->in_c, l->in_h, l->in_w);
        l->kind = LT_L_DENSE;
        l->out_c = (int)a[0], l->out_h = l->out_w = 1;
        l->w_len = (size_t)l->out_c * l->in_c; /* both bounded: at most 2^16 * 2^26 */
        l->b_len = (size_t)l->out_c;
    } else if (!strcmp(kind, "relu") || !strcmp(kind, "sigmoid") || !strcmp(kind, "flatten")) {
        if (na != 0) return lt_errf(err, LT_EINVAL, "spec: %s: %s takes no arguments", nm, kind);
        l->kind = kind[0] == 'r' ? LT_L_RELU : kind[0] == 's' ? LT_L_SIGMOID : LT_L_FLATTEN;
        /* The input is at most MAX_VALUES_PER_SAMPLE values, so this fits an int. */
        if (l->kind == LT_L_FLATTEN) l->out_c = (int)((long long)l->in_c * l->in_h * l->in_w), l->out_h = l->out_w = 1;
    } else if (!strcmp(kind, "dropout")) {
        if (na > 1 || (na == 1 && !(a[0] >= 0.0 && a[0] < 1.0)))
            return lt_errf(err, LT_EINVAL, "spec: %s: dropout takes at most one probability in [0, 1)", nm);
        l->kind = LT_L_DROPOUT;
        l->p = na ? (float)a[0] : -1.0f;
    } else if (!strcmp(kind, "maxpool")) {
        if (na != 1 || !is_int(a[0], 1))
            return lt_errf(err, LT_EINVAL, "spec: %s: maxpool takes one positive integer (window and stride)", nm);
        if (l->in_h < a[0] || l->in_w < a[0])
            return lt_errf(err, LT_EINVAL, "spec: %s: maxpool(%g) does not fit its input %dx%dx%d", nm, a[0], l->in_c,
                           l->in_h, l->in_w);
        /* The winning positions are kept as floats, exact up to 2^24. */
        if ((long long)l->in_c * l->in_h * l->in_w > (1LL << 24))
            return lt_errf(err, LT_EINVAL, "spec: %s: maxpool input %dx%dx%d is larger than 2^24 values", nm, l->in_c,
                           l->in_h, l->in_w);
        l->kind = LT_L_MAXPOOL;
        l->pool = (int)a[0];
        l->out_h = l->in_h / l->pool, l->out_w = l->in_w / l->pool;
    } else if (!strcmp(kind, "sample")) {
        if (na != 0) return lt_errf(err, LT_EINVAL, "spec: %s: sample takes no arguments", nm);
        if (l->in_h != 1 || l->in_w != 1 || l->in_c % 2)
            return lt_errf(err, LT_EINVAL,
                           "spec: %s: sample needs a flat input of 2k values (k means, k log-variances), found %dx%dx%d",
                           nm, l->in_c, l->in_h, l->in_w);
        l->kind = LT_L_SAMPLE;
        l->out_c = l->in_c / 2;
    } else if (!strcmp(kind, "unflatten")) {
        if (na != 3 || !is_int(a[0], 1) || !is_int(a[1], 1) || !is_int(a[2], 1))
            return lt_errf(err, LT_EINVAL, "spec: %s: unflatten takes three positive integers (c,h,w)", nm);
        if ((size_t)a[0] * (size_t)a[1] * (size_t)a[2] != (size_t)l->in_c * l->in_h * l->in_w)
            return lt_errf(err, LT_EINVAL, "spec: %s: unflatten(%g,%g,%g) needs %g values, its input has %d",
                           nm, a[0], a[1], a[2], a[0] * a[1] * a[2], l->in_c * l->in_h * l->in_w);
        l->kind = LT_L_UNFLATTEN;
        l->out_c = (int)a[0], l->out_h = (int)a[1], l->out_w = (int)a[2];
    } else {
        return lt_errf(err, LT_EINVAL,
                       "spec: %s: unknown layer '%s' (expected conv, convt, dense, relu, sigmoid, "
                       "dropout, flatten, unflatten, maxpool or sample)", nm, kind);
    }
    long long out = (long long)l->out_c * l->out_h * l->out_w;
    long long params = (long long)l->w_len + (long long)l->b_len;
    if (out > MAX_VALUES_PER_SAMPLE || params > MAX_PARAMS_PER_LAYER)
        return lt_errf(err, LT_EINVAL, "spec: %s: %s is too large (output %dx%dx%d, %lld parameters)", nm, kind,
                       l->out_c, l->out_h, l->out_w, params);
    l->in_size = (size_t)l->in_c * l->in_h * l->in_w;
    l->out_size = (size_t)out;
    return 0;
}

int lt_spec_parse(lt_model *m, const char *spec, lt_err *err)
{
    cursor c = {spec};
    int cap = 0, rc;
    int ch = m->c, hh = m->h, ww = m->w;
    m->n_layers = 0;
    m->n_parts = 0;
    for (;;) {
        skip_space(&c);
        if (!*c.s) break;
        if (m->n_parts == LT_MAX_PARTS)
            return lt_errf(err, LT_EINVAL, "spec: more than %d parts", LT_MAX_PARTS);
        lt_part *p = &m->parts[m->n_parts];
        if (!read_word(&c, p->name, sizeof p->name))
            return lt_errf(err, LT_EINVAL, "spec: expected a part name such as 'encoder:' at \"%.20s\"", c.s);
        skip_space(&c);
        if (*c.s != ':') return lt_errf(err, LT_EINVAL, "spec: expected ':' after part name '%s'", p->name);
        c.s++;
        for (int i = 0; i < m->n_parts; i++)
            if (!strcmp(m->parts[i].name, p->name))
                return lt_errf(err, LT_EINVAL, "spec: part '%s' appears twice", p->name);
        p->first = m->n_layers;
        for (int idx = 0;; idx++) {
            skip_space(&c);
            if (!*c.s || *c.s == ';') break;
            char kind[16];
            double args[MAX_ARGS];
            const char *at = c.s;
            if (!read_word(&c, kind, sizeof kind))
                return lt_errf(err, LT_EINVAL, "spec: part '%s': unexpected character '%c' at \"%.20s\"",
                               p->name, *at, at);
            int na = read_args(&c, args);
            if (na < 0) return lt_errf(err, LT_EINVAL, "spec: %s.%d: bad arguments at \"%.20s\"", p->name, idx, at);
            lt_layer *l = NULL;
            if ((rc = add_layer(m, &cap, &l, err))) return rc;
            snprintf(l->name, sizeof l->name, "%s.%d", p->name, idx);
            l->in_c = ch, l->in_h = hh, l->in_w = ww;
            if ((rc = infer(l, kind, args, na, err))) return rc;
            ch = l->out_c, hh = l->out_h, ww = l->out_w;
        }
        p->count = m->n_layers - p->first;
        if (p->count == 0) return lt_errf(err, LT_EINVAL, "spec: part '%s' has no layers", p->name);
        m->n_parts++;
        if (*c.s == ';') c.s++;
    }
    if (m->n_layers == 0) return lt_errf(err, LT_EINVAL, "spec: no layers");
    /* Each layer is bounded; so is their sum, which is what one sample's
     * activations take in memory. */
    long long values = 0;
    for (int i = 0; i < m->n_layers; i++) values += (long long)m->layers[i].out_size;
    if (values > MAX_VALUES_PER_SAMPLE)
        return lt_errf(err, LT_EINVAL, "spec: the layers produce %lld values per sample, more than the %lld latent allows",
                       values, MAX_VALUES_PER_SAMPLE);
    return 0;
}

int lt_default_spec(char *buf, size_t size, int d)
{
    int n = snprintf(buf, size,
                     "encoder: conv(8,3,2,1) relu conv(16,3,2,1) relu conv(32,3,2,0) relu flatten "
                     "dense(64) relu dropout dense(%d);\n"
                     "decoder: dense(64) relu dropout dense(288) relu unflatten(32,3,3) "
                     "convt(16,3,2,0,0) relu convt(8,3,2,1,1) relu convt(1,3,2,1,1) sigmoid",
                     d);
    return (n < 0 || (size_t)n >= size) ? LT_EINVAL : 0;
}

int lt_default_vae_spec(char *buf, size_t size, int k)
{
    int n = snprintf(buf, size,
                     "encoder: conv(8,3,2,1) relu conv(16,3,2,1) relu conv(32,3,2,0) relu flatten "
                     "dense(64) relu dropout dense(%d) sample;\n"
                     "decoder: dense(64) relu dropout dense(288) relu unflatten(32,3,3) "
                     "convt(16,3,2,0,0) relu convt(8,3,2,1,1) relu convt(1,3,2,1,1) sigmoid",
                     2 * k);
    return (n < 0 || (size_t)n >= size || k <= 0) ? LT_EINVAL : 0;
}

int lt_mnist_cnn_spec(char *buf, size_t size, int classes)
{
    int n = snprintf(buf, size,
                     "features: conv(32,3,1,0) relu conv(64,3,1,0) relu maxpool(2) dropout(0.25) flatten "
                     "dense(128) relu dropout(0.5);\nhead: dense(%d)",
                     classes);
    return (n < 0 || (size_t)n >= size || classes < 2) ? LT_EINVAL : 0;
}

int lt_classifier_spec(char *buf, size_t size, const char *ae_spec, int classes, lt_err *err)
{
    /* Textual surgery on the encoder part keeps the layer indices, hence the
     * tensor names that lt_model_init_from matches on. */
    const char *enc = strstr(ae_spec, "encoder:");
    if (!enc) return lt_errf(err, LT_EINVAL, "spec: the autoencoder has no 'encoder:' part");
    const char *end = strchr(enc, ';');
    if (!end) end = enc + strlen(enc);
    const char *last = NULL;
    for (const char *p = enc; p && p < end; p++) {
        p = strstr(p, "dense(");
        if (!p || p >= end) break;
        last = p;
    }
    if (!last) return lt_errf(err, LT_EINVAL, "spec: the encoder has no dense layer to replace with the classifier's head");
    int n = snprintf(buf, size, "%.*s;\nhead: dense(%d)", (int)(last - enc), enc, classes);
    if (n < 0 || (size_t)n >= size) return lt_errf(err, LT_EINVAL, "spec: too long");
    return 0;
}

int lt_layer_fan_in(const lt_layer *l)
{
    switch (l->kind) {
    case LT_L_CONV: return l->g.c * l->g.k * l->g.k;
    /* PyTorch computes fan_in from weight.size(1), which for ConvTranspose2d
     * ([in, out, k, k]) is the number of OUTPUT channels. */
    case LT_L_CONVT: return l->g.oc * l->g.k * l->g.k;
    case LT_L_DENSE: return l->in_c;
    default: return 0;
    }
}

void lt_param_name(const lt_layer *l, int which, char *buf, size_t size)
{
    snprintf(buf, size, "%s.%s", l->name, which ? "bias" : "weight");
}

int lt_param_shape(const lt_layer *l, int which, int64_t shape[4])
{
    if (which) {
        shape[0] = (int64_t)l->b_len;
        return 1;
    }
    switch (l->kind) {
    case LT_L_CONV:
        shape[0] = l->g.oc, shape[1] = l->g.c, shape[2] = shape[3] = l->g.k;
        return 4;
    case LT_L_CONVT:
        shape[0] = l->g.c, shape[1] = l->g.oc, shape[2] = shape[3] = l->g.k;
        return 4;
    case LT_L_DENSE:
        shape[0] = l->out_c, shape[1] = l->in_c;
        return 2;
    default: return 0;
    }
}
