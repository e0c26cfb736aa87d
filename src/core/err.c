/* Errors as values, memory helpers and whole-file I/O. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core.h"

int lt_errf(lt_err *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

void *lt_malloc(size_t n, lt_err *err)
{
    void *p = malloc(n ? n : 1);
    if (!p) lt_errf(err, LT_ENOMEM, "out of memory allocating %zu bytes", n);
    return p;
}

void *lt_calloc(size_t count, size_t size, lt_err *err)
{
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) lt_errf(err, LT_ENOMEM, "out of memory allocating %zu x %zu bytes", count, size);
    return p;
}

void *lt_aligned_alloc(size_t n, lt_err *err)
{
    /* aligned_alloc wants a size that is a multiple of the alignment. */
    size_t rounded = (n + 63) / 64 * 64;
    void *p = aligned_alloc(64, rounded ? rounded : 64);
    if (!p) lt_errf(err, LT_ENOMEM, "out of memory allocating %zu bytes", n);
    return p;
}

int lt_mul_size(size_t a, size_t b, size_t *out)
{
    if (a != 0 && b > SIZE_MAX / a) return -1;
    *out = a * b;
    return 0;
}

int lt_write_file_atomic(const char *path, const void *data, size_t n, lt_err *err)
{
    size_t len = strlen(path);
    char *tmp = lt_malloc(len + 16, err);
    if (!tmp) return LT_ENOMEM;
    snprintf(tmp, len + 16, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        int e = errno;
        free(tmp);
        return lt_errf(err, LT_EIO, "%s: cannot create a temporary file next to it: %s", path, strerror(e));
    }
    /* mkstemp makes the file 0600; a checkpoint or figure should be readable
     * like any other file the user writes. */
    (void)fchmod(fd, 0644);
    const char *p = data;
    size_t left = n;
    int rc = 0;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR) continue;
            rc = lt_errf(err, LT_EIO, "%s: write failed: %s", path, strerror(errno));
            break;
        }
        p += w;
        left -= (size_t)w;
    }
    /* fsync before rename: otherwise a crash can leave the new name pointing at
     * an empty file on some filesystems, and the old data is gone. */
    if (rc == 0 && fsync(fd) != 0)
        rc = lt_errf(err, LT_EIO, "%s: fsync failed: %s", path, strerror(errno));
    if (close(fd) != 0 && rc == 0)
        rc = lt_errf(err, LT_EIO, "%s: close failed: %s", path, strerror(errno));
    if (rc == 0 && rename(tmp, path) != 0)
        rc = lt_errf(err, LT_EIO, "%s: cannot rename temporary file into place: %s", path, strerror(errno));
    if (rc != 0) unlink(tmp);
    free(tmp);
    return rc;
}

int lt_mkdir_p(const char *path, lt_err *err)
{
    size_t len = strlen(path);
    char *p = lt_malloc(len + 1, err);
    if (!p) return LT_ENOMEM;
    memcpy(p, path, len + 1);
    int rc = 0;
    /* Each prefix ending before a '/', then the whole path. */
    for (size_t i = 1; i <= len && rc == 0; i++) {
        if (p[i] != '/' && p[i] != 0) continue;
        char c = p[i];
        p[i] = 0;
        struct stat st;
        if (mkdir(p, 0777) != 0 && errno != EEXIST)
            rc = lt_errf(err, LT_EIO, "%s: cannot create directory %s: %s", path, p, strerror(errno));
        else if (stat(p, &st) != 0 || !S_ISDIR(st.st_mode))
            rc = lt_errf(err, LT_EIO, "%s: %s exists and is not a directory", path, p);
        p[i] = c;
    }
    free(p);
    return rc;
}

int lt_read_file(const char *path, void **out, size_t *n, lt_err *err)
{
    *out = NULL;
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return lt_errf(err, LT_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        fclose(f);
        return lt_errf(err, LT_EIO, "%s: is a directory, not a file", path);
    }
    size_t cap = 1 << 16, len = 0;
    char *buf = lt_malloc(cap, err);
    if (!buf) { fclose(f); return LT_ENOMEM; }
    for (;;) {
        if (len == cap) {
            if (cap > SIZE_MAX / 2) { free(buf); fclose(f); return lt_errf(err, LT_ENOMEM, "%s: file too large", path); }
            char *nb = realloc(buf, cap * 2);
            if (!nb) { free(buf); fclose(f); return lt_errf(err, LT_ENOMEM, "%s: out of memory reading file", path); }
            buf = nb;
            cap *= 2;
        }
        size_t r = fread(buf + len, 1, cap - len, f);
        len += r;
        if (r == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) { free(buf); return lt_errf(err, LT_EIO, "%s: read error", path); }
    *out = buf;
    *n = len;
    return 0;
}
