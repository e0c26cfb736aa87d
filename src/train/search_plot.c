/* The search's figures: validation loss per epoch for every trial with the
 * spread over its folds (trials.png; compare.png for latent compare), and
 * each searched hyperparameter against the trials' scores (param-NAME.png). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/search.h"

/* Mean, min and max over the folds that reached each epoch. */
static void fold_band(const lt_trial_result *r, int K, double *x, double *mean, double *lo, double *hi)
{
    const int E = r->hp.epochs;
    for (int e = 0; e < E; e++) {
        double s = 0, mn = INFINITY, mx = -INFINITY;
        int n = 0;
        for (int f = 0; f < K; f++) {
            double v = r->curve[(size_t)f * E + e];
            if (!isfinite(v)) continue;
            s += v, n++;
            mn = fmin(mn, v), mx = fmax(mx, v);
        }
        x[e] = e + 1;
        mean[e] = n ? s / n : NAN, lo[e] = n ? mn : NAN, hi[e] = n ? mx : NAN;
    }
}

static int curves(const search *S, const lt_search_result *res, const char *name, lt_err *err)
{
    const int T = res->n_trials;
    lt_series *ser = lt_calloc((size_t)T, sizeof *ser, err);
    char (*labels)[96] = lt_calloc((size_t)T, sizeof *labels, err);
    double **bufs = lt_calloc((size_t)T, sizeof *bufs, err);
    int rc = !ser || !labels || !bufs ? LT_ENOMEM : 0;
    for (int t = 0; !rc && t < T; t++) {
        const lt_trial_result *r = &res->trials[t];
        const int E = r->hp.epochs;
        if (!(bufs[t] = lt_malloc(sizeof(double) * 4 * (size_t)E, err))) {
            rc = LT_ENOMEM;
            break;
        }
        double *x = bufs[t], *m = x + E, *lo = m + E, *hi = lo + E;
        fold_band(r, res->folds, x, m, lo, hi);
        if (S->kind_compare) snprintf(labels[t], sizeof labels[t], "%s lr %g", lt_opt_name(r->hp.optimizer), r->hp.lr);
        else snprintf(labels[t], sizeof labels[t], "trial %d (rank %d%s%s)", t, r->rank,
                      r->status == LT_FOLD_DONE ? "" : ", ", r->status == LT_FOLD_DONE ? "" : lt_fold_status_name(r->status));
        ser[t] = (lt_series){.label = labels[t], .x = x, .y = m, .n = E, .lo = lo, .hi = hi};
    }
    char path[4200], title[160];
    snprintf(path, sizeof path, "%s/%s", S->cfg->out_dir, name);
    snprintf(title, sizeof title, "%s: validation loss, mean over %d folds (band: min to max)",
             S->kind_compare ? "optimizers" : "trials", res->folds);
    if (!rc) rc = lt_plot_lines(path, title, "epoch", "validation loss (MSE)", ser, T, 1, err);
    for (int t = 0; bufs && t < T; t++) free(bufs[t]);
    free(bufs), free(labels), free(ser);
    return rc;
}

static int param_scatter(const search *S, const lt_search_result *res, lt_hp hp, lt_err *err)
{
    const int T = res->n_trials;
    const lt_space *sp = &S->cfg->space[hp];
    const int logx = sp->kind == LT_SPACE_LOGUNIFORM || sp->kind == LT_SPACE_INT_LOG;
    float *x = lt_malloc(sizeof(float) * 2 * (size_t)T, err);
    int *cls = lt_malloc(sizeof(int) * (size_t)T, err), n = 0, rc = 0;
    if (!x || !cls) rc = LT_ENOMEM;
    float *y = x ? x + T : NULL;
    for (int t = 0; !rc && t < T; t++) {
        const lt_trial_result *r = &res->trials[t];
        if (!isfinite(r->mean)) continue;
        double v = lt_hparams_get(&r->hp, hp);
        x[n] = (float)(logx ? log10(v) : v), y[n] = (float)r->mean;
        /* The optimizer is a category: its index, so each gets a column and a colour. */
        cls[n++] = hp == LT_HP_OPTIMIZER ? (int)v : 0;
    }
    char path[4200], title[160], xlabel[96];
    snprintf(path, sizeof path, "%s/param-%s.png", S->cfg->out_dir, lt_hp_name(hp));
    snprintf(title, sizeof title, "%s against the cross-validated loss (%d trials)", lt_hp_name(hp), n);
    snprintf(xlabel, sizeof xlabel, logx ? "log10 %s" : hp == LT_HP_OPTIMIZER ? "%s (0 adam, 1 adamw, 2 sgd, 3 rmsprop, "
             "4 adadelta)" : "%s", lt_hp_name(hp));
    if (!rc && n > 0)
        rc = lt_plot_scatter(path, title, xlabel, "mean validation loss", x, y, hp == LT_HP_OPTIMIZER ? cls : NULL, n,
                             hp == LT_HP_OPTIMIZER ? 5 : 0, NULL, NULL, 0, err);
    free(x), free(cls);
    return rc;
}

/* Every searched hyperparameter in one figure: each value placed at its
 * position in its range (log ranges on a log scale), coloured by which
 * hyperparameter it is, against the trial's score. */
static int params_overview(const search *S, const lt_search_result *res, lt_err *err)
{
    const int T = res->n_trials;
    float *x = lt_malloc(sizeof(float) * 2 * (size_t)T * LT_HP_COUNT, err);
    int *cls = lt_malloc(sizeof(int) * (size_t)T * LT_HP_COUNT, err), n = 0, k = 0, rc = 0;
    if (!x || !cls) rc = LT_ENOMEM;
    float *y = x ? x + (size_t)T * LT_HP_COUNT : NULL;
    char xlabel[] = "position of the value in the range searched (0: low end, 1: high end)";
    char names[LT_HP_COUNT][40];
    const char *name_ptr[LT_HP_COUNT];
    for (int hp = 0; !rc && hp < LT_HP_COUNT; hp++) {
        const lt_space *sp = &S->cfg->space[hp];
        if (sp->kind == LT_SPACE_FIXED) continue;
        double lo = sp->lo, hi = sp->hi;
        const int logx = sp->kind == LT_SPACE_LOGUNIFORM || sp->kind == LT_SPACE_INT_LOG;
        if (sp->kind == LT_SPACE_CHOICE) {
            lo = hi = sp->values[0];
            for (int i = 1; i < sp->n; i++) lo = fmin(lo, sp->values[i]), hi = fmax(hi, sp->values[i]);
        }
        for (int t = 0; t < T; t++) {
            const lt_trial_result *r = &res->trials[t];
            if (!isfinite(r->mean)) continue;
            double v = lt_hparams_get(&r->hp, (lt_hp)hp);
            double pos = hi > lo ? (logx ? (log(v) - log(lo)) / (log(hi) - log(lo)) : (v - lo) / (hi - lo)) : 0.5;
            x[n] = (float)pos, y[n] = (float)r->mean, cls[n++] = k;
        }
        snprintf(names[k], sizeof names[k], "%s%s", lt_hp_name((lt_hp)hp), logx ? " (log)" : "");
        name_ptr[k] = names[k];
        k++;
    }
    char path[4200], title[160];
    snprintf(path, sizeof path, "%s/params.png", S->cfg->out_dir);
    snprintf(title, sizeof title, "each searched hyperparameter against the cross-validated loss");
    if (!rc && n > 0)
        rc = lt_plot_scatter_named(path, title, xlabel, "mean validation loss", x, y, cls, n, k, name_ptr, "hyperparameter", err);
    free(x), free(cls);
    return rc;
}

int lt_search_plots(const search *S, const lt_search_result *res, lt_err *err)
{
    int rc = curves(S, res, S->kind_compare ? "compare.png" : "trials.png", err);
    if (!rc && !S->kind_compare) rc = params_overview(S, res, err);
    for (int hp = 0; !rc && !S->kind_compare && hp < LT_HP_COUNT; hp++)
        if (S->cfg->space[hp].kind != LT_SPACE_FIXED) rc = param_scatter(S, res, (lt_hp)hp, err);
    return rc;
}
