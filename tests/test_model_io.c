/* Models: the architecture spec (parsing, shapes, parameter counts and every
 * kind of bad spec), checkpoints (round trips and every kind of bad file), and
 * the inference API (encode + decode == reconstruct, any thread count). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"
#include "latent.h"
#include "testutil.h"

/* A tiny autoencoder on 1x8x8 images:
 *   conv(4,3,2,1): 8x8 -> 4x4 (4 channels), flatten -> 64, dense(3)
 *   dense(64), unflatten(4,4,4), convt(1,3,2,1,1): 4x4 -> 8x8 */
#define SMALL_SPEC \
    "encoder: conv(4,3,2,1) relu flatten dense(3);" \
    "decoder: dense(64) relu unflatten(4,4,4) convt(1,3,2,1,1) sigmoid"

/* ---- parameter counts, written out from the layer sizes ---- */
static size_t conv_params(size_t in, size_t out, size_t k) { return out * in * k * k + out; }
static size_t dense_params(size_t in, size_t out) { return out * in + out; }

/* The default spec on 1x28x28: the convs take 28 -> 14 -> 7 -> 3, so the
 * flattened encoder output is 32*3*3 = 288. */
static size_t default_params(size_t d)
{
    size_t enc = conv_params(1, 8, 3) + conv_params(8, 16, 3) + conv_params(16, 32, 3) +
                 dense_params(288, 64) + dense_params(64, d);
    size_t dec = dense_params(d, 64) + dense_params(64, 288) + conv_params(32, 16, 3) +
                 conv_params(16, 8, 3) + conv_params(8, 1, 3);
    return enc + dec;
}

typedef struct fixture {
    char *dir;
    char path[4096];
} fixture;

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    if (!fx) return -1;
    fx->dir = tu_mkdtemp();
    if (!fx->dir) { free(fx); return -1; }
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    tu_rmtree(fx->dir);
    free(fx->dir);
    free(fx);
    return 0;
}

static const char *path_in(fixture *fx, const char *name)
{
    snprintf(fx->path, sizeof fx->path, "%s/%s", fx->dir, name);
    return fx->path;
}

static lt_model *make_default(int d, float dropout, uint64_t seed)
{
    char spec[1024];
    assert_int_equal(lt_default_spec(spec, sizeof spec, d), 0);
    lt_model *m = NULL;
    lt_err err = {0};
    int rc = lt_model_create(&m, spec, 1, 28, 28, dropout, seed, &err);
    if (rc) fail_msg("lt_model_create: %s", err.msg);
    assert_non_null(m);
    return m;
}

/* Reconstructions of a few fixed random images, for comparing parameters. */
static float *recon(lt_model *m, int c, int h, int w, int n)
{
    size_t sz = (size_t)c * h * w * n;
    float *x = malloc(sizeof(float) * sz), *y = malloc(sizeof(float) * sz);
    assert_non_null(x);
    assert_non_null(y);
    tu_fill_uniform(x, sz, 0.0f, 1.0f, 99);
    lt_err err = {0};
    int rc = lt_model_reconstruct(m, x, n, y, 1, &err);
    if (rc) fail_msg("lt_model_reconstruct: %s", err.msg);
    free(x);
    return y;
}

static void assert_contains(const char *msg, const char *needle)
{
    if (!needle) return;
    if (!strstr(msg, needle)) fail_msg("message \"%s\" does not contain \"%s\"", msg, needle);
}

/* ==================== spec parsing ==================== */

static void test_default_spec(void **state)
{
    (void)state;
    assert_int_equal(default_params(2), 49283);  /* the derivation above, spelled out once */
    const int ds[] = {2, 48};
    for (int i = 0; i < 2; i++) {
        lt_model *m = make_default(ds[i], 0.0f, 1);
        assert_int_equal(lt_model_num_params(m), default_params((size_t)ds[i]));
        assert_int_equal(lt_model_latent_dim(m), ds[i]);
        char spec[1024];
        assert_int_equal(lt_default_spec(spec, sizeof spec, ds[i]), 0);
        assert_string_equal(lt_model_spec(m), spec);
        lt_model_free(m);
    }
    /* A buffer too small for the spec is refused. */
    char tiny[16];
    assert_int_equal(lt_default_spec(tiny, sizeof tiny, 2), LT_EINVAL);
}

static void test_comments_and_newlines(void **state)
{
    (void)state;
    const char *commented =
        "# the default autoencoder, spread over lines\n"
        "encoder:   # 28 -> 14 -> 7 -> 3\n"
        "  conv(8, 3, 2, 1) relu\n"
        "\tconv( 16,3,2,1 ) relu   # second\n"
        "  conv(32,3,2,0)\n relu flatten\n"
        "  dense(64) relu dropout dense(2)   ;\n"
        "# between parts\n"
        "\n"
        "decoder:\n"
        "  dense(64) relu dropout dense(288) relu unflatten(32, 3, 3)\n"
        "  convt(16,3,2,0,0) relu convt(8,3,2,1,1) relu\n"
        "  convt(1,3,2,1,1) sigmoid   # back to 1x28x28\n"
        "# trailing comment without newline";
    lt_model *m = NULL;
    lt_err err = {0};
    int rc = lt_model_create(&m, commented, 1, 28, 28, 0.0f, 5, &err);
    if (rc) fail_msg("lt_model_create: %s", err.msg);
    assert_int_equal(lt_model_num_params(m), default_params(2));
    assert_int_equal(lt_model_latent_dim(m), 2);
    /* The spec is kept as given, comments included. */
    assert_string_equal(lt_model_spec(m), commented);
    /* Same layers, same seed: the same parameters as the default spec. */
    lt_model *ref = make_default(2, 0.0f, 5);
    float *a = recon(m, 1, 28, 28, 3), *b = recon(ref, 1, 28, 28, 3);
    assert_memory_equal(a, b, sizeof(float) * 3 * 28 * 28);
    free(a);
    free(b);
    lt_model_free(ref);
    lt_model_free(m);
}

static void test_small_spec(void **state)
{
    (void)state;
    lt_model *m = NULL;
    lt_err err = {0};
    int rc = lt_model_create(&m, SMALL_SPEC, 1, 8, 8, 0.0f, 3, &err);
    if (rc) fail_msg("lt_model_create: %s", err.msg);
    size_t want = conv_params(1, 4, 3) + dense_params(4 * 4 * 4, 3) + dense_params(3, 64) + conv_params(4, 1, 3);
    assert_int_equal(lt_model_num_params(m), want);
    assert_int_equal(lt_model_latent_dim(m), 3);
    /* An encoder that ends on a non-flat layer: the latent is its whole output. */
    lt_model *m2 = NULL;
    rc = lt_model_create(&m2, "encoder: conv(2,3,2,1); decoder: convt(1,3,2,1,1)", 1, 8, 8, 0.0f, 3, &err);
    if (rc) fail_msg("lt_model_create: %s", err.msg);
    assert_int_equal(lt_model_latent_dim(m2), 2 * 4 * 4);
    assert_int_equal(lt_model_num_params(m2), conv_params(1, 2, 3) + conv_params(2, 1, 3));
    lt_model_free(m2);
    lt_model_free(m);
}

/* Create must fail with LT_EINVAL, leave *out NULL, and the message must
 * contain both needles (either may be NULL). */
static void expect_bad_spec(const char *spec, int c, int h, int w, float dropout, const char *needle1,
                            const char *needle2)
{
    lt_model *m = (lt_model *)(uintptr_t)1;
    lt_err err = {0};
    int rc = lt_model_create(&m, spec, c, h, w, dropout, 1, &err);
    if (rc != LT_EINVAL) fail_msg("spec \"%s\": expected LT_EINVAL, got %d (%s)", spec, rc, err.msg);
    assert_null(m);
    assert_int_equal(err.code, LT_EINVAL);
    assert_contains(err.msg, needle1);
    assert_contains(err.msg, needle2);
    /* The same with a NULL err: the code alone, no crash. */
    assert_int_equal(lt_model_create(&m, spec, c, h, w, dropout, 1, NULL), LT_EINVAL);
    assert_null(m);
}

#define DEC_OK "decoder: dense(64) relu unflatten(4,4,4) convt(1,3,2,1,1) sigmoid"
#define ENC_OK "encoder: conv(4,3,2,1) relu flatten dense(3);"

/* Sizes from a hostile checkpoint must not overflow: bounded and refused. */
static void test_bad_huge_sizes(void **state)
{
    (void)state;
    expect_bad_spec("encoder: conv(100000000,1,1,0) flatten dense(3);" DEC_OK, 1, 8, 8, 0, "encoder.0", "up to");
    expect_bad_spec("encoder: convt(1,3,65536,0,0) flatten dense(3);" DEC_OK, 1, 28, 28, 0, "encoder.0",
                    "too large");
    expect_bad_spec("encoder: conv(60000,1,1,0) flatten dense(65536);" DEC_OK, 1, 28, 28, 0, "encoder.2",
                    "too large");
}

static void test_bad_unknown_layer(void **state)
{
    (void)state;
    expect_bad_spec("encoder: conv(4,3,2,1) relux flatten dense(3);" DEC_OK, 1, 8, 8, 0, "encoder.1", "'relux'");
    expect_bad_spec(ENC_OK "decoder: dense(64) tanh", 1, 8, 8, 0, "decoder.1", "'tanh'");
}

static void test_bad_arg_count(void **state)
{
    (void)state;
    expect_bad_spec("encoder: conv(4,3,2) relu flatten dense(3);" DEC_OK, 1, 8, 8, 0, "encoder.0",
                    "4 arguments");
    expect_bad_spec(ENC_OK "decoder: dense(64) relu unflatten(4,4,4) convt(1,3,2,1) sigmoid", 1, 8, 8, 0,
                    "decoder.3", "5 arguments");
    expect_bad_spec("encoder: conv(4,3,2,1) relu flatten dense(3,4);" DEC_OK, 1, 8, 8, 0, "encoder.3", "dense");
    expect_bad_spec("encoder: conv(4,3,2,1) relu(1) flatten dense(3);" DEC_OK, 1, 8, 8, 0, "encoder.1",
                    "no arguments");
    expect_bad_spec(ENC_OK "decoder: dense(64) relu unflatten(4,16) convt(1,3,2,1,1)", 1, 8, 8, 0,
                    "decoder.2", "unflatten");
    /* More arguments than any layer takes. */
    expect_bad_spec("encoder: conv(4,3,2,1,0,0) relu flatten dense(3);" DEC_OK, 1, 8, 8, 0, "encoder.0",
                    NULL);
}

static void test_bad_non_integer(void **state)
{
    (void)state;
    expect_bad_spec("encoder: conv(4,3.5,2,1) relu flatten dense(3);" DEC_OK, 1, 8, 8, 0, "encoder.0",
                    "argument 2");
    expect_bad_spec("encoder: conv(4,3,0,1) relu flatten dense(3);" DEC_OK, 1, 8, 8, 0, "encoder.0",
                    "positive");
    expect_bad_spec("encoder: conv(4,3,2,-1) relu flatten dense(3);" DEC_OK, 1, 8, 8, 0, "encoder.0",
                    "non-negative");
    expect_bad_spec("encoder: conv(4,3,2,1) relu flatten dense(2.5);" DEC_OK, 1, 8, 8, 0, "encoder.3", NULL);
    expect_bad_spec(ENC_OK "decoder: dense(64) relu unflatten(4,4,4.0001) convt(1,3,2,1,1)", 1, 8, 8, 0,
                    "decoder.2", NULL);
    expect_bad_spec("encoder: conv(4,x,2,1) relu flatten dense(3);" DEC_OK, 1, 8, 8, 0, "encoder.0",
                    "bad arguments");
    /* Beyond int: must be refused, not wrapped into some other size. */
    expect_bad_spec("encoder: conv(1e10,3,2,1) relu flatten dense(3);" DEC_OK, 1, 8, 8, 0, "encoder.0", NULL);
    expect_bad_spec("encoder: conv(4,nan,2,1) relu flatten dense(3);" DEC_OK, 1, 8, 8, 0, "encoder.0", NULL);
    expect_bad_spec("encoder: conv(4,3,2,1) relu flatten dense(inf);" DEC_OK, 1, 8, 8, 0, "encoder.3", NULL);
}

static void test_bad_dense_not_flat(void **state)
{
    (void)state;
    expect_bad_spec("encoder: conv(4,3,2,1) relu dense(3);" DEC_OK, 1, 8, 8, 0, "encoder.2", "4x4x4");
    expect_bad_spec("encoder: dense(3);" DEC_OK, 1, 8, 8, 0, "encoder.0", "flat");
}

static void test_bad_unflatten_size(void **state)
{
    (void)state;
    expect_bad_spec(ENC_OK "decoder: dense(64) relu unflatten(4,4,3) convt(1,3,2,1,1) sigmoid", 1, 8, 8, 0,
                    "decoder.2", "needs 48 values, its input has 64");
}

static void test_bad_conv_fit(void **state)
{
    (void)state;
    /* 8 + 2*1 < 11: the kernel is larger than the padded input. */
    expect_bad_spec("encoder: conv(4,11,1,1) relu flatten dense(3);" DEC_OK, 1, 8, 8, 0, "encoder.0",
                    "does not fit its input 1x8x8");
    /* Fits the first conv, not the second (4x4 input). */
    expect_bad_spec("encoder: conv(4,3,2,1) conv(4,7,1,1) flatten dense(3);" DEC_OK, 1, 8, 8, 0, "encoder.1",
                    "4x4x4");
}

static void test_bad_convt_outpad(void **state)
{
    (void)state;
    expect_bad_spec(ENC_OK "decoder: dense(64) relu unflatten(4,4,4) convt(1,3,2,1,2) sigmoid", 1, 8, 8, 0,
                    "decoder.3", "output padding");
    expect_bad_spec(ENC_OK "decoder: dense(64) relu unflatten(4,4,4) convt(1,3,1,1,1) sigmoid", 1, 8, 8, 0,
                    "decoder.3", "convt");
}

static void test_bad_parts(void **state)
{
    (void)state;
    /* Empty parts. */
    expect_bad_spec("encoder: ;" DEC_OK, 1, 8, 8, 0, "'encoder' has no layers", NULL);
    expect_bad_spec(ENC_OK "decoder:", 1, 8, 8, 0, "'decoder' has no layers", NULL);
    expect_bad_spec("encoder: # only a comment\n;" DEC_OK, 1, 8, 8, 0, "'encoder' has no layers", NULL);
    expect_bad_spec("", 1, 8, 8, 0, "no layers", NULL);
    expect_bad_spec("  # nothing\n", 1, 8, 8, 0, "no layers", NULL);
    /* Duplicate part. */
    expect_bad_spec(ENC_OK "encoder: relu;" DEC_OK, 1, 8, 8, 0, "'encoder' appears twice", NULL);
    /* Missing decoder, wrong order, wrong name, a third part. */
    expect_bad_spec("encoder: relu", 1, 8, 8, 0, "'decoder:'", NULL);
    expect_bad_spec("decoder: relu; encoder: relu", 1, 8, 8, 0, "'encoder:' then 'decoder:'", NULL);
    expect_bad_spec("encoder: relu; middle: relu", 1, 8, 8, 0, "'decoder:'", NULL);
    expect_bad_spec("encoder: relu; decoder: relu; extra: relu", 1, 8, 8, 0, "two parts", NULL);
    /* Missing ':' after a part name. */
    expect_bad_spec("encoder conv(4,3,2,1)", 1, 8, 8, 0, "':'", "'encoder'");
}

static void test_bad_output_shape(void **state)
{
    (void)state;
    /* outpad 0 gives 7x7, not 8x8. */
    expect_bad_spec(ENC_OK "decoder: dense(64) relu unflatten(4,4,4) convt(1,3,2,1,0) sigmoid", 1, 8, 8, 0,
                    "1x7x7", "1x8x8");
    /* The default spec on 32x32 images: 32 -> 16 -> 8 -> 3 -> ... -> 28. */
    char spec[1024];
    assert_int_equal(lt_default_spec(spec, sizeof spec, 2), 0);
    expect_bad_spec(spec, 1, 32, 32, 0, "1x28x28", "1x32x32");
    /* Right size, wrong channels. */
    expect_bad_spec(spec, 3, 28, 28, 0, "decoder", "3x28x28");
}

static void test_bad_dropout(void **state)
{
    (void)state;
    expect_bad_spec("encoder: conv(4,3,2,1) relu flatten dropout(1) dense(3);" DEC_OK, 1, 8, 8, 0, "encoder.3",
                    "[0, 1)");
    expect_bad_spec("encoder: conv(4,3,2,1) relu flatten dropout(-0.1) dense(3);" DEC_OK, 1, 8, 8, 0,
                    "encoder.3", "dropout");
    expect_bad_spec("encoder: conv(4,3,2,1) relu flatten dropout(nan) dense(3);" DEC_OK, 1, 8, 8, 0,
                    "encoder.3", "dropout");
    expect_bad_spec(ENC_OK "decoder: dense(64) dropout(0.5,0.5) relu unflatten(4,4,4) convt(1,3,2,1,1)", 1, 8, 8,
                    0, "decoder.1", "dropout");
    /* The model's own dropout probability. */
    expect_bad_spec(SMALL_SPEC, 1, 8, 8, 1.0f, "dropout", NULL);
    expect_bad_spec(SMALL_SPEC, 1, 8, 8, -0.5f, "dropout", NULL);
    /* A good one is accepted, and dropout(p) in the spec is allowed. */
    lt_model *m = NULL;
    lt_err err = {0};
    assert_int_equal(lt_model_create(&m, "encoder: flatten dropout(0.25) dense(3);"
                                         "decoder: dense(64) dropout unflatten(1,8,8)", 1, 8, 8, 0.5f, 1, &err), 0);
    assert_non_null(m);
    lt_model_free(m);
}

static void test_bad_garbage(void **state)
{
    (void)state;
    expect_bad_spec("encoder: conv(4,3,2,1) @ relu flatten dense(3);" DEC_OK, 1, 8, 8, 0, "'encoder'", "'@'");
    expect_bad_spec("encoder: conv(4,3,2,1 relu flatten dense(3);" DEC_OK, 1, 8, 8, 0, "encoder.0",
                    "bad arguments");
    expect_bad_spec("$encoder: relu", 1, 8, 8, 0, "part name", NULL);
    expect_bad_spec(ENC_OK DEC_OK ";;", 1, 8, 8, 0, "part name", NULL);
    /* Non-positive input shape. */
    expect_bad_spec(SMALL_SPEC, 0, 8, 8, 0, "0x8x8", NULL);
}

static void test_summary(void **state)
{
    (void)state;
    lt_model *m = make_default(2, 0.0f, 1);
    char buf[8192];
    assert_int_equal(lt_model_summary(m, buf, sizeof buf), 0);
    char name[32];
    /* encoder: 11 layers (encoder.0 .. encoder.10), decoder: 12. Check each
     * line as "name " so that "encoder.1" is not found inside "encoder.10". */
    for (int i = 0; i < 11; i++) {
        snprintf(name, sizeof name, "\nencoder.%d ", i);
        assert_contains(buf, name);
    }
    for (int i = 0; i < 12; i++) {
        snprintf(name, sizeof name, "\ndecoder.%d ", i);
        assert_contains(buf, name);
    }
    assert_null(strstr(buf, "encoder.11 "));
    assert_null(strstr(buf, "decoder.12 "));
    char total[64];
    snprintf(total, sizeof total, "total %zu parameters", default_params(2));
    assert_contains(buf, total);
    assert_contains(buf, "latent size 2");
    assert_contains(buf, "32x3x3");  /* encoder.5's output */
    /* Too small a buffer is refused. */
    char small[64];
    assert_int_equal(lt_model_summary(m, small, sizeof small), LT_EINVAL);
    lt_model_free(m);
}

/* ==================== checkpoints ==================== */

static void round_trip(fixture *fx, lt_model *m, int c, int h, int w)
{
    const char *path = path_in(fx, "model.safetensors");
    lt_err err = {0};
    int rc = lt_model_save(m, path, &err);
    if (rc) fail_msg("lt_model_save: %s", err.msg);
    lt_model *l = NULL;
    rc = lt_model_load(&l, path, &err);
    if (rc) fail_msg("lt_model_load: %s", err.msg);
    assert_non_null(l);
    assert_string_equal(lt_model_spec(l), lt_model_spec(m));
    assert_int_equal(lt_model_latent_dim(l), lt_model_latent_dim(m));
    assert_int_equal(lt_model_num_params(l), lt_model_num_params(m));
    assert_true(lt_model_dropout(l) == lt_model_dropout(m));
    const int n = 4;
    float *a = recon(m, c, h, w, n), *b = recon(l, c, h, w, n);
    assert_memory_equal(a, b, sizeof(float) * (size_t)n * c * h * w);
    /* Loading gives m's parameters, not a fresh initialisation (load builds with seed 0). */
    lt_model *fresh = NULL;
    assert_int_equal(lt_model_create(&fresh, lt_model_spec(m), c, h, w, lt_model_dropout(m), 0, &err), 0);
    float *f = recon(fresh, c, h, w, n);
    assert_true(memcmp(a, f, sizeof(float) * (size_t)n * c * h * w) != 0);
    free(f);
    lt_model_free(fresh);
    free(a);
    free(b);
    lt_model_free(l);
}

static void test_checkpoint_round_trip(void **state)
{
    fixture *fx = *state;
    lt_model *m = make_default(2, 0.0f, 7);
    round_trip(fx, m, 1, 28, 28);
    lt_model_free(m);
}

static void test_checkpoint_round_trip_nondefault(void **state)
{
    fixture *fx = *state;
    lt_model *m = make_default(5, 0.1f, 11);
    round_trip(fx, m, 1, 28, 28);
    lt_model_free(m);
    /* A custom spec with comments on a non-square, multi-channel input. */
    const char *spec = "# tiny\nencoder: conv(4,3,2,1) relu # down\n flatten dense(3) ;\n"
                       "decoder: dense(96) relu unflatten(4,4,6) convt(2,3,2,1,1) sigmoid";
    lt_err err = {0};
    int rc = lt_model_create(&m, spec, 2, 8, 12, 0.123456789f, 13, &err); /* not exact in 6 digits */
    if (rc) fail_msg("lt_model_create: %s", err.msg);
    round_trip(fx, m, 2, 8, 12);
    lt_model_free(m);
}

static void test_save_bad_path(void **state)
{
    fixture *fx = *state;
    lt_model *m = make_default(2, 0.0f, 1);
    lt_err err = {0};
    const char *path = path_in(fx, "no/such/dir/model.safetensors");
    assert_int_equal(lt_model_save(m, path, &err), LT_EIO);
    assert_contains(err.msg, "no/such/dir");
    lt_model_free(m);
}

/* A valid checkpoint rewritten with one change. */
typedef struct variant {
    const char *drop_meta;              /* leave this metadata key out */
    const char *meta_key, *meta_val;    /* replace (or add) this key */
    const char *drop_tensor;            /* leave this tensor out */
    const char *reshape_tensor;         /* give this tensor shape new_shape */
    int new_rank;
    int64_t new_shape[4];
    const char *f64_tensor;             /* store this tensor as F64 */
    const char *extra_tensor;           /* add a 4-element F32 tensor of this name */
} variant;

static const char *write_variant(fixture *fx, const char *name, const variant *v)
{
    /* The source: a saved default model. */
    char src[4096];
    snprintf(src, sizeof src, "%s/good.safetensors", fx->dir);
    lt_model *m = make_default(2, 0.0f, 3);
    lt_err err = {0};
    assert_int_equal(lt_model_save(m, src, &err), 0);
    lt_model_free(m);
    lt_st_file f;
    int rc = lt_st_read(src, &f, &err);
    if (rc) fail_msg("lt_st_read: %s", err.msg);

    lt_st_entry *e = calloc((size_t)f.n + 1, sizeof *e);
    const char **meta = calloc((size_t)f.n_meta * 2 + 2, sizeof *meta);
    float *zeros = calloc(1 << 16, sizeof(float)); /* data for changed tensors */
    assert_non_null(e);
    assert_non_null(meta);
    assert_non_null(zeros);
    int n = 0, nm = 0, found = 0;
    for (int i = 0; i < f.n; i++) {
        const lt_st_tensor *t = &f.tensors[i];
        if (v->drop_tensor && !strcmp(t->name, v->drop_tensor)) { found++; continue; }
        e[n] = (lt_st_entry){.name = t->name, .dtype = t->dtype, .rank = t->rank, .shape = t->shape, .data = t->data};
        if (v->reshape_tensor && !strcmp(t->name, v->reshape_tensor)) {
            e[n].rank = v->new_rank, e[n].shape = v->new_shape, e[n].data = zeros;
            found++;
        }
        if (v->f64_tensor && !strcmp(t->name, v->f64_tensor)) {
            assert_true(t->nbytes <= sizeof(float) << 15);
            e[n].dtype = LT_DT_F64, e[n].data = zeros;
            found++;
        }
        n++;
    }
    static const int64_t four[1] = {4};
    if (v->extra_tensor) {
        e[n++] = (lt_st_entry){.name = v->extra_tensor, .dtype = LT_DT_F32, .rank = 1, .shape = four, .data = zeros};
        found++;
    }
    int replaced = 0;
    for (int i = 0; i < f.n_meta; i++) {
        const char *k = f.meta_keys[i], *val = f.meta_vals[i];
        if (v->drop_meta && !strcmp(k, v->drop_meta)) { found++; continue; }
        if (v->meta_key && !strcmp(k, v->meta_key)) val = v->meta_val, replaced = 1, found++;
        meta[2 * nm] = k, meta[2 * nm + 1] = val, nm++;
    }
    if (v->meta_key && !replaced) meta[2 * nm] = v->meta_key, meta[2 * nm + 1] = v->meta_val, nm++, found++;
    assert_true(found >= 1);  /* the variant changed something */

    const char *dst = path_in(fx, name);
    rc = lt_st_write(dst, e, n, meta, nm, &err);
    if (rc) fail_msg("lt_st_write: %s", err.msg);
    free(zeros);
    free(meta);
    free(e);
    lt_st_free(&f);
    return dst;
}

/* Loading must fail with code, leave *out NULL, and name the file and the needles. */
static void expect_bad_load(const char *path, int code, const char *needle1, const char *needle2)
{
    lt_model *m = (lt_model *)(uintptr_t)1;
    lt_err err = {0};
    int rc = lt_model_load(&m, path, &err);
    if (rc != code) fail_msg("%s: expected %d, got %d (%s)", path, code, rc, err.msg);
    assert_null(m);
    assert_int_equal(err.code, code);
    assert_contains(err.msg, path);
    assert_contains(err.msg, needle1);
    assert_contains(err.msg, needle2);
}

static void test_load_unchanged_variant(void **state)
{
    /* The crafting itself leaves a loadable file when it only rewrites a key
     * with its own value, so the failures below come from each change alone. */
    fixture *fx = *state;
    variant v = {.meta_key = "latent.format", .meta_val = "1"};
    const char *path = write_variant(fx, "same.safetensors", &v);
    lt_model *m = NULL;
    lt_err err = {0};
    int rc = lt_model_load(&m, path, &err);
    if (rc) fail_msg("lt_model_load: %s", err.msg);
    lt_model_free(m);
}

static void test_load_missing_meta(void **state)
{
    fixture *fx = *state;
    const char *keys[] = {"latent.spec", "latent.format", "latent.input", "latent.dropout"};
    for (int i = 0; i < 4; i++) {
        variant v = {.drop_meta = keys[i]};
        char name[64];
        snprintf(name, sizeof name, "nometa%d.safetensors", i);
        const char *path = write_variant(fx, name, &v);
        char want[64];
        snprintf(want, sizeof want, "'%s' is missing", keys[i]);
        expect_bad_load(path, LT_EFORMAT, want, NULL);
    }
}

static void test_load_bad_format(void **state)
{
    fixture *fx = *state;
    variant v = {.meta_key = "latent.format", .meta_val = "99"};
    expect_bad_load(write_variant(fx, "fmt.safetensors", &v), LT_EFORMAT, "'99'", "not supported");
}

static void test_load_bad_input(void **state)
{
    fixture *fx = *state;
    const char *bad[] = {"1,28", "1,28,28,1", "a,b,c", "1x28x28", "1,28,28 "};
    for (int i = 0; i < 5; i++) {
        variant v = {.meta_key = "latent.input", .meta_val = bad[i]};
        char want[64];
        snprintf(want, sizeof want, "latent.input '%s'", bad[i]);
        expect_bad_load(write_variant(fx, "input.safetensors", &v), LT_EFORMAT, want, NULL);
    }
    /* Well-formed but impossible shapes: refused by the model, still EFORMAT. */
    variant v0 = {.meta_key = "latent.input", .meta_val = "0,28,28"};
    expect_bad_load(write_variant(fx, "input0.safetensors", &v0), LT_EFORMAT, "0x28x28", NULL);
    variant v32 = {.meta_key = "latent.input", .meta_val = "1,32,32"};
    expect_bad_load(write_variant(fx, "input32.safetensors", &v32), LT_EFORMAT, "1x32x32", "1x28x28");
    /* Bad dropout. */
    variant vd = {.meta_key = "latent.dropout", .meta_val = "lots"};
    expect_bad_load(write_variant(fx, "drop.safetensors", &vd), LT_EFORMAT, "latent.dropout 'lots'", NULL);
    variant vd1 = {.meta_key = "latent.dropout", .meta_val = "1.5"};
    expect_bad_load(write_variant(fx, "drop1.safetensors", &vd1), LT_EFORMAT, "dropout", NULL);
}

static void test_load_missing_tensor(void **state)
{
    fixture *fx = *state;
    variant v = {.drop_tensor = "decoder.10.bias"};
    expect_bad_load(write_variant(fx, "missing.safetensors", &v), LT_EFORMAT, "'decoder.10.bias'", "missing");
    variant v0 = {.drop_tensor = "encoder.0.weight"};
    expect_bad_load(write_variant(fx, "missing0.safetensors", &v0), LT_EFORMAT, "'encoder.0.weight'", "missing");
}

static void test_load_wrong_shape(void **state)
{
    fixture *fx = *state;
    variant v = {.reshape_tensor = "encoder.0.weight", .new_rank = 4, .new_shape = {8, 1, 3, 2}};
    expect_bad_load(write_variant(fx, "shape.safetensors", &v), LT_EFORMAT, "'encoder.0.weight'",
                    "shape [8,1,3,2] but the spec needs [8,1,3,3]");
    /* Same element count, transposed (a Linear weight stored [in, out]). */
    variant vt = {.reshape_tensor = "decoder.3.weight", .new_rank = 2, .new_shape = {64, 288}};
    expect_bad_load(write_variant(fx, "shape_t.safetensors", &vt), LT_EFORMAT, "'decoder.3.weight'",
                    "[64,288] but the spec needs [288,64]");
    /* Wrong rank. */
    variant vr = {.reshape_tensor = "decoder.0.bias", .new_rank = 2, .new_shape = {64, 1}};
    expect_bad_load(write_variant(fx, "shape_r.safetensors", &vr), LT_EFORMAT, "'decoder.0.bias'",
                    "[64,1] but the spec needs [64]");
    /* A scalar. */
    variant vs = {.reshape_tensor = "decoder.0.bias", .new_rank = 0};
    expect_bad_load(write_variant(fx, "shape_s.safetensors", &vs), LT_EFORMAT, "'decoder.0.bias'",
                    "shape [] but the spec needs [64]");
}

static void test_load_wrong_dtype(void **state)
{
    fixture *fx = *state;
    variant v = {.f64_tensor = "encoder.7.bias"};
    expect_bad_load(write_variant(fx, "f64.safetensors", &v), LT_EFORMAT, "'encoder.7.bias'", "F64");
}

static void test_load_extra_tensor(void **state)
{
    fixture *fx = *state;
    variant v = {.extra_tensor = "encoder.1.weight"};  /* a ReLU has no parameters */
    expect_bad_load(write_variant(fx, "extra.safetensors", &v), LT_EFORMAT, "'encoder.1.weight'",
                    "does not belong");
    variant v2 = {.extra_tensor = "optimizer.step"};
    expect_bad_load(write_variant(fx, "extra2.safetensors", &v2), LT_EFORMAT, "'optimizer.step'", NULL);
}

static void test_load_bad_spec(void **state)
{
    fixture *fx = *state;
    variant v = {.meta_key = "latent.spec", .meta_val = "encoder: conv(8,3,2,1) bogus; decoder: relu"};
    expect_bad_load(write_variant(fx, "spec.safetensors", &v), LT_EFORMAT, "encoder.1", "'bogus'");
    variant v2 = {.meta_key = "latent.spec", .meta_val = "encoder: relu"};
    expect_bad_load(write_variant(fx, "spec2.safetensors", &v2), LT_EFORMAT, "'decoder:'", NULL);
    /* A valid spec that does not match the tensors (latent 3 instead of 2). */
    char spec[1024];
    assert_int_equal(lt_default_spec(spec, sizeof spec, 3), 0);
    variant v3 = {.meta_key = "latent.spec", .meta_val = spec};
    expect_bad_load(write_variant(fx, "spec3.safetensors", &v3), LT_EFORMAT, "'encoder.10.weight'",
                    "[2,64] but the spec needs [3,64]");
    /* A short spec asking for a huge model is refused before anything the
     * size of the model is allocated (found by fuzz_checkpoint). */
    variant v4 = {.meta_key = "latent.spec",
                  .meta_val = "encoder: flatten dense(65536) dense(4000) dense(2); decoder: dense(784) unflatten(1,28,28)"};
    expect_bad_load(write_variant(fx, "huge.safetensors", &v4), LT_EFORMAT, "parameters but the file has only", NULL);
}

static void test_load_truncated(void **state)
{
    fixture *fx = *state;
    char good[4096];
    snprintf(good, sizeof good, "%s/good.safetensors", fx->dir);
    lt_model *m = make_default(2, 0.0f, 3);
    lt_err err = {0};
    assert_int_equal(lt_model_save(m, good, &err), 0);
    lt_model_free(m);
    FILE *fp = fopen(good, "rb");
    assert_non_null(fp);
    assert_int_equal(fseek(fp, 0, SEEK_END), 0);
    long size = ftell(fp);
    assert_true(size > 4 * (long)default_params(2));
    rewind(fp);
    char *bytes = malloc((size_t)size);
    assert_non_null(bytes);
    assert_int_equal(fread(bytes, 1, (size_t)size, fp), (size_t)size);
    fclose(fp);
    const size_t cuts[] = {(size_t)size / 2, (size_t)size - 1, 100, 4};
    for (int i = 0; i < 4; i++) {
        char *path = tu_write(fx->dir, "cut.safetensors", bytes, cuts[i]);
        expect_bad_load(path, LT_EFORMAT, NULL, NULL);
        free(path);
    }
    free(bytes);
}

static void test_load_missing_file(void **state)
{
    fixture *fx = *state;
    const char *path = path_in(fx, "nope.safetensors");
    expect_bad_load(path, LT_EIO, NULL, NULL);
    /* A directory is not a checkpoint either. */
    expect_bad_load(fx->dir, LT_EIO, NULL, NULL);
}

/* ==================== inference ==================== */

static void check_inference(int n)
{
    lt_model *m = make_default(2, 0.25f, 21);
    const size_t isz = 28 * 28, d = 2;
    float *x = malloc(sizeof(float) * isz * n);
    float *z[2], *y[2], *r[2];
    assert_non_null(x);
    tu_fill_uniform(x, isz * n, 0.0f, 1.0f, (uint64_t)n);
    lt_err err = {0};
    for (int t = 0; t < 2; t++) {
        z[t] = malloc(sizeof(float) * d * n);
        y[t] = malloc(sizeof(float) * isz * n);
        r[t] = malloc(sizeof(float) * isz * n);
        assert_non_null(z[t]);
        assert_non_null(y[t]);
        assert_non_null(r[t]);
        assert_int_equal(lt_model_encode(m, x, n, z[t], t + 1, &err), 0);
        assert_int_equal(lt_model_decode(m, z[t], n, y[t], t + 1, &err), 0);
        assert_int_equal(lt_model_reconstruct(m, x, n, r[t], t + 1, &err), 0);
        /* encode then decode is reconstruct, bit for bit. */
        assert_memory_equal(y[t], r[t], sizeof(float) * isz * n);
    }
    /* Any thread count gives the same bits. */
    assert_memory_equal(z[0], z[1], sizeof(float) * d * n);
    assert_memory_equal(r[0], r[1], sizeof(float) * isz * n);
    /* Outputs are real: finite latents that differ between images, sigmoid
     * outputs in [0, 1], and the last image (in the last batch) was computed. */
    for (size_t i = 0; i < d * n; i++) assert_true(z[0][i] == z[0][i] && z[0][i] - z[0][i] == 0.0f);
    for (size_t i = 0; i < isz * n; i++) assert_true(r[0][i] >= 0.0f && r[0][i] <= 1.0f);
    assert_true(z[0][0] != z[0][d * (n - 1)] || z[0][1] != z[0][d * (n - 1) + 1]);
    /* Each image is reconstructed from its own latent: decoding image n-1's
     * latent alone gives that image's row of the batch result. */
    float *one = malloc(sizeof(float) * isz);
    assert_non_null(one);
    assert_int_equal(lt_model_decode(m, z[0] + d * (n - 1), 1, one, 1, &err), 0);
    assert_true(tu_close_ratio(one, r[0] + isz * (n - 1), isz, 1e-6, 1e-5) <= 1.0);
    free(one);
    for (int t = 0; t < 2; t++) {
        free(z[t]);
        free(y[t]);
        free(r[t]);
    }
    free(x);
    lt_model_free(m);
}

static void test_inference_small(void **state)
{
    (void)state;
    check_inference(3);
}

static void test_inference_large(void **state)
{
    (void)state;
    check_inference(1201);  /* batches of 500, 500, 201; 201 = 6 chunks of 32 + 9 */
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_spec),
        cmocka_unit_test(test_comments_and_newlines),
        cmocka_unit_test(test_small_spec),
        cmocka_unit_test(test_bad_huge_sizes),
        cmocka_unit_test(test_bad_unknown_layer),
        cmocka_unit_test(test_bad_arg_count),
        cmocka_unit_test(test_bad_non_integer),
        cmocka_unit_test(test_bad_dense_not_flat),
        cmocka_unit_test(test_bad_unflatten_size),
        cmocka_unit_test(test_bad_conv_fit),
        cmocka_unit_test(test_bad_convt_outpad),
        cmocka_unit_test(test_bad_parts),
        cmocka_unit_test(test_bad_output_shape),
        cmocka_unit_test(test_bad_dropout),
        cmocka_unit_test(test_bad_garbage),
        cmocka_unit_test(test_summary),
        T(test_checkpoint_round_trip),
        T(test_checkpoint_round_trip_nondefault),
        T(test_save_bad_path),
        T(test_load_unchanged_variant),
        T(test_load_missing_meta),
        T(test_load_bad_format),
        T(test_load_bad_input),
        T(test_load_missing_tensor),
        T(test_load_wrong_shape),
        T(test_load_wrong_dtype),
        T(test_load_extra_tensor),
        T(test_load_bad_spec),
        T(test_load_truncated),
        T(test_load_missing_file),
        cmocka_unit_test(test_inference_small),
        cmocka_unit_test(test_inference_large),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    tu_release_threads();
    return rc;
}
