/* Plots: every kind renders to a valid PNG (read back with libpng) and SVG
 * (with its title as text); non-finite values are skipped without moving
 * the axes; bad paths and bad input give clear errors and leave no file. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/core.h"
#include "io/png.h"
#include "testutil.h"

static char *path_in(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* A PNG that libpng decodes, of the given size, with some ink on it: returns the share of non-white pixels. */
static double check_png(const char *path, int want_w, int want_h)
{
    uint8_t *pix = NULL;
    int w = 0, h = 0;
    lt_err err = {0};
    void *bytes;
    size_t n;
    assert_int_equal(lt_read_file(path, &bytes, &n, &err), 0);
    assert_true(n > 8);
    assert_memory_equal(bytes, "\x89PNG\r\n\x1a\n", 8);
    free(bytes);
    if (lt_png_read_gray(path, &pix, &w, &h, &err)) fail_msg("%s", err.msg);
    if (want_w) assert_int_equal(w, want_w);
    if (want_h) assert_int_equal(h, want_h);
    size_t ink = 0;
    for (size_t i = 0; i < (size_t)w * h; i++) ink += pix[i] < 250;
    free(pix);
    return (double)ink / ((double)w * h);
}

static void check_svg(const char *path, const char *title_xml)
{
    void *bytes;
    size_t n;
    lt_err err = {0};
    assert_int_equal(lt_read_file(path, &bytes, &n, &err), 0);
    char *s = malloc(n + 1);
    memcpy(s, bytes, n);
    s[n] = 0;
    free(bytes);
    assert_non_null(strstr(s, "<svg"));
    assert_non_null(strstr(s, "</svg>"));
    char want[512];
    snprintf(want, sizeof want, "<title>%s</title>", title_xml);
    if (!strstr(s, want)) fail_msg("%s lacks %s", path, want);
    free(s);
}

/* No PATH.tmp.* left behind in dir. */
static void check_no_tmp(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".tmp.")) fail_msg("temporary file left behind: %s", e->d_name);
    closedir(d);
}

static int same_file(const char *a, const char *b)
{
    void *pa, *pb;
    size_t na, nb;
    lt_err err = {0};
    assert_int_equal(lt_read_file(a, &pa, &na, &err), 0);
    assert_int_equal(lt_read_file(b, &pb, &nb, &err), 0);
    int same = na == nb && !memcmp(pa, pb, na);
    free(pa);
    free(pb);
    return same;
}

static void test_lines(void **state)
{
    (void)state;
    char *dir = tu_mkdtemp();
    enum { N = 40 };
    double x[N + 1], y1[N + 1], y2[N + 1], lo[N + 1], hi[N + 1];
    for (int i = 0; i < N; i++) {
        x[i] = i + 1;
        y1[i] = 0.1 * exp(-i / 10.0) + 0.03;
        y2[i] = 0.12 * exp(-i / 8.0) + 0.035;
        lo[i] = y2[i] * 0.9;
        hi[i] = y2[i] * 1.1;
    }
    lt_series s[2] = {{"train", x, y1, N, NULL, NULL}, {"validation (fold spread)", x, y2, N, lo, hi}};
    lt_err err = {0};
    const char *names[] = {"lines.png", "lines.svg", "lines_log.PNG"};
    for (int k = 0; k < 3; k++) {
        char *p = path_in(dir, names[k]);
        int rc = lt_plot_lines(p, "loss <per> epoch & fold", "epoch", "MSE", s, 2, k == 2, &err);
        if (rc) fail_msg("%s", err.msg);
        if (k == 1) check_svg(p, "loss &lt;per&gt; epoch &amp; fold");
        else assert_true(check_png(p, 900, 600) > 0.01);
        free(p);
    }
    /* A non-finite point appended to a curve (and a band) is skipped: the
     * picture is exactly the same as without it. */
    x[N] = N + 1;
    y1[N] = NAN;
    y2[N] = INFINITY;
    lo[N] = NAN;
    hi[N] = 1e30 * 1e30;
    lt_series t[2] = {{"train", x, y1, N + 1, NULL, NULL}, {"validation (fold spread)", x, y2, N + 1, lo, hi}};
    char *a = path_in(dir, "a.png"), *b = path_in(dir, "b.png");
    assert_int_equal(lt_plot_lines(a, "t", "epoch", "MSE", s, 2, 0, &err), 0);
    assert_int_equal(lt_plot_lines(b, "t", "epoch", "MSE", t, 2, 0, &err), 0);
    assert_true(same_file(a, b));
    /* On a log axis a value <= 0 is skipped too; a chart with nothing usable still renders. */
    y1[3] = 0;
    assert_int_equal(lt_plot_lines(a, "t", "epoch", "MSE", s, 2, 1, &err), 0);
    double nan1[1] = {NAN};
    lt_series empty = {"nothing", nan1, nan1, 1, NULL, NULL};
    assert_int_equal(lt_plot_lines(a, "empty", NULL, NULL, &empty, 1, 0, &err), 0);
    check_png(a, 900, 600);
    free(a);
    free(b);
    check_no_tmp(dir);
    tu_rmtree(dir);
    free(dir);
}

static void test_scatter_and_digits(void **state)
{
    (void)state;
    char *dir = tu_mkdtemp();
    enum { N = 3000 };
    float *x = malloc(sizeof(float) * (N + 1)), *y = malloc(sizeof(float) * (N + 1));
    int *cls = malloc(sizeof(int) * (N + 1));
    lt_rng r;
    lt_rng_seed(&r, 7);
    for (int i = 0; i < N; i++) {
        cls[i] = i % 10;
        x[i] = 10 * cosf(cls[i] * 0.628f) + lt_rng_normal(&r);
        y[i] = 10 * sinf(cls[i] * 0.628f) + lt_rng_normal(&r);
    }
    float mx[3] = {0, 5, -5}, my[3] = {0, 5, 2};
    lt_err err = {0};
    char *png = path_in(dir, "map.png"), *svg = path_in(dir, "map.svg");
    if (lt_plot_scatter(png, "t-SNE (perplexity 30)", "t-SNE 1", "t-SNE 2", x, y, cls, N, 10, mx, my, 3, &err))
        fail_msg("%s", err.msg);
    assert_true(check_png(png, 900, 780) > 0.02);
    assert_int_equal(lt_plot_scatter(svg, "t-SNE (perplexity 30)", "x", "y", x, y, cls, N, 10, NULL, NULL, 0, &err), 0);
    check_svg(svg, "t-SNE (perplexity 30)");
    /* Unlabelled points, and a non-finite point that changes nothing. */
    char *b = path_in(dir, "b.png");
    assert_int_equal(lt_plot_scatter(png, "u", "x", "y", x, y, NULL, N, 0, NULL, NULL, 0, &err), 0);
    x[N] = NAN;
    y[N] = 1e9f;
    cls[N] = 0;
    assert_int_equal(lt_plot_scatter(b, "u", "x", "y", x, y, NULL, N + 1, 0, NULL, NULL, 0, &err), 0);
    assert_true(same_file(png, b));
    /* A class outside 0..n_classes-1 is refused, naming the point. */
    cls[5] = 10;
    assert_int_equal(lt_plot_scatter(png, "u", "x", "y", x, y, cls, N, 10, NULL, NULL, 0, &err), LT_EINVAL);
    assert_non_null(strstr(err.msg, "point 5"));
    cls[5] = 5;
    /* The map beside decoded digits. */
    float *img = calloc(3 * 28 * 28, sizeof(float));
    for (int k = 0; k < 3; k++)
        for (int i = 4; i < 24; i++) img[k * 784 + i * 28 + 10 + 4 * k] = 1;
    char *fig = path_in(dir, "gen.png"), *figs = path_in(dir, "gen.svg");
    if (lt_plot_map_digits(fig, "generated", "x", "y", x, y, cls, N, 10, mx, my, 3, img, 28, 28, "k=10", &err))
        fail_msg("%s", err.msg);
    assert_true(check_png(fig, 0, 0) > 0.02);
    assert_int_equal(lt_plot_map_digits(figs, "generated", "x", "y", x, y, cls, N, 10, mx, my, 3, img, 28, 28, NULL, &err), 0);
    check_svg(figs, "generated");
    free(img);
    free(fig);
    free(figs);
    free(png);
    free(svg);
    free(b);
    free(x);
    free(y);
    free(cls);
    check_no_tmp(dir);
    tu_rmtree(dir);
    free(dir);
}

static void test_heatmap(void **state)
{
    (void)state;
    char *dir = tu_mkdtemp();
    double v[100];
    for (int i = 0; i < 10; i++)
        for (int j = 0; j < 10; j++) v[i * 10 + j] = i == j ? 950 + i : (i * 7 + j * 3) % 13;
    const char *labels[10] = {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};
    lt_err err = {0};
    char *png = path_in(dir, "cm.png"), *svg = path_in(dir, "cm.svg");
    if (lt_plot_heatmap(png, "confusion matrix", "predicted", "true", labels, labels, v, 10, 10, 1, &err))
        fail_msg("%s", err.msg);
    assert_true(check_png(png, 0, 0) > 0.3);
    v[17] = NAN;
    assert_int_equal(lt_plot_heatmap(svg, "confusion matrix", "predicted", "true", NULL, NULL, v, 10, 10, 1, &err), 0);
    check_svg(svg, "confusion matrix");
    assert_int_equal(lt_plot_heatmap(png, "x", NULL, NULL, NULL, NULL, v, 0, 10, 1, &err), LT_EINVAL);
    free(png);
    free(svg);
    check_no_tmp(dir);
    tu_rmtree(dir);
    free(dir);
}

static void test_bad_paths(void **state)
{
    (void)state;
    char *dir = tu_mkdtemp();
    double x[2] = {0, 1}, y[2] = {1, 2};
    lt_series s = {"a", x, y, 2, NULL, NULL};
    lt_err err = {0};
    char *jpg = path_in(dir, "plot.jpg");
    assert_int_equal(lt_plot_lines(jpg, "t", "x", "y", &s, 1, 0, &err), LT_EINVAL);
    assert_non_null(strstr(err.msg, "plot.jpg"));
    assert_non_null(strstr(err.msg, ".png or .svg"));
    assert_int_equal(access(jpg, F_OK), -1);
    char *noext = path_in(dir, "plot");
    float fx[1] = {0}, fy[1] = {0};
    assert_int_equal(lt_plot_scatter(noext, "t", "x", "y", fx, fy, NULL, 1, 0, NULL, NULL, 0, &err), LT_EINVAL);
    char *missing = path_in(dir, "no/such/dir/plot.png");
    assert_int_equal(lt_plot_lines(missing, "t", "x", "y", &s, 1, 0, &err), LT_EIO);
    assert_non_null(strstr(err.msg, "no/such/dir/plot.png"));
    char *missing_svg = path_in(dir, "no/such/dir/plot.svg");
    double v[1] = {1};
    assert_int_equal(lt_plot_heatmap(missing_svg, "t", NULL, NULL, NULL, NULL, v, 1, 1, 1, &err), LT_EIO);
    assert_non_null(strstr(err.msg, "plot.svg"));
    check_no_tmp(dir);
    free(jpg);
    free(noext);
    free(missing);
    free(missing_svg);
    tu_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_lines), cmocka_unit_test(test_scatter_and_digits),
                                       cmocka_unit_test(test_heatmap), cmocka_unit_test(test_bad_paths)};
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    tu_release_threads();
    return rc;
}
