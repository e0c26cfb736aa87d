/* Maps: PCA against a case with a known answer, t-SNE on separated clusters
 * (quality, thread-count independence), the exact kNN methods against each
 * other, trustworthiness against a brute-force reference, the map inverse,
 * and embed / generate / interpolate as a user runs them. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "embed/embed.h"
#include "io/png.h"
#include "testutil.h"

/* Points on a known plane in 5-D: mean m, axes u (sd 3) and v (sd 1), orthonormal. */
static void test_pca_plane(void **state)
{
    (void)state;
    enum { N = 300, D = 5 };
    const double s = 1 / sqrt(2.0);
    const double m[D] = {1, -2, 0.5, 3, 0}, u[D] = {s, s, 0, 0, 0}, v[D] = {0, 0, 0.6, 0.8, 0};
    float *x = malloc(sizeof(float) * N * D), *y = malloc(sizeof(float) * N * 3), *back = malloc(sizeof(float) * N * D);
    lt_rng r;
    lt_rng_seed(&r, 3);
    double va = 0, vb = 0, ma = 0, mb = 0, a[N], b[N];
    for (int i = 0; i < N; i++) a[i] = 3 * lt_rng_normal(&r), b[i] = lt_rng_normal(&r), ma += a[i], mb += b[i];
    ma /= N, mb /= N;
    for (int i = 0; i < N; i++) {
        va += (a[i] - ma) * (a[i] - ma), vb += (b[i] - mb) * (b[i] - mb);
        for (int j = 0; j < D; j++) x[i * D + j] = (float)(m[j] + a[i] * u[j] + b[i] * v[j]);
    }
    lt_pca p;
    lt_err err = {0};
    assert_int_equal(lt_pca_fit(&p, x, N, D, 3, &err), 0);
    /* Two components carry all the variance; the third none. */
    assert_true(fabs(p.variance_ratio[0] + p.variance_ratio[1] - 1) < 1e-5);
    assert_true(p.variance_ratio[2] < 1e-6);
    assert_true(p.variance_ratio[0] > p.variance_ratio[1]);
    /* The first component is u (sample cross-correlation of a and b tilts it a little), up to sign. */
    double cu = 0, cv = 0;
    for (int j = 0; j < D; j++) cu += p.components[j] * u[j], cv += p.components[D + j] * v[j];
    assert_true(fabs(fabs(cu) - 1) < 1e-2);
    assert_true(fabs(fabs(cv) - 1) < 1e-2);
    /* Total variance = var(a) + var(b) (sample, n - 1). */
    assert_true(fabs(p.total_variance - (va + vb) / (N - 1)) < 1e-4 * p.total_variance);
    /* Orthonormal rows. */
    for (int c = 0; c < 3; c++)
        for (int e = 0; e < 3; e++) {
            double dot = 0;
            for (int j = 0; j < D; j++) dot += (double)p.components[c * D + j] * p.components[e * D + j];
            assert_true(fabs(dot - (c == e)) < 1e-6);
        }
    lt_pca_free(&p);
    /* With 2 components the inverse map is exact on the plane. */
    assert_int_equal(lt_pca_fit(&p, x, N, D, 2, &err), 0);
    assert_int_equal(lt_pca_transform(&p, x, N, y, &err), 0);
    assert_int_equal(lt_pca_inverse(&p, y, N, back, &err), 0);
    double worst = 0;
    for (int i = 0; i < N * D; i++) worst = fmax(worst, fabs(back[i] - x[i]));
    if (worst > 1e-5) fail_msg("PCA round trip off by %g", worst);
    lt_pca_free(&p);
    /* Bad input: NaN, too many components. */
    x[7] = NAN;
    assert_int_equal(lt_pca_fit(&p, x, N, D, 2, &err), LT_EINVAL);
    assert_non_null(strstr(err.msg, "not finite"));
    assert_int_equal(lt_pca_fit(&p, x, N, D, 6, &err), LT_EINVAL);
    free(x), free(y), free(back);
}

/* Clusters: C centres far apart in D dimensions, M points each, labels = cluster. */
static float *clusters(int C, int M, int D, double spread, uint64_t seed, uint8_t *labels)
{
    float *x = malloc(sizeof(float) * C * M * D);
    lt_rng r;
    lt_rng_seed(&r, seed);
    float centre[16][32];
    for (int c = 0; c < C; c++)
        for (int j = 0; j < D; j++) centre[c][j] = 10 * lt_rng_normal(&r);
    for (int c = 0; c < C; c++)
        for (int i = 0; i < M; i++) {
            /* Interleaved, so clusters are not contiguous in the input. */
            int p = i * C + c;
            labels[p] = (uint8_t)c;
            for (int j = 0; j < D; j++) x[p * D + j] = centre[c][j] + (float)(spread * lt_rng_normal(&r));
        }
    return x;
}

static void tsne_clusters_and_threads(lt_tsne_repulsion rep)
{
    enum { C = 5, M = 60, N = C * M, D = 12 };
    uint8_t labels[N];
    float *x = clusters(C, M, D, 1.0, 11, labels);
    float *y1 = malloc(sizeof(float) * 2 * N), *y2 = malloc(sizeof(float) * 2 * N);
    lt_tsne_config cfg;
    lt_tsne_config_default(&cfg);
    cfg.perplexity = 10;
    cfg.iters = 500;
    cfg.threads = 1;
    cfg.repulsion = rep;
    lt_tsne_result r1, r2;
    lt_err err = {0};
    if (lt_tsne(&cfg, x, N, D, y1, NULL, NULL, &r1, &err)) fail_msg("%s", err.msg);
    cfg.threads = 2;
    assert_int_equal(lt_tsne(&cfg, x, N, D, y2, NULL, NULL, &r2, &err), 0);
    assert_memory_equal(y1, y2, sizeof(float) * 2 * N);
    assert_true(r1.kl == r2.kl);
    assert_int_equal(r1.neighbours, 30);
    assert_int_equal(r1.repulsion, rep == LT_REPULSION_FFT ? LT_REPULSION_FFT : LT_REPULSION_BH);
    assert_true(r1.learning_rate == 50); /* max(300 / 12 / 4, 50) */
    lt_map_quality q;
    assert_int_equal(lt_map_quality_score(x, N, D, y1, labels, 10, 0, 1, 2, &q, &err), 0);
    print_message("clusters (%s): knn10 %.4f trust %.4f KL %.4f\n", rep == LT_REPULSION_FFT ? "FFT" : "Barnes-Hut",
                  q.knn_accuracy, q.trustworthiness, r1.kl);
    if (q.knn_accuracy != 1.0 || q.trustworthiness < 0.9 || !(r1.kl < 1.0))
        fail_msg("separated clusters: knn10 %.4f, trustworthiness %.4f, KL %.4f", q.knn_accuracy, q.trustworthiness, r1.kl);
    assert_int_equal(q.n_knn, N);
    assert_int_equal(q.n_trust, N);
    /* The same map whichever exact neighbour search runs (brute force or the tree). */
    cfg.knn = LT_KNN_BRUTE;
    assert_int_equal(lt_tsne(&cfg, x, N, D, y2, NULL, NULL, &r2, &err), 0);
    assert_memory_equal(y1, y2, sizeof(float) * 2 * N);
    /* A sampled trustworthiness is on the sample. */
    assert_int_equal(lt_map_quality_score(x, N, D, y1, labels, 10, 100, 1, 2, &q, &err), 0);
    assert_int_equal(q.n_trust, 100);
    /* Too high a perplexity for the points, and NaN input, are refused with a clear message. */
    cfg.perplexity = 100;
    assert_int_equal(lt_tsne(&cfg, x, N, D, y2, NULL, NULL, &r2, &err), LT_EINVAL);
    assert_non_null(strstr(err.msg, "perplexity 100"));
    cfg.perplexity = 10;
    x[5] = NAN;
    assert_int_equal(lt_tsne(&cfg, x, N, D, y2, NULL, NULL, &r2, &err), LT_EINVAL);
    free(x), free(y1), free(y2);
}

static void test_tsne_clusters_and_threads(void **state)
{
    (void)state;
    tsne_clusters_and_threads(LT_REPULSION_BH);
}

static void test_tsne_fft_clusters_and_threads(void **state)
{
    (void)state;
    tsne_clusters_and_threads(LT_REPULSION_FFT);
}

/* Relative error of the repulsive gradient term rep / Z (the only part the
 * FFT changes) against the exact O(n^2) sums, and of Z itself. */
static void fft_error(const double *y, int n, int p, double per_unit, int threads, double *grad_err, double *z_err)
{
    double *re = malloc(sizeof(double) * 2 * n), *ze = malloc(sizeof(double) * n);
    double *rf = malloc(sizeof(double) * 2 * n), *zf = malloc(sizeof(double) * n);
    lt_err err = {0};
    assert_int_equal(lt_bh_repulsion(y, n, 0, threads, re, ze, &err), 0);
    lt_fft_rep *w = lt_fft_rep_new(n, &err);
    assert_non_null(w);
    lt_fft_rep_set(w, p, per_unit);
    if (lt_fft_repulsion(w, y, threads, rf, zf, &err)) fail_msg("%s", err.msg);
    double z1 = 0, z2 = 0, num = 0, den = 0;
    for (int i = 0; i < n; i++) z1 += ze[i], z2 += zf[i];
    for (int i = 0; i < 2 * n; i++) {
        double a = re[i] / z1, b = rf[i] / z2;
        num += (a - b) * (a - b), den += a * a;
    }
    *grad_err = sqrt(num / den);
    *z_err = fabs(z2 / z1 - 1);
    lt_fft_rep_free(w);
    free(re), free(ze), free(rf), free(zf);
}

static void test_tsne_fft_gradient(void **state)
{
    (void)state;
    /* A map like t-SNE's: a few hundred points in clusters of unit scale, spread over about 40 units. */
    enum { N = 400 };
    double y[2 * N];
    lt_rng r;
    lt_rng_seed(&r, 7);
    for (int i = 0; i < N; i++) {
        double cx = 15 * cos(i % 7), cy = 15 * sin(i % 7) + (i % 3);
        y[2 * i] = cx + lt_rng_normal(&r), y[2 * i + 1] = cy + lt_rng_normal(&r);
    }
    double g, z, g2, z2;
    fft_error(y, N, 3, 1, 2, &g, &z);
    print_message("FFT repulsion (3 nodes per box): gradient error %.2e, Z error %.2e\n", g, z);
    /* FIt-SNE's defaults: about as accurate as Barnes-Hut with theta 0.5 (1e-2). */
    if (g > 2e-2 || z > 2e-3) fail_msg("FFT repulsion off the exact one: gradient %.2e, Z %.2e", g, z);
    /* Finer interpolation converges to the exact sums: the error is the interpolation's, not a bug's. */
    fft_error(y, N, 5, 2, 2, &g2, &z2);
    print_message("FFT repulsion (5 nodes, 2 boxes per unit): gradient error %.2e, Z error %.2e\n", g2, z2);
    if (g2 > 1e-4 || z2 > 1e-4 || g2 > g / 10) fail_msg("finer FFT grid: gradient %.2e, Z %.2e", g2, z2);
    /* The same sums for any thread count, bit for bit. */
    double *a = malloc(sizeof(double) * 3 * N), *b = malloc(sizeof(double) * 3 * N);
    lt_err err = {0};
    for (int t = 1; t <= 2; t++) {
        lt_fft_rep *w = lt_fft_rep_new(N, &err);
        assert_int_equal(lt_fft_repulsion(w, y, t, (t == 1 ? a : b), (t == 1 ? a : b) + 2 * N, &err), 0);
        lt_fft_rep_free(w);
    }
    assert_memory_equal(a, b, sizeof(double) * 3 * N);
    free(a), free(b);
}

/* Barnes-Hut's repulsion (grouped lists, single precision) against the exact
 * O(n^2) sums in double: close with theta 0.5, float rounding only with
 * theta 0, the same bits for any thread count. All-zero or garbage forces
 * fail the first comparison. */
static void test_tsne_bh_gradient(void **state)
{
    (void)state;
    enum { N = 1500 };
    double *y = malloc(sizeof(double) * 2 * N), *ex = malloc(sizeof(double) * 3 * N);
    double *a = malloc(sizeof(double) * 3 * N), *b = malloc(sizeof(double) * 3 * N);
    lt_rng r;
    lt_rng_seed(&r, 11);
    for (int i = 0; i < N; i++) {
        double cx = 30 * cos(i % 9), cy = 25 * sin(i % 9) + (i % 4);
        y[2 * i] = cx + 2 * lt_rng_normal(&r), y[2 * i + 1] = cy + lt_rng_normal(&r);
    }
    for (int i = 0; i < N; i++) {
        double fx = 0, fy = 0, z = 0;
        for (int j = 0; j < N; j++) {
            if (j == i) continue;
            double dx = y[2 * i] - y[2 * j], dy = y[2 * i + 1] - y[2 * j + 1], w = 1 / (1 + dx * dx + dy * dy);
            z += w, fx += w * w * dx, fy += w * w * dy;
        }
        ex[2 * i] = fx, ex[2 * i + 1] = fy, ex[2 * N + i] = z;
    }
    lt_err err = {0};
    const double thetas[2] = {0.5, 0};
    for (int k = 0; k < 2; k++) {
        assert_int_equal(lt_bh_repulsion(y, N, thetas[k], 1, a, a + 2 * N, &err), 0);
        double z1 = 0, z2 = 0, num = 0, den = 0;
        for (int i = 0; i < N; i++) z1 += ex[2 * N + i], z2 += a[2 * N + i];
        for (int i = 0; i < 2 * N; i++) {
            double u = ex[i] / z1, v = a[i] / z2;
            num += (u - v) * (u - v), den += u * u;
        }
        double g = sqrt(num / den), ze = fabs(z2 / z1 - 1);
        print_message("Barnes-Hut repulsion, theta %g: gradient error %.2e, Z error %.2e\n", thetas[k], g, ze);
        /* Barnes-Hut with theta 0.5 is good to about 1e-2 on the forces and a few 1e-3 on Z. */
        const double tol = k == 0 ? 1e-2 : 1e-5, ztol = k == 0 ? 5e-3 : 1e-6;
        if (!(g < tol) || !(ze < ztol)) fail_msg("theta %g: gradient error %.2e, Z error %.2e", thetas[k], g, ze);
        assert_int_equal(lt_bh_repulsion(y, N, thetas[k], 2, b, b + 2 * N, &err), 0);
        assert_memory_equal(a, b, sizeof(double) * 3 * N);
    }
    free(y), free(ex), free(a), free(b);
}

static void test_knn_methods_agree(void **state)
{
    (void)state;
    const int n = 700, k = 15, dims[3] = {2, 7, 40};
    for (int t = 0; t < 3; t++) {
        int d = dims[t];
        float *x = malloc(sizeof(float) * n * d), *d1 = malloc(sizeof(float) * n * k), *d2 = malloc(sizeof(float) * n * k);
        int *i1 = malloc(sizeof(int) * n * k), *i2 = malloc(sizeof(int) * n * k);
        tu_fill_uniform(x, (size_t)n * d, -1, 1, 100 + t);
        lt_err err = {0};
        assert_int_equal(lt_knn_exact(x, n, d, k, 2, i1, d1, &err), 0);
        assert_int_equal(lt_knn_vptree(x, n, d, k, 2, 5, i2, d2, &err), 0);
        assert_memory_equal(i1, i2, sizeof(int) * n * k);
        assert_memory_equal(d1, d2, sizeof(float) * n * k);
        /* Against a direct check for one point: nothing outside the list is nearer than its last entry. */
        for (int j = 0; j < n; j++) {
            if (j == 3) continue;
            double s = 0;
            for (int a = 0; a < d; a++) s += ((double)x[3 * d + a] - x[j * d + a]) * ((double)x[3 * d + a] - x[j * d + a]);
            int in = 0;
            for (int q = 0; q < k; q++) in |= i1[3 * k + q] == j;
            if (!in) assert_true(s >= d1[3 * k + k - 1]);
        }
        free(x), free(d1), free(d2), free(i1), free(i2);
    }
}

/* Trustworthiness by its definition, with full sorts. */
static double trust_reference(const float *x, int dx, const float *y, int dy, int n, int k)
{
    double sum = 0;
    int *order = malloc(sizeof(int) * n), *rank = malloc(sizeof(int) * n);
    double *dd = malloc(sizeof(double) * n);
    for (int i = 0; i < n; i++) {
        for (int pass = 0; pass < 2; pass++) {
            const float *p = pass ? y : x;
            int dim = pass ? dy : dx;
            for (int j = 0; j < n; j++) {
                double s = 0;
                for (int a = 0; a < dim; a++) s += ((double)p[i * dim + a] - p[j * dim + a]) * ((double)p[i * dim + a] - p[j * dim + a]);
                dd[j] = j == i ? -1 : s;
                order[j] = j;
            }
            /* Insertion sort by (distance, index). */
            for (int a = 1; a < n; a++)
                for (int b = a; b > 0 && (dd[order[b]] < dd[order[b - 1]] ||
                                          (dd[order[b]] == dd[order[b - 1]] && order[b] < order[b - 1])); b--) {
                    int t = order[b];
                    order[b] = order[b - 1];
                    order[b - 1] = t;
                }
            if (pass == 0) {
                for (int a = 0; a < n; a++) rank[order[a]] = a; /* self is at 0, so rank 1 is the nearest */
            } else {
                for (int a = 1; a <= k; a++)
                    if (rank[order[a]] > k) sum += rank[order[a]] - k;
            }
        }
    }
    free(order), free(rank), free(dd);
    return 1 - 2.0 / (n * k * (2.0 * n - 3.0 * k - 1)) * sum;
}

static void test_trustworthiness_reference(void **state)
{
    (void)state;
    enum { N = 60, DX = 6 };
    float x[N * DX], y[N * 2];
    tu_fill_uniform(x, N * DX, 0, 1, 21);
    tu_fill_uniform(y, N * 2, 0, 1, 22);
    lt_err err = {0};
    for (int k = 1; k <= 12; k += 5) {
        double t, ref = trust_reference(x, DX, y, 2, N, k);
        assert_int_equal(lt_trustworthiness(x, DX, y, 2, N, k, 2, &t, &err), 0);
        if (fabs(t - ref) > 1e-12) fail_msg("k=%d: trustworthiness %.15f, reference %.15f", k, t, ref);
        assert_true(t < 0.95); /* an unrelated map is not trustworthy */
    }
    /* A map that is the data itself is perfectly trustworthy. */
    double t;
    for (int i = 0; i < N; i++) y[2 * i] = x[i * DX], y[2 * i + 1] = x[i * DX + 1];
    float x2[N * 2];
    memcpy(x2, y, sizeof x2);
    assert_int_equal(lt_trustworthiness(x2, 2, y, 2, N, 10, 1, &t, &err), 0);
    assert_true(t == 1.0);
    assert_int_equal(lt_trustworthiness(x2, 2, y, 2, 20, 10, 1, &t, &err), LT_EINVAL);
}

static void test_map_inverse(void **state)
{
    (void)state;
    float coords[8] = {0, 0, 1, 0, 0, 1, 1, 1}, codes[8] = {0, 0, 10, 0, 0, 10, 10, 10}, out[4];
    float q[4] = {1, 0, 0.5f, 0.5f};
    lt_err err = {0};
    assert_int_equal(lt_map_inverse_knn(coords, codes, 4, 2, q, 2, 4, out, &err), 0);
    /* On a point: that point's code; at the centre: the average. */
    assert_true(fabs(out[0] - 10) < 1e-3 && fabs(out[1]) < 1e-3);
    assert_true(fabs(out[2] - 5) < 1e-5 && fabs(out[3] - 5) < 1e-5);
    q[0] = NAN;
    assert_int_equal(lt_map_inverse_knn(coords, codes, 4, 2, q, 1, 4, out, &err), LT_EINVAL);
}

/* ---- the command line ---- */

static void check_png(const char *dir, const char *name)
{
    char path[4400];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    uint8_t *pix;
    int w, h;
    lt_err err = {0};
    if (lt_png_read_gray(path, &pix, &w, &h, &err)) fail_msg("%s", err.msg);
    assert_true(w > 100 && h > 80);
    free(pix);
}

static long count_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) fail_msg("cannot open %s", path);
    long n = 0;
    int c;
    while ((c = fgetc(f)) != EOF) n += c == '\n';
    fclose(f);
    return n;
}

static void test_cli(void **state)
{
    (void)state;
    char *dir = tu_mkdtemp(), out[16384], p[4400];
    lt_dataset ds;
    tu_make_dataset(&ds, 200, 28, 28, 9);
    tu_write_idx_split(dir, "train", &ds);
    tu_write_idx_split(dir, "t10k", &ds);
    int rc = tu_sh(out, sizeof out, "%s train --data %s --out %s/run --epochs 1 --batch 32 --val 40 --threads 2", LATENT_CLI, dir, dir);
    if (rc) fail_msg("train failed: %s", out);
    const char *ck = "run/model.safetensors";
    /* t-SNE map of the codes, with every output. */
    rc = tu_sh(out, sizeof out, "cd %s && %s embed %s --data . --method tsne --perplexity 10 --iters 300 --out tsne --threads 2 --json",
            dir, LATENT_CLI, ck);
    if (rc) fail_msg("embed tsne failed: %s", out);
    const char *keys[] = {"\"seconds\"", "\"kl\": 0.", "\"explained_variance\": null", "\"knn10\"", "\"trustworthiness\""};
    for (int i = 0; i < 5; i++)
        if (!strstr(out, keys[i])) fail_msg("embed --json lacks %s: %s", keys[i], out);
    snprintf(p, sizeof p, "%s/tsne", dir);
    check_png(p, "map.png");
    snprintf(p, sizeof p, "%s/tsne/coords.csv", dir);
    assert_int_equal(count_lines(p), 201);
    const char *files[] = {"map.svg", "scores.json", "map.safetensors", "projector/tensors.tsv", "projector/metadata.tsv",
                           "projector/sprite.png", "projector/projector_config.pbtxt"};
    for (int i = 0; i < 7; i++) {
        snprintf(p, sizeof p, "%s/tsne/%s", dir, files[i]);
        if (access(p, F_OK)) fail_msg("embed did not write %s", p);
    }
    snprintf(p, sizeof p, "%s/tsne/projector/metadata.tsv", dir);
    assert_int_equal(count_lines(p), 201);
    /* The FFT repulsion from the command line, and a bad choice of it. */
    rc = tu_sh(out, sizeof out, "cd %s && %s embed %s --data . --method tsne --repulsion fft --perplexity 10 --iters 100 --out tsnefft --threads 2 --json",
            dir, LATENT_CLI, ck);
    if (rc) fail_msg("embed --repulsion fft failed: %s", out);
    assert_non_null(strstr(out, "\"repulsion\": \"fft\""));
    assert_int_equal(tu_sh(out, sizeof out, "cd %s && %s embed %s --data . --method tsne --repulsion fmm --out x", dir, LATENT_CLI, ck), 2);
    assert_non_null(strstr(out, "--repulsion"));
    /* PCA of the raw pixels needs no checkpoint. */
    rc = tu_sh(out, sizeof out, "cd %s && %s embed - --input pixels --data . --method pca --out pca --json", dir, LATENT_CLI);
    if (rc) fail_msg("embed pca failed: %s", out);
    assert_non_null(strstr(out, "\"explained_variance\": 0."));
    assert_non_null(strstr(out, "\"kl\": null"));
    /* generate from both maps, on a grid and at given points; the latent manifold of a 2-D model. */
    rc = tu_sh(out, sizeof out, "cd %s && %s generate %s --map tsne --grid 3x4 --out gen.png --json", dir, LATENT_CLI, ck);
    if (rc) fail_msg("generate (t-SNE) failed: %s", out);
    check_png(dir, "gen.png");
    snprintf(p, sizeof p, "%s/gen.json", dir);
    if (access(p, F_OK)) fail_msg("generate wrote no side file: %s", out);
    rc = tu_sh(out, sizeof out, "cd %s && %s generate - --map pca --points '0,0;1.5,-2' --out pca.svg", dir, LATENT_CLI);
    if (rc) fail_msg("generate (PCA of pixels) failed: %s", out);
    rc = tu_sh(out, sizeof out, "cd %s && %s generate %s --map latent --data . --grid 4x4 --out manifold.png", dir, LATENT_CLI, ck);
    if (rc) fail_msg("generate --map latent failed: %s", out);
    check_png(dir, "manifold.png");
    rc = tu_sh(out, sizeof out, "cd %s && %s interpolate %s --data . --from 0 --to 5 --steps 6 --out interp.png", dir, LATENT_CLI, ck);
    if (rc) fail_msg("interpolate failed: %s", out);
    {
        snprintf(p, sizeof p, "%s/interp.png", dir);
        uint8_t *pix;
        int w, h;
        lt_err err = {0};
        assert_int_equal(lt_png_read_gray(p, &pix, &w, &h, &err), 0);
        assert_int_equal(w, 8 * (28 * 3 + 2) + 2); /* image I, 6 steps, image J */
        assert_int_equal(h, 28 * 3 + 4);
        free(pix);
    }
    /* Bad flags: one line naming the flag, exit 2; a missing map: exit 1, naming the file. */
    assert_int_equal(tu_sh(out, sizeof out, "cd %s && %s embed %s --data . --method tsne --perplexity 100 --out x", dir, LATENT_CLI, ck), 2);
    assert_non_null(strstr(out, "--perplexity 100"));
    assert_int_equal(tu_sh(out, sizeof out, "cd %s && %s embed %s --data . --method umap --out x", dir, LATENT_CLI, ck), 2);
    assert_non_null(strstr(out, "umap"));
    assert_int_equal(tu_sh(out, sizeof out, "cd %s && %s embed - --data . --method pca --out x", dir, LATENT_CLI), 2);
    assert_non_null(strstr(out, "--input pixels"));
    const char *bad_points[] = {"1,2;3", "a,b", "1;2", "", "1,2;;3,4", "1,2,3"};
    for (int i = 0; i < 6; i++) {
        assert_int_equal(tu_sh(out, sizeof out, "cd %s && %s generate %s --map tsne --points '%s' --out g.png", dir, LATENT_CLI, ck,
                            bad_points[i]), 2);
        if (!strstr(out, "--points")) fail_msg("bad --points '%s': %s", bad_points[i], out);
    }
    assert_int_equal(tu_sh(out, sizeof out, "cd %s && %s generate %s --map tsne --grid 3y3 --out g.png", dir, LATENT_CLI, ck), 2);
    assert_non_null(strstr(out, "--grid"));
    assert_int_equal(tu_sh(out, sizeof out, "cd %s && %s generate %s --map tsne --grid 3x3 --points 1,1 --out g.png", dir, LATENT_CLI, ck), 2);
    assert_int_equal(tu_sh(out, sizeof out, "cd %s && %s generate %s --map tsne --grid 3x3 --out g.jpg", dir, LATENT_CLI, ck), 2);
    assert_non_null(strstr(out, ".png or .svg"));
    assert_int_equal(tu_sh(out, sizeof out, "cd %s && %s generate %s --map nomap --grid 3x3 --out g.png", dir, LATENT_CLI, ck), 1);
    assert_non_null(strstr(out, "nomap/map.safetensors"));
    /* A map of latent codes needs its checkpoint; a corrupt map is refused. */
    assert_int_equal(tu_sh(out, sizeof out, "cd %s && %s generate - --map tsne --grid 2x2 --out g.png", dir, LATENT_CLI), 1);
    assert_non_null(strstr(out, "CHECKPOINT"));
    assert_int_equal(tu_sh(out, sizeof out, "cd %s && cp run/model.safetensors tsne/map.safetensors && %s generate %s --map tsne --grid 2x2 --out g.png",
                        dir, LATENT_CLI, ck), 1);
    assert_non_null(strstr(out, "not a map"));
    assert_int_equal(tu_sh(out, sizeof out, "cd %s && %s interpolate %s --data . --from 0 --to 200 --out i.png", dir, LATENT_CLI, ck), 2);
    assert_non_null(strstr(out, "--to"));
    snprintf(p, sizeof p, "%s/g.png", dir);
    assert_int_equal(access(p, F_OK), -1);
    lt_dataset_free(&ds);
    tu_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pca_plane),          cmocka_unit_test(test_tsne_clusters_and_threads),
        cmocka_unit_test(test_tsne_fft_clusters_and_threads), cmocka_unit_test(test_tsne_fft_gradient), cmocka_unit_test(test_tsne_bh_gradient),
        cmocka_unit_test(test_knn_methods_agree),  cmocka_unit_test(test_trustworthiness_reference),
        cmocka_unit_test(test_map_inverse),        cmocka_unit_test(test_cli),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    tu_release_threads();
    return rc;
}
