/* latent train: flags, progress display, Ctrl-C handling. */
#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"

static const char *train_usage =
    "Usage: latent train --out DIR [options]\n"
    "\n"
    "Trains a model on the training split, holding out the last --val images for\n"
    "validation. --model picks it: ae, the convolutional autoencoder; dae, the same\n"
    "denoising (--noise); clf, a classifier from an autoencoder's encoder (--init\n"
    "CHECKPOINT to fine-tune it, --freeze to keep it fixed; without --init, the same\n"
    "network from scratch); cnn, the PyTorch MNIST example's CNN; vae, the\n"
    "variational autoencoder (--likelihood). Defaults differ by model: clf 20\n"
    "epochs, batch 128, lr 0.006 (the study's); cnn 14 epochs, batch 128, no weight\n"
    "decay; vae latent 3, batch 128. DIR receives\n"
    "model.safetensors (PyTorch names and layouts), metrics.csv and\n"
    "train_state.safetensors, written after every epoch; --resume continues the run\n"
    "in DIR up to --epochs epochs in total, with bit-identical results.\n"
    "Ctrl-C saves the run and stops; run again with --resume to continue.";

typedef struct show {
    int tty;
    double last;
} show;

static void progress(void *ctx, const lt_progress *p)
{
    show *s = ctx;
    char eta[32];
    cli_fmt_duration(eta, sizeof eta, p->eta_seconds);
    if (p->epoch_done) {
        char val[96] = "-";
        if (isfinite(p->val_loss)) snprintf(val, sizeof val, "%.5f", p->val_loss);
        if (isfinite(p->val_accuracy)) snprintf(val + strlen(val), sizeof val - strlen(val), "  val acc %.2f%%", 100 * p->val_accuracy);
        if (isfinite(p->val_kl))
            snprintf(val + strlen(val), sizeof val - strlen(val), " (rec %.3f + kl %.3f)", p->val_rec, p->val_kl);
        fprintf(stderr, "%sepoch %d/%d  train loss %.5f  val loss %s  %.1fs  %.0f img/s  ETA %s\n",
                s->tty ? "\r\033[K" : "", p->epoch, p->epochs, p->train_loss, val, p->epoch_seconds,
                p->images_per_sec, eta);
        return;
    }
    /* Live line only on a terminal, redrawn at most 10 times a second. */
    double t = cli_now();
    if (!s->tty || (t - s->last < 0.1 && p->batch < p->batches)) return;
    s->last = t;
    char bar[21];
    int filled = p->batch * 20 / p->batches;
    for (int i = 0; i < 20; i++) bar[i] = i < filled ? '#' : '.';
    bar[20] = 0;
    fprintf(stderr, "\r\033[Kepoch %d/%d [%s] %d/%d  loss %.5f  %.0f img/s  ETA %s", p->epoch, p->epochs, bar,
            p->batch, p->batches, p->train_loss, p->images_per_sec, eta);
    fflush(stderr);
}

int cmd_train(int argc, char **argv)
{
    lt_train_config cfg;
    lt_train_config_default(&cfg);
    const char *out = NULL, *data = NULL, *arch = NULL, *opt_name = "adam", *model = "ae", *noise_text = NULL;
    const char *init = NULL, *lik_text = NULL;
    int json = 0, resume = 0, freeze = 0;
    double dropout = cfg.dropout;
    cli_opt opts[] = {
        {"--out", OPT_STRING, &out, "output directory (required)", 0, 0, 0},
        {"--model", OPT_STRING, &model, "ae, dae, clf, cnn or vae (default ae)", 0, 0, 0},
        {"--init", OPT_STRING, &init, "clf: start from this autoencoder checkpoint's encoder", 0, 0, 0},
        {"--freeze", OPT_FLAG, &freeze, "clf: keep the layers taken from --init fixed", 0, 0, 0},
        {"--likelihood", OPT_STRING, &lik_text, "vae: gaussian:C (variance C, default gaussian:1) or bernoulli", 0, 0, 0},
        {"--noise", OPT_STRING, &noise_text, "dae input noise: gaussian:SIGMA[:clip], saltpepper:P, mask:P (default gaussian:1)", 0, 0, 0},
        {"--latent", OPT_INT, &cfg.latent, "latent size d (default 2)", 1, 4096, 0},
        {"--arch", OPT_STRING, &arch, "architecture spec string or file (default: the mission's)", 0, 0, 0},
        {"--epochs", OPT_INT, &cfg.epochs, "total epochs (default 40)", 1, 1000000, 0},
        {"--batch", OPT_INT, &cfg.batch, "batch size (default 256)", 1, 65536, 0},
        {"--lr", OPT_DOUBLE, &cfg.lr, "learning rate (default 1e-3)", 1e-12, 1e6, 0},
        {"--weight-decay", OPT_DOUBLE, &cfg.weight_decay, "weight decay (default 5e-5)", 0, 1e3, 0},
        {"--momentum", OPT_DOUBLE, &cfg.momentum, "SGD momentum (default 0)", 0, 0.999999, 0},
        {"--dropout", OPT_DOUBLE, &dropout, "dropout probability (default 0)", 0, 0.99, 0},
        {"--optimizer", OPT_STRING, &opt_name, "adam, adamw, sgd, rmsprop or adadelta (default adam)", 0, 0, 0},
        {"--seed", OPT_U64, &cfg.seed, "random seed (default 1)", 0, 9.2e18, 0},
        {"--threads", OPT_INT, &cfg.threads, "threads (default: all cores)", 1, 1024, 0},
        {"--val", OPT_INT, &cfg.val, "validation images held out (default 10000)", 0, 1e9, 0},
        {"--limit", OPT_INT, &cfg.limit, "train on the first N images only", 1, 1e9, 0},
        {"--data", OPT_STRING, &data, "directory with IDX files (default: the MNIST cache)", 0, 0, 0},
        {"--resume", OPT_FLAG, &resume, "continue the run in --out", 0, 0, 0},
        {"--json", OPT_FLAG, &json, "print the final metrics as one JSON object on stdout", 0, 0, 0},
    };
    const int nopts = (int)(sizeof opts / sizeof opts[0]);
    int rc = cli_parse("train", train_usage, argc, argv, opts, nopts, NULL, 0, NULL);
    if (rc) return rc == 1 ? 0 : rc;
    if (strcmp(model, "ae") && strcmp(model, "dae") && strcmp(model, "clf") && strcmp(model, "cnn") && strcmp(model, "vae")) {
        fprintf(stderr, "latent train: --model: expected ae, dae, clf, cnn or vae, found '%s'\n", model);
        return EXIT_USAGE;
    }
    int is_clf = !strcmp(model, "clf"), is_cnn = !strcmp(model, "cnn"), is_vae = !strcmp(model, "vae");
    cfg.model = is_clf || is_cnn ? LT_MODEL_CLF : is_vae ? LT_MODEL_VAE : LT_MODEL_AE;
    if ((init || freeze) && !is_clf) {
        fprintf(stderr, "latent train: %s applies to --model clf only\n", init ? "--init" : "--freeze");
        return EXIT_USAGE;
    }
    if (freeze && !init) {
        fprintf(stderr, "latent train: --freeze needs --init CHECKPOINT (the pretrained part to keep fixed)\n");
        return EXIT_USAGE;
    }
    if (lik_text && !is_vae) {
        fprintf(stderr, "latent train: --likelihood applies to --model vae only\n");
        return EXIT_USAGE;
    }
    lt_err lerr = {0};
    if (lik_text && lt_likelihood_parse(lik_text, &cfg.likelihood, &lerr)) {
        fprintf(stderr, "latent train: --likelihood: %s\n", lerr.msg);
        return EXIT_USAGE;
    }
    if (is_cnn && (cli_find(opts, nopts, "--latent")->given || arch)) {
        fprintf(stderr, "latent train: --model cnn is the fixed MNIST example CNN; use --model clf --arch SPEC for your own\n");
        return EXIT_USAGE;
    }
    if (is_clf && init && (cli_find(opts, nopts, "--latent")->given || arch)) {
        fprintf(stderr, "latent train: with --init the classifier takes its encoder from the checkpoint: drop --latent/--arch\n");
        return EXIT_USAGE;
    }
    /* Each model's own defaults (the study's settings), unless given. */
#define DEFAULT(flag, field, v) if (!cli_find(opts, nopts, flag)->given) cfg.field = (v);
    if (is_clf) { DEFAULT("--epochs", epochs, 20) DEFAULT("--batch", batch, 128) DEFAULT("--lr", lr, 0.006) }
    if (is_cnn) { DEFAULT("--epochs", epochs, 14) DEFAULT("--batch", batch, 128) DEFAULT("--weight-decay", weight_decay, 0) }
    if (is_vae) { DEFAULT("--latent", latent, 3) DEFAULT("--batch", batch, 128) }
#undef DEFAULT
    lt_err nerr = {0};
    if (noise_text && strcmp(model, "dae")) {
        fprintf(stderr, "latent train: --noise applies to --model dae only\n");
        return EXIT_USAGE;
    }
    if (!strcmp(model, "dae") && lt_noise_parse(noise_text ? noise_text : "gaussian:1", &cfg.noise, &nerr)) {
        fprintf(stderr, "latent train: --noise: %s\n", nerr.msg);
        return EXIT_USAGE;
    }
    if (!strcmp(model, "dae") && cfg.noise.kind == LT_NOISE_NONE) {
        fprintf(stderr, "latent train: --noise none makes a plain autoencoder: use --model ae\n");
        return EXIT_USAGE;
    }
    if (!out) {
        fprintf(stderr, "latent train: --out DIR is required\n");
        return EXIT_USAGE;
    }
    int k = lt_opt_from_name(opt_name);
    if (k < 0) {
        fprintf(stderr, "latent train: --optimizer: expected adam, adamw, sgd, rmsprop or adadelta, found '%s'\n", opt_name);
        return EXIT_USAGE;
    }
    if (arch && cli_find(opts, nopts, "--latent")->given) {
        fprintf(stderr, "latent train: --latent and --arch exclude each other (the spec sets the latent size)\n");
        return EXIT_USAGE;
    }
    char spec[8192];
    lt_err err = {0};
    if (resume) {
        /* Start from the stored settings; flags given again must agree (lt_train checks). */
        lt_train_config stored = cfg;
        char state[4200];
        snprintf(state, sizeof state, "%s/train_state.safetensors", out);
        if (access(state, F_OK) != 0) {
            fprintf(stderr, "latent train: --resume: %s holds no run to resume (no train_state.safetensors)\n", out);
            return EXIT_USAGE;
        }
        if (lt_train_load_config(out, &stored, spec, sizeof spec, &err)) {
            fprintf(stderr, "latent train: --resume: %s\n", err.msg);
            return 1;
        }
#define KEEP(flag, field) if (!cli_find(opts, nopts, flag)->given) cfg.field = stored.field;
        KEEP("--batch", batch) KEEP("--lr", lr) KEEP("--weight-decay", weight_decay) KEEP("--momentum", momentum)
        KEEP("--seed", seed) KEEP("--val", val) KEEP("--limit", limit) KEEP("--epochs", epochs)
#undef KEEP
        if (!cli_find(opts, nopts, "--dropout")->given) dropout = stored.dropout;
        if (!cli_find(opts, nopts, "--optimizer")->given) k = (int)stored.optimizer;
        if (!cli_find(opts, nopts, "--model")->given && !noise_text) cfg.noise = stored.noise;
        if (!cli_find(opts, nopts, "--model")->given) cfg.model = stored.model;
        if (!lik_text) cfg.likelihood = stored.likelihood;
        cfg.spec = stored.spec;
    } else if (is_cnn) {
        lt_mnist_cnn_spec(spec, sizeof spec, 10);
        cfg.spec = spec;
    } else if (arch) {
        /* A spec is given inline, or as a file when it names one. */
        FILE *f = fopen(arch, "r");
        if (f) {
            size_t n = fread(spec, 1, sizeof spec - 1, f);
            fclose(f);
            spec[n] = 0;
            cfg.spec = spec;
        } else {
            cfg.spec = arch;
        }
    }
    cfg.out_dir = out;
    cfg.dropout = (float)dropout;
    cfg.optimizer = (lt_opt_kind)k;
    cfg.resume = resume;
    cfg.stop = &cli_stop_requested;
    cfg.init = init;
    cfg.freeze = freeze;
    /* Under mpirun every process computes a slice of each batch; process 0 speaks for them. */
    cfg.dist = cli_dist();
    const int quiet = lt_dist_rank(cfg.dist) != 0;

    lt_dataset ds = {0};
    if (cli_load_split(data, "train", &ds)) return 1;
    cli_catch_stop();
    /* One line saying what is about to run, so a log shows the settings. */
    int pool = ds.n - cfg.val, ntrain = cfg.limit && cfg.limit < pool ? cfg.limit : pool;
    char what[160];
    if (resume) snprintf(what, sizeof what, "the run's architecture");
    else if (is_cnn) snprintf(what, sizeof what, "MNIST example CNN");
    else if (cfg.spec) snprintf(what, sizeof what, "architecture from --arch");
    else if (is_clf && init) snprintf(what, sizeof what, "classifier from the encoder of %.100s%s", init, freeze ? " (frozen)" : "");
    else if (is_clf) snprintf(what, sizeof what, "classifier (the autoencoder's encoder, d=%d, from scratch)", cfg.latent);
    else if (is_vae) {
        char lk[64];
        lt_likelihood lik = cfg.likelihood;
        if (!lik.bernoulli && lik.c == 0.0f) lik.c = 1.0f;
        lt_likelihood_format(&lik, lk, sizeof lk);
        snprintf(what, sizeof what, "variational autoencoder k=%d, likelihood %s", cfg.latent, lk);
    } else snprintf(what, sizeof what, "%s d=%d", cfg.noise.kind ? "denoising autoencoder" : "autoencoder", cfg.latent);
    if (cfg.noise.kind) {
        size_t used = strlen(what);
        snprintf(what + used, sizeof what - used, ", noise ");
        lt_noise_format(&cfg.noise, what + strlen(what), sizeof what - strlen(what));
    }
    if (!quiet)
        fprintf(stderr, "%s %s: %s, %d epochs, batch %d, %s lr %g, weight decay %g, dropout %g, seed %llu, "
            "%d training + %d validation images, %d thread(s)\n",
            resume ? "resuming" : "training", out, what,
            cfg.epochs, cfg.batch, lt_opt_name(cfg.optimizer), cfg.lr, cfg.weight_decay, cfg.dropout,
            (unsigned long long)cfg.seed, ntrain > 0 ? ntrain : 0, cfg.val,
            cfg.threads > 0 ? cfg.threads : omp_get_max_threads());
    if (!quiet && lt_dist_size(cfg.dist) > 1)
        fprintf(stderr, "data-parallel over %d MPI processes (each a slice of every batch)\n", lt_dist_size(cfg.dist));
    show s = {.tty = isatty(STDERR_FILENO)};
    lt_train_result res;
    rc = lt_train(&cfg, &ds, quiet ? NULL : progress, &s, &res, &err);
    lt_dataset_free(&ds);
    if (rc) {
        if (s.tty) fputs("\r\033[K", stderr);
        fprintf(stderr, "latent train: %s\n", err.msg);
        return rc == LT_EINTR ? EXIT_INTERRUPTED : rc == LT_EINVAL ? EXIT_USAGE : 1;
    }
    if (quiet) return 0;
    fprintf(stderr, "model saved to %s/model.safetensors (%.1fs)\n", out, res.seconds);
    if (json) {
        printf("{\"epochs\": %d, \"train_loss\": %.10g, ", res.epochs_done, res.train_loss);
        if (isfinite(res.val_loss)) printf("\"val_loss\": %.10g, ", res.val_loss);
        else printf("\"val_loss\": null, ");
        if (isfinite(res.val_accuracy)) printf("\"val_accuracy\": %.10g, ", res.val_accuracy);
        if (isfinite(res.val_kl)) printf("\"val_rec\": %.10g, \"val_kl\": %.10g, ", res.val_rec, res.val_kl);
        printf("\"seconds\": %.3f, \"images_per_sec\": %.1f, \"model\": \"%s/model.safetensors\"}\n", res.seconds,
               res.images_per_sec, out);
    }
    return 0;
}
