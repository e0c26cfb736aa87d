/* latent search and latent compare: flags, progress over the whole search,
 * the table at the end. The work itself is lt_search. */
#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"

static const char *search_usage =
    "Usage: latent search --out DIR [options]\n"
    "\n"
    "Random search over the autoencoder's hyperparameters, each trial scored by\n"
    "k-fold cross-validation on the training split (mean and std of the folds'\n"
    "validation losses); --model dae searches the denoising autoencoder, scored\n"
    "against the clean images. The best trial is refit on every image and scored on the\n"
    "test split. Each hyperparameter flag takes a value or a distribution:\n"
    "  loguniform:A:B  uniform:A:B  int:A:B  int:A:B:log  choice:a,b,c\n"
    "DIR receives results.csv and results.json (one row per trial, as sklearn's\n"
    "cv_results_), best.json, refit/model.safetensors, and every fold's run under\n"
    "trials/. Ctrl-C saves every run; --resume continues where it stopped.\n"
    "Under mpirun -np N the folds are spread over N processes (same results).";

static const char *compare_usage =
    "Usage: latent compare --out DIR [options]\n"
    "\n"
    "Trains the same autoencoder (or, with --model dae, denoising autoencoder) with several optimizers on the same k folds with\n"
    "the same seed, and reports each one's validation loss after every epoch\n"
    "(mean over the folds) and its final loss. --optimizers takes NAME:LR pairs.\n"
    "DIR receives results.csv, results.json and the folds' runs; --resume continues.";

typedef struct show {
    int tty, folds, trials;
    double last;
    int refit_seen;
} show;

static void progress(void *ctx, const lt_search_progress *p)
{
    show *s = ctx;
    char eta[32];
    cli_fmt_duration(eta, sizeof eta, p->eta_seconds);
    if (p->unit_done) {
        char score[32] = "-", who[32] = "";
        if (isfinite(p->score)) snprintf(score, sizeof score, "%.5f", p->score);
        if (p->rank) snprintf(who, sizeof who, "  (process %d)", p->rank);
        fprintf(stderr, "%strial %d fold %d: %s, val loss %s, %.1fs  [%d/%d folds, ETA %s]%s\n",
                s->tty ? "\r\033[K" : "", p->trial, p->fold, lt_fold_status_name(p->status),
                score, p->unit_seconds, p->units_done, p->units, eta, who);
        return;
    }
    if (p->fold < 0 && !s->refit_seen) {
        s->refit_seen = 1;
        fprintf(stderr, "%srefit of trial %d on every training image\n", s->tty ? "\r\033[K" : "", p->trial);
    }
    double t = cli_now();
    if (!s->tty) {
        /* A log gets a line per epoch of the run in this process, so a long fold still shows life. */
        if (p->epoch_done) {
            char where[64], val[32] = "-";
            if (p->fold >= 0) snprintf(where, sizeof where, "trial %d fold %d", p->trial, p->fold);
            else snprintf(where, sizeof where, "refit of trial %d", p->trial);
            if (isfinite(p->val_loss)) snprintf(val, sizeof val, "%.5f", p->val_loss);
            fprintf(stderr, "%s: epoch %d/%d, train loss %.5f, val loss %s  [%d/%d folds, ETA %s]\n", where, p->epoch,
                    p->epochs, p->train_loss, val, p->units_done, p->units, eta);
        }
        return;
    }
    if (t - s->last < 0.1 && p->batch < p->batches) return;
    s->last = t;
    char what[64];
    if (p->fold >= 0) snprintf(what, sizeof what, "trial %d fold %d", p->trial, p->fold);
    else snprintf(what, sizeof what, "refit");
    fprintf(stderr, "\r\033[K%s epoch %d/%d batch %d/%d loss %.5f  [%d/%d folds, ETA %s]", what, p->epoch, p->epochs,
            p->batch, p->batches, p->train_loss, p->units_done, p->units, eta);
    fflush(stderr);
}

static void fmt_num(char *buf, size_t n, double v, const char *fmt)
{
    if (isfinite(v)) snprintf(buf, n, fmt, v);
    else snprintf(buf, n, "-");
}

/* The table, best first. */
static void print_table(FILE *out, const lt_search_result *r)
{
    int *order = malloc(sizeof(int) * (size_t)r->n_trials);
    if (!order) return;
    for (int i = 0; i < r->n_trials; i++) order[i] = i;
    for (int i = 1; i < r->n_trials; i++)
        for (int j = i; j > 0 && r->trials[order[j]].rank < r->trials[order[j - 1]].rank; j--) {
            int x = order[j];
            order[j] = order[j - 1], order[j - 1] = x;
        }
    fprintf(out, "%4s %5s %9s %5s %6s %7s %9s %9s %6s %10s %9s %8s  %s\n", "rank", "trial", "lr", "batch", "latent",
            "dropout", "wd", "optimizer", "epochs", "mean loss", "std", "seconds", "status");
    for (int i = 0; i < r->n_trials; i++) {
        const lt_trial_result *t = &r->trials[order[i]];
        char mean[32], std[32];
        fmt_num(mean, sizeof mean, t->mean, "%.5f");
        fmt_num(std, sizeof std, t->std, "%.5f");
        fprintf(out, "%4d %5d %9.3g %5d %6d %7.3g %9.3g %9s %6d %10s %9s %8.1f  %s\n", t->rank, order[i],
                t->hp.lr, t->hp.batch, t->hp.latent, t->hp.dropout, t->hp.weight_decay, lt_opt_name(t->hp.optimizer),
                t->hp.epochs, mean, std, t->seconds, lt_fold_status_name(t->status));
    }
    free(order);
}

static void json_num(double v)
{
    if (isfinite(v)) printf("%.10g", v);
    else printf("null");
}

static void json_params(const lt_hparams *h)
{
    printf("{");
    for (int hp = 0; hp < LT_HP_COUNT; hp++) {
        char v[64];
        lt_hparam_format((lt_hp)hp, lt_hparams_get(h, (lt_hp)hp), v, sizeof v);
        printf(hp == LT_HP_OPTIMIZER ? "%s\"%s\": \"%s\"" : "%s\"%s\": %s", hp ? ", " : "", lt_hp_name((lt_hp)hp), v);
    }
    printf("}");
}

/* --model ae|dae and --noise, shared by search and compare; stored is the
 * resumed search's noise (NULL for a new one), kept unless either flag is given. */
static int parse_model(const char *cmd, const char *model, const char *noise, const lt_noise *stored, lt_noise *out)
{
    lt_err err = {0};
    if (model && strcmp(model, "ae") && strcmp(model, "dae")) {
        fprintf(stderr, "latent %s: --model: expected ae or dae, found '%s' (searches cover the autoencoders)\n", cmd, model);
        return EXIT_USAGE;
    }
    if (noise && !(model && !strcmp(model, "dae"))) {
        fprintf(stderr, "latent %s: --noise applies to --model dae only\n", cmd);
        return EXIT_USAGE;
    }
    if (!model && stored) {
        *out = *stored;
        return 0;
    }
    *out = (lt_noise){.kind = LT_NOISE_NONE};
    if (model && !strcmp(model, "dae")) {
        if (lt_noise_parse(noise ? noise : "gaussian:1", out, &err)) {
            fprintf(stderr, "latent %s: --noise: %s\n", cmd, err.msg);
            return EXIT_USAGE;
        }
        if (out->kind == LT_NOISE_NONE) {
            fprintf(stderr, "latent %s: --noise none makes a plain autoencoder: use --model ae\n", cmd);
            return EXIT_USAGE;
        }
    }
    return 0;
}

/* Shared by search and compare: load the data, run, and report. */
static int run_search(const char *cmd, lt_search_config *cfg, const char *data, int json)
{
    lt_dataset train = {0}, test = {0};
    cfg->stop = &cli_stop_requested;
    cfg->dist = cli_dist();
    if (cli_load_split(data, "train", &train) || (cfg->refit && cli_load_split(data, "test", &test))) {
        /* Under mpirun the others wait for this process to start: lt_search tells them it failed. */
        if (lt_dist_size(cfg->dist) > 1) lt_search(cfg, NULL, NULL, NULL, NULL, NULL, NULL);
        lt_dataset_free(&train);
        return 1;
    }
    const int rank = lt_dist_rank(cfg->dist), procs = lt_dist_size(cfg->dist);
    cli_catch_stop();
    int n = cfg->limit && cfg->limit < train.n ? cfg->limit : train.n;
    int trials = cfg->n_fixed ? cfg->n_fixed : cfg->trials;
    char model[96] = "autoencoder", noise[64] = "";
    if (cfg->noise.kind != LT_NOISE_NONE) {
        lt_noise_format(&cfg->noise, noise, sizeof noise);
        snprintf(model, sizeof model, "denoising autoencoder, noise %s", noise);
    }
    if (rank == 0)
        fprintf(stderr, "%s %s %s (%s): %d trials x %d folds on %d training images, seed %llu, %d process(es) x %d thread(s)%s\n",
                cfg->resume ? "resuming" : "starting", cmd, cfg->out_dir, model, trials, cfg->folds, n,
                (unsigned long long)cfg->seed, procs, cfg->threads > 0 ? cfg->threads : omp_get_max_threads(),
                cfg->prune ? ", median pruning" : "");
    show s = {.tty = isatty(STDERR_FILENO), .folds = cfg->folds, .trials = trials};
    lt_search_result res;
    lt_err err = {0};
    int rc = lt_search(cfg, &train, cfg->refit ? &test : NULL, rank == 0 ? progress : NULL, &s, &res, &err);
    lt_dataset_free(&train);
    lt_dataset_free(&test);
    if (rc) {
        if (s.tty) fputs("\r\033[K", stderr);
        fprintf(stderr, "latent %s: %s\n", cmd, err.msg);
        return rc == LT_EINTR ? EXIT_INTERRUPTED : rc == LT_EINVAL ? EXIT_USAGE : 1;
    }
    if (rank != 0) return 0;
    if (s.tty) fputs("\r\033[K", stderr);
    FILE *out = json ? stderr : stdout;
    fprintf(out, "\n");
    print_table(out, &res);
    fprintf(out, "\ntable: %s/results.csv, %s/results.json (%.1fs)\n", cfg->out_dir, cfg->out_dir, res.seconds);
    if (res.best >= 0 && cfg->refit)
        fprintf(out, "best: trial %d, cv loss %.5f +- %.5f; refit on %d images: test MSE %.5f, model %s/refit/model.safetensors\n",
                res.best, res.trials[res.best].mean, res.trials[res.best].std, n, res.test_mse, cfg->out_dir);
    if (json && cfg->n_fixed == 0) {
        const lt_trial_result *b = res.best >= 0 ? &res.trials[res.best] : NULL;
        printf("{\"best\": ");
        if (b) json_params(&b->hp);
        else printf("null");
        printf(", \"best_trial\": %d, \"best_cv_mean\": ", res.best);
        json_num(b ? b->mean : NAN);
        printf(", \"best_cv_std\": ");
        json_num(b ? b->std : NAN);
        printf(", \"folds\": [");
        for (int f = 0; b && f < res.folds; f++) {
            printf(f ? ", " : "");
            json_num(b->score[f]);
        }
        printf("], \"test_mse\": ");
        json_num(res.test_mse);
        if (*noise) printf(", \"model_kind\": \"dae\", \"noise\": \"%s\"", noise);
        printf(", \"seconds\": %.3f, \"results\": \"%s/results.csv\", \"model\": \"%s/refit/model.safetensors\"}\n",
               res.seconds, cfg->out_dir, cfg->out_dir);
    } else if (json) {
        printf("{\"optimizers\": [");
        for (int t = 0; t < res.n_trials; t++) {
            const lt_trial_result *r = &res.trials[t];
            printf("%s{\"optimizer\": \"%s\", \"lr\": %.10g, \"val_loss_mean\": ", t ? ", " : "",
                   lt_opt_name(r->hp.optimizer), r->hp.lr);
            json_num(r->mean);
            printf(", \"val_loss_std\": ");
            json_num(r->std);
            printf(", \"folds\": [");
            for (int f = 0; f < res.folds; f++) {
                printf(f ? ", " : "");
                json_num(r->score[f]);
            }
            printf("], \"seconds\": %.3f}", r->seconds);
        }
        printf("], \"seconds\": %.3f}\n", res.seconds);
    }
    lt_search_result_free(&res);
    return 0;
}

/* --prune none | median | median:STARTUP:WARMUP */
static int parse_prune(const char *cmd, const char *text, lt_search_config *cfg)
{
    int a = 2, b = 1, n = 0;
    if (!strcmp(text, "none")) {
        cfg->prune = 0;
        return 0;
    }
    if (!strcmp(text, "median") || (sscanf(text, "median:%d:%d%n", &a, &b, &n) == 2 && !text[n] && a >= 1 && b >= 0)) {
        cfg->prune = 1, cfg->prune_startup = a, cfg->prune_warmup = b;
        return 0;
    }
    fprintf(stderr, "latent %s: --prune: expected none, median or median:STARTUP:WARMUP (STARTUP >= 1 trials, "
            "WARMUP >= 0 epochs), found '%s'\n", cmd, text);
    return EXIT_USAGE;
}

int cmd_search(int argc, char **argv)
{
    lt_search_config cfg;
    lt_search_config_default(&cfg);
    const char *out = NULL, *data = NULL, *prune = NULL, *sp[LT_HP_COUNT] = {0}, *model = NULL, *noise = NULL;
    int json = 0, resume = 0, no_refit = 0;
    cli_opt opts[] = {
        {"--out", OPT_STRING, &out, "output directory (required)", 0, 0, 0},
        {"--trials", OPT_INT, &cfg.trials, "trials drawn (default 5)", 1, 100000, 0},
        {"--folds", OPT_INT, &cfg.folds, "folds of the cross-validation (default 5)", 2, 64, 0},
        {"--seed", OPT_U64, &cfg.seed, "seed of the draws, the folds and every run (default 1)", 0, 9.2e18, 0},
        {"--lr", OPT_STRING, &sp[LT_HP_LR], "learning rate (default loguniform:1e-4:1e-2)", 0, 0, 0},
        {"--batch", OPT_STRING, &sp[LT_HP_BATCH], "batch size (default choice:64,128,256)", 0, 0, 0},
        {"--latent", OPT_STRING, &sp[LT_HP_LATENT], "latent size (default int:2:64)", 0, 0, 0},
        {"--dropout", OPT_STRING, &sp[LT_HP_DROPOUT], "dropout (default uniform:0:0.2)", 0, 0, 0},
        {"--weight-decay", OPT_STRING, &sp[LT_HP_WEIGHT_DECAY], "weight decay (default 5e-5)", 0, 0, 0},
        {"--momentum", OPT_STRING, &sp[LT_HP_MOMENTUM], "SGD momentum (default 0)", 0, 0, 0},
        {"--optimizer", OPT_STRING, &sp[LT_HP_OPTIMIZER], "optimizer (default adam)", 0, 0, 0},
        {"--epochs", OPT_STRING, &sp[LT_HP_EPOCHS], "epochs (default 40)", 0, 0, 0},
        {"--model", OPT_STRING, &model, "ae (default) or dae, the denoising autoencoder", 0, 0, 0},
        {"--noise", OPT_STRING, &noise, "dae input noise: gaussian:SIGMA[:clip], saltpepper:P, mask:P (default gaussian:1)", 0, 0, 0},
        {"--prune", OPT_STRING, &prune, "none (default), median or median:STARTUP:WARMUP (default 2:1)", 0, 0, 0},
        {"--no-refit", OPT_FLAG, &no_refit, "skip the refit of the best trial and its test score", 0, 0, 0},
        {"--limit", OPT_INT, &cfg.limit, "cross-validate on the first N training images", 1, 1e9, 0},
        {"--data", OPT_STRING, &data, "directory with IDX files (default: the MNIST cache)", 0, 0, 0},
        {"--threads", OPT_INT, &cfg.threads, "threads per process (default: all cores)", 1, 1024, 0},
        {"--resume", OPT_FLAG, &resume, "continue the search in --out", 0, 0, 0},
        {"--json", OPT_FLAG, &json, "print the best trial and its scores as one JSON object on stdout", 0, 0, 0},
    };
    const int nopts = (int)(sizeof opts / sizeof opts[0]);
    int rc = cli_parse("search", search_usage, argc, argv, opts, nopts, NULL, 0, NULL);
    if (rc) return rc == 1 ? 0 : rc;
    if (!out) {
        fprintf(stderr, "latent search: --out DIR is required\n");
        return EXIT_USAGE;
    }
    lt_err err = {0};
    if (resume) {
        /* Start from the stored settings; flags given again must agree (lt_search checks). */
        lt_search_config stored = cfg;
        if (lt_search_load_config(out, &stored, &err)) {
            fprintf(stderr, "latent search: --resume: %s\n", err.msg);
            return err.code == LT_EINVAL ? EXIT_USAGE : 1;
        }
        if (stored.n_fixed) {
            fprintf(stderr, "latent search: --resume: %s holds a comparison: use latent compare --resume\n", out);
            return EXIT_USAGE;
        }
#define KEEP(flag, field) if (!cli_find(opts, nopts, flag)->given) cfg.field = stored.field;
        KEEP("--trials", trials) KEEP("--folds", folds) KEEP("--seed", seed) KEEP("--limit", limit)
#undef KEEP
        if (!prune) cfg.prune = stored.prune, cfg.prune_startup = stored.prune_startup, cfg.prune_warmup = stored.prune_warmup;
        if (!no_refit) cfg.refit = stored.refit;
        for (int hp = 0; hp < LT_HP_COUNT; hp++) cfg.space[hp] = stored.space[hp];
        if ((rc = parse_model("search", model, noise, &stored.noise, &cfg.noise))) return rc;
    } else if ((rc = parse_model("search", model, noise, NULL, &cfg.noise))) {
        return rc;
    }
    for (int hp = 0; hp < LT_HP_COUNT; hp++)
        if (sp[hp] && lt_space_parse((lt_hp)hp, sp[hp], &cfg.space[hp], &err)) {
            fprintf(stderr, "latent search: %s\n", err.msg);
            return EXIT_USAGE;
        }
    if (prune && (rc = parse_prune("search", prune, &cfg))) return rc;
    if (no_refit) cfg.refit = 0;
    cfg.out_dir = out;
    cfg.resume = resume;
    return run_search("search", &cfg, data, json);
}

/* "adam:1e-3,adadelta:1.0" into fixed trials sharing the other settings. */
static int parse_optimizers(const char *text, const lt_hparams *base, lt_search_config *cfg)
{
    char buf[1024];
    if (strlen(text) >= sizeof buf) {
        fprintf(stderr, "latent compare: --optimizers: too long\n");
        return EXIT_USAGE;
    }
    strcpy(buf, text);
    cfg->n_fixed = 0;
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *colon = strchr(tok, ':'), *end = NULL;
        if (colon) *colon = 0;
        int k = lt_opt_from_name(tok);
        double lr = colon ? strtod(colon + 1, &end) : 0;
        if (k < 0 || !colon || !*(colon + 1) || *end || !(lr > 0) || !isfinite(lr) || cfg->n_fixed == LT_SEARCH_MAX_FIXED) {
            fprintf(stderr, "latent compare: --optimizers: expected NAME:LR pairs such as adam:1e-3,adadelta:1.0 "
                    "(names adam, adamw, sgd, rmsprop, adadelta; at most %d), found '%s'\n", LT_SEARCH_MAX_FIXED, text);
            return EXIT_USAGE;
        }
        lt_hparams *h = &cfg->fixed[cfg->n_fixed++];
        *h = *base;
        h->optimizer = (lt_opt_kind)k;
        h->lr = lr;
    }
    if (!cfg->n_fixed) {
        fprintf(stderr, "latent compare: --optimizers: expected at least one NAME:LR, found '%s'\n", text);
        return EXIT_USAGE;
    }
    return 0;
}

int cmd_compare(int argc, char **argv)
{
    lt_search_config cfg;
    lt_search_config_default(&cfg);
    cfg.refit = 0;
    const char *out = NULL, *data = NULL, *optimizers = "adam:1e-3,adadelta:1.0,rmsprop:0.01", *model = NULL, *noise = NULL;
    int json = 0, resume = 0;
    lt_hparams base = {.lr = 1e-3, .weight_decay = 5e-5, .batch = 256, .latent = 2, .epochs = 40};
    cli_opt opts[] = {
        {"--out", OPT_STRING, &out, "output directory (required)", 0, 0, 0},
        {"--optimizers", OPT_STRING, &optimizers, "NAME:LR pairs (default adam:1e-3,adadelta:1.0,rmsprop:0.01)", 0, 0, 0},
        {"--epochs", OPT_INT, &base.epochs, "epochs (default 40)", 1, 1000000, 0},
        {"--folds", OPT_INT, &cfg.folds, "folds (default 5)", 2, 64, 0},
        {"--batch", OPT_INT, &base.batch, "batch size (default 256)", 1, 65536, 0},
        {"--latent", OPT_INT, &base.latent, "latent size (default 2)", 1, 4096, 0},
        {"--dropout", OPT_DOUBLE, &base.dropout, "dropout (default 0)", 0, 0.99, 0},
        {"--model", OPT_STRING, &model, "ae (default) or dae, the denoising autoencoder", 0, 0, 0},
        {"--noise", OPT_STRING, &noise, "dae input noise (default gaussian:1)", 0, 0, 0},
        {"--weight-decay", OPT_DOUBLE, &base.weight_decay, "weight decay (default 5e-5)", 0, 1e3, 0},
        {"--momentum", OPT_DOUBLE, &base.momentum, "SGD momentum (default 0)", 0, 0.999999, 0},
        {"--seed", OPT_U64, &cfg.seed, "seed of the folds and every run (default 1)", 0, 9.2e18, 0},
        {"--limit", OPT_INT, &cfg.limit, "use the first N training images", 1, 1e9, 0},
        {"--data", OPT_STRING, &data, "directory with IDX files (default: the MNIST cache)", 0, 0, 0},
        {"--threads", OPT_INT, &cfg.threads, "threads per process (default: all cores)", 1, 1024, 0},
        {"--resume", OPT_FLAG, &resume, "continue the comparison in --out", 0, 0, 0},
        {"--json", OPT_FLAG, &json, "print each optimizer's scores as one JSON object on stdout", 0, 0, 0},
    };
    const int nopts = (int)(sizeof opts / sizeof opts[0]);
    int rc = cli_parse("compare", compare_usage, argc, argv, opts, nopts, NULL, 0, NULL);
    if (rc) return rc == 1 ? 0 : rc;
    if (!out) {
        fprintf(stderr, "latent compare: --out DIR is required\n");
        return EXIT_USAGE;
    }
    if ((rc = parse_optimizers(optimizers, &base, &cfg))) return rc;
    if ((rc = parse_model("compare", model, noise, NULL, &cfg.noise))) return rc;
    if (resume) {
        lt_search_config stored = cfg;
        lt_err err = {0};
        if (lt_search_load_config(out, &stored, &err)) {
            fprintf(stderr, "latent compare: --resume: %s\n", err.msg);
            return err.code == LT_EINVAL ? EXIT_USAGE : 1;
        }
        if (!stored.n_fixed) {
            fprintf(stderr, "latent compare: --resume: %s holds a search: use latent search --resume\n", out);
            return EXIT_USAGE;
        }
        /* Flags not given again keep the stored comparison. */
        int any = 0;
        for (int i = 0; i < nopts; i++)
            if (opts[i].given && strcmp(opts[i].name, "--out") && strcmp(opts[i].name, "--resume") &&
                strcmp(opts[i].name, "--json") && strcmp(opts[i].name, "--threads") && strcmp(opts[i].name, "--data"))
                any = 1;
        if (!any) {
            cfg.n_fixed = stored.n_fixed;
            memcpy(cfg.fixed, stored.fixed, sizeof cfg.fixed);
            cfg.folds = stored.folds, cfg.seed = stored.seed, cfg.limit = stored.limit, cfg.noise = stored.noise;
        }
    }
    cfg.out_dir = out;
    cfg.resume = resume;
    return run_search("compare", &cfg, data, json);
}
