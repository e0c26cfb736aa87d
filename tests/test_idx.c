/* IDX reading, data set loading and PNG files: good files load exactly, and
 * every kind of damaged or hostile file is refused with the right code and a
 * message that names the file and says what is wrong. The files are written
 * here, into a fresh temporary directory, so no download is needed. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "data/idx.h"
#include "io/png.h"
#include "latent.h"
#include "testutil.h"


/* Paths in the test directory; TMPDIR may be long. */
#define PATHBUF 1024

typedef struct fixture {
    char *dir; /* from tu_mkdtemp */
} fixture;

/* ---- helpers ---- */

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f) return -1;
    f->dir = tu_mkdtemp();
    if (!f->dir) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    tu_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

/* DIR/name, in a buffer owned by the caller. */
static const char *in_dir(char *buf, size_t size, void **state, const char *name)
{
    const fixture *f = *state;
    int n = snprintf(buf, size, "%s/%s", f->dir, name);
    assert_true(n > 0 && (size_t)n < size);
    return buf;
}

/* Unlike tu_write, fails the test when the file cannot be written. */
static void write_bytes(const char *path, const void *data, size_t n)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    if (n) assert_int_equal(fwrite(data, 1, n, fp), n);
    assert_int_equal(fclose(fp), 0);
}

static void write_gz(const char *path, const void *data, size_t n)
{
    gzFile gz = gzopen(path, "wb");
    assert_non_null(gz);
    if (n) assert_int_equal(gzwrite(gz, data, (unsigned)n), (int)n);
    assert_int_equal(gzclose(gz), Z_OK);
}

/* An unsigned-byte IDX file image: header for dims, then data (may be shorter
 * or longer than the dims say: that is what some tests are about). Returns the
 * total length written into buf. */
static size_t make_idx(uint8_t *buf, int rank, const uint32_t *dims, const uint8_t *data, size_t n)
{
    size_t len = 0;
    buf[len++] = 0;
    buf[len++] = 0;
    buf[len++] = LT_IDX_UBYTE;
    buf[len++] = (uint8_t)rank;
    for (int i = 0; i < rank; i++) {
        buf[len++] = (uint8_t)(dims[i] >> 24);
        buf[len++] = (uint8_t)(dims[i] >> 16);
        buf[len++] = (uint8_t)(dims[i] >> 8);
        buf[len++] = (uint8_t)dims[i];
    }
    if (n) memcpy(buf + len, data, n);
    return len + n;
}

/* Check a refusal: the code, that out was left empty, and that the message
 * names the file and contains a word that says what was wrong. */
static void check_refused(int rc, const lt_idx *x, const lt_err *err, int code, const char *path, const char *word)
{
    if (rc != code || err->code != code)
        fail_msg("expected code %d, got rc %d / err.code %d: %s", code, rc, err->code, err->msg);
    if (!strstr(err->msg, path)) fail_msg("message does not name '%s': %s", path, err->msg);
    if (!strstr(err->msg, word)) fail_msg("message lacks '%s': %s", word, err->msg);
    if (x) {
        assert_null(x->data);
        assert_int_equal(x->rank, 0);
        assert_int_equal(x->count, 0);
    }
}

/* Write raw bytes to NAME and expect lt_idx_read to refuse them. */
static void refuse_plain(void **state, const char *name, const void *bytes, size_t n, int code, const char *word)
{
    char path[PATHBUF];
    in_dir(path, sizeof path, state, name);
    write_bytes(path, bytes, n);
    lt_idx x;
    lt_err err = {0};
    check_refused(lt_idx_read(path, &x, &err), &x, &err, code, path, word);
}

static int count_tmp_files(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".tmp.")) n++;
    closedir(d);
    return n;
}

/* ---- IDX: good files ---- */

static const uint32_t dims_3x2x2[3] = {3, 2, 2};
static const uint8_t data_12[12] = {0, 1, 2, 3, 250, 251, 252, 253, 7, 8, 9, 255};

static void check_good(const char *path)
{
    lt_idx x;
    lt_err err = {0};
    int rc = lt_idx_read(path, &x, &err);
    if (rc != 0) fail_msg("lt_idx_read(%s) failed: %s", path, err.msg);
    assert_int_equal(x.dtype, 0x08);
    assert_int_equal(x.rank, 3);
    assert_int_equal(x.dims[0], 3);
    assert_int_equal(x.dims[1], 2);
    assert_int_equal(x.dims[2], 2);
    assert_int_equal(x.dims[3], 0);
    assert_int_equal(x.count, 12);
    assert_non_null(x.data);
    assert_memory_equal(x.data, data_12, 12);
    lt_idx_free(&x);
    assert_null(x.data);
    assert_int_equal(x.count, 0);
    lt_idx_free(&x); /* freeing twice is harmless */
}

static void test_good_plain(void **state)
{
    uint8_t buf[64];
    char path[PATHBUF];
    size_t n = make_idx(buf, 3, dims_3x2x2, data_12, 12);
    write_bytes(in_dir(path, sizeof path, state, "good-idx3-ubyte"), buf, n);
    check_good(path);
}

static void test_good_gz(void **state)
{
    uint8_t buf[64];
    char path[PATHBUF];
    size_t n = make_idx(buf, 3, dims_3x2x2, data_12, 12);
    write_gz(in_dir(path, sizeof path, state, "good-idx3-ubyte.gz"), buf, n);
    check_good(path);
    /* Compression is recognised by content, whatever the name says. */
    write_gz(in_dir(path, sizeof path, state, "gz-without-suffix-idx3-ubyte"), buf, n);
    check_good(path);
}

static void test_good_rank1(void **state)
{
    uint8_t buf[64];
    char path[PATHBUF];
    const uint32_t dims[1] = {5};
    const uint8_t data[5] = {9, 8, 7, 6, 5};
    write_bytes(in_dir(path, sizeof path, state, "rank1"), buf, make_idx(buf, 1, dims, data, 5));
    lt_idx x;
    lt_err err = {0};
    assert_int_equal(lt_idx_read(path, &x, &err), 0);
    assert_int_equal(x.rank, 1);
    assert_int_equal(x.count, 5);
    assert_memory_equal(x.data, data, 5);
    lt_idx_free(&x);
}

/* ---- IDX: bad files ---- */

static void test_missing_file(void **state)
{
    char path[PATHBUF];
    in_dir(path, sizeof path, state, "does-not-exist");
    lt_idx x;
    lt_err err = {0};
    check_refused(lt_idx_read(path, &x, &err), &x, &err, LT_EIO, path, "cannot open");
}

static void test_empty_and_short(void **state)
{
    refuse_plain(state, "empty", "", 0, LT_EFORMAT, "empty");
    const uint8_t two[2] = {0, 0};
    refuse_plain(state, "two-bytes", two, 2, LT_EFORMAT, "too short");
}

static void test_bad_magic(void **state)
{
    const uint8_t b[8] = {0x01, 0x00, 0x08, 0x01, 0, 0, 0, 0};
    refuse_plain(state, "bad-magic", b, sizeof b, LT_EFORMAT, "magic");
    /* A PNG or text file renamed by mistake: same refusal. */
    refuse_plain(state, "text", "hello world\n", 12, LT_EFORMAT, "magic");
}

static void test_unsupported_dtype(void **state)
{
    const uint8_t f32[12] = {0, 0, 0x0D, 1, 0, 0, 0, 1, 0, 0, 0, 0};
    refuse_plain(state, "float", f32, sizeof f32, LT_EFORMAT, "unsupported dtype 0x0D (float)");
    const uint8_t i8[9] = {0, 0, 0x09, 1, 0, 0, 0, 1, 0};
    refuse_plain(state, "sbyte", i8, sizeof i8, LT_EFORMAT, "unsupported dtype 0x09 (signed byte)");
    const uint8_t unk[9] = {0, 0, 0x42, 1, 0, 0, 0, 1, 0};
    refuse_plain(state, "unknown", unk, sizeof unk, LT_EFORMAT, "unsupported dtype 0x42");
}

static void test_bad_rank(void **state)
{
    const uint8_t r0[4] = {0, 0, 0x08, 0};
    refuse_plain(state, "rank0", r0, sizeof r0, LT_EFORMAT, "rank 0");
    uint8_t r5[4 + 20 + 1] = {0, 0, 0x08, 5};
    for (int i = 0; i < 5; i++) r5[4 + 4 * i + 3] = 1;
    refuse_plain(state, "rank5", r5, sizeof r5, LT_EFORMAT, "rank 5");
}

static void test_zero_dim(void **state)
{
    uint8_t buf[64];
    const uint32_t dims[3] = {2, 0, 3};
    refuse_plain(state, "zero-dim", buf, make_idx(buf, 3, dims, NULL, 0), LT_EFORMAT, "zero");
}

static void test_overflowing_dims(void **state)
{
    uint8_t buf[64];
    const uint32_t dims[4] = {0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu};
    refuse_plain(state, "overflow", buf, make_idx(buf, 4, dims, NULL, 0), LT_EFORMAT, "overflow");
}

static void test_truncated_header(void **state)
{
    /* Rank 3 announces 12 bytes of dimensions; only 5 follow. */
    const uint8_t b[9] = {0, 0, 0x08, 3, 0, 0, 0, 2, 0};
    refuse_plain(state, "short-header", b, sizeof b, LT_EFORMAT, "truncated header");
}

static void test_truncated_data(void **state)
{
    uint8_t buf[64];
    size_t n = make_idx(buf, 3, dims_3x2x2, data_12, 11);
    refuse_plain(state, "short-data", buf, n, LT_EFORMAT, "truncated: header says 3x2x2 = 12 bytes of data, file has 11");
}

static void test_trailing_bytes(void **state)
{
    uint8_t buf[64], data[15] = {0};
    size_t n = make_idx(buf, 3, dims_3x2x2, data, 15);
    refuse_plain(state, "trailing", buf, n, LT_EFORMAT, "trailing garbage: 3 bytes");
}

static void test_gz_truncated_and_trailing_data(void **state)
{
    uint8_t buf[64], data[15] = {0};
    char path[PATHBUF];
    lt_idx x;
    lt_err err = {0};
    write_gz(in_dir(path, sizeof path, state, "short.gz"), buf, make_idx(buf, 3, dims_3x2x2, data, 5));
    check_refused(lt_idx_read(path, &x, &err), &x, &err, LT_EFORMAT, path, "decompressed data has 5");
    write_gz(in_dir(path, sizeof path, state, "long.gz"), buf, make_idx(buf, 3, dims_3x2x2, data, 15));
    check_refused(lt_idx_read(path, &x, &err), &x, &err, LT_EFORMAT, path, "trailing garbage: 3 bytes");
}

static void test_gz_corrupt(void **state)
{
    /* The gzip magic, then junk: not a deflate stream at all. */
    const uint8_t junk[] = {0x1f, 0x8b, 'g', 'a', 'r', 'b', 'a', 'g', 'e', ' ', 'h', 'e', 'r', 'e', '!', '!',
                            '!', '!', '!', '!', '!', '!', '!', '!'};
    refuse_plain(state, "corrupt.gz", junk, sizeof junk, LT_EFORMAT, "gzip");

    /* A real gzip stream cut in half. */
    uint8_t buf[4096], data[2000];
    for (size_t i = 0; i < sizeof data; i++) data[i] = (uint8_t)(i * 7919u >> 3);
    const uint32_t dims[1] = {2000};
    char path[PATHBUF];
    write_gz(in_dir(path, sizeof path, state, "whole.gz"), buf, make_idx(buf, 1, dims, data, sizeof data));
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    size_t n = fread(buf, 1, sizeof buf, fp);
    fclose(fp);
    assert_true(n > 100);
    refuse_plain(state, "cut.gz", buf, n / 2, LT_EFORMAT, "gzip");
}

/* A small gzip file whose header claims far more data than it holds. */
static void write_liar_gz(const char *path, int rank, const uint32_t *dims)
{
    uint8_t buf[64];
    const uint8_t few[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    write_gz(path, buf, make_idx(buf, rank, dims, few, sizeof few));
}

static void test_gz_huge_claim(void **state)
{
    /* 65535^3 bytes is about 2.8e14: more than any machine could allocate,
     * so reaching "truncated" proves nothing of that size was asked for. */
    char path[PATHBUF];
    const uint32_t dims[3] = {65535, 65535, 65535};
    write_liar_gz(in_dir(path, sizeof path, state, "huge.gz"), 3, dims);
    lt_idx x;
    lt_err err = {0};
    check_refused(lt_idx_read(path, &x, &err), &x, &err, LT_EFORMAT, path, "truncated");
    assert_non_null(strstr(err.msg, "65535x65535x65535"));
}

#ifndef UNDER_ASAN
static long long vm_size(void)
{
    FILE *fp = fopen("/proc/self/statm", "r");
    if (!fp) return -1;
    long long pages = -1;
    if (fscanf(fp, "%lld", &pages) != 1) pages = -1;
    fclose(fp);
    return pages < 0 ? -1 : pages * sysconf(_SC_PAGESIZE);
}
#endif

/* Not built under ASan, which reserves terabytes of address space and so
 * cannot run under an RLIMIT_AS cap; the gcc build runs it. */
#ifndef UNDER_ASAN
static void test_gz_4gb_claim_under_memory_limit(void **state)
{
    /* 4 GiB could be allocated on a big machine, so check it another way: in a
     * child whose address space is capped at 256 MiB above what it uses now,
     * the reader must still get as far as "truncated". */
    char path[PATHBUF], plain[PATHBUF];
    const uint32_t dims[3] = {4096, 1024, 1024};
    write_liar_gz(in_dir(path, sizeof path, state, "4gb.gz"), 3, dims);
    /* The same lie in a plain file must be caught from the file size. */
    uint8_t buf[64];
    write_bytes(in_dir(plain, sizeof plain, state, "4gb"), buf, make_idx(buf, 3, dims, data_12, 12));
    long long vm = vm_size();
    assert_true(vm > 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct rlimit lim = {(rlim_t)vm + (256u << 20), (rlim_t)vm + (256u << 20)};
        if (setrlimit(RLIMIT_AS, &lim) != 0) _exit(30);
        /* The cap must really bite, or this test would prove nothing. Called
         * through a volatile pointer: compilers may drop an unused malloc()
         * and assume it succeeded. */
        void *(*volatile alloc)(size_t) = malloc;
        void *probe = alloc((size_t)4 << 30);
        if (probe) _exit(20);
        const char *paths[2] = {path, plain};
        for (int i = 0; i < 2; i++) {
            lt_idx x;
            lt_err err = {0};
            int rc = lt_idx_read(paths[i], &x, &err);
            if (rc == LT_ENOMEM) _exit(10 + i);
            if (rc != LT_EFORMAT || !strstr(err.msg, "truncated")) _exit(12 + i);
        }
        _exit(0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}
#endif

/* ---- data sets ---- */

/* Write DIR/NAME with n images of h x w (pixel = index + offset) and
 * DIR/LNAME with the given labels (n_labels of them). */
static void write_split(void **state, const char *iname, const char *lname, int gz, uint32_t n, uint32_t h,
                        uint32_t w, const uint8_t *labels, uint32_t n_labels)
{
    uint8_t buf[1024], pix[512];
    char path[PATHBUF];
    size_t np = (size_t)n * h * w;
    assert_true(np <= sizeof pix);
    for (size_t i = 0; i < np; i++) pix[i] = (uint8_t)(i * 3 + 1);
    const uint32_t idims[3] = {n, h, w};
    size_t len = make_idx(buf, 3, idims, pix, np);
    in_dir(path, sizeof path, state, iname);
    if (gz) write_gz(path, buf, len);
    else write_bytes(path, buf, len);
    const uint32_t ldims[1] = {n_labels};
    len = make_idx(buf, 1, ldims, labels, n_labels);
    in_dir(path, sizeof path, state, lname);
    if (gz) write_gz(path, buf, len);
    else write_bytes(path, buf, len);
}

static void make_subdir(char *out, size_t size, void **state, const char *name)
{
    in_dir(out, size, state, name);
    assert_int_equal(mkdir(out, 0755), 0);
}

static void check_dataset(const lt_dataset *ds, int n, int h, int w, int n_classes, const uint8_t *labels)
{
    assert_int_equal(ds->n, n);
    assert_int_equal(ds->c, 1);
    assert_int_equal(ds->h, h);
    assert_int_equal(ds->w, w);
    assert_int_equal(ds->n_classes, n_classes);
    for (int i = 0; i < n * h * w; i++) assert_int_equal(ds->images[i], (uint8_t)(i * 3 + 1));
    assert_memory_equal(ds->labels, labels, (size_t)n);
}

static void test_dataset_train_plain_and_test_gz(void **state)
{
    const uint8_t labels[5] = {3, 0, 4, 1, 2};
    char sub[PATHBUF], name[64];
    make_subdir(sub, sizeof sub, state, "ds-good");
    snprintf(name, sizeof name, "ds-good/train-images-idx3-ubyte");
    char lname[64];
    snprintf(lname, sizeof lname, "ds-good/train-labels-idx1-ubyte");
    write_split(state, name, lname, 0, 5, 3, 4, labels, 5);
    snprintf(name, sizeof name, "ds-good/t10k-images-idx3-ubyte.gz");
    snprintf(lname, sizeof lname, "ds-good/t10k-labels-idx1-ubyte.gz");
    write_split(state, name, lname, 1, 2, 4, 3, labels, 2);

    lt_dataset ds;
    lt_err err = {0};
    int rc = lt_dataset_load(&ds, sub, "train", &err);
    if (rc) fail_msg("train: %s", err.msg);
    check_dataset(&ds, 5, 3, 4, 5, labels);
    lt_dataset_free(&ds);
    assert_null(ds.images);
    assert_null(ds.labels);
    assert_int_equal(ds.n, 0);

    rc = lt_dataset_load(&ds, sub, "test", &err);
    if (rc) fail_msg("test: %s", err.msg);
    check_dataset(&ds, 2, 4, 3, 4, labels);
    lt_dataset_free(&ds);
    lt_dataset_free(&ds); /* safe on a zeroed struct */

    rc = lt_dataset_load(&ds, sub, "validation", &err);
    assert_int_equal(rc, LT_EINVAL);
    assert_non_null(strstr(err.msg, "validation"));
    assert_null(ds.images);
}

static void test_dataset_dotted_names_and_62_classes(void **state)
{
    uint8_t labels[4] = {0, 61, 5, 61};
    char sub[PATHBUF];
    make_subdir(sub, sizeof sub, state, "ds-dotted");
    write_split(state, "ds-dotted/train-images.idx3-ubyte", "ds-dotted/train-labels.idx1-ubyte", 0, 4, 2, 2, labels,
                4);
    lt_dataset ds;
    lt_err err = {0};
    int rc = lt_dataset_load(&ds, sub, "train", &err);
    if (rc) fail_msg("%s", err.msg);
    check_dataset(&ds, 4, 2, 2, 62, labels);
    lt_dataset_free(&ds);
}

static void test_dataset_count_mismatch(void **state)
{
    const uint8_t labels[4] = {0, 1, 2, 3};
    char sub[PATHBUF], lpath[PATHBUF + 64];
    make_subdir(sub, sizeof sub, state, "ds-mismatch");
    write_split(state, "ds-mismatch/train-images-idx3-ubyte", "ds-mismatch/train-labels-idx1-ubyte", 0, 3, 2, 2,
                labels, 4);
    snprintf(lpath, sizeof lpath, "%s/train-labels-idx1-ubyte", sub);
    lt_dataset ds;
    lt_err err = {0};
    check_refused(lt_dataset_load(&ds, sub, "train", &err), NULL, &err, LT_EFORMAT, lpath, "4 labels but 3 images");
    assert_null(ds.images);
    assert_null(ds.labels);
}

static void test_dataset_label_out_of_range(void **state)
{
    const uint8_t labels[5] = {0, 1, 2, 62, 200};
    char sub[PATHBUF], lpath[PATHBUF + 64];
    make_subdir(sub, sizeof sub, state, "ds-label");
    write_split(state, "ds-label/t10k-images-idx3-ubyte", "ds-label/t10k-labels-idx1-ubyte", 0, 5, 1, 1, labels, 5);
    snprintf(lpath, sizeof lpath, "%s/t10k-labels-idx1-ubyte", sub);
    lt_dataset ds;
    lt_err err = {0};
    check_refused(lt_dataset_load(&ds, sub, "test", &err), NULL, &err, LT_EFORMAT, lpath, "label 62 at index 3");
    assert_null(ds.images);
}

static void test_dataset_wrong_rank(void **state)
{
    /* Images given as a rank-2 file: refused, naming the images file. */
    char sub[PATHBUF], path[PATHBUF + 64];
    uint8_t buf[64];
    const uint32_t dims[2] = {2, 4};
    make_subdir(sub, sizeof sub, state, "ds-rank");
    snprintf(path, sizeof path, "%s/train-images-idx3-ubyte", sub);
    write_bytes(path, buf, make_idx(buf, 2, dims, data_12, 8));
    lt_dataset ds;
    lt_err err = {0};
    check_refused(lt_dataset_load(&ds, sub, "train", &err), NULL, &err, LT_EIO, sub, "train-labels-idx1-ubyte");
    snprintf(path, sizeof path, "%s/train-labels-idx1-ubyte", sub);
    const uint32_t ldims[1] = {2};
    write_bytes(path, buf, make_idx(buf, 1, ldims, data_12, 2));
    snprintf(path, sizeof path, "%s/train-images-idx3-ubyte", sub);
    check_refused(lt_dataset_load(&ds, sub, "train", &err), NULL, &err, LT_EFORMAT, path, "rank 2");
}

static void test_dataset_missing(void **state)
{
    char sub[PATHBUF];
    make_subdir(sub, sizeof sub, state, "ds-empty");
    lt_dataset ds;
    lt_err err = {0};
    check_refused(lt_dataset_load(&ds, sub, "test", &err), NULL, &err, LT_EIO, sub, "t10k-images-idx3-ubyte");
    const char *names[] = {"t10k-images-idx3-ubyte.gz", "t10k-images.idx3-ubyte", "t10k-images.idx3-ubyte.gz",
                           "scripts/fetch-mnist"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (!strstr(err.msg, names[i])) fail_msg("message lacks '%s': %s", names[i], err.msg);
    assert_null(ds.images);

    /* A directory that does not exist at all: same code, says so. */
    in_dir(sub, sizeof sub, state, "no-such-dir");
    check_refused(lt_dataset_load(&ds, sub, "train", &err), NULL, &err, LT_EIO, sub, "does not exist");
}

static void test_default_data_dir(void **state)
{
    (void)state;
    const char *old_xdg = getenv("XDG_CACHE_HOME"), *old_home = getenv("HOME");
    char *saved_xdg = old_xdg ? strdup(old_xdg) : NULL, *saved_home = old_home ? strdup(old_home) : NULL;
    char buf[PATHBUF];
    lt_err err = {0};

    assert_int_equal(setenv("XDG_CACHE_HOME", "/x/cache", 1), 0);
    assert_int_equal(setenv("HOME", "/home/u", 1), 0);
    assert_int_equal(lt_default_data_dir(buf, sizeof buf, &err), 0);
    assert_string_equal(buf, "/x/cache/latent/mnist");
    /* Too small a buffer is an error, not a truncated path. */
    assert_int_equal(lt_default_data_dir(buf, 10, &err), LT_EINVAL);
    assert_string_equal(buf, "");

    assert_int_equal(setenv("XDG_CACHE_HOME", "", 1), 0);
    assert_int_equal(lt_default_data_dir(buf, sizeof buf, &err), 0);
    assert_string_equal(buf, "/home/u/.cache/latent/mnist");
    assert_int_equal(unsetenv("XDG_CACHE_HOME"), 0);
    assert_int_equal(lt_default_data_dir(buf, sizeof buf, &err), 0);
    assert_string_equal(buf, "/home/u/.cache/latent/mnist");

    assert_int_equal(unsetenv("HOME"), 0);
    assert_int_equal(lt_default_data_dir(buf, sizeof buf, &err), LT_EINVAL);
    assert_non_null(strstr(err.msg, "HOME"));

    if (saved_xdg) setenv("XDG_CACHE_HOME", saved_xdg, 1);
    if (saved_home) setenv("HOME", saved_home, 1);
    free(saved_xdg);
    free(saved_home);
}

/* ---- PNG ---- */

static void test_png_round_trip(void **state)
{
    enum { W = 7, H = 5 };
    uint8_t px[W * H];
    for (int i = 0; i < W * H; i++) px[i] = (uint8_t)(i * 37 + 11);
    char path[PATHBUF];
    in_dir(path, sizeof path, state, "round.png");
    lt_err err = {0};
    int rc = lt_png_write_gray(path, px, W, H, &err);
    if (rc) fail_msg("%s", err.msg);
    /* And once more over the existing file: rename must replace it. */
    px[0] = 99;
    assert_int_equal(lt_png_write_gray(path, px, W, H, &err), 0);

    uint8_t *back = NULL;
    int w = 0, h = 0;
    rc = lt_png_read_gray(path, &back, &w, &h, &err);
    if (rc) fail_msg("%s", err.msg);
    assert_int_equal(w, W);
    assert_int_equal(h, H);
    assert_memory_equal(back, px, sizeof px);
    free(back);

    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0644);
    const fixture *f = *state;
    assert_int_equal(count_tmp_files(f->dir), 0);
}

static void test_png_read_rgb_as_gray(void **state)
{
    /* An RGB picture whose pixels are gray (r = g = b) reads back as those
     * gray values: the conversion weights sum to one. */
    enum { W = 4, H = 3 };
    uint8_t rgb[W * H * 3], gray[W * H];
    for (int i = 0; i < W * H; i++) {
        gray[i] = (uint8_t)(i * 21);
        rgb[3 * i] = rgb[3 * i + 1] = rgb[3 * i + 2] = gray[i];
    }
    char path[PATHBUF];
    in_dir(path, sizeof path, state, "rgb.png");
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    img.width = W;
    img.height = H;
    img.format = PNG_FORMAT_RGB;
    assert_true(png_image_write_to_file(&img, path, 0, rgb, 0, NULL));
    uint8_t *back = NULL;
    int w = 0, h = 0;
    lt_err err = {0};
    int rc = lt_png_read_gray(path, &back, &w, &h, &err);
    if (rc) fail_msg("%s", err.msg);
    assert_int_equal(w, W);
    assert_int_equal(h, H);
    assert_memory_equal(back, gray, sizeof gray);
    free(back);
}

static void test_png_bad_files(void **state)
{
    char path[PATHBUF];
    uint8_t *px = NULL;
    int w = -1, h = -1;
    lt_err err = {0};
    in_dir(path, sizeof path, state, "not.png");
    write_bytes(path, "definitely not a png", 20);
    check_refused(lt_png_read_gray(path, &px, &w, &h, &err), NULL, &err, LT_EFORMAT, path, "not a PNG");
    assert_null(px);

    /* A real PNG cut short. */
    uint8_t img[64 * 64];
    for (size_t i = 0; i < sizeof img; i++) img[i] = (uint8_t)(i * 7919u >> 5);
    in_dir(path, sizeof path, state, "whole.png");
    assert_int_equal(lt_png_write_gray(path, img, 64, 64, &err), 0);
    uint8_t buf[8192];
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    size_t n = fread(buf, 1, sizeof buf, fp);
    fclose(fp);
    assert_true(n > 200);
    in_dir(path, sizeof path, state, "cut.png");
    write_bytes(path, buf, n / 2);
    check_refused(lt_png_read_gray(path, &px, &w, &h, &err), NULL, &err, LT_EFORMAT, path, "bad PNG");
    assert_null(px);
    assert_int_equal(w, 0);

    in_dir(path, sizeof path, state, "missing.png");
    check_refused(lt_png_read_gray(path, &px, &w, &h, &err), NULL, &err, LT_EIO, path, "cannot open");
}

static void test_png_write_failures(void **state)
{
    const fixture *f = *state;
    const uint8_t px[4] = {1, 2, 3, 4};
    char path[PATHBUF];
    lt_err err = {0};

    in_dir(path, sizeof path, state, "no-such-dir/out.png");
    check_refused(lt_png_write_gray(path, px, 2, 2, &err), NULL, &err, LT_EIO, path, "No such file");
    assert_int_equal(count_tmp_files(f->dir), 0);

    /* The temporary file gets written, then the rename fails (the target is a
     * directory): the temporary file must be gone afterwards. */
    in_dir(path, sizeof path, state, "is-a-dir.png");
    assert_int_equal(mkdir(path, 0755), 0);
    check_refused(lt_png_write_gray(path, px, 2, 2, &err), NULL, &err, LT_EIO, path, "rename");
    assert_int_equal(count_tmp_files(f->dir), 0);

    in_dir(path, sizeof path, state, "bad-size.png");
    assert_int_equal(lt_png_write_gray(path, px, 0, 2, &err), LT_EINVAL);
    assert_int_equal(access(path, F_OK), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_plain),
        cmocka_unit_test(test_good_gz),
        cmocka_unit_test(test_good_rank1),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_empty_and_short),
        cmocka_unit_test(test_bad_magic),
        cmocka_unit_test(test_unsupported_dtype),
        cmocka_unit_test(test_bad_rank),
        cmocka_unit_test(test_zero_dim),
        cmocka_unit_test(test_overflowing_dims),
        cmocka_unit_test(test_truncated_header),
        cmocka_unit_test(test_truncated_data),
        cmocka_unit_test(test_trailing_bytes),
        cmocka_unit_test(test_gz_truncated_and_trailing_data),
        cmocka_unit_test(test_gz_corrupt),
        cmocka_unit_test(test_gz_huge_claim),
#ifndef UNDER_ASAN
        cmocka_unit_test(test_gz_4gb_claim_under_memory_limit),
#endif
        cmocka_unit_test(test_dataset_train_plain_and_test_gz),
        cmocka_unit_test(test_dataset_dotted_names_and_62_classes),
        cmocka_unit_test(test_dataset_count_mismatch),
        cmocka_unit_test(test_dataset_label_out_of_range),
        cmocka_unit_test(test_dataset_wrong_rank),
        cmocka_unit_test(test_dataset_missing),
        cmocka_unit_test(test_default_data_dir),
        cmocka_unit_test(test_png_round_trip),
        cmocka_unit_test(test_png_read_rgb_as_gray),
        cmocka_unit_test(test_png_bad_files),
        cmocka_unit_test(test_png_write_failures),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
