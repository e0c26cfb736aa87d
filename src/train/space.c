/* Search spaces: the text of a search flag, drawing a trial from it, and the
 * fold assignment. Every draw comes from a stream keyed by the seed, the trial
 * and the hyperparameter, so trial 7 is the same whoever draws it, in
 * whatever order, and a resumed or MPI search needs no shared generator. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

static const char *hp_names[LT_HP_COUNT] = {"lr", "batch", "latent", "dropout", "weight_decay", "momentum",
                                            "optimizer", "epochs"};
static const char *hp_flags[LT_HP_COUNT] = {"--lr", "--batch", "--latent", "--dropout", "--weight-decay",
                                            "--momentum", "--optimizer", "--epochs"};

const char *lt_hp_name(lt_hp hp) { return (unsigned)hp < LT_HP_COUNT ? hp_names[hp] : "?"; }
const char *lt_hp_flag(lt_hp hp) { return (unsigned)hp < LT_HP_COUNT ? hp_flags[hp] : "?"; }

static int is_int_hp(lt_hp hp) { return hp == LT_HP_BATCH || hp == LT_HP_LATENT || hp == LT_HP_EPOCHS; }

/* The values a hyperparameter may take (inclusive); lr must be positive. */
static void hp_range(lt_hp hp, double *lo, double *hi)
{
    switch (hp) {
    case LT_HP_LR: *lo = 1e-12, *hi = 1e6; break;
    case LT_HP_BATCH: *lo = 1, *hi = 65536; break;
    case LT_HP_LATENT: *lo = 1, *hi = 4096; break;
    case LT_HP_DROPOUT: *lo = 0, *hi = 0.99; break;
    case LT_HP_WEIGHT_DECAY: *lo = 0, *hi = 1e3; break;
    case LT_HP_MOMENTUM: *lo = 0, *hi = 0.999999; break;
    case LT_HP_OPTIMIZER: *lo = 0, *hi = 4; break;
    default: *lo = 1, *hi = 1000000; break;
    }
}

double lt_hparams_get(const lt_hparams *h, lt_hp hp)
{
    switch (hp) {
    case LT_HP_LR: return h->lr;
    case LT_HP_BATCH: return h->batch;
    case LT_HP_LATENT: return h->latent;
    case LT_HP_DROPOUT: return h->dropout;
    case LT_HP_WEIGHT_DECAY: return h->weight_decay;
    case LT_HP_MOMENTUM: return h->momentum;
    case LT_HP_OPTIMIZER: return (double)h->optimizer;
    default: return h->epochs;
    }
}

void lt_hparams_set(lt_hparams *h, lt_hp hp, double v)
{
    switch (hp) {
    case LT_HP_LR: h->lr = v; break;
    case LT_HP_BATCH: h->batch = (int)v; break;
    case LT_HP_LATENT: h->latent = (int)v; break;
    case LT_HP_DROPOUT: h->dropout = v; break;
    case LT_HP_WEIGHT_DECAY: h->weight_decay = v; break;
    case LT_HP_MOMENTUM: h->momentum = v; break;
    case LT_HP_OPTIMIZER: h->optimizer = (lt_opt_kind)(int)v; break;
    default: h->epochs = (int)v; break;
    }
}

int lt_hparam_format(lt_hp hp, double v, char *buf, size_t size)
{
    int n;
    if (hp == LT_HP_OPTIMIZER) n = snprintf(buf, size, "%s", lt_opt_name((lt_opt_kind)(int)v));
    else if (is_int_hp(hp)) n = snprintf(buf, size, "%d", (int)v);
    else n = snprintf(buf, size, "%.10g", v);
    return n < 0 || (size_t)n >= size ? LT_EINVAL : 0;
}

/* One value of hp from text: a number in range (an integer for integer
 * hyperparameters) or an optimizer's name. */
static int parse_value(lt_hp hp, const char *text, const char *whole, double *out, lt_err *err)
{
    const char *flag = hp_flags[hp];
    if (hp == LT_HP_OPTIMIZER) {
        int k = lt_opt_from_name(text);
        if (k < 0)
            return lt_errf(err, LT_EINVAL, "%s: expected adam, adamw, sgd, rmsprop or adadelta, found '%s' in '%s'", flag,
                           text, whole);
        *out = k;
        return 0;
    }
    char *end;
    double v = strtod(text, &end);
    double lo, hi;
    hp_range(hp, &lo, &hi);
    if (!*text || *end || !isfinite(v))
        return lt_errf(err, LT_EINVAL, "%s: expected a number, found '%s' in '%s'", flag, text, whole);
    if (is_int_hp(hp) && v != floor(v))
        return lt_errf(err, LT_EINVAL, "%s: expected an integer, found '%s' in '%s'", flag, text, whole);
    if (v < lo || v > hi)
        return lt_errf(err, LT_EINVAL, "%s: expected a value from %g to %g, found '%s' in '%s'", flag, lo, hi, text, whole);
    *out = v;
    return 0;
}

int lt_space_parse(lt_hp hp, const char *text, lt_space *out, lt_err *err)
{
    if ((unsigned)hp >= LT_HP_COUNT) return lt_errf(err, LT_EINVAL, "unknown hyperparameter %d", (int)hp);
    const char *flag = hp_flags[hp];
    char buf[512];
    if (!text || !*text || strlen(text) >= sizeof buf)
        return lt_errf(err, LT_EINVAL, "%s: expected a value or a distribution, found '%s'", flag, text ? text : "");
    memset(out, 0, sizeof *out);
    const char *colon = strchr(text, ':');
    if (!colon) {
        out->kind = LT_SPACE_FIXED, out->n = 1;
        return parse_value(hp, text, text, &out->values[0], err);
    }
    size_t klen = (size_t)(colon - text);
    strcpy(buf, colon + 1);
    if (klen == 6 && !strncmp(text, "choice", 6)) {
        out->kind = LT_SPACE_CHOICE;
        /* strtok would pass over empty choices silently: refuse them first. */
        if (!buf[0] || buf[strlen(buf) - 1] == ',' || buf[0] == ',' || strstr(buf, ",,"))
            return lt_errf(err, LT_EINVAL, "%s: expected choice:a,b,c with no empty choice, found '%s'", flag, text);
        char *save = NULL;
        for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            if (out->n == LT_SPACE_MAX_CHOICES)
                return lt_errf(err, LT_EINVAL, "%s: at most %d choices, found more in '%s'", flag, LT_SPACE_MAX_CHOICES,
                               text);
            int rc = parse_value(hp, tok, text, &out->values[out->n++], err);
            if (rc) return rc;
        }
        return 0;
    }
    int is_uni = klen == 7 && !strncmp(text, "uniform", 7), is_log = klen == 10 && !strncmp(text, "loguniform", 10);
    int is_int = klen == 3 && !strncmp(text, "int", 3);
    if (!is_uni && !is_log && !is_int)
        return lt_errf(err, LT_EINVAL, "%s: expected a value, loguniform:A:B, uniform:A:B, int:A:B[:log] or "
                       "choice:a,b,c, found '%s'", flag, text);
    if (hp == LT_HP_OPTIMIZER)
        return lt_errf(err, LT_EINVAL, "%s: the optimizer takes a name or choice:a,b,c, found '%s'", flag, text);
    if (is_int && !is_int_hp(hp))
        return lt_errf(err, LT_EINVAL, "%s is a real number: use uniform:A:B or loguniform:A:B, found '%s'", flag, text);
    if (!is_int && is_int_hp(hp))
        return lt_errf(err, LT_EINVAL, "%s is an integer: use int:A:B or int:A:B:log, found '%s'", flag, text);
    char *save = NULL, *a = strtok_r(buf, ":", &save), *b = a ? strtok_r(NULL, ":", &save) : NULL;
    char *c = b ? strtok_r(NULL, ":", &save) : NULL, *extra = c ? strtok_r(NULL, ":", &save) : NULL;
    if (!a || !b || extra || (c && (!is_int || strcmp(c, "log"))) || colon[1] == ':' || text[strlen(text) - 1] == ':')
        return lt_errf(err, LT_EINVAL, "%s: expected %s, found '%s'", flag,
                       is_int ? "int:A:B or int:A:B:log" : is_log ? "loguniform:A:B" : "uniform:A:B", text);
    int rc = parse_value(hp, a, text, &out->lo, err);
    if (!rc) rc = parse_value(hp, b, text, &out->hi, err);
    if (rc) return rc;
    if (!(out->lo < out->hi))
        return lt_errf(err, LT_EINVAL, "%s: expected A < B, found '%s'", flag, text);
    if ((is_log || c) && out->lo <= 0)
        return lt_errf(err, LT_EINVAL, "%s: a log scale needs A > 0, found '%s'", flag, text);
    out->kind = is_uni ? LT_SPACE_UNIFORM : is_log ? LT_SPACE_LOGUNIFORM : c ? LT_SPACE_INT_LOG : LT_SPACE_INT;
    return 0;
}

int lt_space_format(lt_hp hp, const lt_space *s, char *buf, size_t size)
{
    char a[64], b[64];
    size_t used = 0;
    int n = 0;
    switch (s->kind) {
    case LT_SPACE_FIXED: return lt_hparam_format(hp, s->values[0], buf, size);
    case LT_SPACE_CHOICE:
        n = snprintf(buf, size, "choice:");
        for (int i = 0; n >= 0 && (size_t)n < size && i < s->n; i++) {
            used = (size_t)n;
            lt_hparam_format(hp, s->values[i], a, sizeof a);
            n += snprintf(buf + used, size - used, "%s%s", i ? "," : "", a);
        }
        break;
    default:
        lt_hparam_format(hp, s->lo, a, sizeof a);
        lt_hparam_format(hp, s->hi, b, sizeof b);
        n = snprintf(buf, size, "%s:%s:%s%s",
                     s->kind == LT_SPACE_UNIFORM ? "uniform" : s->kind == LT_SPACE_LOGUNIFORM ? "loguniform" : "int", a, b,
                     s->kind == LT_SPACE_INT_LOG ? ":log" : "");
    }
    return n < 0 || (size_t)n >= size ? LT_EINVAL : 0;
}

/* Uniform in [0, 1) with 53 random bits. */
static double uniform53(lt_rng *r) { return (double)(lt_rng_u64(r) >> 11) * 0x1.0p-53; }

/* Four significant digits, through text so the value is the one a table shows. */
static double round4(double v)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%.4g", v);
    return strtod(buf, NULL);
}

void lt_space_draw(const lt_space space[LT_HP_COUNT], uint64_t seed, int trial, lt_hparams *out)
{
    memset(out, 0, sizeof *out);
    for (int hp = 0; hp < LT_HP_COUNT; hp++) {
        const lt_space *s = &space[hp];
        lt_rng r = lt_rng_for(seed, 0x5EA4C4ull, (uint64_t)trial, (uint64_t)hp);
        double v;
        switch (s->kind) {
        case LT_SPACE_FIXED: v = s->values[0]; break;
        case LT_SPACE_CHOICE: v = s->values[lt_rng_below(&r, (uint64_t)s->n)]; break;
        case LT_SPACE_UNIFORM: v = round4(s->lo + (s->hi - s->lo) * uniform53(&r)); break;
        case LT_SPACE_LOGUNIFORM: v = round4(exp(log(s->lo) + (log(s->hi) - log(s->lo)) * uniform53(&r))); break;
        case LT_SPACE_INT: v = s->lo + (double)lt_rng_below(&r, (uint64_t)(s->hi - s->lo) + 1); break;
        default: /* int log: log-uniform over [lo, hi+1), floored, so each integer gets its share of the scale */
            v = floor(exp(log(s->lo) + (log(s->hi + 1) - log(s->lo)) * uniform53(&r)));
            v = v < s->lo ? s->lo : v > s->hi ? s->hi : v;
        }
        /* Rounding may step just outside [lo, hi]; keep the draw inside. */
        if (s->kind == LT_SPACE_UNIFORM || s->kind == LT_SPACE_LOGUNIFORM) v = v < s->lo ? s->lo : v > s->hi ? s->hi : v;
        lt_hparams_set(out, (lt_hp)hp, v);
    }
}

int lt_kfold(int n, int k, uint64_t seed, int *fold_of, lt_err *err)
{
    if (k < 2 || k > n) return lt_errf(err, LT_EINVAL, "--folds: expected 2 to %d folds for %d images, found %d", n, n, k);
    int *perm = lt_malloc(sizeof(int) * (size_t)n, err);
    if (!perm) return LT_ENOMEM;
    for (int i = 0; i < n; i++) perm[i] = i;
    lt_rng r = lt_rng_for(seed, 0xF01D5ull, (uint64_t)n, (uint64_t)k);
    lt_rng_shuffle(&r, perm, (size_t)n);
    /* Block f holds positions [f*n/k, (f+1)*n/k) of the permutation. */
    for (int f = 0; f < k; f++)
        for (long i = (long)f * n / k; i < (long)(f + 1) * n / k; i++) fold_of[perm[i]] = f;
    free(perm);
    return 0;
}

void lt_search_config_default(lt_search_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    static const char *study[LT_HP_COUNT] = {"loguniform:1e-4:1e-2", "choice:64,128,256", "int:2:64", "uniform:0:0.2",
                                             "5e-5", "0", "adam", "40"};
    for (int hp = 0; hp < LT_HP_COUNT; hp++) lt_space_parse((lt_hp)hp, study[hp], &cfg->space[hp], NULL);
    cfg->trials = 5;
    cfg->folds = 5;
    cfg->seed = 1;
    cfg->refit = 1;
    cfg->prune_startup = 2;
    cfg->prune_warmup = 1;
}
