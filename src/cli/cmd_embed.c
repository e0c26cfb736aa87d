/* latent embed, generate and interpolate: 2-D maps of the codes (PCA, t-SNE),
 * digits decoded from points picked on a map, and the path between two codes. */
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"

#define SCORE_K 10
#define TRUST_SAMPLE 5000
#define INVERSE_K 10
#define ENCODE_BATCH 500

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* CPU time of the whole process (all threads): on a shared machine the fair
 * measure of work, where wall time depends on what else runs. */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* A growing text buffer for the side files. */
typedef struct sbuf {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    while (!b->oom) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) b->oom = 1;
        else if (b->p && b->n + (size_t)k < b->cap) {
            b->n += (size_t)k;
            return;
        } else {
            size_t cap = b->cap ? b->cap * 2 : 1 << 16;
            while (cap < b->n + (size_t)k + 1) cap *= 2;
            char *p = realloc(b->p, cap);
            if (!p) b->oom = 1;
            else b->p = p, b->cap = cap;
        }
    }
}

/* Write b to path atomically and release it; prints the error. */
static int sb_write(const char *cmd, sbuf *b, const char *path)
{
    lt_err err = {0};
    int rc = b->oom ? (snprintf(err.msg, sizeof err.msg, "%s: out of memory", path), 1)
                    : lt_write_file_atomic(path, b->p ? b->p : "", b->n, &err);
    if (rc) fprintf(stderr, "latent %s: %s\n", cmd, err.msg);
    free(b->p);
    memset(b, 0, sizeof *b);
    return rc ? 1 : 0;
}

static void json_str(sbuf *b, const char *s)
{
    sb_printf(b, "\"");
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') sb_printf(b, "\\%c", *s);
        else if ((unsigned char)*s < 0x20) sb_printf(b, "\\u%04x", *s);
        else sb_printf(b, "%c", *s);
    }
    sb_printf(b, "\"");
}

/* A number, or null when it is not finite (JSON has no NaN). */
static void json_num(sbuf *b, double v)
{
    if (isfinite(v)) sb_printf(b, "%.10g", v);
    else sb_printf(b, "null");
}

/* The images of a split; "all" is train then test. */
static int load_points(const char *cmd, const char *data, const char *split, lt_dataset *ds)
{
    if (strcmp(split, "all")) return cli_load_split(data, split, ds);
    lt_dataset tr = {0}, te = {0};
    if (cli_load_split(data, "train", &tr)) return 1;
    if (cli_load_split(data, "test", &te)) {
        lt_dataset_free(&tr);
        return 1;
    }
    if (tr.c != te.c || tr.h != te.h || tr.w != te.w) {
        fprintf(stderr, "latent %s: train and test images differ in size (%dx%d and %dx%d)\n", cmd, tr.h, tr.w, te.h, te.w);
        lt_dataset_free(&tr), lt_dataset_free(&te);
        return 1;
    }
    const size_t sz = (size_t)tr.c * tr.h * tr.w;
    *ds = tr;
    ds->n = tr.n + te.n;
    ds->n_classes = tr.n_classes > te.n_classes ? tr.n_classes : te.n_classes;
    ds->images = malloc(sz * ds->n);
    ds->labels = malloc((size_t)ds->n);
    if (!ds->images || !ds->labels) {
        fprintf(stderr, "latent %s: out of memory for %d images\n", cmd, ds->n);
        free(ds->images), free(ds->labels);
        lt_dataset_free(&tr), lt_dataset_free(&te);
        memset(ds, 0, sizeof *ds);
        return 1;
    }
    memcpy(ds->images, tr.images, sz * tr.n);
    memcpy(ds->images + sz * tr.n, te.images, sz * te.n);
    memcpy(ds->labels, tr.labels, (size_t)tr.n);
    memcpy(ds->labels + tr.n, te.labels, (size_t)te.n);
    lt_dataset_free(&tr), lt_dataset_free(&te);
    return 0;
}

/* The model must take the dataset's images as they are. */
static int check_shape(const char *cmd, const char *ckpt, lt_model *m, const lt_dataset *ds)
{
    int c, h, w;
    lt_model_input_shape(m, &c, &h, &w);
    if (c == ds->c && h == ds->h && w == ds->w) return 0;
    fprintf(stderr, "latent %s: %s takes %dx%dx%d images but the data are %dx%dx%d\n", cmd, ckpt, c, h, w, ds->c, ds->h, ds->w);
    return 1;
}

/* Codes of the images which[0..n) of ds (which NULL: the first n), in batches the model takes. */
static int encode(const char *cmd, lt_model *m, const lt_dataset *ds, const int *which, int n, int threads, float *z)
{
    const size_t sz = (size_t)ds->c * ds->h * ds->w;
    const int d = lt_model_latent_dim(m);
    float *x = malloc(sizeof(float) * sz * ENCODE_BATCH);
    if (!x) {
        fprintf(stderr, "latent %s: out of memory\n", cmd);
        return 1;
    }
    lt_err err = {0};
    for (int s = 0; s < n; s += ENCODE_BATCH) {
        int bn = n - s < ENCODE_BATCH ? n - s : ENCODE_BATCH;
        for (int i = 0; i < bn; i++) {
            const uint8_t *src = ds->images + sz * (size_t)(which ? which[s + i] : s + i);
            for (size_t k = 0; k < sz; k++) x[(size_t)i * sz + k] = src[k] / 255.0f;
        }
        if (lt_model_encode(m, x, bn, z + (size_t)s * d, threads, &err)) {
            fprintf(stderr, "latent %s: %s\n", cmd, err.msg);
            free(x);
            return 1;
        }
    }
    free(x);
    return 0;
}

/* Decode n codes into n images (floats in [0, 1]). */
static int decode(const char *cmd, lt_model *m, const float *z, int n, int threads, float *img, size_t sz)
{
    const int d = lt_model_latent_dim(m);
    lt_err err = {0};
    for (int s = 0; s < n; s += ENCODE_BATCH) {
        int bn = n - s < ENCODE_BATCH ? n - s : ENCODE_BATCH;
        if (lt_model_decode(m, z + (size_t)s * d, bn, img + (size_t)s * sz, threads, &err)) {
            fprintf(stderr, "latent %s: %s\n", cmd, err.msg);
            return 1;
        }
    }
    return 0;
}

typedef struct tsne_show {
    int tty;
} tsne_show;

static void fmt_time(double s, char *buf, size_t size)
{
    if (!(s >= 0) || s > 1e7) snprintf(buf, size, "?");
    else if (s < 60) snprintf(buf, size, "%.0fs", s);
    else snprintf(buf, size, "%d:%02d", (int)(s / 60), (int)s % 60);
}

static void on_tsne_progress(void *ctx, const lt_tsne_progress *p)
{
    const tsne_show *s = ctx;
    char eta[32];
    fmt_time(p->eta_seconds, eta, sizeof eta);
    fprintf(stderr, "%st-SNE iteration %d/%d  KL %.4f  %.1fs  ETA %s%s", s->tty ? "\r\033[K" : "", p->iter, p->iters, p->kl,
            p->seconds, eta, s->tty && p->iter < p->iters ? "" : "\n");
    fflush(stderr);
}

static int one_of(const char *v, const char *a, const char *b, const char *c)
{
    return v && (!strcmp(v, a) || !strcmp(v, b) || (c && !strcmp(v, c)));
}

int cmd_embed(int argc, char **argv)
{
    const char *usage =
        "Usage: latent embed CHECKPOINT --method pca|tsne --out DIR [--split test|train|all]\n"
        "                    [--input latent|pixels] [--pca-dims 50] [--perplexity 30] [--iters 1000]\n"
        "                    [--repulsion bh|fft] [--theta 0.5] [--seed 1] [--threads N] [--json]\n\n"
        "Maps the codes of a split (or its raw pixels: --input pixels, CHECKPOINT -) to 2-D with\n"
        "PCA or t-SNE (repulsion by Barnes-Hut, or FFT-accelerated interpolation). t-SNE's input\n"
        "is first reduced to its --pca-dims first principal components when it is wider. DIR\n"
        "receives map.safetensors (for latent generate), coords.csv, map.png and map.svg, scores.json and projector/ (TensorBoard projector files).\n"
        "Scores: 10-NN label accuracy in the map over all points, and trustworthiness (k=10)\n"
        "against the (reduced) input, on a seeded sample of 5000 points for larger splits.";
    const char *method = NULL, *out = NULL, *split = "test", *repulsion = "bh", *input = "latent", *data = NULL, *ckpt = NULL;
    int pca_dims = 50, iters = 1000, threads = 0, json = 0, np = 0;
    double perplexity = 30, theta = 0.5;
    uint64_t seed = 1;
    cli_opt opts[] = {
        {"--method", OPT_STRING, &method, "pca or tsne (required)", 0, 0, 0},
        {"--out", OPT_STRING, &out, "output directory (required)", 0, 0, 0},
        {"--split", OPT_STRING, &split, "test, train or all (default test)", 0, 0, 0},
        {"--input", OPT_STRING, &input, "latent (codes of CHECKPOINT) or pixels (default latent)", 0, 0, 0},
        {"--pca-dims", OPT_INT, &pca_dims, "t-SNE input reduced to this many components (default 50; 0: never)", 0, 100000, 0},
        {"--perplexity", OPT_DOUBLE, &perplexity, "t-SNE perplexity (default 30)", 1, 10000, 0},
        {"--iters", OPT_INT, &iters, "t-SNE iterations, 250 of them exaggerated (default 1000)", 1, 100000, 0},
        {"--repulsion", OPT_STRING, &repulsion, "t-SNE repulsion: bh (Barnes-Hut, default) or fft (FFT-accelerated interpolation)", 0, 0, 0},
        {"--theta", OPT_DOUBLE, &theta, "Barnes-Hut accuracy (default 0.5; 0: exact, slow; otherwise only with --repulsion bh)", 0, 10, 0},
        {"--seed", OPT_U64, &seed, "seed (default 1)", 0, 9e18, 0},
        {"--threads", OPT_INT, &threads, "threads (default: all cores)", 1, 1024, 0},
        {"--data", OPT_STRING, &data, "directory with IDX files (default: the MNIST cache)", 0, 0, 0},
        {"--json", OPT_FLAG, &json, "print {seconds, kl, explained_variance, knn10, trustworthiness, ...}", 0, 0, 0},
    };
    const int nopts = (int)(sizeof opts / sizeof *opts);
    int rc = cli_parse("embed", usage, argc, argv, opts, nopts, &ckpt, 1, &np);
    if (rc) return rc == 1 ? 0 : rc;
    if (!np) {
        fprintf(stderr, "latent embed: a CHECKPOINT is required (or - with --input pixels)\n");
        return EXIT_USAGE;
    }
    if (!method || !one_of(method, "pca", "tsne", NULL)) {
        fprintf(stderr, "latent embed: --method: expected pca or tsne, found '%s'\n", method ? method : "(none)");
        return EXIT_USAGE;
    }
    if (!out) {
        fprintf(stderr, "latent embed: --out DIR is required\n");
        return EXIT_USAGE;
    }
    if (!one_of(split, "test", "train", "all")) {
        fprintf(stderr, "latent embed: --split: expected test, train or all, found '%s'\n", split);
        return EXIT_USAGE;
    }
    if (!one_of(input, "latent", "pixels", NULL)) {
        fprintf(stderr, "latent embed: --input: expected latent or pixels, found '%s'\n", input);
        return EXIT_USAGE;
    }
    if (!one_of(repulsion, "bh", "fft", NULL)) {
        fprintf(stderr, "latent embed: --repulsion: expected bh or fft, found '%s'\n", repulsion);
        return EXIT_USAGE;
    }
    const int pixels = !strcmp(input, "pixels"), tsne = !strcmp(method, "tsne");
    if (!pixels && !strcmp(ckpt, "-")) {
        fprintf(stderr, "latent embed: --input latent needs a CHECKPOINT; use --input pixels to map the images themselves\n");
        return EXIT_USAGE;
    }
    lt_dataset ds = {0};
    if (load_points("embed", data, split, &ds)) return 1;
    const int n = ds.n;
    const size_t sz = (size_t)ds.c * ds.h * ds.w;
    if (tsne && n < (int)(3 * perplexity) + 2) {
        fprintf(stderr, "latent embed: --perplexity %g needs more than %d points (3 x perplexity + 1), the %s split has %d\n",
                perplexity, (int)(3 * perplexity) + 1, split, n);
        lt_dataset_free(&ds);
        return EXIT_USAGE;
    }
    if (n < 2 * SCORE_K + 2) {
        fprintf(stderr, "latent embed: the %s split has %d points, at least %d are needed\n", split, n, 2 * SCORE_K + 2);
        lt_dataset_free(&ds);
        return 1;
    }
    lt_err err = {0};
    lt_model *m = NULL;
    int d = (int)sz;
    if (!pixels) {
        if (lt_model_load(&m, ckpt, &err)) {
            fprintf(stderr, "latent embed: %s\n", err.msg);
            lt_dataset_free(&ds);
            return 1;
        }
        d = lt_model_latent_dim(m);
        if (check_shape("embed", ckpt, m, &ds)) {
            lt_model_free(m);
            lt_dataset_free(&ds);
            return 1;
        }
    }
    float *codes = malloc(sizeof(float) * (size_t)n * d), *coords = malloc(sizeof(float) * 2 * (size_t)n);
    float *px = malloc(sizeof(float) * n), *py = malloc(sizeof(float) * n);
    int *cls = malloc(sizeof(int) * n);
    int32_t *index = malloc(sizeof(int32_t) * n);
    float *xin = NULL;
    lt_pca pre = {0};
    lt_map map = {0};
    rc = (!codes || !coords || !px || !py || !cls || !index) ? 1 : 0;
    if (rc) fprintf(stderr, "latent embed: out of memory for %d points\n", n);
    if (!rc && !pixels) {
        fprintf(stderr, "encoding %d %s images with %s\n", n, split, ckpt);
        rc = encode("embed", m, &ds, NULL, n, threads, codes);
    }
    if (!rc && pixels)
        for (size_t i = 0; i < (size_t)n * d; i++) codes[i] = ds.images[i] / 255.0f;
    for (int i = 0; !rc && i < n; i++) cls[i] = ds.labels[i], index[i] = i;

    /* The reduced input t-SNE and the trustworthiness score see. */
    const double t0 = now(), c0 = cpu_now();
    int din = d;
    if (!rc && pca_dims > 0 && d > pca_dims) {
        xin = malloc(sizeof(float) * (size_t)n * pca_dims);
        if (!xin || lt_pca_fit(&pre, codes, n, d, pca_dims, &err) || lt_pca_transform(&pre, codes, n, xin, &err)) {
            fprintf(stderr, "latent embed: PCA to %d dimensions: %s\n", pca_dims, xin ? err.msg : "out of memory");
            rc = 1;
        }
        din = pca_dims;
    }
    const float *x_in = xin ? xin : codes;
    lt_tsne_result tr = {0};
    double seconds = 0, cpu_seconds = 0, kl = NAN, ev = NAN;
    char params[512], title[1024], what[256];
    char pcs[64] = "";
    if (xin) snprintf(pcs, sizeof pcs, ", first %d PCs", pca_dims);
    snprintf(what, sizeof what, "%s %s (%d points, d = %d%s)", split, pixels ? "pixels" : "latent codes", n, d, pcs);
    if (!rc && tsne) {
        lt_tsne_config cfg;
        lt_tsne_config_default(&cfg);
        cfg.perplexity = perplexity, cfg.iters = iters, cfg.theta = theta, cfg.seed = seed, cfg.threads = threads;
        /* --theta 0 asks for the exact repulsion, which is Barnes-Hut's path with theta 0. */
        cfg.repulsion = !strcmp(repulsion, "bh") || theta == 0 ? LT_REPULSION_BH : LT_REPULSION_FFT;
        cfg.exaggeration_iters = iters < 250 ? iters : 250;
        cfg.stop = &cli_stop_requested;
        cli_catch_stop();
        tsne_show show = {isatty(STDERR_FILENO)};
        fprintf(stderr, "t-SNE of %s: %d neighbours per point\n", what, (int)(3 * perplexity));
        float *y2 = coords;
        if (lt_tsne(&cfg, x_in, n, din, y2, on_tsne_progress, &show, &tr, &err)) {
            fprintf(stderr, "latent embed: %s\n", err.msg);
            rc = err.code == LT_EINTR ? EXIT_INTERRUPTED : 1;
            if (err.code == LT_EINTR) fprintf(stderr, "latent embed: interrupted; nothing was written\n");
        }
        seconds = now() - t0;
        cpu_seconds = cpu_now() - c0;
        kl = tr.kl;
        char how[64];
        if (tr.repulsion == LT_REPULSION_FFT) snprintf(how, sizeof how, "FFT repulsion");
        else if (theta > 0) snprintf(how, sizeof how, "Barnes-Hut theta %g", theta);
        else snprintf(how, sizeof how, "exact repulsion");
        snprintf(params, sizeof params, "perplexity %g, %d iterations, %s, learning rate %.4g, seed %llu", perplexity,
                 iters, how, tr.learning_rate, (unsigned long long)seed);
        snprintf(title, sizeof title, "t-SNE of %s: %s", what, params);
    } else if (!rc) {
        if (lt_pca_fit(&map.pca, codes, n, d, 2, &err) || lt_pca_transform(&map.pca, codes, n, coords, &err)) {
            fprintf(stderr, "latent embed: %s\n", err.msg);
            rc = 1;
        }
        seconds = now() - t0;
        cpu_seconds = cpu_now() - c0;
        if (!rc) ev = map.pca.variance_ratio[0] + map.pca.variance_ratio[1];
        snprintf(params, sizeof params, "2 components, explained variance %.4f + %.4f = %.4f", !rc ? map.pca.variance_ratio[0] : 0,
                 !rc ? map.pca.variance_ratio[1] : 0, ev);
        snprintf(title, sizeof title, "PCA of %s %s (%d points, %s %d): PC1 + PC2 explain %.1f%% of the variance", split,
                 pixels ? "pixels" : "latent codes", n, "d =", d, 100 * ev);
    }
    lt_map_quality q = {0};
    if (!rc) {
        fprintf(stderr, "scoring the map (10-NN accuracy, trustworthiness)\n");
        if (lt_map_quality_score(x_in, n, din, coords, ds.labels, SCORE_K, TRUST_SAMPLE, seed, threads, &q, &err)) {
            fprintf(stderr, "latent embed: %s\n", err.msg);
            rc = 1;
        }
    }
    char path[4400];
    if (!rc && lt_mkdir_p(out, &err)) {
        fprintf(stderr, "latent embed: %s\n", err.msg);
        rc = 1;
    }
    /* The map file generate reads. */
    if (!rc) {
        snprintf(map.method, sizeof map.method, "%s", method);
        snprintf(map.input, sizeof map.input, "%s", input);
        snprintf(map.split, sizeof map.split, "%s", split);
        snprintf(map.params, sizeof map.params, "%s", params);
        map.h = ds.h, map.w = ds.w;
        map.n = n, map.d = d, map.coords = coords, map.codes = codes, map.labels = ds.labels, map.index = index;
        snprintf(path, sizeof path, "%s/map.safetensors", out);
        if (lt_map_save(&map, path, &err)) fprintf(stderr, "latent embed: %s\n", err.msg), rc = 1;
        map.coords = NULL, map.codes = NULL, map.labels = NULL, map.index = NULL;
    }
    if (!rc) {
        sbuf b = {0};
        sb_printf(&b, "index,label,x,y\n");
        for (int i = 0; i < n; i++) sb_printf(&b, "%d,%d,%.7g,%.7g\n", i, ds.labels[i], coords[2 * i], coords[2 * i + 1]);
        snprintf(path, sizeof path, "%s/coords.csv", out);
        rc = sb_write("embed", &b, path);
    }
    for (int i = 0; !rc && i < n; i++) px[i] = coords[2 * i], py[i] = coords[2 * i + 1];
    const char *ax = tsne ? "t-SNE 1" : "PC1", *ay = tsne ? "t-SNE 2" : "PC2";
    char axl[64], ayl[64];
    if (!tsne && !rc) {
        snprintf(axl, sizeof axl, "PC1 (%.1f%% of the variance)", 100 * map.pca.variance_ratio[0]);
        snprintf(ayl, sizeof ayl, "PC2 (%.1f%% of the variance)", 100 * map.pca.variance_ratio[1]);
        ax = axl, ay = ayl;
    }
    const char *exts[2] = {"png", "svg"};
    for (int e = 0; e < 2 && !rc; e++) {
        snprintf(path, sizeof path, "%s/map.%s", out, exts[e]);
        if (lt_plot_scatter(path, title, ax, ay, px, py, cls, n, ds.n_classes > 0 ? ds.n_classes : 1, NULL, NULL, 0, &err))
            fprintf(stderr, "latent embed: %s\n", err.msg), rc = 1;
    }
    char trust_note[160];
    snprintf(trust_note, sizeof trust_note, "%s", q.n_trust < n ? "on a seeded sample of the points" : "on all points");
    sbuf js = {0};
    if (!rc) {
        sb_printf(&js, "{\"method\": \"%s\", \"input\": \"%s\", \"split\": \"%s\", \"n\": %d, \"dim\": %d, \"input_dim\": %d, ",
                  method, input, split, n, d, din);
        sb_printf(&js, "\"seconds\": %.3f, \"cpu_seconds\": %.3f, \"kl\": ", seconds, cpu_seconds);
        json_num(&js, kl);
        sb_printf(&js, ", \"explained_variance\": ");
        json_num(&js, ev);
        if (!tsne) sb_printf(&js, ", \"explained_variance_ratio\": [%.10g, %.10g]", map.pca.variance_ratio[0], map.pca.variance_ratio[1]);
        sb_printf(&js, ", \"knn10\": %.6f, \"knn_points\": %d, \"trustworthiness\": %.6f, \"trustworthiness_points\": %d, ",
                  q.knn_accuracy, q.n_knn, q.trustworthiness, q.n_trust);
        if (tsne)
            sb_printf(&js, "\"perplexity\": %g, \"iters\": %d, \"repulsion\": \"%s\", \"theta\": %g, \"learning_rate\": %.6g, "
                           "\"neighbours\": %d, \"knn_method\": \"%s\", \"knn_seconds\": %.3f, ",
                      perplexity, iters,
                      tr.repulsion == LT_REPULSION_FFT ? "fft" : theta > 0 ? "bh" : "exact", theta, tr.learning_rate, tr.neighbours, tr.knn == LT_KNN_VPTREE ? "vptree" : "brute",
                      tr.knn_seconds);
        sb_printf(&js, "\"seed\": %llu, \"checkpoint\": ", (unsigned long long)seed);
        json_str(&js, pixels ? "-" : ckpt);
        sb_printf(&js, ", \"scores_note\": ");
        char note[400];
        snprintf(note, sizeof note,
                 "knn10: leave-one-out 10-NN label vote in the map over all %d points; trustworthiness (k=10) against "
                 "the %d-dimensional input%s, %s (%d points)",
                 n, din, xin ? " (first principal components)" : "", trust_note, q.n_trust);
        json_str(&js, note);
        sb_printf(&js, "}");
        sbuf f = {0};
        sb_printf(&f, "%s\n", js.oom ? "{}" : js.p);
        snprintf(path, sizeof path, "%s/scores.json", out);
        rc = sb_write("embed", &f, path);
    }
    /* TensorBoard projector: the (reduced) input the map was made from. */
    if (!rc) {
        snprintf(path, sizeof path, "%s/projector", out);
        int sprite = 0;
        if (lt_projector_export(path, pixels ? "pixels (principal components)" : "latent codes", x_in, n, din, ds.labels,
                                index, ds.images, ds.h, ds.w, &sprite, &err))
            fprintf(stderr, "latent embed: %s\n", err.msg), rc = 1;
        else if (!sprite)
            fprintf(stderr, "note: %d images do not fit one 8192x8192 sprite; projector/ has no sprite\n", n);
    }
    if (!rc) {
        if (json) {
            printf("%s\n", js.p);
        } else {
            printf("%s of %s in %.2fs (%.2f CPU-seconds)\n", tsne ? "t-SNE" : "PCA", what, seconds, cpu_seconds);
            if (tsne) printf("  KL divergence %.4f (neighbours %.2fs)\n", kl, tr.knn_seconds);
            else printf("  explained variance %.4f (PC1 %.4f, PC2 %.4f)\n", ev, map.pca.variance_ratio[0], map.pca.variance_ratio[1]);
            printf("  10-NN accuracy in the map %.4f (%d points), trustworthiness(10) %.4f (%s, %d points)\n", q.knn_accuracy,
                   q.n_knn, q.trustworthiness, trust_note, q.n_trust);
            printf("  wrote %s/{map.safetensors,coords.csv,map.png,map.svg,scores.json,projector/}\n", out);
        }
    }
    free(js.p);
    free(codes), free(coords), free(px), free(py), free(cls), free(index), free(xin);
    lt_pca_free(&pre);
    lt_map_free(&map);
    lt_model_free(m);
    lt_dataset_free(&ds);
    return rc;
}

/* ---- generate ---- */

/* "x1,y1;x2,y2;..." into pts (2 floats each); returns the count or -1. */
static int parse_points(const char *s, float **pts)
{
    int cap = 16, n = 0;
    *pts = malloc(sizeof(float) * 2 * cap);
    if (!*pts) return -1;
    const char *p = s;
    while (*p) {
        char *end;
        double a = strtod(p, &end);
        if (end == p || *end != ',') goto bad;
        p = end + 1;
        double b = strtod(p, &end);
        if (end == p || (*end && *end != ';') || !isfinite(a) || !isfinite(b)) goto bad;
        if (n == cap) {
            float *q = realloc(*pts, sizeof(float) * 2 * (cap *= 2));
            if (!q) goto bad;
            *pts = q;
        }
        (*pts)[2 * n] = (float)a, (*pts)[2 * n + 1] = (float)b, n++;
        p = *end ? end + 1 : end;
    }
    if (n == 0) goto bad;
    return n;
bad:
    free(*pts);
    *pts = NULL;
    return -1;
}

/* Percentile q (0..1) of n values (a copy is sorted). */
static int fcmp(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static float percentile(const float *v, int n, int stride, double q)
{
    float *c = malloc(sizeof(float) * n);
    if (!c) return NAN;
    for (int i = 0; i < n; i++) c[i] = v[(size_t)i * stride];
    qsort(c, (size_t)n, sizeof(float), fcmp);
    float r = c[(int)floor(q * (n - 1) + 0.5)];
    free(c);
    return r;
}

/* The side file of a figure: FILE.png -> FILE.json. */
static void side_path(const char *out, char *buf, size_t size)
{
    snprintf(buf, size, "%s", out);
    char *dot = strrchr(buf, '.'), *slash = strrchr(buf, '/');
    if (dot && (!slash || dot > slash)) *dot = 0;
    strncat(buf, ".json", size - strlen(buf) - 1);
}

int cmd_generate(int argc, char **argv)
{
    const char *usage =
        "Usage: latent generate CHECKPOINT --map DIR|latent (--grid RxC | --points \"x1,y1;x2,y2;...\")\n"
        "                       --out FILE.png [--json] [--data DIR] [--threads N]\n\n"
        "Decodes digits from points picked on a map written by latent embed --out DIR: given\n"
        "coordinates, or a regular grid of R rows and C columns over the map's extent. PCA maps\n"
        "go back through the exact inverse of the projection; t-SNE maps, which have no inverse,\n"
        "average the latent codes of the 10 nearest embedded points weighted by 1/(distance^2 +\n"
        "eps^2), eps = 1e-3 of the map's extent. --map latent (2-D latent only) decodes points of\n"
        "the latent space itself: the grid spans the 1st to 99th percentile of the test codes.\n"
        "FILE.png shows the map with the points numbered beside their digits; FILE.json next to\n"
        "it says how each point was decoded (neighbours, weights, codes). --score CLASSIFIER rates\n"
        "the decoded digits (latent sample --help says how).";
    const char *ckpt = NULL, *mapdir = NULL, *grid = NULL, *points = NULL, *out = NULL, *data = NULL, *scorer = NULL;
    int json = 0, threads = 0, np = 0;
    cli_opt opts[] = {
        {"--map", OPT_STRING, &mapdir, "directory written by latent embed, or 'latent' (required)", 0, 0, 0},
        {"--grid", OPT_STRING, &grid, "RxC: a regular grid of R rows and C columns (e.g. 10x10)", 0, 0, 0},
        {"--points", OPT_STRING, &points, "\"x1,y1;x2,y2;...\": points in map coordinates", 0, 0, 0},
        {"--out", OPT_STRING, &out, "figure to write, .png or .svg (required)", 0, 0, 0},
        {"--data", OPT_STRING, &data, "directory with IDX files (--map latent; default: the MNIST cache)", 0, 0, 0},
        {"--threads", OPT_INT, &threads, "threads (default: all cores)", 1, 1024, 0},
        {"--json", OPT_FLAG, &json, "print a JSON summary on stdout", 0, 0, 0},
        {"--score", OPT_STRING, &scorer, "classifier checkpoint that scores the decoded digits", 0, 0, 0},
    };
    const int nopts = (int)(sizeof opts / sizeof *opts);
    int rc = cli_parse("generate", usage, argc, argv, opts, nopts, &ckpt, 1, &np);
    if (rc) return rc == 1 ? 0 : rc;
    if (!np || !mapdir || !out) {
        fprintf(stderr, "latent generate: %s is required\n", !np ? "a CHECKPOINT (- for a map of pixels)" : !mapdir ? "--map DIR" : "--out FILE.png");
        return EXIT_USAGE;
    }
    if (!grid == !points) {
        fprintf(stderr, "latent generate: give exactly one of --grid RxC and --points \"x1,y1;x2,y2\"\n");
        return EXIT_USAGE;
    }
    int gr = 0, gc = 0, npts = 0;
    float *pts = NULL;
    if (grid) {
        char tail;
        if (sscanf(grid, "%dx%d%c", &gr, &gc, &tail) != 2 || gr < 1 || gc < 1 || gr > 100 || gc > 100) {
            fprintf(stderr, "latent generate: --grid: expected RxC with R and C from 1 to 100 (e.g. 10x10), found '%s'\n", grid);
            return EXIT_USAGE;
        }
        npts = gr * gc;
    } else if ((npts = parse_points(points, &pts)) < 0) {
        fprintf(stderr, "latent generate: --points: expected \"x1,y1;x2,y2;...\" (finite numbers, ',' within a point, "
                        "';' between points), found '%s'\n", points);
        return EXIT_USAGE;
    } else if (npts > 10000) {
        fprintf(stderr, "latent generate: --points: at most 10000 points, found %d\n", npts);
        free(pts);
        return EXIT_USAGE;
    }
    {
        /* Refuse an unknown figure format before any work. */
        const char *dot = strrchr(out, '.');
        if (!dot || (strcmp(dot, ".png") && strcmp(dot, ".svg") && strcmp(dot, ".PNG") && strcmp(dot, ".SVG"))) {
            fprintf(stderr, "latent generate: --out: expected a file name ending in .png or .svg, found '%s'\n", out);
            free(pts);
            return EXIT_USAGE;
        }
    }
    lt_err err = {0};
    lt_map map = {0};
    lt_model *m = NULL;
    lt_dataset ds = {0};
    const int latent_map = !strcmp(mapdir, "latent");
    char path[4400];
    if (latent_map) {
        /* The latent space itself as the map: the test codes of a 2-D model. */
        if (!strcmp(ckpt, "-") || lt_model_load(&m, ckpt, &err)) {
            fprintf(stderr, "latent generate: %s\n", !strcmp(ckpt, "-") ? "--map latent needs a CHECKPOINT" : err.msg);
            free(pts);
            return strcmp(ckpt, "-") ? 1 : EXIT_USAGE;
        }
        if (lt_model_latent_dim(m) != 2) {
            fprintf(stderr, "latent generate: --map latent needs a model with a 2-D latent space, %s has d = %d "
                            "(make a map with latent embed and pass --map DIR)\n", ckpt, lt_model_latent_dim(m));
            lt_model_free(m), free(pts);
            return EXIT_USAGE;
        }
        rc = cli_load_split(data, "test", &ds);
        if (!rc) {
            map.n = ds.n, map.d = 2;
            map.coords = malloc(sizeof(float) * 2 * ds.n);
            map.labels = malloc((size_t)ds.n);
            if (!map.coords || !map.labels) rc = 1, fprintf(stderr, "latent generate: out of memory\n");
            else rc = encode("generate", m, &ds, NULL, ds.n, threads, map.coords);
            if (!rc) memcpy(map.labels, ds.labels, (size_t)ds.n);
            snprintf(map.method, sizeof map.method, "latent");
            snprintf(map.input, sizeof map.input, "latent");
        }
    } else {
        snprintf(path, sizeof path, "%s/map.safetensors", mapdir);
        if (access(path, F_OK) != 0) {
            fprintf(stderr, "latent generate: --map %s: no map there (%s is missing; make one with latent embed --out %s)\n",
                    mapdir, path, mapdir);
            free(pts);
            return 1;
        }
        if (lt_map_load(&map, path, &err)) {
            fprintf(stderr, "latent generate: %s\n", err.msg);
            free(pts);
            return 1;
        }
        if (!strcmp(map.input, "latent")) {
            if (!strcmp(ckpt, "-") || lt_model_load(&m, ckpt, &err)) {
                fprintf(stderr, "latent generate: %s\n", !strcmp(ckpt, "-") ? "this map is of latent codes: it needs the CHECKPOINT that made them" : err.msg);
                rc = 1;
            } else if (lt_model_latent_dim(m) != map.d) {
                fprintf(stderr, "latent generate: %s has d = %d but the map's codes have %d values; pass the checkpoint "
                                "the map was made with\n", ckpt, lt_model_latent_dim(m), map.d);
                rc = 1;
            }
        }
    }
    /* The points: given, or a grid over the map's extent (row 0 at the top, as on the figure). */
    if (!rc && grid) {
        float x0, x1, y0, y1;
        if (latent_map) {
            x0 = percentile(map.coords, map.n, 2, 0.01), x1 = percentile(map.coords, map.n, 2, 0.99);
            y0 = percentile(map.coords + 1, map.n, 2, 0.01), y1 = percentile(map.coords + 1, map.n, 2, 0.99);
        } else {
            x0 = x1 = map.coords[0], y0 = y1 = map.coords[1];
            for (int i = 1; i < map.n; i++) {
                x0 = fminf(x0, map.coords[2 * i]), x1 = fmaxf(x1, map.coords[2 * i]);
                y0 = fminf(y0, map.coords[2 * i + 1]), y1 = fmaxf(y1, map.coords[2 * i + 1]);
            }
        }
        pts = malloc(sizeof(float) * 2 * npts);
        if (!pts) rc = 1;
        for (int r = 0; !rc && r < gr; r++)
            for (int c = 0; c < gc; c++) {
                pts[2 * (r * gc + c)] = x0 + (x1 - x0) * (c + 0.5f) / gc;
                pts[2 * (r * gc + c) + 1] = y1 - (y1 - y0) * (r + 0.5f) / gr;
            }
    }
    const int d = latent_map ? 2 : map.d;
    int ih = map.h, iw = map.w;
    if (!rc && m) {
        int c;
        lt_model_input_shape(m, &c, &ih, &iw);
        if (c != 1) rc = 1, fprintf(stderr, "latent generate: %s makes %d-channel images; only one channel is drawn here\n", ckpt, c);
    }
    if (!rc && (ih < 1 || iw < 1)) rc = 1, fprintf(stderr, "latent generate: the map does not say its image size\n");
    float *z = rc ? NULL : malloc(sizeof(float) * (size_t)npts * d);
    float *img = rc ? NULL : malloc(sizeof(float) * (size_t)npts * ih * iw);
    if (!rc && (!z || !img)) rc = 1, fprintf(stderr, "latent generate: out of memory\n");
    const int tsne = !strcmp(map.method, "tsne");
    char note[300];
    if (!rc) {
        if (latent_map) {
            memcpy(z, pts, sizeof(float) * 2 * npts);
            snprintf(note, sizeof note, "each point is a latent code (d = 2), decoded directly");
        } else if (tsne) {
            rc = lt_map_inverse_knn(map.coords, map.codes, map.n, map.d, pts, npts, INVERSE_K, z, &err);
            snprintf(note, sizeof note,
                     "t-SNE has no inverse: each point's code is the average of the codes of its %d nearest map points, "
                     "weighted by 1/(distance^2 + eps^2), eps = 1e-3 of the map's extent", INVERSE_K);
        } else {
            rc = lt_pca_inverse(&map.pca, pts, npts, z, &err);
            snprintf(note, sizeof note, "PCA: exact inverse of the projection (mean + x PC1 + y PC2 in the %d-D %s space)",
                     map.d, map.input);
        }
        if (rc) fprintf(stderr, "latent generate: %s\n", err.msg);
    }
    if (!rc && (latent_map || !strcmp(map.input, "latent"))) {
        rc = decode("generate", m, z, npts, threads, img, (size_t)ih * iw);
    } else if (!rc) {
        /* A map of pixels: the "codes" are the images themselves. */
        if (map.d != ih * iw) rc = 1, fprintf(stderr, "latent generate: the map's images have %d values, not %dx%d\n", map.d, ih, iw);
        for (size_t i = 0; !rc && i < (size_t)npts * d; i++) img[i] = z[i] < 0 ? 0 : z[i] > 1 ? 1 : z[i];
    }
    float *px = rc ? NULL : malloc(sizeof(float) * map.n), *py = rc ? NULL : malloc(sizeof(float) * map.n);
    float *mx = rc ? NULL : malloc(sizeof(float) * npts), *my = rc ? NULL : malloc(sizeof(float) * npts);
    int *cls = rc ? NULL : malloc(sizeof(int) * map.n);
    if (!rc && (!px || !py || !mx || !my || !cls)) rc = 1, fprintf(stderr, "latent generate: out of memory\n");
    int n_classes = 1;
    for (int i = 0; !rc && i < map.n; i++) {
        px[i] = map.coords[2 * i], py[i] = map.coords[2 * i + 1], cls[i] = map.labels[i];
        if (cls[i] + 1 > n_classes) n_classes = cls[i] + 1;
    }
    for (int k = 0; !rc && k < npts; k++) mx[k] = pts[2 * k], my[k] = pts[2 * k + 1];
    if (!rc) {
        char title[600];
        const int of_pixels = !latent_map && !strcmp(map.input, "pixels");
        const char *what = latent_map ? "the 2-D latent space (test codes)"
                           : tsne     ? (of_pixels ? "a t-SNE map of pixels" : "a t-SNE map of latent codes")
                                      : (of_pixels ? "a PCA map of pixels" : "a PCA map of latent codes");
        snprintf(title, sizeof title, "%s %d point%s of %s%s%s", of_pixels ? "Images from" : "Digits decoded from", npts,
                 npts > 1 ? "s" : "", what,
                 map.params[0] ? ": " : "", map.params);
        const char *ax = latent_map ? "z1" : tsne ? "t-SNE 1" : "PC1", *ay = latent_map ? "z2" : tsne ? "t-SNE 2" : "PC2";
        if (lt_plot_map_digits(out, title, ax, ay, px, py, cls, map.n, n_classes, mx, my, npts, img, ih, iw, note, &err))
            fprintf(stderr, "latent generate: %s\n", err.msg), rc = 1;
    }
    char side[4400];
    side_path(out, side, sizeof side);
    if (!rc) {
        /* How each point was decoded: for t-SNE its neighbours and their weights. */
        sbuf b = {0};
        sb_printf(&b, "{\"figure\": ");
        json_str(&b, out);
        sb_printf(&b, ", \"map\": ");
        json_str(&b, mapdir);
        sb_printf(&b, ", \"method\": \"%s\", \"inverse\": ", latent_map ? "latent" : map.method);
        json_str(&b, note);
        if (tsne) sb_printf(&b, ", \"neighbours\": %d, \"weights\": \"1/(d^2 + eps^2)\"", INVERSE_K);
        sb_printf(&b, ", \"points\": [\n");
        for (int k = 0; k < npts; k++) {
            sb_printf(&b, "  {\"number\": %d, \"x\": %.7g, \"y\": %.7g, \"code\": [", k + 1, pts[2 * k], pts[2 * k + 1]);
            if (!latent_map && !strcmp(map.input, "pixels")) sb_printf(&b, "\"(the image itself)\"");
            else
                for (int t = 0; t < d; t++) sb_printf(&b, "%s%.7g", t ? ", " : "", z[(size_t)k * d + t]);
            sb_printf(&b, "]");
            if (tsne) {
                /* The neighbours the code came from, nearest first. */
                int nb[INVERSE_K];
                double nd[INVERSE_K];
                int size = 0;
                for (int j = 0; j < map.n; j++) {
                    double ex = map.coords[2 * j] - pts[2 * k], ey = map.coords[2 * j + 1] - pts[2 * k + 1], dd = ex * ex + ey * ey;
                    if (size == INVERSE_K && !(dd < nd[size - 1])) continue;
                    int p = size < INVERSE_K ? size++ : INVERSE_K - 1;
                    while (p > 0 && dd < nd[p - 1]) nd[p] = nd[p - 1], nb[p] = nb[p - 1], p--;
                    nd[p] = dd, nb[p] = j;
                }
                sb_printf(&b, ", \"neighbours\": [");
                for (int a = 0; a < size; a++)
                    sb_printf(&b, "%s{\"index\": %d, \"label\": %d, \"distance\": %.5g}", a ? ", " : "", map.index[nb[a]],
                              map.labels[nb[a]], sqrt(nd[a]));
                sb_printf(&b, "]");
            }
            sb_printf(&b, "}%s\n", k + 1 < npts ? "," : "");
        }
        sb_printf(&b, "]}\n");
        rc = sb_write("generate", &b, side);
    }
    /* The generative score: how recognisable the decoded digits are to a classifier. */
    double confident = NAN, spread = NAN;
    int counts[256] = {0};
    lt_model *clf = NULL;
    if (!rc && scorer) {
        if (lt_model_load(&clf, scorer, &err) || lt_generative_score(clf, img, npts, threads, &confident, &spread, counts, &err)) {
            fprintf(stderr, "latent generate: --score %s: %s\n", scorer, err.msg);
            rc = 1;
        }
    }
    if (!rc) {
        if (json) {
            printf("{\"figure\": \"%s\", \"side_file\": \"%s\", \"points\": %d, \"method\": \"%s\"", out, side, npts,
                   latent_map ? "latent" : map.method);
            if (clf) {
                printf(", \"confident\": %.6g, \"spread\": %.6g, \"class_counts\": [", confident, spread);
                for (int c = 0; c < lt_model_classes(clf); c++) printf("%s%d", c ? ", " : "", counts[c]);
                printf("]");
            }
            printf("}\n");
        } else {
            fprintf(stderr, "wrote %s (%d digits) and %s\n", out, npts, side);
            if (clf) printf("generative score by %s: %.1f%% of %d digits classified with confidence > 0.9; class spread %.3f\n",
                            scorer, 100 * confident, npts, spread);
        }
    }
    lt_model_free(clf);
    free(pts), free(z), free(img), free(px), free(py), free(mx), free(my), free(cls);
    lt_map_free(&map);
    lt_model_free(m);
    lt_dataset_free(&ds);
    return rc;
}

/* ---- interpolate ---- */

int cmd_interpolate(int argc, char **argv)
{
    const char *usage = "Usage: latent interpolate CHECKPOINT --from I --to J [--steps 10] --out FILE.png [--data DIR]\n\n"
                        "Decodes the straight line in latent space between the codes of test images I and J\n"
                        "(0-based): one row with image I, the STEPS decoded points from code I to code J\n"
                        "(both ends included), and image J, scaled up 3x.";
    const char *ckpt = NULL, *out = NULL, *data = NULL;
    int from = -1, to = -1, steps = 10, np = 0, threads = 0;
    cli_opt opts[] = {
        {"--from", OPT_INT, &from, "index of the first test image (required)", 0, 1e9, 0},
        {"--to", OPT_INT, &to, "index of the last test image (required)", 0, 1e9, 0},
        {"--steps", OPT_INT, &steps, "decoded points, ends included (default 10)", 2, 1000, 0},
        {"--out", OPT_STRING, &out, "PNG file to write (required)", 0, 0, 0},
        {"--data", OPT_STRING, &data, "directory with IDX files (default: the MNIST cache)", 0, 0, 0},
        {"--threads", OPT_INT, &threads, "threads (default: all cores)", 1, 1024, 0},
    };
    int rc = cli_parse("interpolate", usage, argc, argv, opts, 6, &ckpt, 1, &np);
    if (rc) return rc == 1 ? 0 : rc;
    if (!np || from < 0 || to < 0 || !out) {
        fprintf(stderr, "latent interpolate: %s is required\n", !np ? "a CHECKPOINT" : from < 0 ? "--from I" : to < 0 ? "--to J" : "--out FILE.png");
        return EXIT_USAGE;
    }
    lt_err err = {0};
    lt_model *m = NULL;
    if (lt_model_load(&m, ckpt, &err)) {
        fprintf(stderr, "latent interpolate: %s\n", err.msg);
        return 1;
    }
    lt_dataset ds = {0};
    if (cli_load_split(data, "test", &ds)) {
        lt_model_free(m);
        return 1;
    }
    if (from >= ds.n || to >= ds.n) {
        fprintf(stderr, "latent interpolate: %s: the test split has images 0 to %d, found %d\n", from >= ds.n ? "--from" : "--to",
                ds.n - 1, from >= ds.n ? from : to);
        lt_dataset_free(&ds), lt_model_free(m);
        return EXIT_USAGE;
    }
    if (check_shape("interpolate", ckpt, m, &ds)) {
        lt_dataset_free(&ds), lt_model_free(m);
        return 1;
    }
    const int d = lt_model_latent_dim(m);
    const size_t sz = (size_t)ds.h * ds.w;
    int which[2] = {from, to};
    float *ends = malloc(sizeof(float) * 2 * d), *z = malloc(sizeof(float) * (size_t)steps * d);
    float *tiles = malloc(sizeof(float) * sz * (steps + 2));
    rc = (!ends || !z || !tiles) ? 1 : 0;
    if (rc) fprintf(stderr, "latent interpolate: out of memory\n");
    if (!rc) rc = encode("interpolate", m, &ds, which, 2, threads, ends);
    for (int s = 0; !rc && s < steps; s++) {
        float t = (float)s / (steps - 1);
        for (int k = 0; k < d; k++) z[(size_t)s * d + k] = (1 - t) * ends[k] + t * ends[d + k];
    }
    if (!rc) rc = decode("interpolate", m, z, steps, threads, tiles + sz, sz);
    if (!rc) {
        for (size_t k = 0; k < sz; k++) {
            tiles[k] = ds.images[(size_t)from * sz + k] / 255.0f;
            tiles[(size_t)(steps + 1) * sz + k] = ds.images[(size_t)to * sz + k] / 255.0f;
        }
        if (lt_write_image_grid(out, tiles, steps + 2, ds.h, ds.w, steps + 2, 3, &err))
            fprintf(stderr, "latent interpolate: %s\n", err.msg), rc = 1;
        else
            fprintf(stderr, "wrote %s: test image %d (label %d), %d decoded steps, test image %d (label %d)\n", out, from,
                    ds.labels[from], steps, to, ds.labels[to]);
    }
    free(ends), free(z), free(tiles);
    lt_dataset_free(&ds);
    lt_model_free(m);
    return rc;
}
