/* libFuzzer harness: IDX files (lt_idx_read) and data sets (lt_dataset_load).
 *
 * Byte 0 of the input is a mode, the rest is the file:
 *   bit 0: gzip the file first (so mutations reach the parser behind the
 *          decompressor; inputs that are gzip already are read as they are);
 *   bit 1: also load a data set from a directory holding the file as
 *          train-images (bit 2 clear) or as train-labels (bit 2 set), next to a
 *          small valid companion file whose count matches the file's header
 *          when the header can be read.
 * The file is always read with lt_idx_read too. */
#include <zlib.h>

#include "data/idx.h"
#include "fuzz_common.h"

static void write_input(const char *path, const uint8_t *data, size_t size, int gz)
{
    if (!gz) {
        fz_write_file(path, data, size);
        return;
    }
    gzFile g = gzopen(path, "wb1");
    if (!g) abort();
    if (size && gzwrite(g, data, (unsigned)size) != (int)size) abort();
    if (gzclose(g) != Z_OK) abort();
}

/* A valid IDX file of the given rank (1: n labels, 3: n images of 2x3). */
static void write_companion(const char *path, int rank, uint32_t n)
{
    size_t count = rank == 1 ? n : (size_t)n * 6;
    size_t len = 4 + 4 * (size_t)rank + count;
    uint8_t *b = calloc(len, 1);
    if (!b) abort();
    b[2] = LT_IDX_UBYTE, b[3] = (uint8_t)rank;
    uint32_t dims[3] = {n, 2, 3};
    for (int i = 0; i < rank; i++)
        for (int j = 0; j < 4; j++) b[4 + 4 * i + j] = (uint8_t)(dims[i] >> (24 - 8 * j));
    for (size_t i = 0; i < count; i++) b[4 + 4 * (size_t)rank + i] = (uint8_t)(i * 7 % (rank == 1 ? 10 : 256));
    fz_write_file(path, b, len);
    free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    int mode = data[0];
    data++, size--;
    int gz = mode & 1, dataset = mode & 2, as_labels = mode & 4;

    const char *images = fz_path("train-images-idx3-ubyte");
    const char *labels = fz_path("train-labels-idx1-ubyte");
    const char *path = as_labels ? labels : images;
    write_input(path, data, size, gz);

    lt_idx x;
    lt_err err;
    if (lt_idx_read(path, &x, &err) == 0) {
        if (x.dtype != LT_IDX_UBYTE || x.rank < 1 || x.rank > LT_IDX_MAX_RANK) __builtin_trap();
        size_t count = 1;
        for (int i = 0; i < x.rank; i++) count *= x.dims[i];
        if (count != x.count) __builtin_trap();
        fz_touch(x.data, x.count);
        lt_idx_free(&x);
    } else if (x.data || x.count || x.rank || !err.msg[0]) {
        __builtin_trap(); /* failures leave the struct zeroed and say why */
    }
    lt_idx_free(&x);

    if (dataset) {
        /* The first dimension from the header, unless the input is gzip already. */
        uint32_t n = 1;
        if (size >= 8 && !(data[0] == 0x1f && data[1] == 0x8b)) n = (uint32_t)data[4] << 24 | (uint32_t)data[5] << 16 | (uint32_t)data[6] << 8 | data[7];
        if (n == 0 || n > 4096) n = 1;
        write_companion(as_labels ? images : labels, as_labels ? 3 : 1, n);
        lt_dataset ds;
        if (lt_dataset_load(&ds, fz_tmpdir(), "train", &err) == 0) {
            if (ds.n < 1 || ds.c != 1 || ds.h < 1 || ds.w < 1 || ds.n_classes < 1) __builtin_trap();
            fz_touch(ds.images, (size_t)ds.n * ds.h * ds.w);
            fz_touch(ds.labels, (size_t)ds.n);
            for (int i = 0; i < ds.n; i++)
                if (ds.labels[i] >= ds.n_classes) __builtin_trap();
        }
        lt_dataset_free(&ds);
    }
    return 0;
}
