/* Reading and writing safetensors files (see safetensors.h for the format).
 *
 * The reader trusts nothing in the file: every header value is checked against
 * the file's real size before it is used, and the tensors must tile the byte
 * buffer exactly, as the reference Rust implementation demands. A file that
 * passes can be indexed without further checks. */
#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "io/safetensors.h"

/* safetensors stores tensor data little-endian, and we hand that data to the
 * rest of latent as raw bytes (a float tensor is memcpy'ed into a float array).
 * On a big-endian machine every value would be silently byte-swapped, so refuse
 * to build there rather than produce garbage. The header length is decoded byte
 * by byte and would be fine either way. */
#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__)
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "latent's safetensors I/O assumes a little-endian machine"
#endif
#endif

static const struct {
    const char *name;
    size_t size;
} dtypes[LT_DT_COUNT] = {
    [LT_DT_F32] = {"F32", 4},   [LT_DT_F64] = {"F64", 8},         [LT_DT_I64] = {"I64", 8},
    [LT_DT_I32] = {"I32", 4},   [LT_DT_U8] = {"U8", 1},           [LT_DT_F16] = {"F16", 2},
    [LT_DT_BF16] = {"BF16", 2}, [LT_DT_I8] = {"I8", 1},           [LT_DT_I16] = {"I16", 2},
    [LT_DT_U16] = {"U16", 2},   [LT_DT_U32] = {"U32", 4},         [LT_DT_U64] = {"U64", 8},
    [LT_DT_BOOL] = {"BOOL", 1}, [LT_DT_F8_E4M3] = {"F8_E4M3", 1}, [LT_DT_F8_E5M2] = {"F8_E5M2", 1},
};

size_t lt_dtype_size(lt_dtype t)
{
    return (unsigned)t < LT_DT_COUNT ? dtypes[t].size : 0;
}

const char *lt_dtype_name(lt_dtype t)
{
    return (unsigned)t < LT_DT_COUNT ? dtypes[t].name : NULL;
}

int lt_dtype_from_name(const char *name, lt_dtype *out)
{
    for (int i = 0; i < LT_DT_COUNT; i++) {
        if (strcmp(name, dtypes[i].name) == 0) {
            *out = (lt_dtype)i;
            return 0;
        }
    }
    return -1;
}

static char *dup_str(const char *s, lt_err *err)
{
    size_t n = strlen(s) + 1;
    char *d = lt_malloc(n, err);
    if (d) memcpy(d, s, n);
    return d;
}

/* For messages: what kind of JSON value was found where another was expected. */
static const char *json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "object";
    case JSON_ARRAY: return "array";
    case JSON_STRING: return "string";
    case JSON_INTEGER: return "integer";
    case JSON_REAL: return "real number";
    case JSON_TRUE: return "true";
    case JSON_FALSE: return "false";
    case JSON_NULL: return "null";
    }
    return "value";
}

/* Offset of the first byte that breaks UTF-8 (overlong forms, surrogates and
 * code points past U+10FFFF included), or n if all of s is valid. jansson also
 * rejects bad UTF-8, but its message does not say where. */
static size_t utf8_bad_offset(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t len;
        unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
        if (c < 0x80) { i++; continue; }
        else if (c >= 0xC2 && c <= 0xDF) len = 2;
        else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            if (c == 0xE0) lo = 0xA0;      /* overlong */
            if (c == 0xED) hi = 0x9F;      /* surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            if (c == 0xF0) lo = 0x90;      /* overlong */
            if (c == 0xF4) hi = 0x8F;      /* past U+10FFFF */
        } else return i;
        if (n - i < len) return i;
        if (s[i + 1] < lo || s[i + 1] > hi) return i;
        for (size_t k = 2; k < len; k++)
            if (s[i + k] < 0x80 || s[i + k] > 0xBF) return i;
        i += len;
    }
    return n;
}

/* A tensor while parsing: its data range is needed to check the layout but is
 * not part of lt_st_tensor. order is its place in the JSON, to break ties. */
typedef struct pending {
    lt_st_tensor t;
    uint64_t begin, end;
    size_t order;
} pending;

static int cmp_pending(const void *pa, const void *pb)
{
    const pending *a = pa, *b = pb;
    if (a->begin != b->begin) return a->begin < b->begin ? -1 : 1;
    /* A zero-size tensor sorts before a non-empty one at the same offset, so
     * both can start where the previous tensor ends. */
    if (a->end != b->end) return a->end < b->end ? -1 : 1;
    return a->order < b->order ? -1 : a->order > b->order;
}

/* Parse one tensor entry (everything except its place in the layout). */
static int parse_tensor(const char *fname, const char *name, json_t *v, uint64_t data_len,
                        pending *p, lt_err *err)
{
    if (!json_is_object(v))
        return lt_errf(err, LT_EFORMAT,
                       "%s: tensor \"%s\" is a JSON %s, expected an object with dtype, shape and data_offsets",
                       fname, name, json_kind(v));
    json_t *dt = json_object_get(v, "dtype");
    json_t *shape = json_object_get(v, "shape");
    json_t *offs = json_object_get(v, "data_offsets");
    const char *missing = !dt ? "dtype" : !shape ? "shape" : !offs ? "data_offsets" : NULL;
    if (missing)
        return lt_errf(err, LT_EFORMAT, "%s: tensor \"%s\" has no \"%s\"; expected dtype, shape and data_offsets",
                       fname, name, missing);

    if (!json_is_string(dt))
        return lt_errf(err, LT_EFORMAT, "%s: tensor \"%s\": dtype is a JSON %s, expected a string such as \"F32\"",
                       fname, name, json_kind(dt));
    if (lt_dtype_from_name(json_string_value(dt), &p->t.dtype) != 0)
        return lt_errf(err, LT_EFORMAT,
                       "%s: tensor \"%s\": unknown dtype \"%s\"; expected F32, F64, F16, BF16, "
                       "I8-I64, U8-U64, BOOL, F8_E4M3 or F8_E5M2",
                       fname, name, json_string_value(dt));

    if (!json_is_array(shape))
        return lt_errf(err, LT_EFORMAT,
                       "%s: tensor \"%s\": shape is a JSON %s, expected an array of non-negative integers",
                       fname, name, json_kind(shape));
    size_t rank = json_array_size(shape);
    if (rank > LT_ST_MAX_RANK)
        return lt_errf(err, LT_EFORMAT, "%s: tensor \"%s\": shape has rank %zu, expected at most %d dimensions",
                       fname, name, rank, LT_ST_MAX_RANK);
    p->t.rank = (int)rank;
    size_t count = 1;
    for (size_t i = 0; i < rank; i++) {
        json_t *d = json_array_get(shape, i);
        if (!json_is_integer(d))
            return lt_errf(err, LT_EFORMAT,
                           "%s: tensor \"%s\": shape[%zu] is a JSON %s, expected a non-negative integer",
                           fname, name, i, json_kind(d));
        json_int_t dim = json_integer_value(d);
        if (dim < 0)
            return lt_errf(err, LT_EFORMAT,
                           "%s: tensor \"%s\": shape[%zu] is negative (%lld), expected a non-negative integer",
                           fname, name, i, (long long)dim);
        p->t.shape[i] = (int64_t)dim;
        if ((unsigned long long)dim > SIZE_MAX || lt_mul_size(count, (size_t)dim, &count) != 0)
            return lt_errf(err, LT_EFORMAT, "%s: tensor \"%s\": shape element count overflows", fname, name);
    }
    size_t esize = lt_dtype_size(p->t.dtype);
    if (lt_mul_size(count, esize, &p->t.nbytes) != 0)
        return lt_errf(err, LT_EFORMAT, "%s: tensor \"%s\": byte size (%zu elements of %zu bytes) overflows",
                       fname, name, count, esize);

    if (!json_is_array(offs) || json_array_size(offs) != 2 || !json_is_integer(json_array_get(offs, 0)) ||
        !json_is_integer(json_array_get(offs, 1)))
        return lt_errf(err, LT_EFORMAT, "%s: tensor \"%s\": data_offsets is not [begin, end] with two integers",
                       fname, name);
    json_int_t b = json_integer_value(json_array_get(offs, 0));
    json_int_t e = json_integer_value(json_array_get(offs, 1));
    if (b < 0 || e < b)
        return lt_errf(err, LT_EFORMAT,
                       "%s: tensor \"%s\": data_offsets [%lld, %lld], expected 0 <= begin <= end",
                       fname, name, (long long)b, (long long)e);
    p->begin = (uint64_t)b;
    p->end = (uint64_t)e;
    if (p->end - p->begin != p->t.nbytes)
        return lt_errf(err, LT_EFORMAT,
                       "%s: tensor \"%s\": data_offsets [%llu, %llu] hold %llu bytes, but dtype %s and "
                       "%d dims of %zu elements need %zu",
                       fname, name, (unsigned long long)p->begin, (unsigned long long)p->end,
                       (unsigned long long)(p->end - p->begin), json_string_value(dt), p->t.rank, count,
                       p->t.nbytes);
    if (p->end > data_len)
        return lt_errf(err, LT_EFORMAT,
                       "%s: tensor \"%s\": data_offsets [%llu, %llu] run past the end of the %llu-byte data buffer",
                       fname, name, (unsigned long long)p->begin, (unsigned long long)p->end,
                       (unsigned long long)data_len);
    return 0;
}

static int parse_metadata(const char *fname, json_t *md, lt_st_file *f, lt_err *err)
{
    if (!json_is_object(md))
        return lt_errf(err, LT_EFORMAT, "%s: __metadata__ is a JSON %s, expected an object of strings", fname,
                       json_kind(md));
    size_t n = json_object_size(md);
    /* Bounded by the header size, which has been checked against the file. */
    f->meta_keys = lt_calloc(n, sizeof *f->meta_keys, err);
    f->meta_vals = lt_calloc(n, sizeof *f->meta_vals, err);
    if (!f->meta_keys || !f->meta_vals) return LT_ENOMEM;
    const char *key;
    json_t *val;
    json_object_foreach(md, key, val) {
        if (!json_is_string(val))
            return lt_errf(err, LT_EFORMAT, "%s: __metadata__ \"%s\" is a JSON %s, expected a string", fname, key,
                           json_kind(val));
        f->meta_keys[f->n_meta] = dup_str(key, err);
        f->meta_vals[f->n_meta] = dup_str(json_string_value(val), err);
        /* Counted first so that lt_st_free releases whichever copy succeeded. */
        f->n_meta++;
        if (!f->meta_keys[f->n_meta - 1] || !f->meta_vals[f->n_meta - 1]) return LT_ENOMEM;
    }
    return 0;
}

/* Check that the tensors, sorted by data offset, tile [0, data_len) exactly:
 * no overlap, no gap, nothing left over. Unreferenced bytes would be invisible
 * to every reader, so they mean a damaged or tampered file. */
static int check_layout(const char *fname, const pending *p, size_t n, uint64_t data_len, lt_err *err)
{
    uint64_t at = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i].begin < at)
            return lt_errf(err, LT_EFORMAT, "%s: tensors \"%s\" [%llu, %llu] and \"%s\" [%llu, %llu] overlap",
                           fname, p[i - 1].t.name, (unsigned long long)p[i - 1].begin,
                           (unsigned long long)p[i - 1].end, p[i].t.name, (unsigned long long)p[i].begin,
                           (unsigned long long)p[i].end);
        if (p[i].begin > at)
            return lt_errf(err, LT_EFORMAT,
                           "%s: gap of %llu unused bytes before tensor \"%s\", which starts at %llu; "
                           "expected it at %llu where the previous data ends",
                           fname, (unsigned long long)(p[i].begin - at), p[i].t.name,
                           (unsigned long long)p[i].begin, (unsigned long long)at);
        at = p[i].end;
    }
    if (at != data_len)
        return lt_errf(err, LT_EFORMAT,
                       "%s: %llu trailing bytes after the last tensor: data ends at %llu, expected it to fill "
                       "the %llu-byte buffer",
                       fname, (unsigned long long)(data_len - at), (unsigned long long)at,
                       (unsigned long long)data_len);
    return 0;
}

/* Everything after the header length has been checked against the file size. */
static int parse_header(const char *fname, const unsigned char *hdr, size_t hlen, unsigned char *data,
                        uint64_t data_len, lt_st_file *f, lt_err *err)
{
    size_t bad = utf8_bad_offset(hdr, hlen);
    if (bad < hlen)
        return lt_errf(err, LT_EFORMAT, "%s: header is not valid UTF-8: byte 0x%02x at header offset %zu", fname,
                       hdr[bad], bad);
    json_error_t jerr;
    json_t *root = json_loadb((const char *)hdr, hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return lt_errf(err, LT_EFORMAT, "%s: header is not valid JSON: %s (line %d, column %d)", fname, jerr.text,
                       jerr.line, jerr.column);
    int rc = 0;
    pending *p = NULL;
    size_t np = 0;
    if (!json_is_object(root)) {
        rc = lt_errf(err, LT_EFORMAT, "%s: header is a JSON %s, expected an object", fname, json_kind(root));
        goto out;
    }
    json_t *md = json_object_get(root, "__metadata__");
    if (md && (rc = parse_metadata(fname, md, f, err)) != 0) goto out;

    size_t count = json_object_size(root) - (md != NULL);
    if (count > INT_MAX) {
        rc = lt_errf(err, LT_EFORMAT, "%s: %zu tensors, more than latent can index", fname, count);
        goto out;
    }
    p = lt_calloc(count, sizeof *p, err);
    if (!p) { rc = LT_ENOMEM; goto out; }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (val == md) continue;
        pending *q = &p[np];
        q->order = np;
        if (!(q->t.name = dup_str(key, err))) { rc = LT_ENOMEM; goto out; }
        np++;
        if ((rc = parse_tensor(fname, key, val, data_len, q, err)) != 0) goto out;
    }
    qsort(p, np, sizeof *p, cmp_pending);
    if ((rc = check_layout(fname, p, np, data_len, err)) != 0) goto out;

    f->tensors = lt_calloc(np, sizeof *f->tensors, err);
    if (!f->tensors) { rc = LT_ENOMEM; goto out; }
    for (size_t i = 0; i < np; i++) {
        f->tensors[i] = p[i].t;
        f->tensors[i].data = data + p[i].begin;
        p[i].t.name = NULL; /* now owned by f */
    }
    f->n = (int)np;
out:
    if (p)
        for (size_t i = 0; i < np; i++) free(p[i].t.name);
    free(p);
    json_decref(root);
    return rc;
}

/* Parse a file held in buf, which the result takes over (freed on failure). */
static int parse_owned(void *buf, size_t n, const char *fname, lt_st_file *f, lt_err *err)
{
    memset(f, 0, sizeof *f);
    if (!fname) fname = "safetensors data";
    unsigned char *b = buf;
    int rc;
    if (n < 8) {
        rc = lt_errf(err, LT_EFORMAT, "%s: file is %zu bytes, too short for the 8-byte header length", fname, n);
        goto fail;
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | b[i];
    if (hlen == 0) {
        rc = lt_errf(err, LT_EFORMAT, "%s: header length is 0, expected a JSON object", fname);
        goto fail;
    }
    if (hlen > LT_ST_MAX_HEADER) {
        rc = lt_errf(err, LT_EFORMAT, "%s: header of %llu bytes exceeds the 100 MB limit", fname,
                     (unsigned long long)hlen);
        goto fail;
    }
    if (hlen > n - 8) {
        rc = lt_errf(err, LT_EFORMAT,
                     "%s: header of %llu bytes runs past the end of the file, which has %zu bytes after the length",
                     fname, (unsigned long long)hlen, n - 8);
        goto fail;
    }
    f->buf = buf;
    f->buf_len = n;
    rc = parse_header(fname, b + 8, (size_t)hlen, b + 8 + hlen, n - 8 - hlen, f, err);
    if (rc == 0) return 0;
    lt_st_free(f); /* frees buf */
    return rc;
fail:
    free(buf);
    return rc;
}

int lt_st_read(const char *path, lt_st_file *f, lt_err *err)
{
    memset(f, 0, sizeof *f);
    void *buf;
    size_t n;
    int rc = lt_read_file(path, &buf, &n, err);
    if (rc != 0) return rc;
    return parse_owned(buf, n, path, f, err);
}

int lt_st_parse(const void *bytes, size_t n, const char *name_for_errors, lt_st_file *f, lt_err *err)
{
    memset(f, 0, sizeof *f);
    /* A copy keeps the caller's buffer its own and gives the tensors the
     * alignment of malloc'ed memory for the header's padding to build on. */
    void *copy = lt_malloc(n, err);
    if (!copy) return LT_ENOMEM;
    if (n) memcpy(copy, bytes, n);
    return parse_owned(copy, n, name_for_errors, f, err);
}

const lt_st_tensor *lt_st_find(const lt_st_file *f, const char *name)
{
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

const char *lt_st_meta(const lt_st_file *f, const char *key)
{
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta_keys[i], key) == 0) return f->meta_vals[i];
    return NULL;
}

void lt_st_free(lt_st_file *f)
{
    if (!f) return;
    for (int i = 0; i < f->n; i++) free(f->tensors[i].name);
    free(f->tensors);
    for (int i = 0; i < f->n_meta; i++) {
        free(f->meta_keys[i]);
        free(f->meta_vals[i]);
    }
    free(f->meta_keys);
    free(f->meta_vals);
    free(f->buf);
    memset(f, 0, sizeof *f);
}

/* ---- writing ---- */

/* Build the header object; *data_len gets the byte buffer's size. */
static int build_header(const char *path, const lt_st_entry *t, int n, const char *const *meta_kv, int n_meta,
                        json_t *root, size_t *data_len, lt_err *err)
{
    if (n_meta > 0) {
        json_t *md = json_object();
        if (!md || json_object_set_new(root, "__metadata__", md) != 0)
            return lt_errf(err, LT_ENOMEM, "%s: out of memory building the header", path);
        for (int i = 0; i < n_meta; i++) {
            const char *k = meta_kv[2 * i], *v = meta_kv[2 * i + 1];
            if (!k || !v)
                return lt_errf(err, LT_EINVAL, "%s: metadata pair %d has a NULL key or value", path, i);
            if (json_object_get(md, k))
                return lt_errf(err, LT_EINVAL, "%s: metadata key \"%s\" given twice", path, k);
            json_t *s = json_string(v);
            if (!s || json_object_set_new(md, k, s) != 0)
                return lt_errf(err, LT_EINVAL, "%s: metadata \"%s\" is not valid UTF-8", path, k);
        }
    }
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        const lt_st_entry *e = &t[i];
        if (!e->name)
            return lt_errf(err, LT_EINVAL, "%s: tensor %d has no name", path, i);
        if (strcmp(e->name, "__metadata__") == 0 || json_object_get(root, e->name))
            return lt_errf(err, LT_EINVAL, "%s: tensor name \"%s\" is reserved or used twice", path, e->name);
        size_t esize = lt_dtype_size(e->dtype);
        if (esize == 0)
            return lt_errf(err, LT_EINVAL, "%s: tensor \"%s\" has invalid dtype %d", path, e->name, (int)e->dtype);
        if (e->rank < 0 || e->rank > LT_ST_MAX_RANK || (e->rank > 0 && !e->shape))
            return lt_errf(err, LT_EINVAL, "%s: tensor \"%s\" has rank %d, expected 0..%d with a shape", path,
                           e->name, e->rank, LT_ST_MAX_RANK);
        json_t *obj = json_object();
        if (!obj) return lt_errf(err, LT_ENOMEM, "%s: out of memory building the header", path);
        /* json_object_set_new takes the reference even when it fails, so after
         * this root owns obj and everything attached to it. */
        if (json_object_set_new(root, e->name, obj) != 0)
            return lt_errf(err, LT_EINVAL, "%s: tensor name \"%s\" is not valid UTF-8", path, e->name);
        json_t *shape = json_array(), *offs = json_array();
        /* Key order as the Python library writes it: dtype, shape, data_offsets.
         * Bitwise | so that every call runs and takes its reference. */
        if ((json_object_set_new(obj, "dtype", json_string(lt_dtype_name(e->dtype))) |
             json_object_set_new(obj, "shape", shape) | json_object_set_new(obj, "data_offsets", offs)) != 0)
            return lt_errf(err, LT_ENOMEM, "%s: out of memory building the header", path);
        size_t nbytes = esize;
        for (int d = 0; d < e->rank; d++) {
            if (e->shape[d] < 0)
                return lt_errf(err, LT_EINVAL, "%s: tensor \"%s\": shape[%d] is negative (%lld)", path, e->name, d,
                               (long long)e->shape[d]);
            if ((uint64_t)e->shape[d] > SIZE_MAX || lt_mul_size(nbytes, (size_t)e->shape[d], &nbytes) != 0)
                return lt_errf(err, LT_EINVAL, "%s: tensor \"%s\": byte size overflows", path, e->name);
            if (json_array_append_new(shape, json_integer((json_int_t)e->shape[d])) != 0)
                return lt_errf(err, LT_ENOMEM, "%s: out of memory building the header", path);
        }
        if (nbytes > 0 && !e->data)
            return lt_errf(err, LT_EINVAL, "%s: tensor \"%s\" has no data", path, e->name);
        /* Offsets are written as JSON integers (long long), so keep them below that. */
        if (nbytes > (size_t)LLONG_MAX - off)
            return lt_errf(err, LT_EINVAL, "%s: tensors total more bytes than a file can index", path);
        if (json_array_append_new(offs, json_integer((json_int_t)off)) != 0 ||
            json_array_append_new(offs, json_integer((json_int_t)(off + nbytes))) != 0)
            return lt_errf(err, LT_ENOMEM, "%s: out of memory building the header", path);
        off += nbytes;
    }
    *data_len = off;
    return 0;
}

int lt_st_write(const char *path, const lt_st_entry *t, int n, const char *const *meta_kv, int n_meta,
                lt_err *err)
{
    if (!path || n < 0 || n_meta < 0 || (n > 0 && !t) || (n_meta > 0 && !meta_kv))
        return lt_errf(err, LT_EINVAL, "%s: bad arguments to lt_st_write (n=%d, n_meta=%d)",
                       path ? path : "(null path)", n, n_meta);
    json_t *root = json_object();
    if (!root) return lt_errf(err, LT_ENOMEM, "%s: out of memory building the header", path);
    size_t data_len = 0;
    int rc = build_header(path, t, n, meta_kv, n_meta, root, &data_len, err);
    char *hdr = NULL;
    unsigned char *out = NULL;
    if (rc != 0) goto done;
    /* Compact, in insertion order: the same bytes Python's serde_json writes. */
    hdr = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!hdr) { rc = lt_errf(err, LT_ENOMEM, "%s: out of memory serializing the header", path); goto done; }
    size_t hlen = strlen(hdr);
    size_t padded = (hlen + 7) / 8 * 8;
    /* Readers (ours and Python's) refuse larger headers, so never write one. */
    if (padded > LT_ST_MAX_HEADER) {
        rc = lt_errf(err, LT_EINVAL, "%s: header of %zu bytes exceeds the 100 MB limit", path, padded);
        goto done;
    }
    if (data_len > SIZE_MAX - 8 - padded) {
        rc = lt_errf(err, LT_EINVAL, "%s: file too large", path);
        goto done;
    }
    size_t total = 8 + padded + data_len;
    out = lt_malloc(total, err);
    if (!out) { rc = LT_ENOMEM; goto done; }
    for (int i = 0; i < 8; i++) out[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    memcpy(out + 8, hdr, hlen);
    memset(out + 8 + hlen, ' ', padded - hlen);
    unsigned char *d = out + 8 + padded;
    for (int i = 0; i < n; i++) {
        size_t nbytes = lt_dtype_size(t[i].dtype);
        for (int k = 0; k < t[i].rank; k++) nbytes *= (size_t)t[i].shape[k]; /* checked in build_header */
        if (nbytes) memcpy(d, t[i].data, nbytes);
        d += nbytes;
    }
    rc = lt_write_file_atomic(path, out, total, err);
done:
    free(out);
    free(hdr);
    json_decref(root);
    return rc;
}
