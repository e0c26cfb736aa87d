#define _XOPEN_SOURCE 700
#include "testutil.h"

#include <ftw.h>
#include <stdarg.h>
#include <sys/wait.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/core.h"

char *tu_mkdtemp(void)
{
    const char *base = getenv("TMPDIR");
    char *path = malloc(4096);
    snprintf(path, 4096, "%s/latent-test-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(path)) {
        free(path);
        return NULL;
    }
    return path;
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

void tu_rmtree(const char *dir)
{
    if (dir) nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

char *tu_write(const char *dir, const char *name, const void *data, size_t n)
{
    char *path = malloc(4096);
    snprintf(path, 4096, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f) {
        if (n) fwrite(data, 1, n, f);
        fclose(f);
    }
    return path;
}

double tu_close_ratio(const float *a, const float *b, size_t n, double atol, double rtol)
{
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        double r = fabs((double)a[i] - b[i]) / (atol + rtol * fabs((double)b[i]));
        if (!(r <= worst)) worst = r; /* NaN propagates as "not close" */
    }
    return worst;
}

double tu_norm(const float *a, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * a[i];
    return sqrt(s);
}

void tu_fill_uniform(float *a, size_t n, float lo, float hi, uint64_t seed)
{
    lt_rng r;
    lt_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) a[i] = lo + (hi - lo) * lt_rng_uniform(&r);
}

void tu_make_dataset(lt_dataset *ds, int n, int h, int w, uint64_t seed)
{
    lt_rng r;
    lt_rng_seed(&r, seed);
    ds->n = n, ds->c = 1, ds->h = h, ds->w = w, ds->n_classes = 10;
    ds->images = calloc((size_t)n * h * w, 1);
    ds->labels = calloc((size_t)n, 1);
    for (int i = 0; i < n; i++) {
        int label = (int)lt_rng_below(&r, 10);
        ds->labels[i] = (uint8_t)label;
        /* A blob whose position depends on the label, plus noise: learnable. */
        double cy = h * (0.25 + 0.05 * (label % 5)), cx = w * (0.25 + 0.1 * (label / 5));
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                double d2 = (y - cy) * (y - cy) + (x - cx) * (x - cx);
                double v = 255.0 * exp(-d2 / (0.02 * h * w)) + 20.0 * lt_rng_uniform(&r);
                ds->images[((size_t)i * h + y) * w + x] = (uint8_t)(v > 255 ? 255 : v);
            }
    }
}

void tu_release_threads(void) { omp_pause_resource_all(omp_pause_hard); }

static void write_idx(const char *dir, const char *name, const lt_dataset *ds, int labels)
{
    size_t hdr = labels ? 8 : 16, n = labels ? (size_t)ds->n : (size_t)ds->n * ds->h * ds->w;
    unsigned char *buf = malloc(hdr + n);
    uint32_t dims[3] = {(uint32_t)ds->n, (uint32_t)ds->h, (uint32_t)ds->w};
    buf[0] = buf[1] = 0, buf[2] = 8, buf[3] = labels ? 1 : 3;
    for (int d = 0; d < (labels ? 1 : 3); d++)
        for (int b = 0; b < 4; b++) buf[4 + 4 * d + b] = (unsigned char)(dims[d] >> (24 - 8 * b));
    memcpy(buf + hdr, labels ? ds->labels : ds->images, n);
    free(tu_write(dir, name, buf, hdr + n));
    free(buf);
}

void tu_write_idx_split(const char *dir, const char *prefix, const lt_dataset *ds)
{
    char name[64];
    snprintf(name, sizeof name, "%s-images-idx3-ubyte", prefix);
    write_idx(dir, name, ds, 0);
    snprintf(name, sizeof name, "%s-labels-idx1-ubyte", prefix);
    write_idx(dir, name, ds, 1);
}

static int run_shell(char *out, size_t size, const char *fmt, va_list ap, int with_stderr)
{
    char cmd[8192];
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    if (with_stderr) strncat(cmd, " 2>&1", sizeof cmd - strlen(cmd) - 1);
    FILE *p = popen(cmd, "r");
    if (!p) {
        snprintf(out, size, "popen failed");
        return -1;
    }
    size_t n = fread(out, 1, size - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int tu_sh(char *out, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = run_shell(out, size, fmt, ap, 1);
    va_end(ap);
    return rc;
}

int tu_sh_stdout(char *out, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = run_shell(out, size, fmt, ap, 0);
    va_end(ap);
    return rc;
}
