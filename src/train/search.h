/* Internals of lt_search shared by its two files: search.c (the units of
 * work, their scheduling over processes, pruning) and search_io.c (the
 * search's files: settings, per-fold results, tables). */
#ifndef LATENT_TRAIN_SEARCH_H
#define LATENT_TRAIN_SEARCH_H

#include "core/core.h"

/* What one fold run (a unit of work) came to. */
typedef struct unit_res {
    lt_fold_status status;
    int epochs_run;
    double seconds;   /* training time over every invocation (from its metrics) */
    double score;     /* validation loss after the last epoch; NaN unless done */
    double *curve;    /* [epochs of the trial]: validation loss per epoch, NaN where not run */
} unit_res;

typedef struct search {
    const lt_search_config *cfg;
    int T, K;              /* trials, folds */
    int pool;              /* images cross-validated */
    lt_hparams *hp;        /* [T] */
    unit_res *u;           /* [T*K], unit u = trial*K + fold */
    int *owner;            /* [T*K] rank running it, -1: none */
    int kind_compare;
} search;

/* Value of a score for a table: NaN shows as an empty cell in CSV, null in JSON. */
int lt_search_write_settings(const search *S, lt_err *err);
int lt_search_check_settings(const search *S, lt_err *err);
int lt_search_unit_dir(const search *S, int t, int f, char *buf, size_t size, lt_err *err);
int lt_search_write_unit(const search *S, int t, int f, lt_err *err);
/* 1 and *r filled when the unit's fold.json holds a finished result for trial t's settings; 0 otherwise. */
int lt_search_read_unit(const search *S, int t, int f, unit_res *r);
/* mean, std and rank of every trial into res (allocated), then results.csv and results.json. */
int lt_search_tables(const search *S, lt_search_result *res, lt_err *err);
int lt_search_write_best(const search *S, const lt_search_result *res, lt_err *err);
int lt_search_read_best(const search *S, int trial, double *test_mse, double *seconds);
/* trials.png (compare.png) and param-NAME.png for every searched hyperparameter. */
int lt_search_plots(const search *S, const lt_search_result *res, lt_err *err);
/* Format every hyperparameter of h as a JSON object (new reference). */
struct json_t *lt_search_params_json(const lt_hparams *h);

#endif
