/* The files of a search: search.json (its settings, checked on resume),
 * trials/NNN/fold-K/fold.json (what each fold came to), results.csv and
 * results.json (the table, after sklearn's cv_results_) and best.json (the
 * refit). JSON numbers are written with 17 significant digits, so values
 * read back are the values written. */
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "train/search.h"

static const char *status_names[] = {"todo", "done", "pruned", "diverged", "skipped"};

const char *lt_fold_status_name(lt_fold_status s) { return (unsigned)s <= LT_FOLD_SKIPPED ? status_names[s] : "?"; }

static int status_from_name(const char *s)
{
    for (int i = 0; i <= LT_FOLD_SKIPPED; i++)
        if (s && !strcmp(s, status_names[i])) return i;
    return -1;
}

static json_t *num_or_null(double v) { return isfinite(v) ? json_real(v) : json_null(); }
static double num_of(const json_t *v) { return json_is_number(v) ? json_number_value(v) : NAN; }

static int path_of(const search *S, const char *name, char *buf, size_t size, lt_err *err)
{
    int n = snprintf(buf, size, "%s/%s", S->cfg->out_dir, name);
    if (n < 0 || (size_t)n >= size) return lt_errf(err, LT_EINVAL, "output path too long: %s/%s", S->cfg->out_dir, name);
    return 0;
}

static int write_json(const char *path, json_t *j, lt_err *err)
{
    char *text = json_dumps(j, JSON_INDENT(1) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
    json_decref(j);
    if (!text) return lt_errf(err, LT_ENOMEM, "out of memory writing %s", path);
    size_t n = strlen(text);
    char *t2 = realloc(text, n + 2);
    if (t2) text = t2, text[n++] = '\n', text[n] = 0;
    int rc = lt_write_file_atomic(path, text, n, err);
    free(text);
    return rc;
}

json_t *lt_search_params_json(const lt_hparams *h)
{
    json_t *o = json_object();
    for (int hp = 0; hp < LT_HP_COUNT; hp++) {
        double v = lt_hparams_get(h, (lt_hp)hp);
        json_t *x = hp == LT_HP_OPTIMIZER ? json_string(lt_opt_name(h->optimizer))
                    : (hp == LT_HP_BATCH || hp == LT_HP_LATENT || hp == LT_HP_EPOCHS) ? json_integer((json_int_t)v)
                                                                                        : json_real(v);
        json_object_set_new(o, lt_hp_name((lt_hp)hp), x);
    }
    return o;
}

static int params_from_json(const json_t *o, lt_hparams *h)
{
    memset(h, 0, sizeof *h);
    for (int hp = 0; hp < LT_HP_COUNT; hp++) {
        const json_t *v = json_object_get(o, lt_hp_name((lt_hp)hp));
        if (hp == LT_HP_OPTIMIZER) {
            int k = lt_opt_from_name(json_is_string(v) ? json_string_value(v) : "");
            if (k < 0) return -1;
            h->optimizer = (lt_opt_kind)k;
        } else {
            if (!json_is_number(v)) return -1;
            lt_hparams_set(h, (lt_hp)hp, json_number_value(v));
        }
    }
    return 0;
}

static int same_params(const lt_hparams *a, const lt_hparams *b)
{
    for (int hp = 0; hp < LT_HP_COUNT; hp++)
        if (lt_hparams_get(a, (lt_hp)hp) != lt_hparams_get(b, (lt_hp)hp)) return 0;
    return 1;
}

static json_t *settings_json(const search *S)
{
    const lt_search_config *c = S->cfg;
    char seed[32], buf[512];
    snprintf(seed, sizeof seed, "%" PRIu64, c->seed);
    json_t *j = json_pack("{s:i, s:s, s:i, s:i, s:s, s:i, s:i, s:b, s:b, s:i, s:i}", "format", 1, "kind",
                          S->kind_compare ? "compare" : "search", "trials", S->T, "folds", S->K, "seed", seed, "limit",
                          c->limit, "images", S->pool, "refit", c->refit, "prune", c->prune, "prune_startup",
                          c->prune_startup, "prune_warmup", c->prune_warmup);
    /* Only a denoising search names its noise, so the files of earlier searches still match. */
    if (c->noise.kind != LT_NOISE_NONE) {
        lt_noise_format(&c->noise, buf, sizeof buf);
        json_object_set_new(j, "noise", json_string(buf));
    }
    if (S->kind_compare) {
        json_t *a = json_array();
        for (int i = 0; i < c->n_fixed; i++) json_array_append_new(a, lt_search_params_json(&c->fixed[i]));
        json_object_set_new(j, "fixed", a);
    } else {
        json_t *sp = json_object();
        for (int hp = 0; hp < LT_HP_COUNT; hp++) {
            lt_space_format((lt_hp)hp, &c->space[hp], buf, sizeof buf);
            json_object_set_new(sp, lt_hp_name((lt_hp)hp), json_string(buf));
        }
        json_object_set_new(j, "space", sp);
    }
    return j;
}

int lt_search_write_settings(const search *S, lt_err *err)
{
    char path[4096];
    int rc = path_of(S, "search.json", path, sizeof path, err);
    return rc ? rc : write_json(path, settings_json(S), err);
}

static json_t *load_json(const char *path, lt_err *err)
{
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    if (!j) lt_errf(err, LT_EFORMAT, "%s: %s (line %d)", path, je.text, je.line);
    else if (!json_is_object(j)) {
        json_decref(j);
        j = NULL;
        lt_errf(err, LT_EFORMAT, "%s: expected a JSON object", path);
    }
    return j;
}

int lt_search_load_config(const char *dir, lt_search_config *cfg, lt_err *err)
{
    char path[4096];
    int n = snprintf(path, sizeof path, "%s/search.json", dir);
    if (n < 0 || (size_t)n >= sizeof path) return lt_errf(err, LT_EINVAL, "output path too long: %s", dir);
    struct stat sb;
    if (stat(path, &sb) != 0) return lt_errf(err, LT_EINVAL, "%s holds no search to resume (no search.json)", dir);
    json_t *j = load_json(path, err);
    if (!j) return err ? err->code : LT_EFORMAT;
    int rc = 0;
    const char *seed = json_string_value(json_object_get(j, "seed"));
    if (json_integer_value(json_object_get(j, "format")) != 1 || !seed)
        rc = lt_errf(err, LT_EFORMAT, "%s: not a search state of this version of latent", path);
    if (!rc) {
        cfg->trials = (int)json_integer_value(json_object_get(j, "trials"));
        cfg->folds = (int)json_integer_value(json_object_get(j, "folds"));
        cfg->seed = strtoull(seed, NULL, 10);
        cfg->limit = (int)json_integer_value(json_object_get(j, "limit"));
        cfg->refit = json_is_true(json_object_get(j, "refit"));
        cfg->prune = json_is_true(json_object_get(j, "prune"));
        cfg->prune_startup = (int)json_integer_value(json_object_get(j, "prune_startup"));
        cfg->prune_warmup = (int)json_integer_value(json_object_get(j, "prune_warmup"));
        const char *noise = json_string_value(json_object_get(j, "noise"));
        cfg->noise = (lt_noise){.kind = LT_NOISE_NONE};
        if (noise && lt_noise_parse(noise, &cfg->noise, err))
            rc = lt_errf(err, LT_EFORMAT, "%s: bad noise '%s'", path, noise);
        const json_t *fixed = json_object_get(j, "fixed"), *space = json_object_get(j, "space");
        cfg->n_fixed = 0;
        if (json_is_array(fixed)) {
            size_t i;
            const json_t *v;
            json_array_foreach(fixed, i, v) {
                if (i >= LT_SEARCH_MAX_FIXED || params_from_json(v, &cfg->fixed[i])) {
                    rc = lt_errf(err, LT_EFORMAT, "%s: bad trial %zu in 'fixed'", path, i);
                    break;
                }
                cfg->n_fixed = (int)i + 1;
            }
        } else {
            for (int hp = 0; !rc && hp < LT_HP_COUNT; hp++) {
                const char *t = json_string_value(json_object_get(space, lt_hp_name((lt_hp)hp)));
                if (!t || lt_space_parse((lt_hp)hp, t, &cfg->space[hp], err))
                    rc = lt_errf(err, LT_EFORMAT, "%s: bad or missing search space for '%s'", path, lt_hp_name((lt_hp)hp));
            }
        }
    }
    json_decref(j);
    return rc;
}

int lt_search_check_settings(const search *S, lt_err *err)
{
    char path[4096];
    int rc = path_of(S, "search.json", path, sizeof path, err);
    if (rc) return rc;
    json_t *now = settings_json(S), *was = load_json(path, err);
    if (!was) {
        json_decref(now);
        return err ? err->code : LT_EFORMAT;
    }
    /* Everything must agree but the number of trials, which may grow: trial i is the same draw whatever the count. */
    static const char *keys[][2] = {{"kind", "the kind of search"}, {"folds", "--folds"}, {"seed", "--seed"},
                                    {"limit", "--limit"}, {"images", "the number of training images"},
                                    {"refit", "--no-refit"}, {"prune", "--prune"}, {"prune_startup", "--prune"},
                                    {"prune_warmup", "--prune"}, {"noise", "--noise"},
                                    {"fixed", "--optimizers or another setting"},
                                    {"space", "a search-space flag"}};
    for (size_t k = 0; !rc && k < sizeof keys / sizeof keys[0]; k++) {
        json_t *a = json_object_get(now, keys[k][0]), *b = json_object_get(was, keys[k][0]);
        if (!json_equal(a, b) && (a || b)) {
            char *ta = a ? json_dumps(a, JSON_ENCODE_ANY | JSON_COMPACT) : strdup("none");
            char *tb = b ? json_dumps(b, JSON_ENCODE_ANY | JSON_COMPACT) : strdup("none");
            if (!strcmp(keys[k][0], "space")) {
                for (int hp = 0; hp < LT_HP_COUNT; hp++) {
                    json_t *x = json_object_get(a, lt_hp_name((lt_hp)hp)), *y = json_object_get(b, lt_hp_name((lt_hp)hp));
                    if (!json_equal(x, y)) {
                        rc = lt_errf(err, LT_EINVAL, "%s %s differs from the search in %s (%s); a resumed search keeps "
                                     "its settings", lt_hp_flag((lt_hp)hp), json_string_value(x), S->cfg->out_dir,
                                     json_string_value(y) ? json_string_value(y) : "none");
                        break;
                    }
                }
            }
            if (!rc)
                rc = lt_errf(err, LT_EINVAL, "%s: %s differs from the search in %s (%s); a resumed search keeps its "
                             "settings", keys[k][1], ta ? ta : "?", S->cfg->out_dir, tb ? tb : "?");
            free(ta);
            free(tb);
        }
    }
    if (!rc && json_integer_value(json_object_get(was, "trials")) > S->T)
        rc = lt_errf(err, LT_EINVAL, "--trials %d is fewer than the search in %s has (%d)", S->T, S->cfg->out_dir,
                     (int)json_integer_value(json_object_get(was, "trials")));
    json_decref(now);
    json_decref(was);
    /* More trials than before: record the new count. */
    return rc ? rc : lt_search_write_settings(S, err);
}

int lt_search_unit_dir(const search *S, int t, int f, char *buf, size_t size, lt_err *err)
{
    int n = f >= 0 ? snprintf(buf, size, "%s/trials/%03d/fold-%d", S->cfg->out_dir, t, f)
                   : snprintf(buf, size, "%s/refit", S->cfg->out_dir);
    if (n < 0 || (size_t)n >= size) return lt_errf(err, LT_EINVAL, "output path too long under %s", S->cfg->out_dir);
    return 0;
}

int lt_search_write_unit(const search *S, int t, int f, lt_err *err)
{
    char dir[4096], path[4200];
    int rc = lt_search_unit_dir(S, t, f, dir, sizeof dir, err);
    if (!rc) rc = lt_mkdir_p(dir, err);
    if (rc) return rc;
    snprintf(path, sizeof path, "%s/fold.json", dir);
    const unit_res *r = &S->u[t * S->K + f];
    json_t *curve = json_array();
    for (int e = 0; e < S->hp[t].epochs; e++) json_array_append_new(curve, num_or_null(r->curve[e]));
    json_t *j = json_pack("{s:i, s:i, s:o, s:s, s:i, s:o, s:f, s:o}", "trial", t, "fold", f, "params",
                          lt_search_params_json(&S->hp[t]), "status", lt_fold_status_name(r->status), "epochs_run",
                          r->epochs_run, "score", num_or_null(r->score), "seconds", r->seconds, "val_loss", curve);
    return write_json(path, j, err);
}

int lt_search_read_unit(const search *S, int t, int f, unit_res *r)
{
    char dir[4096], path[4200];
    if (lt_search_unit_dir(S, t, f, dir, sizeof dir, NULL)) return 0;
    snprintf(path, sizeof path, "%s/fold.json", dir);
    json_t *j = json_load_file(path, 0, NULL);
    if (!j) return 0;
    lt_hparams h;
    const json_t *curve = json_object_get(j, "val_loss");
    int st = status_from_name(json_string_value(json_object_get(j, "status")));
    int ok = json_integer_value(json_object_get(j, "trial")) == t && json_integer_value(json_object_get(j, "fold")) == f &&
             !params_from_json(json_object_get(j, "params"), &h) && same_params(&h, &S->hp[t]) && st > LT_FOLD_TODO &&
             json_is_array(curve) && json_array_size(curve) == (size_t)S->hp[t].epochs;
    if (ok) {
        r->status = (lt_fold_status)st;
        r->epochs_run = (int)json_integer_value(json_object_get(j, "epochs_run"));
        r->score = num_of(json_object_get(j, "score"));
        r->seconds = num_of(json_object_get(j, "seconds"));
        for (int e = 0; e < S->hp[t].epochs; e++) r->curve[e] = num_of(json_array_get(curve, (size_t)e));
    }
    json_decref(j);
    return ok;
}

int lt_search_tables(const search *S, lt_search_result *res, lt_err *err)
{
    const int T = S->T, K = S->K;
    memset(res, 0, sizeof *res);
    res->n_trials = T, res->folds = K, res->best = -1, res->test_mse = NAN;
    res->trials = lt_calloc((size_t)T, sizeof *res->trials, err);
    if (!res->trials) return LT_ENOMEM;
    for (int t = 0; t < T; t++) {
        lt_trial_result *r = &res->trials[t];
        r->hp = S->hp[t];
        r->score = lt_calloc((size_t)K, sizeof(double), err);
        r->curve = lt_calloc((size_t)K * (size_t)S->hp[t].epochs, sizeof(double), err);
        if (!r->score || !r->curve) return LT_ENOMEM;
        r->status = LT_FOLD_DONE;
        double sum = 0.0;
        for (int f = 0; f < K; f++) {
            const unit_res *u = &S->u[t * K + f];
            if (u->status != LT_FOLD_DONE && r->status == LT_FOLD_DONE) r->status = u->status;
            r->score[f] = u->status == LT_FOLD_DONE ? u->score : NAN;
            memcpy(r->curve + (size_t)f * S->hp[t].epochs, u->curve, sizeof(double) * (size_t)S->hp[t].epochs);
            sum += r->score[f];
            r->seconds += u->seconds;
        }
        r->mean = r->std = NAN;
        if (r->status == LT_FOLD_DONE) {
            r->mean = sum / K;
            double ss = 0.0;
            for (int f = 0; f < K; f++) ss += (r->score[f] - r->mean) * (r->score[f] - r->mean);
            r->std = sqrt(ss / K);
        }
    }
    /* Rank as sklearn's "min" method: 1 + the number of strictly better trials. */
    for (int t = 0; t < T; t++) {
        lt_trial_result *r = &res->trials[t];
        int better = 0, finite = 0;
        for (int o = 0; o < T; o++) {
            double m = res->trials[o].mean;
            finite += isfinite(m);
            if (isfinite(m) && (!isfinite(r->mean) || m < r->mean)) better++;
        }
        r->rank = isfinite(r->mean) ? better + 1 : finite + 1;
        if (r->rank == 1 && res->best < 0) res->best = t;
    }

    /* results.csv: one row per trial; seconds last, the one column that differs between runs. */
    size_t cap = 4096 + (size_t)T * (512 + 32 * (size_t)K), used = 0;
    char *csv = lt_malloc(cap, err), path[4096];
    if (!csv) return LT_ENOMEM;
#define PUT(...) (used += (size_t)snprintf(csv + used, cap - used, __VA_ARGS__))
    PUT("trial");
    for (int hp = 0; hp < LT_HP_COUNT; hp++) PUT(",%s", lt_hp_name((lt_hp)hp));
    for (int f = 0; f < K; f++) PUT(",split%d_val_loss", f);
    PUT(",mean_val_loss,std_val_loss,rank_val_loss,status,seconds\n");
    for (int t = 0; t < T; t++) {
        const lt_trial_result *r = &res->trials[t];
        char v[64];
        PUT("%d", t);
        for (int hp = 0; hp < LT_HP_COUNT; hp++) {
            lt_hparam_format((lt_hp)hp, lt_hparams_get(&r->hp, (lt_hp)hp), v, sizeof v);
            PUT(",%s", v);
        }
        for (int f = 0; f < K; f++) {
            if (isfinite(r->score[f])) PUT(",%.8g", r->score[f]);
            else PUT(",");
        }
        if (isfinite(r->mean)) PUT(",%.8g,%.8g", r->mean, r->std);
        else PUT(",,");
        PUT(",%d,%s,%.1f\n", r->rank, lt_fold_status_name(r->status), r->seconds);
    }
#undef PUT
    int rc = path_of(S, "results.csv", path, sizeof path, err);
    if (!rc) rc = lt_write_file_atomic(path, csv, used, err);
    free(csv);
    if (rc) return rc;

    /* results.json: sklearn's cv_results_ layout, one array per column, plus the curves. */
    json_t *j = json_object(), *params = json_array();
    json_t *cols[LT_HP_COUNT];
    for (int hp = 0; hp < LT_HP_COUNT; hp++) cols[hp] = json_array();
    json_t *split[64] = {0}, *mean = json_array(), *std = json_array(), *rank = json_array(), *status = json_array(),
           *secs = json_array(), *curves = json_array();
    int ks = K < 64 ? K : 64;
    for (int f = 0; f < ks; f++) split[f] = json_array();
    for (int t = 0; t < T; t++) {
        const lt_trial_result *r = &res->trials[t];
        json_t *p = lt_search_params_json(&r->hp);
        for (int hp = 0; hp < LT_HP_COUNT; hp++) json_array_append(cols[hp], json_object_get(p, lt_hp_name((lt_hp)hp)));
        json_array_append_new(params, p);
        for (int f = 0; f < ks; f++) json_array_append_new(split[f], num_or_null(r->score[f]));
        json_array_append_new(mean, num_or_null(r->mean));
        json_array_append_new(std, num_or_null(r->std));
        json_array_append_new(rank, json_integer(r->rank));
        json_array_append_new(status, json_string(lt_fold_status_name(r->status)));
        json_array_append_new(secs, json_real(r->seconds));
        json_t *tc = json_array();
        for (int f = 0; f < K; f++) {
            json_t *fc = json_array();
            for (int e = 0; e < r->hp.epochs; e++) json_array_append_new(fc, num_or_null(r->curve[(size_t)f * r->hp.epochs + e]));
            json_array_append_new(tc, fc);
        }
        json_array_append_new(curves, tc);
    }
    json_object_set_new(j, "params", params);
    for (int hp = 0; hp < LT_HP_COUNT; hp++) {
        char key[64];
        snprintf(key, sizeof key, "param_%s", lt_hp_name((lt_hp)hp));
        json_object_set_new(j, key, cols[hp]);
    }
    for (int f = 0; f < ks; f++) {
        char key[64];
        snprintf(key, sizeof key, "split%d_val_loss", f);
        json_object_set_new(j, key, split[f]);
    }
    json_object_set_new(j, "mean_val_loss", mean);
    json_object_set_new(j, "std_val_loss", std);
    json_object_set_new(j, "rank_val_loss", rank);
    json_object_set_new(j, "status", status);
    json_object_set_new(j, "seconds", secs);
    json_object_set_new(j, "val_loss_curves", curves);
    rc = path_of(S, "results.json", path, sizeof path, err);
    return rc ? rc : write_json(path, j, err);
}

int lt_search_write_best(const search *S, const lt_search_result *res, lt_err *err)
{
    char path[4096];
    const lt_trial_result *b = &res->trials[res->best];
    json_t *folds = json_array();
    for (int f = 0; f < S->K; f++) json_array_append_new(folds, num_or_null(b->score[f]));
    json_t *j = json_pack("{s:i, s:o, s:o, s:o, s:o, s:o, s:s, s:f}", "trial", res->best, "best",
                          lt_search_params_json(&b->hp), "best_cv_mean", num_or_null(b->mean), "best_cv_std",
                          num_or_null(b->std), "folds", folds, "test_mse", num_or_null(res->test_mse), "model",
                          "refit/model.safetensors", "refit_seconds", res->refit_seconds);
    int rc = path_of(S, "best.json", path, sizeof path, err);
    return rc ? rc : write_json(path, j, err);
}

int lt_search_read_best(const search *S, int trial, double *test_mse, double *seconds)
{
    char path[4096];
    if (path_of(S, "best.json", path, sizeof path, NULL)) return 0;
    json_t *j = json_load_file(path, 0, NULL);
    if (!j) return 0;
    lt_hparams h;
    int ok = json_integer_value(json_object_get(j, "trial")) == trial &&
             !params_from_json(json_object_get(j, "best"), &h) && same_params(&h, &S->hp[trial]) &&
             json_is_number(json_object_get(j, "test_mse"));
    if (ok) *test_mse = num_of(json_object_get(j, "test_mse")), *seconds = num_of(json_object_get(j, "refit_seconds"));
    json_decref(j);
    return ok;
}

void lt_search_result_free(lt_search_result *r)
{
    if (!r || !r->trials) return;
    for (int t = 0; t < r->n_trials; t++) {
        free(r->trials[t].score);
        free(r->trials[t].curve);
    }
    free(r->trials);
    r->trials = NULL;
}
