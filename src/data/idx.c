/* data: IDX files and the MNIST-style data sets made of them.
 *
 * Everything read here may be hostile or simply damaged (a half-finished
 * download, the wrong file renamed), so every field is checked and every error
 * message names the file and says what is wrong with it in numbers. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "core/core.h"
#include "data/idx.h"

/* First buffer for data whose real length we cannot know up front (gzip):
 * large enough that MNIST needs few reallocations, small enough that a header
 * claiming terabytes costs nothing before the lie is found. The buffer then
 * doubles, so memory stays within twice what actually decompressed. */
#define IDX_CHUNK ((size_t)1 << 20)
/* Trailing data is only counted for the error message; a gzip bomb must not
 * keep us decompressing forever just for that. */
#define IDX_TRAILING_COUNT_MAX ((size_t)64 << 20)
/* gzread() takes an unsigned and returns an int: keep single reads below that. */
#define IDX_READ_MAX ((size_t)1 << 30)
/* EMNIST byclass, the largest of the family, has 62 classes. */
#define LT_MAX_CLASSES 62
#define LT_PATH_MAX 4096

typedef struct idx_src {
    const char *path;
    int fd;           /* plain file: read() from it; -1 once owned by gz */
    gzFile gz;        /* gzip file: gzread() from it; NULL for plain */
    long long size;   /* plain file: its size in bytes; -1 for gzip */
} idx_src;

static const char *dtype_name(int dtype)
{
    switch (dtype) {
    case 0x08: return "unsigned byte";
    case 0x09: return "signed byte";
    case 0x0B: return "16-bit int";
    case 0x0C: return "32-bit int";
    case 0x0D: return "float";
    case 0x0E: return "double";
    default: return "unknown";
    }
}

/* "60000x28x28" */
static void fmt_dims(char *buf, size_t size, const uint32_t *dims, int rank)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < rank && used < size; i++) {
        int n = snprintf(buf + used, size - used, i ? "x%lu" : "%lu", (unsigned long)dims[i]);
        if (n < 0) break;
        used += (size_t)n;
    }
}

/* zlib's messages start with the name it was opened under, which for gzdopen()
 * is "<fd:3>"; we print our own path instead. */
static const char *gz_message(gzFile gz, int *errnum)
{
    const char *msg = gzerror(gz, errnum);
    if (msg && strncmp(msg, "<fd:", 4) == 0) {
        const char *colon = strstr(msg, ": ");
        if (colon) msg = colon + 2;
    }
    return msg ? msg : "unknown error";
}

static int src_open(idx_src *s, const char *path, lt_err *err)
{
    memset(s, 0, sizeof *s);
    s->path = path;
    s->fd = -1;
    s->size = -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return lt_errf(err, LT_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return lt_errf(err, LT_EIO, "%s: cannot stat: %s", path, strerror(e));
    }
    /* Regular files only: the gzip check below peeks at the first bytes with
     * pread(), and the plain-file size check needs a real size. */
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return lt_errf(err, LT_EIO, "%s: not a regular file", path);
    }
    unsigned char magic[2] = {0, 0};
    ssize_t r;
    do {
        r = pread(fd, magic, 2, 0);
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
        int e = errno;
        close(fd);
        return lt_errf(err, LT_EIO, "%s: read error: %s", path, strerror(e));
    }
    /* The content decides, not the name: an IDX file starts with two zero
     * bytes, so it can never be mistaken for gzip's 1f 8b. */
    if (r == 2 && magic[0] == 0x1f && magic[1] == 0x8b) {
        s->gz = gzdopen(fd, "rb");
        if (!s->gz) {
            close(fd);
            return lt_errf(err, LT_ENOMEM, "%s: cannot start gzip decompression (out of memory)", path);
        }
        /* Large reads from a big internal buffer: MNIST train is 47 MB. */
        gzbuffer(s->gz, 1u << 17);
    } else {
        s->fd = fd;
        s->size = (long long)st.st_size;
    }
    return 0;
}

static void src_close(idx_src *s)
{
    if (s->gz) gzclose(s->gz);
    if (s->fd >= 0) close(s->fd);
    s->gz = NULL;
    s->fd = -1;
}

/* Read up to n bytes; *got < n only at the end of the (decompressed) data. */
static int src_read(idx_src *s, uint8_t *buf, size_t n, size_t *got, lt_err *err)
{
    *got = 0;
    while (*got < n) {
        size_t want = n - *got;
        if (want > IDX_READ_MAX) want = IDX_READ_MAX;
        if (s->gz) {
            int r = gzread(s->gz, buf + *got, (unsigned)want);
            /* gzread() reports a truncated stream as a short read, not as -1,
             * so the error state is checked after every call. */
            int errnum = Z_OK;
            const char *msg = gz_message(s->gz, &errnum);
            if (r < 0 || (errnum != Z_OK && errnum != Z_STREAM_END)) {
                if (errnum == Z_ERRNO) return lt_errf(err, LT_EIO, "%s: read error: %s", s->path, msg);
                if (errnum == Z_MEM_ERROR) return lt_errf(err, LT_ENOMEM, "%s: out of memory in gzip decompression", s->path);
                if (errnum == Z_BUF_ERROR)
                    return lt_errf(err, LT_EFORMAT, "%s: gzip stream is truncated (%s)", s->path, msg);
                return lt_errf(err, LT_EFORMAT, "%s: corrupt gzip data: %s", s->path, msg);
            }
            if (r == 0) break;
            *got += (size_t)r;
        } else {
            ssize_t r = read(s->fd, buf + *got, want);
            if (r < 0) {
                if (errno == EINTR) continue;
                return lt_errf(err, LT_EIO, "%s: read error: %s", s->path, strerror(errno));
            }
            if (r == 0) break;
            *got += (size_t)r;
        }
    }
    return 0;
}

/* Header: 00 00 dtype rank, then rank big-endian uint32 dims. */
static int read_header(idx_src *s, lt_idx *out, lt_err *err)
{
    const char *what = s->gz ? "decompressed data" : "file";
    uint8_t hdr[4 * LT_IDX_MAX_RANK];
    size_t got = 0;
    int rc = src_read(s, hdr, 4, &got, err);
    if (rc) return rc;
    if (got == 0)
        return lt_errf(err, LT_EFORMAT, "%s: empty %s, expected an IDX header", s->path, what);
    if (got < 4)
        return lt_errf(err, LT_EFORMAT, "%s: too short for an IDX file: the %s has %zu bytes, the header alone needs at least 4",
                       s->path, what, got);
    if (hdr[0] != 0 || hdr[1] != 0)
        return lt_errf(err, LT_EFORMAT, "%s: not an IDX file: bad magic, the first two bytes are %02x %02x, expected 00 00",
                       s->path, hdr[0], hdr[1]);
    int dtype = hdr[2], rank = hdr[3];
    if (dtype != LT_IDX_UBYTE)
        return lt_errf(err, LT_EFORMAT, "%s: unsupported dtype 0x%02X (%s), expected 0x08 (unsigned byte)",
                       s->path, (unsigned)dtype, dtype_name(dtype));
    if (rank < 1 || rank > LT_IDX_MAX_RANK)
        return lt_errf(err, LT_EFORMAT, "%s: unsupported rank %d, expected 1 to %d dimensions", s->path, rank,
                       LT_IDX_MAX_RANK);
    size_t dim_bytes = 4 * (size_t)rank;
    rc = src_read(s, hdr, dim_bytes, &got, err);
    if (rc) return rc;
    if (got < dim_bytes)
        return lt_errf(err, LT_EFORMAT, "%s: truncated header: rank %d needs %zu header bytes, the %s has %zu",
                       s->path, rank, 4 + dim_bytes, what, 4 + got);
    out->dtype = dtype;
    out->rank = rank;
    for (int i = 0; i < rank; i++)
        out->dims[i] = (uint32_t)hdr[4 * i] << 24 | (uint32_t)hdr[4 * i + 1] << 16 | (uint32_t)hdr[4 * i + 2] << 8 |
                       (uint32_t)hdr[4 * i + 3];
    char dims[64];
    fmt_dims(dims, sizeof dims, out->dims, rank);
    size_t count = 1;
    for (int i = 0; i < rank; i++) {
        if (out->dims[i] == 0)
            return lt_errf(err, LT_EFORMAT, "%s: dimension %d of %s is zero", s->path, i + 1, dims);
        if (lt_mul_size(count, out->dims[i], &count) != 0)
            return lt_errf(err, LT_EFORMAT, "%s: dimensions %s overflow: their product does not fit in a size_t",
                           s->path, dims);
    }
    out->count = count;
    return 0;
}

static int size_mismatch(const idx_src *s, const lt_idx *x, size_t have, int at_least, lt_err *err)
{
    /* "60000x28x28 = 47040000", or just "10000" for rank 1. */
    char dims[64], size[96];
    fmt_dims(dims, sizeof dims, x->dims, x->rank);
    if (x->rank > 1) snprintf(size, sizeof size, "%s = %zu", dims, x->count);
    else snprintf(size, sizeof size, "%zu", x->count);
    const char *what = s->gz ? "decompressed data has" : "file has";
    if (have < x->count)
        return lt_errf(err, LT_EFORMAT, "%s: truncated: header says %s bytes of data, %s %zu", s->path, size, what,
                       have);
    return lt_errf(err, LT_EFORMAT, "%s: trailing garbage: %s%zu bytes after the %s bytes of data the header announces",
                   s->path, at_least ? "at least " : "", have - x->count, size);
}

static int read_data(idx_src *s, lt_idx *x, lt_err *err)
{
    size_t hlen = 4 + 4 * (size_t)x->rank;
    /* Plain file: the size is known, so a lying header is caught before any
     * allocation. (We still read to the end below, in case the file changed.) */
    if (s->size >= 0) {
        size_t avail = (unsigned long long)s->size > hlen ? (size_t)((unsigned long long)s->size - hlen) : 0;
        if (avail != x->count) return size_mismatch(s, x, avail, 0, err);
    }
    size_t cap = s->size >= 0 || x->count < IDX_CHUNK ? x->count : IDX_CHUNK;
    uint8_t *buf = lt_malloc(cap, err);
    if (!buf) return LT_ENOMEM;
    size_t have = 0;
    int rc = 0;
    for (;;) {
        size_t got = 0;
        rc = src_read(s, buf + have, cap - have, &got, err);
        if (rc) goto fail;
        have += got;
        if (have < cap || cap == x->count) break;
        size_t ncap = cap > x->count / 2 ? x->count : cap * 2;
        uint8_t *nb = realloc(buf, ncap);
        if (!nb) {
            rc = lt_errf(err, LT_ENOMEM, "%s: out of memory growing the data buffer to %zu bytes", s->path, ncap);
            goto fail;
        }
        buf = nb;
        cap = ncap;
    }
    if (have < x->count) {
        rc = size_mismatch(s, x, have, 0, err);
        goto fail;
    }
    /* Anything after the announced data means the header and the data disagree. */
    uint8_t scratch[16384];
    size_t extra = 0;
    for (;;) {
        size_t got = 0;
        rc = src_read(s, scratch, sizeof scratch, &got, err);
        if (rc) goto fail;
        extra += got;
        if (got < sizeof scratch || extra >= IDX_TRAILING_COUNT_MAX) break;
    }
    if (extra > 0) {
        rc = size_mismatch(s, x, x->count + extra, extra >= IDX_TRAILING_COUNT_MAX, err);
        goto fail;
    }
    x->data = buf;
    return 0;
fail:
    free(buf);
    return rc;
}

int lt_idx_read(const char *path, lt_idx *out, lt_err *err)
{
    if (!out) return lt_errf(err, LT_EINVAL, "lt_idx_read: no output struct");
    memset(out, 0, sizeof *out);
    if (!path) return lt_errf(err, LT_EINVAL, "lt_idx_read: no path");
    idx_src s;
    int rc = src_open(&s, path, err);
    if (rc) return rc;
    rc = read_header(&s, out, err);
    if (rc == 0) rc = read_data(&s, out, err);
    src_close(&s);
    if (rc) lt_idx_free(out);
    return rc;
}

void lt_idx_free(lt_idx *x)
{
    if (!x) return;
    free(x->data);
    memset(x, 0, sizeof *x);
}

/* ---- data sets ---- */

/* Find DIR/<prefix>-<what>-<idxn>-ubyte under the names MNIST mirrors use:
 * with or without .gz, and with a dot instead of the second dash. */
static int find_file(char *out, size_t size, const char *dir, const char *prefix, const char *what,
                     const char *idxn, lt_err *err)
{
    static const char *const seps[] = {"-", "-", ".", "."};
    static const char *const sufs[] = {"", ".gz", "", ".gz"};
    enum { N_FORMS = 4 };
    char names[N_FORMS][64];
    for (int i = 0; i < N_FORMS; i++) {
        snprintf(names[i], sizeof names[i], "%s-%s%s%s-ubyte%s", prefix, what, seps[i], idxn, sufs[i]);
        int n = snprintf(out, size, "%s/%s", dir, names[i]);
        if (n < 0 || (size_t)n >= size)
            return lt_errf(err, LT_EINVAL, "%s: data directory path too long", dir);
        struct stat st;
        /* Anything but "does not exist" (say, no permission) is reported by the
         * reader, with its real cause. */
        if (stat(out, &st) == 0 || (errno != ENOENT && errno != ENOTDIR)) return 0;
    }
    out[0] = '\0';
    struct stat st;
    const char *where = stat(dir, &st) == 0 ? "" : " (the directory does not exist)";
    return lt_errf(err, LT_EIO, "%s: no %s %s found%s; tried %s, %s, %s, %s; for MNIST run scripts/fetch-mnist",
                   dir, prefix, what, where, names[0], names[1], names[2], names[3]);
}

static int check_labels(const char *path, const lt_idx *lab, int *n_classes, lt_err *err)
{
    int max = 0;
    for (size_t i = 0; i < lab->count; i++) {
        int v = lab->data[i];
        if (v >= LT_MAX_CLASSES)
            return lt_errf(err, LT_EFORMAT, "%s: label %d at index %zu is out of range: at most %d classes (labels 0..%d) are supported",
                           path, v, i, LT_MAX_CLASSES, LT_MAX_CLASSES - 1);
        if (v > max) max = v;
    }
    *n_classes = max + 1;
    return 0;
}

int lt_dataset_load(lt_dataset *ds, const char *dir, const char *split, lt_err *err)
{
    if (!ds) return lt_errf(err, LT_EINVAL, "lt_dataset_load: no dataset struct");
    memset(ds, 0, sizeof *ds);
    if (!dir || !*dir) return lt_errf(err, LT_EINVAL, "lt_dataset_load: no data directory");
    if (!split) return lt_errf(err, LT_EINVAL, "lt_dataset_load: no split");
    const char *prefix;
    if (strcmp(split, "train") == 0)
        prefix = "train";
    else if (strcmp(split, "test") == 0)
        prefix = "t10k";
    else
        return lt_errf(err, LT_EINVAL, "unknown split '%s': expected 'train' or 'test'", split);

    char ipath[LT_PATH_MAX], lpath[LT_PATH_MAX];
    int rc = find_file(ipath, sizeof ipath, dir, prefix, "images", "idx3", err);
    if (rc) return rc;
    rc = find_file(lpath, sizeof lpath, dir, prefix, "labels", "idx1", err);
    if (rc) return rc;

    lt_idx img = {0}, lab = {0};
    rc = lt_idx_read(ipath, &img, err);
    if (rc) goto done;
    if (img.rank != 3) {
        rc = lt_errf(err, LT_EFORMAT, "%s: images must have 3 dimensions (count x height x width), found rank %d",
                     ipath, img.rank);
        goto done;
    }
    for (int i = 0; i < 3; i++) {
        if (img.dims[i] > INT_MAX) {
            rc = lt_errf(err, LT_EFORMAT, "%s: dimension %d is %lu, more than latent supports (%d)", ipath, i + 1,
                         (unsigned long)img.dims[i], INT_MAX);
            goto done;
        }
    }
    rc = lt_idx_read(lpath, &lab, err);
    if (rc) goto done;
    if (lab.rank != 1) {
        rc = lt_errf(err, LT_EFORMAT, "%s: labels must have 1 dimension, found rank %d", lpath, lab.rank);
        goto done;
    }
    if (lab.dims[0] != img.dims[0]) {
        rc = lt_errf(err, LT_EFORMAT, "%s: %lu labels but %lu images in %s", lpath, (unsigned long)lab.dims[0],
                     (unsigned long)img.dims[0], ipath);
        goto done;
    }
    int n_classes = 0;
    rc = check_labels(lpath, &lab, &n_classes, err);
    if (rc) goto done;

    ds->n = (int)img.dims[0];
    ds->c = 1;
    ds->h = (int)img.dims[1];
    ds->w = (int)img.dims[2];
    ds->n_classes = n_classes;
    /* Take the buffers over: MNIST train is 47 MB, not worth copying. */
    ds->images = img.data;
    ds->labels = lab.data;
    img.data = NULL;
    lab.data = NULL;
done:
    lt_idx_free(&img);
    lt_idx_free(&lab);
    return rc;
}

void lt_dataset_free(lt_dataset *ds)
{
    if (!ds) return;
    free(ds->images);
    free(ds->labels);
    memset(ds, 0, sizeof *ds);
}

int lt_default_data_dir(char *buf, size_t size, lt_err *err)
{
    if (!buf || size == 0) return lt_errf(err, LT_EINVAL, "lt_default_data_dir: no buffer");
    buf[0] = '\0';
    /* Same rule as scripts/fetch-mnist: an empty XDG_CACHE_HOME counts as unset. */
    const char *xdg = getenv("XDG_CACHE_HOME");
    const char *home = getenv("HOME");
    int n;
    if (xdg && *xdg)
        n = snprintf(buf, size, "%s/latent/mnist", xdg);
    else if (home && *home)
        n = snprintf(buf, size, "%s/.cache/latent/mnist", home);
    else
        return lt_errf(err, LT_EINVAL, "cannot locate the data cache: neither XDG_CACHE_HOME nor HOME is set");
    if (n < 0 || (size_t)n >= size) {
        buf[0] = '\0';
        return lt_errf(err, LT_EINVAL, "data directory path needs %d bytes, the buffer has %zu", n + 1, size);
    }
    return 0;
}
