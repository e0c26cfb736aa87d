/* MPI: `mpirun -np 2 latent search` (folds spread over two processes, the
 * refit data-parallel) and `mpirun -np 2 latent train` (each process a slice
 * of every batch) give bit for bit what one process gives. Built only when
 * CMake found MPI and mpirun. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "core/core.h"
#include "testutil.h"

#define MPIRUN LATENT_MPIRUN " --allow-run-as-root --oversubscribe -np 2"

static char *dir;

static int setup(void **state)
{
    (void)state;
    dir = tu_mkdtemp();
    lt_dataset ds;
    tu_make_dataset(&ds, 150, 28, 28, 13);
    tu_write_idx_split(dir, "train", &ds);
    tu_write_idx_split(dir, "t10k", &ds);
    lt_dataset_free(&ds);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tu_rmtree(dir);
    free(dir);
    return 0;
}

static int sh(char *out, size_t size, const char *fmt, ...)
{
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    strncat(cmd, " 2>&1", sizeof cmd - strlen(cmd) - 1);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, size - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char *slurp(const char *a, const char *b, size_t *n)
{
    char path[4300];
    snprintf(path, sizeof path, "%s/%s", a, b);
    void *data;
    lt_err err = {0};
    if (lt_read_file(path, &data, n, &err)) fail_msg("cannot read %s: %s", path, err.msg);
    char *s = realloc(data, *n + 1);
    s[*n] = 0;
    return s;
}

/* The file with each line cut before its field number `drop` (0-based; -1: its last field). */
static char *cut(char *s, int drop)
{
    char *out = calloc(strlen(s) + 1, 1);
    size_t o = 0;
    for (char *line = s; *line;) {
        char *nl = strchr(line, '\n'), *end = nl ? nl : line + strlen(line), *p = line;
        if (drop < 0) {
            for (p = end; p > line && *p != ','; p--) continue;
        } else {
            for (int f = 0; p < end; p++)
                if (*p == ',' && ++f == drop) break;
        }
        size_t len = (size_t)(p - line);
        memcpy(out + o, line, len);
        o += len;
        out[o++] = '\n';
        line = nl ? nl + 1 : end;
    }
    free(s);
    return out;
}

static void assert_same_bytes(const char *a, const char *b, const char *name)
{
    size_t na, nb;
    char *x = slurp(a, name, &na), *y = slurp(b, name, &nb);
    assert_int_equal(na, nb);
    if (memcmp(x, y, na)) fail_msg("%s differs between one process and two", name);
    free(x), free(y);
}

static void search_pair(const char *flags, const char *tag, int expect_pruned)
{
    char out[16384], one[4200], two[4200];
    snprintf(one, sizeof one, "%s/%s-one", dir, tag);
    snprintf(two, sizeof two, "%s/%s-two", dir, tag);
    int rc = sh(out, sizeof out, "%s search --data %s --out %s %s --threads 2", LATENT_CLI, dir, one, flags);
    if (rc) fail_msg("search failed: %s", out);
    rc = sh(out, sizeof out, "%s %s search --data %s --out %s %s --threads 1", MPIRUN, LATENT_CLI, dir, two, flags);
    if (rc) fail_msg("mpirun search failed: %s", out);
    /* Both processes trained folds. */
    assert_non_null(strstr(out, "(process 1)"));
    size_t n;
    /* Every column but seconds, the last. */
    char *a = cut(slurp(one, "results.csv", &n), -1), *b = cut(slurp(two, "results.csv", &n), -1);
    assert_string_equal(a, b);
    if (expect_pruned && !strstr(a, "pruned")) fail_msg("no trial was pruned: %s", a);
    free(a), free(b);
}

static void test_search_two_processes(void **state)
{
    (void)state;
    search_pair("--trials 3 --folds 3 --epochs 2 --batch choice:16,32 --latent int:2:8 --lr loguniform:1e-3:1e-2 --seed 5",
                "s", 0);
    char one[4200], two[4200];
    snprintf(one, sizeof one, "%s/s-one", dir);
    snprintf(two, sizeof two, "%s/s-two", dir);
    /* The refit ran data-parallel over both processes: the same model and test score. */
    assert_same_bytes(one, two, "refit/model.safetensors");
    size_t n;
    char *a = slurp(one, "best.json", &n), *b = slurp(two, "best.json", &n);
    *strstr(a, "\"refit_seconds\"") = 0, *strstr(b, "\"refit_seconds\"") = 0;
    assert_string_equal(a, b);
    free(a), free(b);
}

/* With pruning, each fold waits for the earlier trials at that fold: the decisions match one process. */
static void test_search_pruning_two_processes(void **state)
{
    (void)state;
    search_pair("--trials 4 --folds 2 --epochs 3 --batch 16 --latent 4 --lr choice:5e-3,1e-7 --seed 3 "
                "--prune median:1:0 --no-refit", "p", 1);
}

static void test_train_data_parallel(void **state)
{
    (void)state;
    char out[16384], one[4200], two[4200];
    snprintf(one, sizeof one, "%s/t-one", dir);
    snprintf(two, sizeof two, "%s/t-two", dir);
    /* Batch 80: chunks of 32, 32 and 16, split 1 + 2 over the processes; dropout exercises the per-sample streams. */
    const char *flags = "--epochs 2 --batch 80 --val 30 --dropout 0.2";
    int rc = sh(out, sizeof out, "%s train --data %s --out %s %s --threads 2", LATENT_CLI, dir, one, flags);
    if (rc) fail_msg("train failed: %s", out);
    rc = sh(out, sizeof out, "%s %s train --data %s --out %s %s --threads 1", MPIRUN, LATENT_CLI, dir, two, flags);
    if (rc) fail_msg("mpirun train failed: %s", out);
    assert_non_null(strstr(out, "data-parallel over 2"));
    assert_same_bytes(one, two, "model.safetensors");
    size_t n;
    char *a = cut(slurp(one, "metrics.csv", &n), 3), *b = cut(slurp(two, "metrics.csv", &n), 3);
    assert_string_equal(a, b);
    free(a), free(b);
    /* Resumed data-parallel to a third epoch: still the one-process model. */
    rc = sh(out, sizeof out, "%s train --data %s --out %s --resume --epochs 3", LATENT_CLI, dir, one);
    if (rc) fail_msg("resume failed: %s", out);
    rc = sh(out, sizeof out, "%s %s train --data %s --out %s --resume --epochs 3 --threads 1", MPIRUN, LATENT_CLI, dir, two);
    if (rc) fail_msg("mpirun resume failed: %s", out);
    assert_same_bytes(one, two, "model.safetensors");
}

int main(void)
{
#ifdef UNDER_ASAN
    /* LeakSanitizer flags OpenMPI's own allocations kept until exit, not latent's. */
    setenv("ASAN_OPTIONS", "detect_leaks=0", 1);
#endif
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_search_two_processes),
        cmocka_unit_test(test_search_pruning_two_processes),
        cmocka_unit_test(test_train_data_parallel),
    };
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    tu_release_threads();
    return rc;
}
