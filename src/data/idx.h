/* data: IDX files (the format of MNIST and its relatives).
 *
 * An IDX file is a big-endian header -- two zero bytes, a dtype byte, a rank
 * byte, then one uint32 per dimension -- followed by the elements in row-major
 * order. Files may be gzip-compressed; that is detected from the content (the
 * gzip magic 1f 8b), not from the name. Only dtype 0x08 (unsigned byte), the
 * one every MNIST-like data set uses, is supported.
 *
 * The reader treats its input as hostile: every field is checked, sizes are
 * multiplied with overflow checks, the data must be exactly as long as the
 * header says, and a compressed file never makes it allocate much more than
 * what actually decompresses, whatever its header claims. */
#ifndef LATENT_DATA_IDX_H
#define LATENT_DATA_IDX_H

#include <stddef.h>
#include <stdint.h>

#include "latent.h"

#define LT_IDX_UBYTE 0x08
#define LT_IDX_MAX_RANK 4

typedef struct lt_idx {
    int dtype;                       /* always LT_IDX_UBYTE after a successful read */
    int rank;                        /* 1..LT_IDX_MAX_RANK */
    uint32_t dims[LT_IDX_MAX_RANK];  /* dims[0..rank), each >= 1; the rest 0 */
    size_t count;                    /* product of dims = number of bytes in data */
    uint8_t *data;                   /* malloc'ed, owned by the struct */
} lt_idx;

/* Read a plain or gzip-compressed IDX file. On failure *out is left zeroed and
 * err names the file and what is wrong with it: LT_EIO when it cannot be
 * opened or read, LT_EFORMAT when its content is malformed or unsupported,
 * LT_ENOMEM when memory runs out. */
int lt_idx_read(const char *path, lt_idx *out, lt_err *err);
/* Free the data and zero the struct; safe on a zeroed struct. */
void lt_idx_free(lt_idx *x);

#endif
