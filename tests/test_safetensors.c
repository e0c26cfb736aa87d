/* safetensors reading and writing: round trips, a file laid out exactly as the
 * Python library writes it, and one test per kind of malformed file. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/safetensors.h"

/* Each test gets a fresh temporary directory, removed (with its files) after. */
typedef struct fixture {
    char dir[64];
    char path[128];
} fixture;

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    if (!fx) return -1;
    snprintf(fx->dir, sizeof fx->dir, "/tmp/latent-st-XXXXXX");
    if (!mkdtemp(fx->dir)) { free(fx); return -1; }
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    DIR *d = opendir(fx->dir);
    if (d) {
        struct dirent *de;
        char p[512];
        while ((de = readdir(d)) != NULL) {
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
            snprintf(p, sizeof p, "%s/%s", fx->dir, de->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(fx->dir);
    free(fx);
    return 0;
}

static const char *path_in(fixture *fx, const char *name)
{
    snprintf(fx->path, sizeof fx->path, "%s/%s", fx->dir, name);
    return fx->path;
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) n++;
    closedir(d);
    return n;
}

static void write_bytes(const char *path, const void *bytes, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(bytes, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

/* A file with the given 8-byte length field, header text and data. */
static size_t build_raw(unsigned char *out, size_t cap, uint64_t hlen_field, const char *hdr, const void *data,
                        size_t nd)
{
    size_t hl = strlen(hdr);
    assert_true(8 + hl + nd <= cap);
    for (int i = 0; i < 8; i++) out[i] = (unsigned char)(hlen_field >> (8 * i));
    memcpy(out + 8, hdr, hl);
    if (nd) memcpy(out + 8 + hl, data, nd);
    return 8 + hl + nd;
}

/* Write a malformed file, read it, and check that the reader rejects it with
 * code, a message naming the file and containing word, and a zeroed result. */
static void expect_bad_bytes(fixture *fx, const void *bytes, size_t n, int code, const char *word)
{
    const char *path = path_in(fx, "bad.safetensors");
    write_bytes(path, bytes, n);
    lt_st_file f;
    memset(&f, 0xAB, sizeof f); /* the reader must zero it */
    lt_err err = {0};
    int rc = lt_st_read(path, &f, &err);
    if (rc != code || !strstr(err.msg, path) || !strstr(err.msg, word))
        print_message("rc=%d msg=%s (wanted %d and \"%s\")\n", rc, err.msg, code, word);
    assert_int_equal(rc, code);
    assert_int_equal(err.code, code);
    assert_non_null(strstr(err.msg, path));
    assert_non_null(strstr(err.msg, word));
    assert_int_equal(f.n, 0);
    assert_null(f.buf);
    assert_null(f.tensors);
    assert_int_equal(f.n_meta, 0);
}

static void expect_bad(fixture *fx, const char *hdr, size_t nd, const char *word)
{
    unsigned char buf[1024], data[256] = {0};
    assert_true(nd <= sizeof data);
    size_t n = build_raw(buf, sizeof buf, strlen(hdr), hdr, data, nd);
    expect_bad_bytes(fx, buf, n, LT_EFORMAT, word);
}

/* ---- files as the Python library writes them ---- */

/* safetensors.torch.save_file({"a": torch.tensor([1.0, 2.0])}): a 54-byte
 * header padded with two spaces to 56, then two little-endian floats. */
static const unsigned char python_file[] = {
    0x38, 0, 0, 0, 0, 0, 0, 0,
    '{', '"', 'a', '"', ':', '{', '"', 'd', 't', 'y', 'p', 'e', '"', ':', '"', 'F', '3', '2', '"', ',',
    '"', 's', 'h', 'a', 'p', 'e', '"', ':', '[', '2', ']', ',',
    '"', 'd', 'a', 't', 'a', '_', 'o', 'f', 'f', 's', 'e', 't', 's', '"', ':', '[', '0', ',', '8', ']', '}', '}',
    ' ', ' ',
    0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0x40,
};

static void test_python_file(void **state)
{
    (void)state;
    assert_int_equal(sizeof python_file, 8 + 56 + 8);
    lt_st_file f;
    lt_err err = {0};
    assert_int_equal(lt_st_parse(python_file, sizeof python_file, "py.safetensors", &f, &err), 0);
    assert_int_equal(f.n, 1);
    assert_int_equal(f.n_meta, 0);
    assert_null(lt_st_meta(&f, "format"));
    const lt_st_tensor *a = lt_st_find(&f, "a");
    assert_non_null(a);
    assert_string_equal(a->name, "a");
    assert_int_equal(a->dtype, LT_DT_F32);
    assert_int_equal(a->rank, 1);
    assert_int_equal(a->shape[0], 2);
    assert_int_equal(a->shape[1], 0);
    assert_int_equal(a->nbytes, 8);
    float v[2];
    memcpy(v, a->data, sizeof v);
    assert_true(v[0] == 1.0f && v[1] == 2.0f);
    assert_ptr_equal(a->data, (const unsigned char *)f.buf + 64);
    assert_int_equal(f.buf_len, sizeof python_file);
    assert_null(lt_st_find(&f, "b"));
    lt_st_free(&f);
    lt_st_free(&f); /* freeing twice is harmless */
    assert_null(f.buf);
}

static void test_write_matches_python(void **state)
{
    fixture *fx = *state;
    const char *path = path_in(fx, "a.safetensors");
    const float v[2] = {1.0f, 2.0f};
    const int64_t shape[1] = {2};
    lt_st_entry e = {"a", LT_DT_F32, 1, shape, v};
    lt_err err = {0};
    assert_int_equal(lt_st_write(path, &e, 1, NULL, 0, &err), 0);
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    unsigned char got[256];
    size_t n = fread(got, 1, sizeof got, fp);
    fclose(fp);
    assert_int_equal(n, sizeof python_file);
    assert_memory_equal(got, python_file, sizeof python_file);
}

/* With metadata, Python writes "__metadata__" first, then the tensors. */
static void test_write_metadata_layout(void **state)
{
    fixture *fx = *state;
    const char *path = path_in(fx, "m.safetensors");
    const uint8_t v[3] = {7, 8, 9};
    const int64_t shape[1] = {3};
    lt_st_entry e = {"x", LT_DT_U8, 1, shape, v};
    const char *kv[] = {"format", "pt"};
    lt_err err = {0};
    assert_int_equal(lt_st_write(path, &e, 1, kv, 1, &err), 0);
    const char *hdr = "{\"__metadata__\":{\"format\":\"pt\"},\"x\":{\"dtype\":\"U8\",\"shape\":[3],"
                      "\"data_offsets\":[0,3]}}";
    size_t hl = strlen(hdr), padded = (hl + 7) / 8 * 8;
    unsigned char want[256];
    memset(want, ' ', sizeof want);
    for (int i = 0; i < 8; i++) want[i] = (unsigned char)(padded >> (8 * i));
    memcpy(want + 8, hdr, hl);
    memcpy(want + 8 + padded, v, 3);
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    unsigned char got[256];
    size_t n = fread(got, 1, sizeof got, fp);
    fclose(fp);
    assert_int_equal(n, 8 + padded + 3);
    assert_memory_equal(got, want, n);
}

/* ---- round trips ---- */

static void test_round_trip(void **state)
{
    fixture *fx = *state;
    const char *path = path_in(fx, "rt.safetensors");
    const float w[6] = {0.5f, -1.25f, 3.0f, 1e-7f, -0.0f, 42.0f};
    const int64_t ids[4] = {-3, 0, INT64_MAX, INT64_MIN};
    const uint8_t px[3] = {0, 128, 255}; /* odd size: the next tensor is unaligned */
    const double scalar = 3.141592653589793;
    const int64_t sw[2] = {2, 3}, sid[1] = {4}, spx[3] = {1, 3, 1}, sempty[2] = {0, 5};
    const lt_st_entry in[] = {
        {"enc.w", LT_DT_F32, 2, sw, w},      {"labels", LT_DT_I64, 1, sid, ids},
        {"pixels", LT_DT_U8, 3, spx, px},    {"empty", LT_DT_F32, 2, sempty, NULL},
        {"lr", LT_DT_F64, 0, NULL, &scalar},
    };
    const int n = (int)(sizeof in / sizeof in[0]);
    const char *kv[] = {"format", "pt", "latent.model", "{\"kind\":\"ae\",\"z\":16}", "note", "caf\xc3\xa9"};
    lt_err err = {0};
    assert_int_equal(lt_st_write(path, in, n, kv, 3, &err), 0);

    lt_st_file f;
    assert_int_equal(lt_st_read(path, &f, &err), 0);
    assert_int_equal(f.n, n);
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        const lt_st_tensor *t = &f.tensors[i];
        /* Tensors come back in data order, which is the order written. */
        assert_string_equal(t->name, in[i].name);
        assert_ptr_equal(lt_st_find(&f, in[i].name), t);
        assert_int_equal(t->dtype, in[i].dtype);
        assert_int_equal(t->rank, in[i].rank);
        size_t count = 1;
        for (int d = 0; d < t->rank; d++) {
            assert_int_equal(t->shape[d], in[i].shape[d]);
            count *= (size_t)in[i].shape[d];
        }
        assert_int_equal(t->nbytes, count * lt_dtype_size(in[i].dtype));
        if (t->nbytes) assert_memory_equal(t->data, in[i].data, t->nbytes);
        total += t->nbytes;
    }
    assert_int_equal(total, 24 + 32 + 3 + 0 + 8);
    /* The header length field is a multiple of 8 and accounts for the file. */
    const unsigned char *b = f.buf;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | b[i];
    assert_int_equal(hlen % 8, 0);
    assert_int_equal(f.buf_len, 8 + hlen + total);
    assert_ptr_equal(f.tensors[0].data, b + 8 + hlen);

    assert_int_equal(f.n_meta, 3);
    assert_string_equal(lt_st_meta(&f, "format"), "pt");
    assert_string_equal(lt_st_meta(&f, "latent.model"), "{\"kind\":\"ae\",\"z\":16}");
    assert_string_equal(lt_st_meta(&f, "note"), "caf\xc3\xa9");
    assert_null(lt_st_meta(&f, "missing"));
    lt_st_free(&f);
}

static void test_empty_file_round_trip(void **state)
{
    fixture *fx = *state;
    const char *path = path_in(fx, "empty.safetensors");
    lt_err err = {0};
    assert_int_equal(lt_st_write(path, NULL, 0, NULL, 0, &err), 0);
    lt_st_file f;
    assert_int_equal(lt_st_read(path, &f, &err), 0);
    assert_int_equal(f.n, 0);
    assert_int_equal(f.buf_len, 16); /* "{}" padded to 8 */
    lt_st_free(&f);
}

/* The JSON may list tensors in any order; only the data must be contiguous. */
static void test_any_json_order(void **state)
{
    (void)state;
    const char *hdr = "{\"b\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[4,8]},"
                      "\"z\":{\"dtype\":\"F16\",\"shape\":[0],\"data_offsets\":[8,8]},"
                      "\"a\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                      "\"__metadata__\":{}}";
    const int32_t data[2] = {11, 22};
    unsigned char buf[512];
    size_t n = build_raw(buf, sizeof buf, strlen(hdr), hdr, data, sizeof data);
    lt_st_file f;
    lt_err err = {0};
    assert_int_equal(lt_st_parse(buf, n, "order", &f, &err), 0);
    /* The copy is the file's own: clobbering the input changes nothing. */
    memset(buf, 0, sizeof buf);
    assert_int_equal(f.n, 3);
    assert_int_equal(f.n_meta, 0);
    assert_string_equal(f.tensors[0].name, "a");
    assert_string_equal(f.tensors[1].name, "b");
    assert_string_equal(f.tensors[2].name, "z");
    int32_t v;
    memcpy(&v, lt_st_find(&f, "a")->data, 4);
    assert_int_equal(v, 11);
    memcpy(&v, lt_st_find(&f, "b")->data, 4);
    assert_int_equal(v, 22);
    assert_int_equal(lt_st_find(&f, "z")->nbytes, 0);
    lt_st_free(&f);
}

static void test_parse_names_source(void **state)
{
    (void)state;
    const unsigned char bytes[4] = {1, 2, 3, 4};
    lt_st_file f;
    lt_err err = {0};
    assert_int_equal(lt_st_parse(bytes, sizeof bytes, "memory-blob", &f, &err), LT_EFORMAT);
    assert_non_null(strstr(err.msg, "memory-blob"));
    assert_non_null(strstr(err.msg, "short"));
}

/* ---- writing: failure and replacement ---- */

static void test_write_missing_dir(void **state)
{
    fixture *fx = *state;
    char path[256];
    snprintf(path, sizeof path, "%s/no-such-dir/x.safetensors", fx->dir);
    const float v[1] = {1.0f};
    const int64_t shape[1] = {1};
    lt_st_entry e = {"x", LT_DT_F32, 1, shape, v};
    lt_err err = {0};
    assert_int_equal(lt_st_write(path, &e, 1, NULL, 0, &err), LT_EIO);
    assert_int_equal(err.code, LT_EIO);
    assert_non_null(strstr(err.msg, path));
    struct stat st;
    assert_int_not_equal(stat(path, &st), 0);
    assert_int_equal(count_entries(fx->dir), 0);
}

static void test_write_replaces(void **state)
{
    fixture *fx = *state;
    const char *path = path_in(fx, "w.safetensors");
    const float a[2] = {1.0f, 2.0f};
    const int64_t b[3] = {5, 6, 7};
    const int64_t sa[1] = {2}, sb[1] = {3};
    lt_st_entry ea = {"old", LT_DT_F32, 1, sa, a}, eb = {"new", LT_DT_I64, 1, sb, b};
    lt_err err = {0};
    assert_int_equal(lt_st_write(path, &ea, 1, NULL, 0, &err), 0);
    assert_int_equal(lt_st_write(path, &eb, 1, NULL, 0, &err), 0);
    assert_int_equal(count_entries(fx->dir), 1); /* no temporary file left */
    lt_st_file f;
    assert_int_equal(lt_st_read(path, &f, &err), 0);
    assert_int_equal(f.n, 1);
    assert_null(lt_st_find(&f, "old"));
    const lt_st_tensor *t = lt_st_find(&f, "new");
    assert_non_null(t);
    assert_int_equal(t->nbytes, sizeof b);
    assert_memory_equal(t->data, b, sizeof b);
    lt_st_free(&f);
}

static void test_write_rejects_bad_entries(void **state)
{
    fixture *fx = *state;
    const char *path = path_in(fx, "bad-args.safetensors");
    const float v[1] = {1.0f};
    const int64_t shape[1] = {1}, neg[1] = {-2};
    lt_err err = {0};
    lt_st_entry dup[2] = {{"x", LT_DT_F32, 1, shape, v}, {"x", LT_DT_F32, 1, shape, v}};
    assert_int_equal(lt_st_write(path, dup, 2, NULL, 0, &err), LT_EINVAL);
    assert_non_null(strstr(err.msg, "twice"));
    lt_st_entry reserved = {"__metadata__", LT_DT_F32, 1, shape, v};
    assert_int_equal(lt_st_write(path, &reserved, 1, NULL, 0, &err), LT_EINVAL);
    assert_non_null(strstr(err.msg, "reserved"));
    lt_st_entry negative = {"x", LT_DT_F32, 1, neg, v};
    assert_int_equal(lt_st_write(path, &negative, 1, NULL, 0, &err), LT_EINVAL);
    assert_non_null(strstr(err.msg, "negative"));
    lt_st_entry baddtype = {"x", LT_DT_COUNT, 1, shape, v};
    assert_int_equal(lt_st_write(path, &baddtype, 1, NULL, 0, &err), LT_EINVAL);
    assert_non_null(strstr(err.msg, "dtype"));
    lt_st_entry rank9 = {"x", LT_DT_F32, 9, shape, v};
    assert_int_equal(lt_st_write(path, &rank9, 1, NULL, 0, &err), LT_EINVAL);
    assert_non_null(strstr(err.msg, "rank"));
    assert_int_equal(count_entries(fx->dir), 0);
}

static void test_dtypes(void **state)
{
    (void)state;
    assert_int_equal(lt_dtype_size(LT_DT_F32), 4);
    assert_int_equal(lt_dtype_size(LT_DT_F64), 8);
    assert_int_equal(lt_dtype_size(LT_DT_BF16), 2);
    assert_int_equal(lt_dtype_size(LT_DT_BOOL), 1);
    assert_int_equal(lt_dtype_size(LT_DT_COUNT), 0);
    assert_null(lt_dtype_name(LT_DT_COUNT));
    for (int i = 0; i < LT_DT_COUNT; i++) {
        lt_dtype back;
        assert_non_null(lt_dtype_name((lt_dtype)i));
        assert_int_equal(lt_dtype_from_name(lt_dtype_name((lt_dtype)i), &back), 0);
        assert_int_equal(back, i);
    }
    lt_dtype d;
    assert_int_equal(lt_dtype_from_name("f32", &d), -1);
}

/* ---- malformed files: one test per kind ---- */

#define F32_2 "{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}"

static void test_missing_file(void **state)
{
    fixture *fx = *state;
    const char *path = path_in(fx, "absent.safetensors");
    lt_st_file f;
    lt_err err = {0};
    assert_int_equal(lt_st_read(path, &f, &err), LT_EIO);
    assert_non_null(strstr(err.msg, path));
    assert_null(f.buf);
}

static void test_truncated(void **state)
{
    const unsigned char b[5] = {8, 0, 0, 0, 0};
    expect_bad_bytes(*state, b, sizeof b, LT_EFORMAT, "too short");
}

static void test_zero_header_length(void **state)
{
    unsigned char b[16] = {0};
    expect_bad_bytes(*state, b, sizeof b, LT_EFORMAT, "header length is 0");
}

static void test_huge_header_length(void **state)
{
    unsigned char b[64];
    size_t n = build_raw(b, sizeof b, 100000001u, "{}", NULL, 0);
    expect_bad_bytes(*state, b, n, LT_EFORMAT, "header of 100000001 bytes exceeds the 100 MB limit");
    n = build_raw(b, sizeof b, UINT64_MAX, "{}", NULL, 0);
    expect_bad_bytes(*state, b, n, LT_EFORMAT, "100 MB");
}

static void test_header_past_eof(void **state)
{
    unsigned char b[64];
    size_t n = build_raw(b, sizeof b, 40, "{\"a\":1}", NULL, 0);
    expect_bad_bytes(*state, b, n, LT_EFORMAT, "header of 40 bytes runs past the end of the file");
}

static void test_bad_json(void **state)
{
    expect_bad(*state, "{\"a\":", 0, "not valid JSON");
}

static void test_trailing_json_garbage(void **state)
{
    expect_bad(*state, "{} x", 0, "not valid JSON");
}

static void test_not_object(void **state)
{
    expect_bad(*state, "[1, 2]", 0, "header is a JSON array, expected an object");
}

static void test_bad_utf8(void **state)
{
    expect_bad(*state, "{\"\xc3\x28\":" F32_2 "}", 8, "UTF-8");
}

static void test_duplicate_key(void **state)
{
    expect_bad(*state, "{\"a\":" F32_2 ",\"a\":" F32_2 "}", 8, "duplicate");
}

static void test_bad_metadata(void **state)
{
    expect_bad(*state, "{\"__metadata__\":[1]}", 0, "__metadata__ is a JSON array");
    expect_bad(*state, "{\"__metadata__\":{\"epochs\":3}}", 0, "\"epochs\" is a JSON integer, expected a string");
}

static void test_tensor_not_object(void **state)
{
    expect_bad(*state, "{\"a\":5}", 0, "tensor \"a\" is a JSON integer");
}

static void test_missing_fields(void **state)
{
    expect_bad(*state, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, "no \"data_offsets\"");
    expect_bad(*state, "{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "no \"dtype\"");
    expect_bad(*state, "{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 8, "no \"shape\"");
}

static void test_wrong_field_types(void **state)
{
    expect_bad(*state, "{\"a\":{\"dtype\":4,\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "dtype is a JSON integer");
    expect_bad(*state, "{\"a\":{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}}", 8,
               "shape is a JSON integer");
    expect_bad(*state, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8, "[begin, end]");
    expect_bad(*state, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,\"8\"]}}", 8, "[begin, end]");
}

static void test_bad_dtype(void **state)
{
    expect_bad(*state, "{\"a\":{\"dtype\":\"F33\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
               "unknown dtype \"F33\"");
}

static void test_negative_dim(void **state)
{
    expect_bad(*state, "{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, "negative");
}

static void test_non_integer_dim(void **state)
{
    expect_bad(*state, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]}}", 8,
               "shape[0] is a JSON real number");
}

static void test_rank_9(void **state)
{
    expect_bad(*state, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,2],\"data_offsets\":[0,8]}}", 8,
               "rank 9");
}

static void test_shape_overflow(void **state)
{
    expect_bad(*state,
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,8]}}", 8,
               "overflows");
    /* The element count fits, the byte count does not. */
    expect_bad(*state,
               "{\"a\":{\"dtype\":\"F64\",\"shape\":[4294967296,1073741824],\"data_offsets\":[0,8]}}", 8,
               "overflows");
}

static void test_begin_after_end(void **state)
{
    expect_bad(*state, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, "begin <= end");
    expect_bad(*state, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}}", 8, "begin <= end");
}

static void test_size_mismatch(void **state)
{
    expect_bad(*state, "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8,
               "hold 8 bytes, but dtype F32 and 1 dims of 3 elements need 12");
}

static void test_offsets_past_end(void **state)
{
    expect_bad(*state, "{\"a\":" F32_2 "}", 4, "run past the end of the 4-byte data buffer");
}

static void test_overlap(void **state)
{
    expect_bad(*state,
               "{\"a\":" F32_2 ",\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12,
               "\"a\" [0, 8] and \"b\" [4, 12] overlap");
    /* A zero-size tensor inside another also counts, as in the Rust reader. */
    expect_bad(*state, "{\"a\":" F32_2 ",\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]}}", 8,
               "overlap");
}

static void test_hole(void **state)
{
    expect_bad(*state,
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
               12, "gap of 4 unused bytes before tensor \"b\"");
    /* Data that does not start at offset 0 leaves a gap too. */
    expect_bad(*state, "{\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "gap");
}

static void test_trailing_bytes(void **state)
{
    expect_bad(*state, "{\"a\":" F32_2 "}", 11, "3 trailing bytes");
    expect_bad(*state, "{}", 1, "trailing");
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_python_file),
        T(test_write_matches_python),
        T(test_write_metadata_layout),
        T(test_round_trip),
        T(test_empty_file_round_trip),
        T(test_any_json_order),
        T(test_parse_names_source),
        T(test_write_missing_dir),
        T(test_write_replaces),
        T(test_write_rejects_bad_entries),
        T(test_dtypes),
        T(test_missing_file),
        T(test_truncated),
        T(test_zero_header_length),
        T(test_huge_header_length),
        T(test_header_past_eof),
        T(test_bad_json),
        T(test_trailing_json_garbage),
        T(test_not_object),
        T(test_bad_utf8),
        T(test_duplicate_key),
        T(test_bad_metadata),
        T(test_tensor_not_object),
        T(test_missing_fields),
        T(test_wrong_field_types),
        T(test_bad_dtype),
        T(test_negative_dim),
        T(test_non_integer_dim),
        T(test_rank_9),
        T(test_shape_overflow),
        T(test_begin_after_end),
        T(test_size_mismatch),
        T(test_offsets_past_end),
        T(test_overlap),
        T(test_hole),
        T(test_trailing_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
