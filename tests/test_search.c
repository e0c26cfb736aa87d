/* Random search with k-fold cross-validation: the search-space syntax and its
 * errors, the draws, the folds, training on index subsets, a whole search on a
 * tiny synthetic dataset, and the promises: the same table for 1 and 2 threads,
 * after an interruption (library stop and kill -9 of the CLI), with pruning. */
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/core.h"
#include "io/safetensors.h"
#include "testutil.h"

static lt_dataset ds;

static int setup(void **state)
{
    (void)state;
    tu_make_dataset(&ds, 150, 28, 28, 11);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    lt_dataset_free(&ds);
    return 0;
}

static char *slurp(const char *dir, const char *name)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    void *data;
    size_t n;
    lt_err err = {0};
    if (lt_read_file(path, &data, &n, &err)) fail_msg("cannot read %s: %s", path, err.msg);
    char *s = realloc(data, n + 1);
    s[n] = 0;
    return s;
}

/* results.csv without its last column (seconds, the one that differs between runs). */
static char *table_sans_seconds(const char *dir)
{
    char *s = slurp(dir, "results.csv"), *out = calloc(strlen(s) + 1, 1);
    size_t o = 0;
    for (char *line = s; *line;) {
        char *nl = strchr(line, '\n'), *end = nl ? nl : line + strlen(line);
        char *comma = end;
        while (comma > line && *comma != ',') comma--;
        memcpy(out + o, line, (size_t)(comma - line));
        o += (size_t)(comma - line);
        out[o++] = '\n';
        line = nl ? nl + 1 : end;
    }
    free(s);
    return out;
}

static void expect_parse_error(lt_hp hp, const char *text, const char *needle)
{
    lt_space s;
    lt_err err = {0};
    if (lt_space_parse(hp, text, &s, &err) != LT_EINVAL) fail_msg("'%s' for %s was accepted", text, lt_hp_flag(hp));
    if (!strstr(err.msg, lt_hp_flag(hp))) fail_msg("error for '%s' does not name %s: %s", text, lt_hp_flag(hp), err.msg);
    if (needle && !strstr(err.msg, needle)) fail_msg("error for '%s' lacks '%s': %s", text, needle, err.msg);
}

static void test_space_parse(void **state)
{
    (void)state;
    lt_space s;
    lt_err err = {0};
    char buf[256];
    const struct { lt_hp hp; const char *in, *canon; lt_space_kind kind; } ok[] = {
        {LT_HP_LR, "loguniform:1e-4:1e-2", "loguniform:0.0001:0.01", LT_SPACE_LOGUNIFORM},
        {LT_HP_DROPOUT, "uniform:0:0.2", "uniform:0:0.2", LT_SPACE_UNIFORM},
        {LT_HP_LATENT, "int:2:64", "int:2:64", LT_SPACE_INT},
        {LT_HP_BATCH, "int:16:512:log", "int:16:512:log", LT_SPACE_INT_LOG},
        {LT_HP_BATCH, "choice:64,128,256", "choice:64,128,256", LT_SPACE_CHOICE},
        {LT_HP_OPTIMIZER, "choice:adam,rmsprop", "choice:adam,rmsprop", LT_SPACE_CHOICE},
        {LT_HP_OPTIMIZER, "adadelta", "adadelta", LT_SPACE_FIXED},
        {LT_HP_WEIGHT_DECAY, "5e-5", "5e-05", LT_SPACE_FIXED},
        {LT_HP_EPOCHS, "40", "40", LT_SPACE_FIXED},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        if (lt_space_parse(ok[i].hp, ok[i].in, &s, &err)) fail_msg("'%s' refused: %s", ok[i].in, err.msg);
        assert_int_equal(s.kind, ok[i].kind);
        assert_int_equal(lt_space_format(ok[i].hp, &s, buf, sizeof buf), 0);
        assert_string_equal(buf, ok[i].canon);
        lt_space again;
        assert_int_equal(lt_space_parse(ok[i].hp, buf, &again, &err), 0);
        assert_memory_equal(&s, &again, sizeof s);
    }
    expect_parse_error(LT_HP_LR, "loguniform:0:1", "found '0'");
    expect_parse_error(LT_HP_WEIGHT_DECAY, "loguniform:0:1e-3", "A > 0");
    expect_parse_error(LT_HP_LR, "loguniform:1e-2:1e-4", "A < B");
    expect_parse_error(LT_HP_LR, "abc", "abc");
    expect_parse_error(LT_HP_LR, "gaussian:0:1", "gaussian:0:1");
    expect_parse_error(LT_HP_LR, "uniform:1e-4", "uniform:A:B");
    expect_parse_error(LT_HP_LR, "int:1:5", "real");
    expect_parse_error(LT_HP_BATCH, "uniform:16:64", "integer");
    expect_parse_error(LT_HP_BATCH, "choice:64,12.5", "12.5");
    expect_parse_error(LT_HP_BATCH, "0", "0");
    expect_parse_error(LT_HP_BATCH, "choice:", NULL);
    expect_parse_error(LT_HP_BATCH, "choice:64,,128", NULL);
    expect_parse_error(LT_HP_BATCH, "int:8:64:linear", NULL);
    expect_parse_error(LT_HP_DROPOUT, "uniform:0:1.5", "1.5");
    expect_parse_error(LT_HP_OPTIMIZER, "choice:adam,adamax", "adamax");
    expect_parse_error(LT_HP_OPTIMIZER, "loguniform:1:2", "name");
    expect_parse_error(LT_HP_EPOCHS, "", NULL);
}

static void test_space_draw(void **state)
{
    (void)state;
    lt_search_config cfg;
    lt_search_config_default(&cfg);
    lt_err err = {0};
    assert_int_equal(lt_space_parse(LT_HP_BATCH, "int:16:512:log", &cfg.space[LT_HP_BATCH], &err), 0);
    assert_int_equal(lt_space_parse(LT_HP_OPTIMIZER, "choice:adam,rmsprop", &cfg.space[LT_HP_OPTIMIZER], &err), 0);
    int seen_opt[5] = {0}, small_batch = 0;
    double lr_lo = 1, lr_hi = 0;
    for (int t = 0; t < 400; t++) {
        lt_hparams a, b;
        lt_space_draw(cfg.space, 7, t, &a);
        lt_space_draw(cfg.space, 7, t, &b);
        assert_memory_equal(&a, &b, sizeof a);
        assert_true(a.lr >= 1e-4 && a.lr <= 1e-2);
        assert_true(a.batch >= 16 && a.batch <= 512);
        assert_true(a.latent >= 2 && a.latent <= 64);
        assert_true(a.dropout >= 0 && a.dropout <= 0.2);
        assert_true(a.weight_decay == 5e-5 && a.epochs == 40 && a.momentum == 0);
        seen_opt[a.optimizer]++;
        small_batch += a.batch < 64; /* log scale: [16, 64) is half of [16, 512] in log */
        lr_lo = fmin(lr_lo, a.lr), lr_hi = fmax(lr_hi, a.lr);
        /* Four significant digits, so a row reruns with latent train --lr as printed. */
        char text[32];
        snprintf(text, sizeof text, "%.4g", a.lr);
        assert_true(strtod(text, NULL) == a.lr);
    }
    assert_int_equal(seen_opt[LT_OPT_ADAM] + seen_opt[LT_OPT_RMSPROP], 400);
    assert_true(seen_opt[LT_OPT_ADAM] > 150 && seen_opt[LT_OPT_RMSPROP] > 150);
    assert_true(small_batch > 120 && small_batch < 280);
    assert_true(lr_lo < 2e-4 && lr_hi > 5e-3);
    /* A hyperparameter's draw does not move when another flag changes. */
    lt_hparams a, b;
    lt_space_draw(cfg.space, 7, 3, &a);
    assert_int_equal(lt_space_parse(LT_HP_LATENT, "choice:8,9", &cfg.space[LT_HP_LATENT], &err), 0);
    lt_space_draw(cfg.space, 7, 3, &b);
    assert_true(a.lr == b.lr && a.batch == b.batch && a.dropout == b.dropout);
    lt_space_draw(cfg.space, 8, 3, &b);
    assert_true(a.lr != b.lr);
}

static void test_kfold(void **state)
{
    (void)state;
    const int n = 103, k = 5;
    int a[103], b[103], c[103], count[5] = {0};
    lt_err err = {0};
    assert_int_equal(lt_kfold(n, k, 42, a, &err), 0);
    assert_int_equal(lt_kfold(n, k, 42, b, &err), 0);
    assert_int_equal(lt_kfold(n, k, 43, c, &err), 0);
    assert_memory_equal(a, b, sizeof a);
    assert_memory_not_equal(a, c, sizeof a);
    /* Every image in exactly one fold; sizes 20 or 21; folds are not runs of consecutive images. */
    for (int i = 0; i < n; i++) {
        assert_true(a[i] >= 0 && a[i] < k);
        count[a[i]]++;
    }
    for (int f = 0; f < k; f++) assert_true(count[f] == 20 || count[f] == 21);
    int runs = 0;
    for (int i = 1; i < n; i++) runs += a[i] != a[i - 1];
    assert_true(runs > 50);
    assert_int_equal(lt_kfold(n, 1, 1, a, &err), LT_EINVAL);
    assert_non_null(strstr(err.msg, "--folds"));
    assert_int_equal(lt_kfold(3, 4, 1, a, &err), LT_EINVAL);
}

/* Index subsets train exactly like the contiguous split they describe. */
static void test_train_subset(void **state)
{
    (void)state;
    char *dir = tu_mkdtemp(), a[4200], b[4200], c[4200];
    snprintf(a, sizeof a, "%s/plain", dir);
    snprintf(b, sizeof b, "%s/subset", dir);
    snprintf(c, sizeof c, "%s/bad", dir);
    lt_train_config cfg;
    lt_train_config_default(&cfg);
    cfg.epochs = 2, cfg.batch = 32, cfg.val = 30, cfg.threads = 1, cfg.dropout = 0.1f, cfg.out_dir = a;
    lt_err err = {0};
    lt_train_result r1, r2;
    if (lt_train(&cfg, &ds, NULL, NULL, &r1, &err)) fail_msg("%s", err.msg);
    int idx[150];
    for (int i = 0; i < 150; i++) idx[i] = i;
    cfg.val = 0, cfg.out_dir = b;
    cfg.train_idx = idx, cfg.n_train = 120, cfg.val_idx = idx + 120, cfg.n_val = 30;
    if (lt_train(&cfg, &ds, NULL, NULL, &r2, &err)) fail_msg("%s", err.msg);
    char *ma = slurp(a, "model.safetensors"), *mb = slurp(b, "model.safetensors");
    assert_memory_equal(ma, mb, 4096);
    free(ma), free(mb);
    assert_true(fabs(r1.val_loss - r2.val_loss) < 1e-6 * r1.val_loss);
    /* Resuming with other indices is refused, naming what differs. */
    cfg.resume = 1, cfg.epochs = 3, cfg.n_train = 119;
    assert_int_equal(lt_train(&cfg, &ds, NULL, NULL, NULL, &err), LT_EINVAL);
    assert_non_null(strstr(err.msg, "differ"));
    cfg.resume = 0, cfg.out_dir = c, cfg.n_train = 120;
    idx[5] = 150;
    assert_int_equal(lt_train(&cfg, &ds, NULL, NULL, NULL, &err), LT_EINVAL);
    assert_non_null(strstr(err.msg, "150"));
    idx[5] = 5;
    cfg.val = 10;
    assert_int_equal(lt_train(&cfg, &ds, NULL, NULL, NULL, &err), LT_EINVAL);
    assert_non_null(strstr(err.msg, "--val"));
    tu_rmtree(dir);
    free(dir);
}

static volatile int first_epoch_stop;

static void stop_at_batch_2(void *ctx, const lt_progress *p)
{
    (void)ctx;
    if (p->epoch == 1 && p->batch == 2) first_epoch_stop = 1;
}

/* A stop in the very first epoch (Ctrl-C in a refit or a fold's first
 * minute) saves a state without any finished epoch, and resume goes on. */
static void test_stop_in_first_epoch(void **state)
{
    (void)state;
    char *dir = tu_mkdtemp(), a[4200], b[4200];
    snprintf(a, sizeof a, "%s/stopped", dir);
    snprintf(b, sizeof b, "%s/straight", dir);
    lt_train_config cfg;
    lt_train_config_default(&cfg);
    cfg.epochs = 2, cfg.batch = 16, cfg.val = 30, cfg.threads = 1, cfg.out_dir = a, cfg.stop = &first_epoch_stop;
    lt_err err = {0};
    assert_int_equal(lt_train(&cfg, &ds, stop_at_batch_2, NULL, NULL, &err), LT_EINTR);
    first_epoch_stop = 0, cfg.resume = 1;
    if (lt_train(&cfg, &ds, NULL, NULL, NULL, &err)) fail_msg("%s", err.msg);
    cfg.resume = 0, cfg.out_dir = b;
    if (lt_train(&cfg, &ds, NULL, NULL, NULL, &err)) fail_msg("%s", err.msg);
    char *ma = slurp(a, "model.safetensors"), *mb = slurp(b, "model.safetensors");
    assert_memory_equal(ma, mb, 4096);
    free(ma), free(mb);
    tu_rmtree(dir);
    free(dir);
}

static void tiny_search(lt_search_config *cfg, const char *dir)
{
    lt_search_config_default(cfg);
    lt_err err = {0};
    cfg->out_dir = dir;
    cfg->trials = 3, cfg->folds = 3, cfg->threads = 1, cfg->seed = 5;
    assert_int_equal(lt_space_parse(LT_HP_EPOCHS, "2", &cfg->space[LT_HP_EPOCHS], &err), 0);
    assert_int_equal(lt_space_parse(LT_HP_BATCH, "choice:16,32", &cfg->space[LT_HP_BATCH], &err), 0);
    assert_int_equal(lt_space_parse(LT_HP_LATENT, "int:2:8", &cfg->space[LT_HP_LATENT], &err), 0);
    assert_int_equal(lt_space_parse(LT_HP_LR, "loguniform:1e-3:1e-2", &cfg->space[LT_HP_LR], &err), 0);
}

static const char *subset_of(const char *dir, int t, int f, char *buf, size_t size)
{
    char path[4300];
    snprintf(path, sizeof path, "%s/trials/%03d/fold-%d/train_state.safetensors", dir, t, f);
    lt_st_file st;
    lt_err err = {0};
    if (lt_st_read(path, &st, &err)) fail_msg("%s", err.msg);
    snprintf(buf, size, "%s", lt_st_meta(&st, "subset"));
    lt_st_free(&st);
    return buf;
}

static char *reference_dir; /* the uninterrupted tiny search, shared by the tests below */

static void test_search_end_to_end(void **state)
{
    (void)state;
    char *dir = tu_mkdtemp(), run[4200];
    snprintf(run, sizeof run, "%s/s", dir);
    lt_search_config cfg;
    tiny_search(&cfg, run);
    lt_search_result res;
    lt_err err = {0};
    if (lt_search(&cfg, &ds, &ds, NULL, NULL, &res, &err)) fail_msg("%s", err.msg);
    assert_int_equal(res.n_trials, 3);
    assert_int_equal(res.folds, 3);
    assert_true(res.best >= 0);
    assert_int_equal(res.trials[res.best].rank, 1);
    for (int t = 0; t < 3; t++) {
        const lt_trial_result *r = &res.trials[t];
        assert_int_equal(r->status, LT_FOLD_DONE);
        double m = (r->score[0] + r->score[1] + r->score[2]) / 3;
        assert_true(fabs(m - r->mean) < 1e-12);
        assert_true(r->std >= 0 && r->std < r->mean);
        assert_true(r->mean >= res.trials[res.best].mean);
        /* The score is the last epoch's validation loss. */
        for (int f = 0; f < 3; f++) assert_true(r->score[f] == r->curve[f * r->hp.epochs + r->hp.epochs - 1]);
    }
    assert_true(isfinite(res.test_mse) && res.test_mse > 0 && res.test_mse < 0.3);
    /* Each fold trains on the same images in every trial, and the folds differ. */
    char s0[64], s1[64], s2[64];
    assert_string_equal(subset_of(run, 0, 1, s0, sizeof s0), subset_of(run, 2, 1, s1, sizeof s1));
    assert_string_not_equal(subset_of(run, 0, 0, s2, sizeof s2), s0);
    /* The files: a header and one row per trial; sklearn's columns in the JSON. */
    char *csv = slurp(run, "results.csv");
    assert_non_null(strstr(csv, "split2_val_loss,mean_val_loss,std_val_loss,rank_val_loss,status,seconds"));
    int lines = 0;
    for (char *p = csv; *p; p++) lines += *p == '\n';
    assert_int_equal(lines, 4);
    free(csv);
    char *json = slurp(run, "results.json");
    assert_non_null(strstr(json, "\"mean_val_loss\""));
    assert_non_null(strstr(json, "\"param_lr\""));
    assert_non_null(strstr(json, "\"val_loss_curves\""));
    free(json);
    /* The figures: curves with fold bands, and one scatter per searched hyperparameter (not the fixed ones). */
    const char *pngs[] = {"trials.png", "params.png", "param-lr.png", "param-batch.png", "param-latent.png",
                          "param-dropout.png"};
    for (int i = 0; i < 6; i++) {
        char *png = slurp(run, pngs[i]);
        if (memcmp(png, "\x89PNG", 4)) fail_msg("%s is not a PNG", pngs[i]);
        free(png);
    }
    char fixed[4300];
    snprintf(fixed, sizeof fixed, "%s/param-epochs.png", run);
    assert_int_not_equal(access(fixed, F_OK), 0);
    char *best = slurp(run, "best.json");
    assert_non_null(strstr(best, "\"test_mse\""));
    free(best);
    lt_model *m = NULL;
    char model[4300];
    snprintf(model, sizeof model, "%s/refit/model.safetensors", run);
    assert_int_equal(lt_model_load(&m, model, &err), 0);
    assert_int_equal(lt_model_latent_dim(m), res.trials[res.best].hp.latent);
    lt_model_free(m);
    lt_search_result_free(&res);
    /* A second start is refused; a resume of a finished search trains nothing and gives the same table. */
    assert_int_equal(lt_search(&cfg, &ds, &ds, NULL, NULL, NULL, &err), LT_EINVAL);
    assert_non_null(strstr(err.msg, "--resume"));
    char *before = table_sans_seconds(run);
    cfg.resume = 1;
    if (lt_search(&cfg, &ds, &ds, NULL, NULL, &res, &err)) fail_msg("%s", err.msg);
    assert_true(res.seconds < 2.0);
    char *after = table_sans_seconds(run);
    assert_string_equal(before, after);
    free(before), free(after);
    lt_search_result_free(&res);
    /* Other settings on resume are refused, naming the flag. */
    cfg.folds = 4;
    assert_int_equal(lt_search(&cfg, &ds, &ds, NULL, NULL, NULL, &err), LT_EINVAL);
    assert_non_null(strstr(err.msg, "--folds"));
    cfg.folds = 3;
    assert_int_equal(lt_space_parse(LT_HP_LR, "loguniform:1e-3:2e-2", &cfg.space[LT_HP_LR], &err), 0);
    assert_int_equal(lt_search(&cfg, &ds, &ds, NULL, NULL, NULL, &err), LT_EINVAL);
    assert_non_null(strstr(err.msg, "--lr"));
    reference_dir = strdup(run);
    free(dir);
}

static void test_threads_same_table(void **state)
{
    (void)state;
    char *dir = tu_mkdtemp(), run[4200];
    snprintf(run, sizeof run, "%s/s", dir);
    lt_search_config cfg;
    tiny_search(&cfg, run);
    cfg.threads = 2;
    lt_err err = {0};
    if (lt_search(&cfg, &ds, &ds, NULL, NULL, NULL, &err)) fail_msg("%s", err.msg);
    char *a = table_sans_seconds(reference_dir), *b = table_sans_seconds(run);
    assert_string_equal(a, b);
    char *ma = slurp(reference_dir, "refit/model.safetensors"), *mb = slurp(run, "refit/model.safetensors");
    assert_memory_equal(ma, mb, 4096);
    free(a), free(b), free(ma), free(mb);
    tu_rmtree(dir);
    free(dir);
}

static volatile int stop_flag;
static int stop_after, calls;

static void stop_progress(void *ctx, const lt_search_progress *p)
{
    (void)ctx, (void)p;
    if (++calls == stop_after) stop_flag = 1;
}

/* Stopped mid-fold twice (mid-epoch, then later), then finished: the same table. */
static void test_interrupt_resume(void **state)
{
    (void)state;
    char *dir = tu_mkdtemp(), run[4200];
    snprintf(run, sizeof run, "%s/s", dir);
    lt_search_config cfg;
    tiny_search(&cfg, run);
    cfg.stop = &stop_flag;
    lt_err err = {0};
    const int stops[2] = {9, 40};
    for (int i = 0; i < 2; i++) {
        stop_flag = 0, calls = 0, stop_after = stops[i];
        assert_int_equal(lt_search(&cfg, &ds, &ds, stop_progress, NULL, NULL, &err), LT_EINTR);
        assert_non_null(strstr(err.msg, "--resume"));
        cfg.resume = 1;
    }
    stop_flag = 0, stop_after = -1;
    if (lt_search(&cfg, &ds, &ds, stop_progress, NULL, NULL, &err)) fail_msg("%s", err.msg);
    char *a = table_sans_seconds(reference_dir), *b = table_sans_seconds(run);
    assert_string_equal(a, b);
    char *ba = slurp(reference_dir, "best.json"), *bb = slurp(run, "best.json");
    *strstr(ba, "\"refit_seconds\"") = 0, *strstr(bb, "\"refit_seconds\"") = 0;
    assert_string_equal(ba, bb);
    free(a), free(b), free(ba), free(bb);
    tu_rmtree(dir);
    free(dir);
}

/* The median rule: a trial far worse than the earlier ones at the same fold and
 * epoch stops there, its later folds are skipped, and it ranks last. */
static void test_prune(void **state)
{
    (void)state;
    char *dir = tu_mkdtemp(), run[4200];
    snprintf(run, sizeof run, "%s/s", dir);
    lt_search_config cfg;
    tiny_search(&cfg, run);
    cfg.refit = 0, cfg.prune = 1, cfg.prune_startup = 1, cfg.prune_warmup = 0;
    lt_hparams good = {.lr = 5e-3, .batch = 16, .latent = 4, .epochs = 3}, bad = good;
    bad.lr = 1e-7;
    cfg.n_fixed = 3, cfg.fixed[0] = good, cfg.fixed[1] = good, cfg.fixed[2] = bad;
    lt_search_result res;
    lt_err err = {0};
    if (lt_search(&cfg, &ds, NULL, NULL, NULL, &res, &err)) fail_msg("%s", err.msg);
    /* Equal to the median is not worse: the second, identical trial runs to the end. */
    assert_int_equal(res.trials[0].status, LT_FOLD_DONE);
    assert_int_equal(res.trials[1].status, LT_FOLD_DONE);
    assert_int_equal(res.trials[2].status, LT_FOLD_PRUNED);
    assert_true(isnan(res.trials[2].mean));
    assert_int_equal(res.trials[2].rank, 3);
    assert_true(isfinite(res.trials[2].curve[0]) && isnan(res.trials[2].curve[1]));
    char *csv = slurp(run, "results.csv");
    assert_non_null(strstr(csv, ",3,pruned,"));
    free(csv);
    char *fold = slurp(run, "trials/002/fold-2/fold.json");
    assert_non_null(strstr(fold, "\"skipped\""));
    free(fold);
    lt_search_result_free(&res);
    tu_rmtree(dir);
    free(dir);
}

/* ---- through the CLI ---- */

static void test_cli(void **state)
{
    (void)state;
    char *dir = tu_mkdtemp(), out[16384];
    tu_write_idx_split(dir, "train", &ds);
    tu_write_idx_split(dir, "t10k", &ds);
    const char *flags = "--trials 3 --folds 3 --epochs 2 --batch choice:16,32 --latent int:2:8 "
                        "--lr loguniform:1e-3:1e-2 --seed 5 --threads 1";
    assert_int_equal(tu_sh_stdout(out, sizeof out, "%s search --help", LATENT_CLI), 0);
    assert_non_null(strstr(out, "loguniform:A:B"));
    assert_int_equal(tu_sh_stdout(out, sizeof out, "%s search --data %s --out %s/x --lr loguniform:0:1 2>&1", LATENT_CLI, dir, dir), 2);
    assert_non_null(strstr(out, "--lr"));
    assert_int_equal(tu_sh_stdout(out, sizeof out, "%s search --data %s --out %s/x --batch uniform:1:2 2>&1", LATENT_CLI, dir, dir), 2);
    assert_non_null(strstr(out, "--batch"));
    assert_int_equal(tu_sh_stdout(out, sizeof out, "%s search --data %s --out %s/x --prune mean 2>&1", LATENT_CLI, dir, dir), 2);
    assert_non_null(strstr(out, "--prune"));
    assert_int_equal(tu_sh_stdout(out, sizeof out, "%s compare --data %s --out %s/x --optimizers adam:fast 2>&1", LATENT_CLI, dir, dir), 2);
    assert_non_null(strstr(out, "--optimizers"));
    /* The search with --json: one object on stdout; the same table as the library's run. */
    int rc = tu_sh_stdout(out, sizeof out, "%s search --data %s --out %s/s %s --json 2>/dev/null", LATENT_CLI, dir, dir, flags);
    if (rc) fail_msg("search failed (%d): %s", rc, out);
    const char *keys[] = {"\"best\": {", "\"best_cv_mean\"", "\"best_cv_std\"", "\"folds\": [", "\"test_mse\"", "\"seconds\""};
    for (int i = 0; i < 6; i++)
        if (!strstr(out, keys[i])) fail_msg("--json lacks %s: %s", keys[i], out);
    char run[4200];
    snprintf(run, sizeof run, "%s/s", dir);
    char *a = table_sans_seconds(reference_dir), *b = table_sans_seconds(run);
    assert_string_equal(a, b);
    free(b);
    /* kill -9 in the middle, twice, then --resume: the same table. */
    snprintf(run, sizeof run, "%s/k", dir);
    for (int k = 0; k < 2; k++) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            char cmd[8192];
            snprintf(cmd, sizeof cmd, "exec %s search --data %s --out %s %s %s >/dev/null 2>&1", LATENT_CLI, dir, run,
                     flags, k ? "--resume" : "");
            execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
            _exit(127);
        }
        char wait_for[4300];
        snprintf(wait_for, sizeof wait_for, "%s/trials/%03d/fold-1/fold.json", run, k);
        for (int i = 0; i < 400 && access(wait_for, F_OK) != 0; i++) nanosleep(&(struct timespec){0, 10000000}, NULL);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    rc = tu_sh_stdout(out, sizeof out, "%s search --data %s --out %s --resume --threads 2 2>&1", LATENT_CLI, dir, run);
    if (rc) fail_msg("resume failed (%d): %s", rc, out);
    assert_non_null(strstr(out, "rank"));
    b = table_sans_seconds(run);
    assert_string_equal(a, b);
    free(a), free(b);
    /* A search over the denoising autoencoder: every fold and the refit train with the
     * noise (the refit checkpoint is a dae), the settings keep it, and resuming with
     * other noise is refused. */
    rc = tu_sh_stdout(out, sizeof out, "%s search --data %s --out %s/d --model dae --noise gaussian:0.5 --trials 2 --folds 2 "
            "--epochs 1 --batch 32 --latent 4 --seed 5 --threads 1 --json 2>/dev/null", LATENT_CLI, dir, dir);
    if (rc) fail_msg("dae search failed (%d): %s", rc, out);
    assert_non_null(strstr(out, "\"model_kind\": \"dae\", \"noise\": \"gaussian:0.5\""));
    assert_int_equal(tu_sh_stdout(out, sizeof out, "%s eval %s/d/refit/model.safetensors --data %s --json 2>/dev/null", LATENT_CLI,
                                  dir, dir), 0);
    assert_non_null(strstr(out, "\"test_psnr\""));
    char *settings = slurp(dir, "d/search.json");
    assert_non_null(strstr(settings, "\"noise\": \"gaussian:0.5\""));
    free(settings);
    assert_int_equal(tu_sh_stdout(out, sizeof out, "%s search --data %s --out %s/d --resume --model dae --noise gaussian:1 2>&1",
                                  LATENT_CLI, dir, dir), 2);
    assert_non_null(strstr(out, "--noise"));
    rc = tu_sh_stdout(out, sizeof out, "%s search --data %s --out %s/d --resume 2>&1", LATENT_CLI, dir, dir);
    if (rc) fail_msg("dae search resume failed (%d): %s", rc, out);
    assert_non_null(strstr(out, "denoising autoencoder, noise gaussian:0.5"));
    assert_int_equal(tu_sh_stdout(out, sizeof out, "%s search --data %s --out %s/v --model vae 2>&1", LATENT_CLI, dir, dir), 2);
    assert_non_null(strstr(out, "--model"));
    assert_int_equal(tu_sh_stdout(out, sizeof out, "%s search --data %s --out %s/v --noise gaussian:1 2>&1", LATENT_CLI, dir, dir), 2);
    assert_non_null(strstr(out, "--noise"));
    /* compare: each optimizer's scores; resumable like a search. */
    rc = tu_sh_stdout(out, sizeof out, "%s compare --data %s --out %s/c --optimizers adam:1e-3,rmsprop:0.001 --epochs 2 --folds 2 "
            "--batch 32 --threads 1 --json 2>/dev/null", LATENT_CLI, dir, dir);
    if (rc) fail_msg("compare failed (%d): %s", rc, out);
    assert_non_null(strstr(out, "\"optimizer\": \"adam\""));
    assert_non_null(strstr(out, "\"optimizer\": \"rmsprop\""));
    assert_non_null(strstr(out, "\"val_loss_mean\""));
    rc = tu_sh_stdout(out, sizeof out, "%s compare --data %s --out %s/c --resume 2>&1", LATENT_CLI, dir, dir);
    if (rc) fail_msg("compare resume failed (%d): %s", rc, out);
    char cdir[4200];
    snprintf(cdir, sizeof cdir, "%s/c", dir);
    char *png = slurp(cdir, "compare.png");
    assert_memory_equal(png, "\x89PNG", 4);
    free(png);
    tu_rmtree(dir);
    free(dir);
}

static int cleanup(void **state)
{
    (void)state;
    if (reference_dir) {
        char *slash = strrchr(reference_dir, '/');
        *slash = 0;
        tu_rmtree(reference_dir);
        free(reference_dir);
    }
    return teardown(state);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_space_parse),    cmocka_unit_test(test_space_draw),
        cmocka_unit_test(test_kfold),          cmocka_unit_test(test_train_subset),
        cmocka_unit_test(test_stop_in_first_epoch),
        cmocka_unit_test(test_search_end_to_end), cmocka_unit_test(test_threads_same_table),
        cmocka_unit_test(test_interrupt_resume), cmocka_unit_test(test_prune),
        cmocka_unit_test(test_cli),
    };
    int rc = cmocka_run_group_tests(tests, setup, cleanup);
    tu_release_threads();
    return rc;
}
