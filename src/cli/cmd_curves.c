/* latent curves: loss curves of one or more runs, from their metrics.csv. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

static const char *curves_usage =
    "Usage: latent curves RUN_DIR... --out FILE.png|FILE.svg [--title TEXT] [--log] [--val-only]\n"
    "\n"
    "Plots training and validation loss against epoch for each run directory (its\n"
    "metrics.csv, written by latent train), one colour per curve, so runs can be\n"
    "compared on one figure.";

#define MAX_RUNS 16

typedef struct run_curve {
    double *epoch, *train, *val;
    int n;
} run_curve;

/* Columns epoch, train_loss, val_loss come first in every metrics.csv. */
static int read_metrics(const char *dir, run_curve *c)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/metrics.csv", dir);
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "latent curves: %s: cannot open (is %s a training run?)\n", path, dir);
        return 1;
    }
    char line[1024];
    int cap = 0, lineno = 0;
    memset(c, 0, sizeof *c);
    while (fgets(line, sizeof line, f)) {
        lineno++;
        if (lineno == 1) {
            if (strncmp(line, "epoch,train_loss,val_loss", 25)) {
                fprintf(stderr, "latent curves: %s: expected the header 'epoch,train_loss,val_loss,...', found '%.40s'\n",
                        path, line);
                fclose(f);
                return 1;
            }
            continue;
        }
        if (c->n == cap) {
            cap = cap ? 2 * cap : 64;
            c->epoch = realloc(c->epoch, sizeof(double) * cap);
            c->train = realloc(c->train, sizeof(double) * cap);
            c->val = realloc(c->val, sizeof(double) * cap);
            if (!c->epoch || !c->train || !c->val) {
                fclose(f);
                fprintf(stderr, "latent curves: out of memory\n");
                return 1;
            }
        }
        char *p = line, *end;
        double v[3];
        for (int k = 0; k < 3; k++) {
            v[k] = strtod(p, &end);
            if (end == p) v[k] = NAN; /* "nan" and empty validation cells alike */
            p = strchr(end, ',');
            if (!p && k < 2) {
                fprintf(stderr, "latent curves: %s:%d: expected at least 3 columns\n", path, lineno);
                fclose(f);
                return 1;
            }
            if (p) p++;
        }
        c->epoch[c->n] = v[0], c->train[c->n] = v[1], c->val[c->n] = v[2];
        c->n++;
    }
    fclose(f);
    if (!c->n) {
        fprintf(stderr, "latent curves: %s: no epochs yet\n", path);
        return 1;
    }
    return 0;
}

int cmd_curves(int argc, char **argv)
{
    const char *out = NULL, *title = NULL, *dirs[MAX_RUNS];
    int log_y = 0, val_only = 0, nd = 0;
    cli_opt opts[] = {
        {"--out", OPT_STRING, &out, "PNG or SVG file to write (required)", 0, 0, 0},
        {"--title", OPT_STRING, &title, "figure title (default: Loss per epoch)", 0, 0, 0},
        {"--log", OPT_FLAG, &log_y, "logarithmic loss axis", 0, 0, 0},
        {"--val-only", OPT_FLAG, &val_only, "validation curves only", 0, 0, 0},
    };
    int rc = cli_parse("curves", curves_usage, argc, argv, opts, 4, dirs, MAX_RUNS, &nd);
    if (rc) return rc == 1 ? 0 : rc;
    if (!nd || !out) {
        fprintf(stderr, "latent curves: %s is required\n", nd ? "--out FILE.png" : "at least one RUN_DIR");
        return EXIT_USAGE;
    }
    run_curve runs[MAX_RUNS] = {0};
    lt_series s[2 * MAX_RUNS];
    char labels[2 * MAX_RUNS][160];
    int ns = 0;
    for (int i = 0; !rc && i < nd; i++) {
        if ((rc = read_metrics(dirs[i], &runs[i]))) break;
        const char *base = strrchr(dirs[i], '/');
        base = base && base[1] ? base + 1 : dirs[i];
        for (int k = val_only; k < 2; k++) {
            snprintf(labels[ns], sizeof labels[ns], "%s%s%s", nd > 1 ? base : "", nd > 1 ? " " : "", k ? "validation" : "train");
            s[ns] = (lt_series){labels[ns], runs[i].epoch, k ? runs[i].val : runs[i].train, runs[i].n, NULL, NULL};
            ns++;
        }
    }
    lt_err err = {0};
    if (!rc && lt_plot_lines(out, title ? title : "Loss per epoch", "epoch", "loss", s, ns, log_y, &err)) {
        fprintf(stderr, "latent curves: %s\n", err.msg);
        rc = 1;
    }
    if (!rc) fprintf(stderr, "wrote %s\n", out);
    for (int i = 0; i < nd; i++) free(runs[i].epoch), free(runs[i].train), free(runs[i].val);
    return rc;
}
