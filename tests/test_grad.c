/* Finite-difference gradient checks for every layer kernel, every loss and a
 * whole small autoencoder.
 *
 * Layers: for y = f(x, w, b), a fixed random projection R of y's shape gives a
 * scalar L = sum(R * y) (in double); the analytic gradients come from the
 * backward with dout = R, the numeric ones from central differences
 * (L(v+h) - L(v-h)) / (2h) on EVERY element of x, w and b. Both are compared as
 * whole vectors, ||a - n|| / max(||a||, ||n||), and both norms must be clearly
 * nonzero, so an analytic gradient of all zeros fails. Besides the values, the
 * kernel conventions are checked: parameter gradients are ADDED into dw/db, dinp
 * is WRITTEN (a stale value there is overwritten), and a NULL dinp or NULL dw/db
 * skips that work while the other gradients come out bit-identical.
 *
 * Losses: d(sum / total)/dy is compared with the dy the loss writes, with total
 * not equal to the element count (as for one chunk of a larger batch).
 *
 * Model: lt_net_train_step's batch gradient against finite differences of the
 * mean loss it returns, for every parameter, tensor by tensor, for batches that
 * fit one chunk and that span two (LT_CHUNK), and with dropout on (fixed seed
 * and step give a fixed mask). Two tiny autoencoders on 1x8x8 inputs: one with
 * ReLUs, as the mission's, where steps that flip a ReLU unit are detected and
 * replaced (one-sided differences, smaller steps), and one with sigmoids in
 * their place, smooth everywhere, where plain central differences hold for
 * every parameter. The batch of 40 is also checked against its two chunks run
 * as batches of their own, and for bit-identical results over thread counts. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "latent.h"
#include "nn/layers.h"
#include "nn/net.h"
#include "testutil.h"

/* Tolerances on ||a - n|| / max(||a||, ||n||). Observed worst here (x86-64,
 * OpenBLAS): layers 2e-5, BCE 7e-5, smooth model 4e-4, ReLU model 2e-3; with
 * 30 other seeds for the models' data and initialisation, 2.5e-3 and 1.3e-2.
 * The model checks are limited by the float round-off of the loss (more so
 * for the small steps taken near ReLU kinks); a wrong gradient (a sign, a
 * missing term or factor, a wrong chunk sum) showed errors of 0.08 to 2. */
#define TOL_LAYER 1e-4        /* conv, convt, dense, relu, sigmoid, dropout, mse, xent */
#define TOL_BCE 1e-3          /* steep near 0 and 1, so a smaller step and more curvature */
#define TOL_SMOOTH_MODEL 1e-2
#define TOL_RELU_MODEL 3e-2

/* Largest relative errors seen, per case, printed at the end of each test. */
static double worst_seen;

static float *falloc(size_t n)
{
    float *p = calloc(n ? n : 1, sizeof(float));
    assert_non_null(p);
    return p;
}

static double rel_err(const float *a, const float *n, size_t len)
{
    double d = 0.0, na = 0.0, nn = 0.0;
    for (size_t i = 0; i < len; i++) {
        double e = (double)a[i] - n[i];
        d += e * e;
        na += (double)a[i] * a[i];
        nn += (double)n[i] * n[i];
    }
    double m = fmax(sqrt(na), sqrt(nn));
    return m > 0.0 ? sqrt(d) / m : (d > 0.0 ? INFINITY : 0.0);
}

/* Compare an analytic gradient with a numeric one: both clearly nonzero, and
 * close as vectors. Returns the relative error. */
static double check_grad(const char *what, const float *analytic, const float *numeric, size_t len,
                         double min_norm, double tol)
{
    double na = tu_norm(analytic, len), nn = tu_norm(numeric, len);
    double r = rel_err(analytic, numeric, len);
    print_message("  %-34s len %4zu  |a| %.3e  |n| %.3e  rel %.2e\n", what, len, na, nn, r);
    if (!(nn > min_norm)) fail_msg("%s: numeric gradient is (nearly) zero: %g", what, nn);
    if (!(na > min_norm)) fail_msg("%s: analytic gradient is (nearly) zero: %g", what, na);
    if (!(r < tol)) fail_msg("%s: relative error %g >= %g", what, r, tol);
    if (r > worst_seen) worst_seen = r;
    return r;
}

/* ---- one layer: y = f(x, w, b) ---- */

typedef struct layer_case {
    const char *name;
    float *x, *w, *b;          /* w and b NULL (sizes 0) for layers without parameters */
    size_t nx, nw, nb, ny;
    float *y, *R;
    float *cols;               /* conv scratch; dense: W^T */
    float *scr;                /* dense: backward scratch (NULL: none) */
    int n;                     /* samples */
    lt_conv_geom g;            /* conv, convt */
    int nin, nout;             /* dense */
    float p;                   /* dropout */
    int train;                 /* dropout */
    float *mask;               /* dropout */
    void (*fwd)(struct layer_case *c);
    void (*bwd)(struct layer_case *c, float *dx, float *dw, float *db);
} layer_case;

static void conv_fwd(layer_case *c) { lt_conv2d_forward(c->y, c->x, c->w, c->b, c->n, &c->g, c->cols); }
static void conv_bwd(layer_case *c, float *dx, float *dw, float *db)
{
    lt_conv2d_backward(dx, dw, db, c->R, c->x, c->w, c->n, &c->g, c->cols, 0);
}
static void convt_fwd(layer_case *c) { lt_convt2d_forward(c->y, c->x, c->w, c->b, c->n, &c->g, c->cols); }
static void convt_bwd(layer_case *c, float *dx, float *dw, float *db)
{
    lt_convt2d_backward(dx, dw, db, c->R, c->x, c->w, c->n, &c->g, c->cols);
}
static void dense_fwd(layer_case *c)
{
    lt_dense_transpose(c->cols, c->w, c->nin, c->nout);
    lt_dense_forward(c->y, c->x, c->cols, c->b, c->n, c->nin, c->nout);
}
static void dense_bwd(layer_case *c, float *dx, float *dw, float *db)
{
    lt_dense_backward(dx, dw, db, c->R, c->x, c->w, c->n, c->nin, c->nout, c->scr);
}
static void relu_fwd(layer_case *c) { lt_relu_forward(c->y, c->x, c->ny); }
static void relu_bwd(layer_case *c, float *dx, float *dw, float *db)
{
    (void)dw, (void)db;
    if (dx) lt_relu_backward(dx, c->R, c->y, c->ny);
}
static void sigmoid_fwd(layer_case *c) { lt_sigmoid_forward(c->y, c->x, c->ny); }
static void sigmoid_bwd(layer_case *c, float *dx, float *dw, float *db)
{
    (void)dw, (void)db;
    if (dx) lt_sigmoid_backward(dx, c->R, c->y, c->ny);
}
static void dropout_fwd(layer_case *c)
{
    lt_dropout_forward(c->y, c->mask, c->x, c->n, c->nx / (size_t)c->n, c->p, c->train, 1234, 5, 0, 3);
}
static void dropout_bwd(layer_case *c, float *dx, float *dw, float *db)
{
    (void)dw, (void)db;
    if (dx) lt_dropout_backward(dx, c->R, c->mask, c->ny);
}

/* L = sum(R * y) at the current x, w, b. */
static double objective(layer_case *c)
{
    c->fwd(c);
    double s = 0.0;
    for (size_t i = 0; i < c->ny; i++) s += (double)c->R[i] * c->y[i];
    return s;
}

/* Central differences of the objective for every element of v. The step is the
 * one float actually took, (v+h) - (v-h) as stored. */
static void numeric_grad(layer_case *c, float *v, size_t len, float h, float *out)
{
    for (size_t i = 0; i < len; i++) {
        float v0 = v[i];
        v[i] = v0 + h;
        float hp = v[i];
        double lp = objective(c);
        v[i] = v0 - h;
        float hm = v[i];
        double lm = objective(c);
        v[i] = v0;
        out[i] = (float)((lp - lm) / ((double)hp - (double)hm));
    }
    c->fwd(c); /* leave y (saved activation for relu/sigmoid) at the unperturbed point */
}

/* Fill x, w, b, R and run every check on one case; returns the worst relative error. */
static double run_case(layer_case *c, float h, double tol)
{
    double worst = 0.0;
    print_message("%s\n", c->name);
    c->fwd(c);
    float *ax = falloc(c->nx), *aw = falloc(c->nw), *ab = falloc(c->nb);
    float *nx = falloc(c->nx), *nw = falloc(c->nw), *nb = falloc(c->nb);
    /* dinp is written, so a stale value must disappear. */
    for (size_t i = 0; i < c->nx; i++) ax[i] = 1000.0f;
    c->bwd(c, ax, c->w ? aw : NULL, c->b ? ab : NULL);

    numeric_grad(c, c->x, c->nx, h, nx);
    worst = fmax(worst, check_grad("dinp", ax, nx, c->nx, 1e-3, tol));
    if (c->w) {
        numeric_grad(c, c->w, c->nw, h, nw);
        worst = fmax(worst, check_grad("dw", aw, nw, c->nw, 1e-3, tol));
    }
    if (c->b) {
        numeric_grad(c, c->b, c->nb, h, nb);
        worst = fmax(worst, check_grad("db", ab, nb, c->nb, 1e-3, tol));
    }

    /* Accumulation: a second backward into the same dw/db doubles them; dinp is
     * written again, not added to. */
    float *dx2 = falloc(c->nx), *dw2 = falloc(c->nw), *db2 = falloc(c->nb);
    float *w2x = falloc(c->nw), *b2x = falloc(c->nb);
    memcpy(dw2, aw, sizeof(float) * c->nw);
    memcpy(db2, ab, sizeof(float) * c->nb);
    memcpy(dx2, ax, sizeof(float) * c->nx);
    c->bwd(c, dx2, c->w ? dw2 : NULL, c->b ? db2 : NULL);
    assert_memory_equal(dx2, ax, sizeof(float) * c->nx);
    for (size_t i = 0; i < c->nw; i++) w2x[i] = 2.0f * aw[i];
    for (size_t i = 0; i < c->nb; i++) b2x[i] = 2.0f * ab[i];
    if (c->w) assert_true(tu_close_ratio(dw2, w2x, c->nw, 1e-6, 1e-5) <= 1.0);
    if (c->b) assert_true(tu_close_ratio(db2, b2x, c->nb, 1e-6, 1e-5) <= 1.0);

    /* NULL dinp: dw/db identical to the full backward. NULL dw/db: dinp identical. */
    if (c->w || c->b) {
        memset(dw2, 0, sizeof(float) * c->nw);
        memset(db2, 0, sizeof(float) * c->nb);
        c->bwd(c, NULL, c->w ? dw2 : NULL, c->b ? db2 : NULL);
        assert_memory_equal(dw2, aw, sizeof(float) * c->nw);
        assert_memory_equal(db2, ab, sizeof(float) * c->nb);
        for (size_t i = 0; i < c->nx; i++) dx2[i] = -7.0f;
        c->bwd(c, dx2, NULL, NULL);
        assert_memory_equal(dx2, ax, sizeof(float) * c->nx);
        /* Only dw, only db. */
        memset(dw2, 0, sizeof(float) * c->nw);
        memset(db2, 0, sizeof(float) * c->nb);
        c->bwd(c, NULL, c->w ? dw2 : NULL, NULL);
        c->bwd(c, NULL, NULL, c->b ? db2 : NULL);
        assert_memory_equal(dw2, aw, sizeof(float) * c->nw);
        assert_memory_equal(db2, ab, sizeof(float) * c->nb);
        /* Nothing at all: no work, no crash. */
        c->bwd(c, NULL, NULL, NULL);
    }

    free(ax), free(aw), free(ab), free(nx), free(nw), free(nb);
    free(dx2), free(dw2), free(db2), free(w2x), free(b2x);
    return worst;
}

/* Each case draws its data from a seed made from its name (FNV-1a), so it sees
 * the same numbers whichever tests run before it. */
static uint64_t name_seed(const char *name)
{
    uint64_t h = 1469598103934665603u;
    for (const char *p = name; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211u;
    return h;
}

/* Allocate and fill the arrays of a case with sizes already set. */
static void case_alloc(layer_case *c, float xlo, float xhi)
{
    uint64_t next_seed = name_seed(c->name);
    c->x = falloc(c->nx);
    c->y = falloc(c->ny);
    c->R = falloc(c->ny);
    tu_fill_uniform(c->x, c->nx, xlo, xhi, next_seed++);
    tu_fill_uniform(c->R, c->ny, -1.0f, 1.0f, next_seed++);
    if (c->nw) {
        c->w = falloc(c->nw);
        tu_fill_uniform(c->w, c->nw, -0.5f, 0.5f, next_seed++);
    }
    if (c->nb) {
        c->b = falloc(c->nb);
        tu_fill_uniform(c->b, c->nb, -0.5f, 0.5f, next_seed++);
    }
}

static void case_free(layer_case *c)
{
    free(c->x), free(c->w), free(c->b), free(c->y), free(c->R), free(c->cols), free(c->mask), free(c->scr);
}

/* ---- conv2d ---- */

typedef struct geo { int c, h, w, oc, k, stride, pad, opad; int oh, ow; } geo;

static double conv_case(const char *name, geo q, int transposed, float h, double tol)
{
    layer_case c = {.name = name, .n = 2};
    c.g = (lt_conv_geom){.c = q.c, .h = q.h, .w = q.w, .oc = q.oc, .k = q.k, .stride = q.stride,
                         .pad = q.pad, .opad = q.opad};
    assert_int_equal(lt_conv_geom_init(&c.g, transposed), 0);
    /* The geometry is what PyTorch gives for these settings. */
    assert_int_equal(c.g.oh, q.oh);
    assert_int_equal(c.g.ow, q.ow);
    /* A case named for a kernel must reach it. */
    if (strstr(name, "(Winograd)")) assert_true(lt_wino_applies(&c.g));
    c.nx = (size_t)c.n * q.c * q.h * q.w;
    c.ny = (size_t)c.n * q.oc * c.g.oh * c.g.ow;
    c.nw = (size_t)q.c * q.oc * q.k * q.k;
    c.nb = (size_t)q.oc;
    c.cols = falloc(lt_conv_scratch_size(&c.g, transposed, c.n));
    c.fwd = transposed ? convt_fwd : conv_fwd;
    c.bwd = transposed ? convt_bwd : conv_bwd;
    case_alloc(&c, -1.0f, 1.0f);
    double r = run_case(&c, h, tol);
    case_free(&c);
    return r;
}

static void test_conv2d(void **state)
{
    (void)state;
    worst_seen = 0.0;
    /* name, {c, h, w, oc, k, stride, pad, opad, oh, ow} */
    conv_case("conv 1->2 5x7 k3 s1 p0", (geo){1, 5, 7, 2, 3, 1, 0, 0, 3, 5}, 0, 1e-2f, TOL_LAYER);
    conv_case("conv 2->3 5x7 k3 s2 p1", (geo){2, 5, 7, 3, 3, 2, 1, 0, 3, 4}, 0, 1e-2f, TOL_LAYER);
    conv_case("conv 3->2 6x5 k3 s1 p1", (geo){3, 6, 5, 2, 3, 1, 1, 0, 6, 5}, 0, 1e-2f, TOL_LAYER);
    /* Stride 2 without padding leaves the last row and column of 8x8 unread. */
    conv_case("conv 2->2 8x8 k3 s2 p0", (geo){2, 8, 8, 2, 3, 2, 0, 0, 3, 3}, 0, 1e-2f, TOL_LAYER);
    conv_case("conv 3->1 7x6 k2 s2 p0", (geo){3, 7, 6, 1, 2, 2, 0, 0, 3, 3}, 0, 1e-2f, TOL_LAYER);
    conv_case("conv 1->2 4x5 k5 s1 p2", (geo){1, 4, 5, 2, 5, 1, 2, 0, 4, 5}, 0, 1e-2f, TOL_LAYER);
    /* The mission's first layer. */
    conv_case("conv 1->8 7x7 k3 s2 p1 (mission)", (geo){1, 7, 7, 8, 3, 2, 1, 0, 4, 4}, 0, 1e-2f, TOL_LAYER);
    /* One input channel and a multiple of 8 outputs take the direct kernel:
     * the MNIST CNN's first layer, and one with a run-time kernel size. */
    conv_case("conv 1->32 6x6 k3 s1 p0 (direct, CNN)", (geo){1, 6, 6, 32, 3, 1, 0, 0, 4, 4}, 0, 1e-2f, TOL_LAYER);
    conv_case("conv 1->16 6x7 k5 s2 p2 (direct, k5)", (geo){1, 6, 7, 16, 5, 2, 2, 0, 3, 4}, 0, 1e-2f, TOL_LAYER);
    /* Wide, k 3, stride 1: Winograd's F(2x2, 3x3), with edge tiles cut on
     * both axes (odd output sizes) and both paddings it takes. */
    conv_case("conv 16->16 7x6 k3 s1 p0 (Winograd)", (geo){16, 7, 6, 16, 3, 1, 0, 0, 5, 4}, 0, 1e-2f, TOL_LAYER);
    conv_case("conv 16->24 5x7 k3 s1 p1 (Winograd)", (geo){16, 5, 7, 24, 3, 1, 1, 0, 5, 7}, 0, 1e-2f, TOL_LAYER);
    print_message("conv2d worst relative error %.2e\n", worst_seen);
}

static void test_convt2d(void **state)
{
    (void)state;
    worst_seen = 0.0;
    /* oh = (h-1)*stride - 2*pad + k + opad */
    conv_case("convt 2->1 4x4 k3 s2 p1 op1", (geo){2, 4, 4, 1, 3, 2, 1, 1, 8, 8}, 1, 1e-2f, TOL_LAYER);
    conv_case("convt 3->2 3x4 k3 s2 p1 op1", (geo){3, 3, 4, 2, 3, 2, 1, 1, 6, 8}, 1, 1e-2f, TOL_LAYER);
    conv_case("convt 3->2 3x4 k3 s2 p0 op0", (geo){3, 3, 4, 2, 3, 2, 0, 0, 7, 9}, 1, 1e-2f, TOL_LAYER);
    conv_case("convt 2->3 4x5 k3 s1 p1", (geo){2, 4, 5, 3, 3, 1, 1, 0, 4, 5}, 1, 1e-2f, TOL_LAYER);
    conv_case("convt 1->2 3x3 k3 s1 p0", (geo){1, 3, 3, 2, 3, 1, 0, 0, 5, 5}, 1, 1e-2f, TOL_LAYER);
    conv_case("convt 2->2 3x2 k2 s2 p0 op1", (geo){2, 3, 2, 2, 2, 2, 0, 1, 7, 5}, 1, 1e-2f, TOL_LAYER);
    conv_case("convt 2->1 2x3 k3 s3 p1 op2", (geo){2, 2, 3, 1, 3, 3, 1, 2, 6, 9}, 1, 1e-2f, TOL_LAYER);
    /* One output channel, k3 s2 p1 op1 takes the direct kernel (convt1.c):
     * the mission's last layer's shape, a non-square one, a single pixel. */
    conv_case("convt 8->1 5x6 k3 s2 p1 op1 (direct)", (geo){8, 5, 6, 1, 3, 2, 1, 1, 10, 12}, 1, 1e-2f, TOL_LAYER);
    conv_case("convt 3->1 7x2 k3 s2 p1 op1 (direct)", (geo){3, 7, 2, 1, 3, 2, 1, 1, 14, 4}, 1, 1e-2f, TOL_LAYER);
    conv_case("convt 2->1 1x1 k3 s2 p1 op1 (direct)", (geo){2, 1, 1, 1, 3, 2, 1, 1, 2, 2}, 1, 1e-2f, TOL_LAYER);
    /* 16 channels and rows of 10: two channel blocks through the 8x8
     * transposes, the second pixel block of a row overlapping the first. */
    conv_case("convt 16->1 3x10 k3 s2 p1 op1 (direct)", (geo){16, 3, 10, 1, 3, 2, 1, 1, 6, 20}, 1, 1e-2f, TOL_LAYER);
    print_message("convt2d worst relative error %.2e\n", worst_seen);
}

/* ---- dense ---- */

static void dense_case(const char *name, int n, int nin, int nout)
{
    layer_case c = {.name = name, .n = n, .nin = nin, .nout = nout};
    c.nx = (size_t)n * nin, c.ny = (size_t)n * nout, c.nw = (size_t)nin * nout, c.nb = (size_t)nout;
    c.fwd = dense_fwd, c.bwd = dense_bwd;
    case_alloc(&c, -1.0f, 1.0f);
    c.cols = falloc((size_t)nin * nout); /* W^T */
    const size_t ss = lt_dense_scratch_size(n, nin, nout);
    if (ss) c.scr = falloc(ss);
    run_case(&c, 1e-2f, TOL_LAYER);
    if (ss) {
        /* Wide: the slabs copied into the scratch give the same bits as the
         * products read in place. */
        float *dx0 = falloc(c.nx), *dw0 = falloc(c.nw), *dx1 = falloc(c.nx), *dw1 = falloc(c.nw);
        lt_dense_backward(dx0, dw0, NULL, c.R, c.x, c.w, n, nin, nout, NULL);
        lt_dense_backward(dx1, dw1, NULL, c.R, c.x, c.w, n, nin, nout, c.scr);
        assert_memory_equal(dx0, dx1, sizeof(float) * c.nx);
        assert_memory_equal(dw0, dw1, sizeof(float) * c.nw);
        assert_true(tu_norm(dw1, c.nw) > 0.0);
        free(dx0), free(dw0), free(dx1), free(dw1);
    }
    case_free(&c);
}

static void test_dense(void **state)
{
    (void)state;
    worst_seen = 0.0;
    dense_case("dense n3 5->4", 3, 5, 4);
    /* One or two outputs: the products' own narrow loop. */
    dense_case("dense n2 7->1", 2, 7, 1);
    /* More than 512 inputs: the input gradient and weight gradient products
     * are wider than one LIBXSMM kernel takes (slabs, the last 88 wide). */
    dense_case("dense n2 600->3", 2, 600, 3);
    /* And with more rows and outputs than one vector, through the scratch. */
    dense_case("dense n5 1100->12", 5, 1100, 12);
    print_message("dense worst relative error %.2e\n", worst_seen);
}

/* ---- element-wise ---- */

static void test_relu(void **state)
{
    (void)state;
    worst_seen = 0.0;
    const float h = 1e-2f;
    layer_case c = {.name = "relu 2x30", .n = 2, .nx = 60, .ny = 60};
    c.fwd = relu_fwd, c.bwd = relu_bwd;
    case_alloc(&c, -1.0f, 1.0f);
    /* Keep every input well away from the kink at 0 (more than 2h). */
    int pos = 0, neg = 0;
    for (size_t i = 0; i < c.nx; i++) {
        if (fabsf(c.x[i]) < 0.1f) c.x[i] += c.x[i] < 0.0f ? -0.1f : 0.1f;
        pos += c.x[i] > 0.0f, neg += c.x[i] < 0.0f;
    }
    assert_true(pos >= 10 && neg >= 10); /* both branches are exercised */
    run_case(&c, h, TOL_LAYER);
    case_free(&c);
    print_message("relu worst relative error %.2e\n", worst_seen);
}

static void test_sigmoid(void **state)
{
    (void)state;
    worst_seen = 0.0;
    layer_case c = {.name = "sigmoid 2x30", .n = 2, .nx = 60, .ny = 60};
    c.fwd = sigmoid_fwd, c.bwd = sigmoid_bwd;
    case_alloc(&c, -4.0f, 4.0f);
    run_case(&c, 1e-2f, TOL_LAYER);
    case_free(&c);
    print_message("sigmoid worst relative error %.2e\n", worst_seen);
}

static void test_dropout(void **state)
{
    (void)state;
    worst_seen = 0.0;
    /* Train mode: a fixed seed gives a fixed mask, so the layer is linear in x. */
    layer_case c = {.name = "dropout train p0.4 2x40", .n = 2, .nx = 80, .ny = 80, .p = 0.4f, .train = 1};
    c.fwd = dropout_fwd, c.bwd = dropout_bwd;
    case_alloc(&c, -1.0f, 1.0f);
    c.mask = falloc(c.nx);
    c.fwd(&c);
    int kept = 0, dropped = 0;
    for (size_t i = 0; i < c.nx; i++) {
        if (c.mask[i] == 0.0f) {
            dropped++;
        } else {
            assert_float_equal(c.mask[i], 1.0f / 0.6f, 1e-6);
            kept++;
        }
    }
    assert_true(kept >= 20 && dropped >= 15); /* the mask really masks */
    run_case(&c, 1e-2f, TOL_LAYER);

    /* The same seed, step and sample index give the same mask for one sample
     * run on its own (first = 1 selects the second sample's stream). */
    float *m1 = falloc(c.nx / 2), *y1 = falloc(c.nx / 2);
    lt_dropout_forward(y1, m1, c.x + c.nx / 2, 1, c.nx / 2, c.p, 1, 1234, 5, 1, 3);
    assert_memory_equal(m1, c.mask + c.nx / 2, sizeof(float) * (c.nx / 2));
    free(m1), free(y1);
    case_free(&c);

    /* Eval mode and p = 0: the identity, mask untouched; L = sum(R*x), so the
     * gradient is R itself (the backward the network uses there is a copy). */
    for (int mode = 0; mode < 2; mode++) {
        layer_case e = {.name = mode ? "dropout train p0 (identity)" : "dropout eval p0.4 (identity)",
                        .n = 2, .nx = 30, .ny = 30, .p = mode ? 0.0f : 0.4f, .train = mode};
        e.fwd = dropout_fwd;
        case_alloc(&e, -1.0f, 1.0f);
        e.mask = falloc(e.nx);
        for (size_t i = 0; i < e.nx; i++) e.mask[i] = 42.0f;
        e.fwd(&e);
        assert_memory_equal(e.y, e.x, sizeof(float) * e.nx);
        for (size_t i = 0; i < e.nx; i++) assert_true(e.mask[i] == 42.0f);
        float *ng = falloc(e.nx);
        print_message("%s\n", e.name);
        numeric_grad(&e, e.x, e.nx, 1e-2f, ng);
        check_grad("dinp = R", e.R, ng, e.nx, 1e-3, TOL_LAYER);
        free(ng);
        case_free(&e);
    }
    print_message("dropout worst relative error %.2e\n", worst_seen);
}

/* ---- losses: d(sum/total)/dy against the dy they write ---- */

typedef double (*loss_fn)(float *dy, const float *y, const void *t, size_t len, double total);
static double mse_w(float *dy, const float *y, const void *t, size_t len, double total)
{
    return lt_mse_loss(dy, y, t, len, total);
}
static double bce_w(float *dy, const float *y, const void *t, size_t len, double total)
{
    return lt_bce_loss(dy, y, t, len, total);
}
static int xent_classes = 5;
static double xent_w(float *dy, const float *y, const void *t, size_t len, double total)
{
    return lt_xent_loss(dy, y, t, (int)(len / (size_t)xent_classes), xent_classes, total);
}

static void loss_case(const char *name, loss_fn f, float *y, const void *t, size_t len, double total,
                      float h, double tol)
{
    print_message("%s\n", name);
    float *dy = falloc(len), *ng = falloc(len);
    for (size_t i = 0; i < len; i++) dy[i] = 1000.0f;
    double s = f(dy, y, t, len, total);
    /* dy may be NULL: the same sum. */
    assert_true(f(NULL, y, t, len, total) == s);
    assert_true(isfinite(s) && s > 0.0);
    for (size_t i = 0; i < len; i++) {
        float v0 = y[i];
        y[i] = v0 + h;
        float hp = y[i];
        double lp = f(NULL, y, t, len, total) / total;
        y[i] = v0 - h;
        float hm = y[i];
        double lm = f(NULL, y, t, len, total) / total;
        y[i] = v0;
        ng[i] = (float)((lp - lm) / ((double)hp - (double)hm));
    }
    check_grad("dy", dy, ng, len, 1e-3, tol);
    free(dy), free(ng);
}

static void test_losses(void **state)
{
    (void)state;
    worst_seen = 0.0;
    enum { N = 4, C = 5, LEN = N * C };
    float y[LEN], t[LEN], z[LEN];
    uint8_t labels[N] = {0, 3, 4, 1};
    /* total is larger than this chunk's element count, as for one chunk of a
     * bigger batch: the gradient is of the batch mean. */
    const double total = 3.0 * LEN;

    tu_fill_uniform(y, LEN, -1.0f, 2.0f, 71);
    tu_fill_uniform(t, LEN, 0.0f, 1.0f, 72);
    loss_case("mse", mse_w, y, t, LEN, total, 1e-2f, TOL_LAYER);
    /* Check the mean convention directly too: dy = 2 (y - t) / total. */
    float dy[LEN];
    lt_mse_loss(dy, y, t, LEN, total);
    for (int i = 0; i < LEN; i++) assert_float_equal(dy[i], 2.0 * (y[i] - t[i]) / total, 1e-6);

    tu_fill_uniform(y, LEN, 0.05f, 0.95f, 73);
    tu_fill_uniform(t, LEN, 0.0f, 1.0f, 74);
    t[0] = 0.0f, t[1] = 1.0f; /* hard labels too */
    loss_case("bce", bce_w, y, t, LEN, total, 1e-3f, TOL_BCE);

    tu_fill_uniform(z, LEN, -2.0f, 2.0f, 75);
    xent_classes = C;
    loss_case("softmax xent", xent_w, z, labels, LEN, (double)N * 2.0, 1e-2f, TOL_LAYER);
    /* Each sample's dy sums to zero (softmax minus one-hot). */
    lt_xent_loss(dy, z, labels, N, C, N);
    for (int i = 0; i < N; i++) {
        double s = 0.0;
        for (int c = 0; c < C; c++) s += dy[i * C + c];
        assert_true(fabs(s) < 1e-6);
    }
    print_message("losses worst relative error %.2e\n", worst_seen);
}

/* ---- a whole model through lt_net_train_step ---- */

/* The mission's kind of model in miniature: every layer kind, ReLUs included. */
#define RELU_SPEC                                                                                  \
    "encoder: conv(3,3,2,1) relu flatten dense(4) relu dropout dense(2);"                          \
    "decoder: dense(4) relu dense(48) relu unflatten(3,4,4) convt(1,3,2,1,1) sigmoid"
/* The same with sigmoids for ReLUs: a smooth loss, so central differences hold
 * for every parameter and the check can be tight. */
#define SMOOTH_SPEC                                                                                \
    "encoder: conv(3,3,2,1) sigmoid flatten dense(4) dropout dense(2);"                    \
    "decoder: dense(4) sigmoid dense(48) unflatten(3,4,4) convt(1,3,2,1,1) sigmoid"
#define MODEL_PARAMS (30 + 196 + 10 + 12 + 240 + 28)

/* Number of ReLU outputs in the model for n samples. */
static size_t relu_units(const lt_model *m, int n)
{
    size_t u = 0;
    for (int i = 0; i < m->n_layers; i++)
        if (m->layers[i].kind == LT_L_RELU) u += (size_t)n * m->layers[i].out_size;
    return u;
}

/* The on/off state of every ReLU output after the last forward. */
static void relu_pattern(const lt_model *m, const lt_workspace *ws, int n, unsigned char *buf)
{
    size_t k = 0;
    for (int i = 0; i < m->n_layers; i++) {
        if (m->layers[i].kind != LT_L_RELU) continue;
        const float *a = ws->act[i + 1];
        for (size_t e = 0; e < (size_t)n * m->layers[i].out_size; e++) buf[k++] = a[e] > 0.0f;
    }
}

typedef struct fd_ctx {
    lt_model *m;
    lt_workspace *ws;
    int n;
    uint64_t seed, step;
    unsigned char *base, *pat; /* ReLU patterns at the unperturbed point and now */
    size_t units;
} fd_ctx;

/* The mean loss with params[j] moved by `off` (*moved receives the move float
 * made); *flip is set when a ReLU unit changed state. */
static double loss_at(fd_ctx *c, size_t j, float off, double *moved, int *flip)
{
    float v0 = c->m->params[j];
    c->m->params[j] = v0 + off;
    *moved = (double)c->m->params[j] - v0;
    double l = lt_net_train_step(c->m, c->ws, c->n, c->seed, c->step, 1);
    c->m->params[j] = v0;
    relu_pattern(c->m, c->ws, c->n, c->pat);
    *flip = memcmp(c->pat, c->base, c->units) != 0;
    return l;
}

/* Derivative at 0 of the parabola through (0, l0), (d1, l1), (d2, l2). */
static double one_sided(double l0, double d1, double l1, double d2, double l2)
{
    return -l0 * (d1 + d2) / (d1 * d2) - l1 * d2 / (d1 * (d1 - d2)) - l2 * d1 / (d2 * (d2 - d1));
}

/* d(mean loss)/d params[j]. ReLU kinks: a step that flips a ReLU unit puts a
 * corner between the points and spoils the difference, so every step's ReLU
 * pattern is compared with the unperturbed one. Central difference when both
 * sides are clean, else a second-order one-sided difference on a clean side,
 * else the same with a step 4, 16 or 64 times smaller; returns 0 when nothing
 * is clean. */
static int numeric_param(fd_ctx *c, size_t j, float h, double l0, float *out, int *one_side)
{
    for (int level = 0; level < 4; level++, h /= 4.0f) {
        double dp, dm, dp2, dm2;
        int fp, fm, fp2, fm2;
        double lp = loss_at(c, j, h, &dp, &fp);
        double lm = loss_at(c, j, -h, &dm, &fm);
        if (!fp && !fm) {
            *out = (float)((lp - lm) / (dp - dm));
            return 1;
        }
        *one_side = 1;
        if (!fp) {
            double lp2 = loss_at(c, j, 2.0f * h, &dp2, &fp2);
            if (!fp2) {
                *out = (float)one_sided(l0, dp, lp, dp2, lp2);
                return 1;
            }
        }
        if (!fm) {
            double lm2 = loss_at(c, j, -2.0f * h, &dm2, &fm2);
            if (!fm2) {
                *out = (float)one_sided(l0, dm, lm, dm2, lm2);
                return 1;
            }
        }
    }
    return 0;
}

/* A model on 1x8x8 inputs with PyTorch's initialisation doubled: with it as it
 * is, the gradient reaching the first layers of this narrow net is so small
 * that the float round-off of the loss swamps its finite differences. */
static lt_model *make_model(const char *spec, float dropout)
{
    lt_err err = {0};
    lt_model *m = NULL;
    if (lt_model_create(&m, spec, 1, 8, 8, dropout, 17, &err)) fail_msg("lt_model_create: %s", err.msg);
    for (size_t j = 0; j < m->n_params; j++) m->params[j] *= 2.0f;
    return m;
}

typedef struct model_result {
    double worst, loss;
} model_result;

/* Analytic ws->grad against finite differences of the mean loss for every
 * parameter, tensor by tensor. max_skip: the fraction of a tensor's parameters
 * that may be left out for ReLU kinks on every side. */
static model_result model_check(const char *spec, float dropout, int n, float h, double tol,
                                double max_skip, float *grad_out)
{
    lt_err err = {0};
    lt_model *m = make_model(spec, dropout);
    lt_workspace *ws = NULL;
    int rc = lt_workspace_create(&ws, m, n, 1, &err);
    if (rc) fail_msg("lt_workspace_create: %s", err.msg);
    const size_t isz = 64, P = m->n_params;
    assert_int_equal(P, MODEL_PARAMS);
    tu_fill_uniform(ws->act[0], (size_t)n * isz, 0.0f, 1.0f, 900 + (uint64_t)n);
    tu_fill_uniform(ws->target, (size_t)n * isz, 0.0f, 1.0f, 901 + (uint64_t)n);
    float *x0 = falloc((size_t)n * isz), *t0 = falloc((size_t)n * isz);
    memcpy(x0, ws->act[0], sizeof(float) * n * isz);
    memcpy(t0, ws->target, sizeof(float) * n * isz);

    fd_ctx c = {.m = m, .ws = ws, .n = n, .seed = 5, .step = 11, .units = relu_units(m, n)};
    double loss = lt_net_train_step(m, ws, n, c.seed, c.step, 1);
    assert_true(isfinite(loss) && loss > 0.0);
    /* The step reads its input and target and leaves them as they were. */
    assert_memory_equal(ws->act[0], x0, sizeof(float) * n * isz);
    assert_memory_equal(ws->target, t0, sizeof(float) * n * isz);
    float *ga = falloc(P), *gn = falloc(P);
    memcpy(ga, ws->grad, sizeof(float) * P);

    /* The loss is the mean squared error of the reconstruction (without dropout,
     * lt_model_reconstruct gives the same output). */
    if (dropout == 0.0f) {
        float *y = falloc((size_t)n * isz);
        assert_int_equal(lt_model_reconstruct(m, x0, n, y, 1, &err), 0);
        double s = 0.0;
        for (size_t i = 0; i < (size_t)n * isz; i++) s += ((double)y[i] - t0[i]) * ((double)y[i] - t0[i]);
        assert_true(fabs(s / ((double)n * isz) - loss) <= 1e-6 * loss);
        free(y);
    }
    /* Deterministic: the same step again gives bit-identical results. */
    assert_true(lt_net_train_step(m, ws, n, c.seed, c.step, 1) == loss);
    assert_memory_equal(ws->grad, ga, sizeof(float) * P);

    c.base = malloc(c.units + 1), c.pat = malloc(c.units + 1);
    unsigned char *use = calloc(P, 1);
    assert_true(c.base && c.pat && use);
    relu_pattern(m, ws, n, c.base);
    size_t n_one_side = 0, n_skipped = 0;
    for (size_t j = 0; j < P; j++) {
        int os = 0;
        use[j] = (unsigned char)numeric_param(&c, j, h, loss, &gn[j], &os);
        n_one_side += os && use[j];
        n_skipped += !use[j];
    }
    print_message("  %s n=%d p=%.1f: %zu of %zu parameters by one-sided differences, %zu left out\n",
                  c.units ? "relu" : "smooth", n, dropout, n_one_side, P, n_skipped);

    /* Compare over the parameters that have a numeric value, tensor by tensor
     * and all together. */
    float *a = falloc(P), *b = falloc(P);
    double worst = 0.0, gnorm = tu_norm(ga, P);
    char what[96];
    for (int i = 0; i < m->n_layers; i++) {
        const lt_layer *l = &m->layers[i];
        for (int which = 0; which < 2 && l->w_len; which++) {
            size_t off = which ? l->b_off : l->w_off, len = which ? l->b_len : l->w_len, k = 0;
            for (size_t e = 0; e < len; e++)
                if (use[off + e]) a[k] = ga[off + e], b[k] = gn[off + e], k++;
            snprintf(what, sizeof what, "%s.%s (%zu/%zu)", l->name, which ? "bias" : "weight", k, len);
            if (!((double)(len - k) <= max_skip * (double)len))
                fail_msg("%s: too many parameters left out", what);
            /* Every tensor's gradient is a real share of the whole. */
            if (k) worst = fmax(worst, check_grad(what, a, b, k, 1e-3 * gnorm, tol));
        }
    }
    size_t k = 0;
    for (size_t j = 0; j < P; j++)
        if (use[j]) a[k] = ga[j], b[k] = gn[j], k++;
    snprintf(what, sizeof what, "all parameters (%zu/%zu)", k, P);
    worst = fmax(worst, check_grad(what, a, b, k, 1e-4, tol));
    if (grad_out) memcpy(grad_out, ga, sizeof(float) * P);

    free(a), free(b), free(c.base), free(c.pat), free(use);
    free(x0), free(t0), free(ga), free(gn);
    lt_workspace_free(ws);
    lt_model_free(m);
    return (model_result){worst, loss};
}

static void test_model_smooth(void **state)
{
    (void)state;
    worst_seen = 0.0;
    model_check(SMOOTH_SPEC, 0.0f, 3, 1e-2f, TOL_SMOOTH_MODEL, 0.0, NULL);
    model_check(SMOOTH_SPEC, 0.3f, 5, 1e-2f, TOL_SMOOTH_MODEL, 0.0, NULL);
    print_message("smooth model worst relative error %.2e\n", worst_seen);
}

static void test_model_relu(void **state)
{
    (void)state;
    worst_seen = 0.0;
    model_check(RELU_SPEC, 0.0f, 3, 1e-2f, TOL_RELU_MODEL, 0.5, NULL);
    model_check(RELU_SPEC, 0.3f, 5, 1e-2f, TOL_RELU_MODEL, 0.5, NULL);
    print_message("relu model worst relative error %.2e\n", worst_seen);
}

/* n = 40 spans two chunks (32 + 8): the batch gradient is the chunks' sum. */
static void two_chunks(const char *spec, double tol, double max_skip)
{
    enum { N = 40 };
    assert_true(N > LT_CHUNK && N < 2 * LT_CHUNK);
    lt_err err = {0};
    lt_model *m = make_model(spec, 0.0f);
    const size_t P = m->n_params, isz = 64;
    float *g40 = falloc(P);
    model_result r = model_check(spec, 0.0f, N, 1e-2f, tol, max_skip, g40);

    /* The same batch as a batch of 32 and one of 8 (each one chunk): the mean
     * gradient of 40 is (32 g32 + 8 g8) / 40, and likewise the loss. */
    float *x = falloc(N * isz), *t = falloc(N * isz);
    tu_fill_uniform(x, N * isz, 0.0f, 1.0f, 900 + N);
    tu_fill_uniform(t, N * isz, 0.0f, 1.0f, 901 + N);
    lt_workspace *a = NULL, *b = NULL;
    assert_int_equal(lt_workspace_create(&a, m, LT_CHUNK, 1, &err), 0);
    assert_int_equal(lt_workspace_create(&b, m, N - LT_CHUNK, 1, &err), 0);
    memcpy(a->act[0], x, sizeof(float) * LT_CHUNK * isz);
    memcpy(a->target, t, sizeof(float) * LT_CHUNK * isz);
    memcpy(b->act[0], x + LT_CHUNK * isz, sizeof(float) * (N - LT_CHUNK) * isz);
    memcpy(b->target, t + LT_CHUNK * isz, sizeof(float) * (N - LT_CHUNK) * isz);
    double la = lt_net_train_step(m, a, LT_CHUNK, 5, 11, 1);
    double lb = lt_net_train_step(m, b, N - LT_CHUNK, 5, 11, 1);
    double lsum = (LT_CHUNK * la + (N - LT_CHUNK) * lb) / N;
    assert_true(fabs(lsum - r.loss) <= 1e-9 * r.loss);
    float *gsum = falloc(P);
    for (size_t j = 0; j < P; j++)
        gsum[j] = (float)(((double)LT_CHUNK * a->grad[j] + (double)(N - LT_CHUNK) * b->grad[j]) / N);
    double gmax = 0.0;
    for (size_t j = 0; j < P; j++) gmax = fmax(gmax, fabs(g40[j]));
    double ratio = tu_close_ratio(g40, gsum, P, 1e-5 * gmax, 1e-4);
    print_message("  chunk sum vs batch of %d: close ratio %.3f (gmax %.3e)\n", N, ratio, gmax);
    assert_true(gmax > 0.0 && ratio <= 1.0);
    /* Without the second chunk's share, it would not match. */
    for (size_t j = 0; j < P; j++) gsum[j] = (float)((double)LT_CHUNK * a->grad[j] / N);
    assert_true(tu_close_ratio(g40, gsum, P, 1e-5 * gmax, 1e-4) > 1.0);

    /* Any thread count gives the bit-identical gradient. */
    lt_workspace *c = NULL;
    assert_int_equal(lt_workspace_create(&c, m, N, 1, &err), 0);
    memcpy(c->act[0], x, sizeof(float) * N * isz);
    memcpy(c->target, t, sizeof(float) * N * isz);
    double l1 = lt_net_train_step(m, c, N, 5, 11, 1);
    float *g1 = falloc(P);
    memcpy(g1, c->grad, sizeof(float) * P);
    double l3 = lt_net_train_step(m, c, N, 5, 11, 3);
    assert_true(l1 == l3);
    assert_memory_equal(g1, c->grad, sizeof(float) * P);
    assert_memory_equal(g1, g40, sizeof(float) * P);

    free(g1), free(gsum), free(g40), free(x), free(t);
    lt_workspace_free(a), lt_workspace_free(b), lt_workspace_free(c);
    lt_model_free(m);
}

static void test_model_two_chunks(void **state)
{
    (void)state;
    worst_seen = 0.0;
    two_chunks(SMOOTH_SPEC, TOL_SMOOTH_MODEL, 0.0);
    two_chunks(RELU_SPEC, TOL_RELU_MODEL, 0.5);
    print_message("two-chunk models worst relative error %.2e\n", worst_seen);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv2d),
        cmocka_unit_test(test_convt2d),
        cmocka_unit_test(test_dense),
        cmocka_unit_test(test_relu),
        cmocka_unit_test(test_sigmoid),
        cmocka_unit_test(test_dropout),
        cmocka_unit_test(test_losses),
        cmocka_unit_test(test_model_smooth),
        cmocka_unit_test(test_model_relu),
        cmocka_unit_test(test_model_two_chunks),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    tu_release_threads();
    return rc;
}
