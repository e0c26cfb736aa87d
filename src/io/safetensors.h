/* safetensors: the tensor file format of Hugging Face's safetensors library.
 *
 * A file is an 8-byte little-endian header length N, then N bytes of JSON, then
 * the byte buffer that holds every tensor's data back to back:
 *
 *   {"__metadata__": {"key": "value", ...},
 *    "name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...}
 *
 * data_offsets are relative to the start of the byte buffer. We read and write
 * the format exactly as the Python library does, so checkpoints can be loaded
 * with `safetensors.torch.load_file` and files from PyTorch can be read here.
 *
 * Tensor data is stored little-endian and handed over as raw bytes; latent only
 * targets little-endian machines (safetensors.c refuses to build elsewhere). */
#ifndef LATENT_IO_SAFETENSORS_H
#define LATENT_IO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "latent.h"

/* Element types, spelled in files as in the comment. The first seven keep the
 * values they had when this enum was first specified; add new ones before
 * LT_DT_COUNT. */
typedef enum lt_dtype {
    LT_DT_F32,     /* "F32" */
    LT_DT_F64,     /* "F64" */
    LT_DT_I64,     /* "I64" */
    LT_DT_I32,     /* "I32" */
    LT_DT_U8,      /* "U8" */
    LT_DT_F16,     /* "F16" */
    LT_DT_BF16,    /* "BF16" */
    LT_DT_I8,      /* "I8" */
    LT_DT_I16,     /* "I16" */
    LT_DT_U16,     /* "U16" */
    LT_DT_U32,     /* "U32" */
    LT_DT_U64,     /* "U64" */
    LT_DT_BOOL,    /* "BOOL", one byte per element */
    LT_DT_F8_E4M3, /* "F8_E4M3" */
    LT_DT_F8_E5M2, /* "F8_E5M2" */
    LT_DT_COUNT    /* number of dtypes, not a dtype */
} lt_dtype;

#define LT_ST_MAX_RANK 8
/* The Python library refuses headers over 100 MB; so do we, before allocating. */
#define LT_ST_MAX_HEADER 100000000u

/* Bytes per element, or 0 for a value that is not an lt_dtype. */
size_t lt_dtype_size(lt_dtype t);
/* The name used in files ("F32", ...), or NULL for a value that is not an lt_dtype. */
const char *lt_dtype_name(lt_dtype t);
/* Parse a file's dtype name: 0 and *out set, or -1 if the name is unknown. */
int lt_dtype_from_name(const char *name, lt_dtype *out);

typedef struct lt_st_tensor {
    char *name;
    lt_dtype dtype;
    int rank;                        /* 0 for a scalar */
    int64_t shape[LT_ST_MAX_RANK];   /* shape[rank..] are 0 */
    size_t nbytes;                   /* product(shape) * lt_dtype_size(dtype) */
    /* Points into buf. Only as aligned as the file makes it (the format has no
     * alignment rule), so copy out with memcpy rather than casting. */
    const void *data;
} lt_st_tensor;

typedef struct lt_st_file {
    int n;                  /* tensors, in the order of their data in the file */
    lt_st_tensor *tensors;
    int n_meta;             /* __metadata__ entries, in file order */
    char **meta_keys;
    char **meta_vals;
    void *buf;              /* the whole file, header included */
    size_t buf_len;
} lt_st_file;

/* Read and validate a whole file. On failure *f is left zeroed (lt_st_free on
 * it is harmless) and err says what is wrong: LT_EIO if the file cannot be
 * read, LT_EFORMAT if it is not a valid safetensors file, LT_ENOMEM. */
int lt_st_read(const char *path, lt_st_file *f, lt_err *err);
/* The same from memory. The bytes are copied, so the caller may free or reuse
 * them as soon as this returns. name_for_errors (may be NULL) is what error
 * messages call the file. */
int lt_st_parse(const void *bytes, size_t n, const char *name_for_errors, lt_st_file *f,
                lt_err *err);
/* The tensor called name, or NULL. */
const lt_st_tensor *lt_st_find(const lt_st_file *f, const char *name);
/* The metadata value for key, or NULL if absent. */
const char *lt_st_meta(const lt_st_file *f, const char *key);
/* Free everything and zero *f; safe on a zeroed or already-freed file. */
void lt_st_free(lt_st_file *f);

typedef struct lt_st_entry {
    const char *name;
    lt_dtype dtype;
    int rank;
    const int64_t *shape;  /* rank dims; may be NULL when rank is 0 */
    const void *data;      /* product(shape) * lt_dtype_size(dtype) bytes */
} lt_st_entry;

/* Write n tensors to path atomically (temporary file, fsync, rename).
 * Tensors are laid out in the order given, back to back, and listed in the
 * header in that order; the header is compact JSON with keys in the order the
 * Python library uses, so its output matches Python's byte for byte whenever
 * the tensor order does (Python sorts by dtype, then name). meta_kv holds n_meta
 * key/value pairs (2 * n_meta strings: key, value, key, value, ...) written as
 * "__metadata__"; with n_meta == 0 the entry is left out, as Python does. The
 * header is padded with spaces to a multiple of 8 bytes. Names and strings
 * must be UTF-8; tensor names must be unique and not "__metadata__".
 * Returns LT_EINVAL for bad arguments, LT_EIO if the file cannot be written. */
int lt_st_write(const char *path, const lt_st_entry *t, int n, const char *const *meta_kv,
                int n_meta, lt_err *err);

#endif
