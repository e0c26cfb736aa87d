/* kill -9 at any moment, in the middle of writing a checkpoint included,
 * leaves the last complete checkpoint intact, and --resume carries on from it
 * exactly. The CLI trains in a child process on a tiny IDX data set the test
 * writes itself; the test kills it with SIGKILL at moments drawn from a seeded
 * generator (set LATENT_CRASH_SEED to replay a choice of moments), by three
 * kinds of trigger:
 *   - a random delay of 0-300 ms (an epoch here takes a few tens of ms, so
 *     this lands anywhere: in a batch, in validation, in a checkpoint);
 *   - as soon as a new temporary file NAME.tmp.XXXXXX of one of the three
 *     files appears, i.e. in the middle of writing that file;
 *   - as soon as train_state.safetensors has been replaced, i.e. between the
 *     state and the model of the same checkpoint.
 * After every kill the run directory must hold only the three files and
 * temporary files, every file there must load whole, and the three must tell
 * one consistent story (the model and metrics.csv are the state's epoch or,
 * when the kill fell inside a checkpoint, the epoch before). Then the next
 * trainer resumes the run and must save at least one more epoch before it is
 * killed in turn. */
#include <dirent.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/core.h"
#include "io/safetensors.h"
#include "nn/net.h"
#include "testutil.h"

/* Under AddressSanitizer every trainer starts and runs several times slower:
 * fewer runs there keep the test short. */
#ifdef UNDER_ASAN
#define KILL_RUNS 2
#else
#define KILL_RUNS 3
#endif

#define PATHBUF 4400
#define MAX_TMP 256
#define WAIT_LIMIT_S 30.0 /* no trigger may take longer than this */
#define BIG_EPOCHS "1000000"

static const char *const FILES[3] = {"train_state.safetensors", "model.safetensors", "metrics.csv"};

static char *data_dir;      /* the IDX files and the trainers' logs */
static uint64_t rng_state;  /* picks the kill moments */
static pid_t live_child;    /* a trainer still running, killed if a test fails */

/* ---- small helpers ---- */

static uint64_t rnd(void)
{
    /* splitmix64 */
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

static int count_lines(const char *s, size_t n)
{
    int k = 0;
    for (size_t i = 0; i < n; i++) k += s[i] == '\n';
    return k;
}

/* A metrics table with each line cut after its third field (epoch,train_loss,val_loss). */
static char *loss_columns(const char *in)
{
    assert_non_null(in);
    size_t n = strlen(in), o = 0;
    char *out = calloc(n + 1, 1);
    assert_non_null(out);
    int field = 0;
    for (size_t i = 0; i < n; i++) {
        if (in[i] == '\n') field = 0;
        else if (in[i] == ',') field++;
        if (field < 3) out[o++] = in[i];
    }
    return out;
}

/* ---- one run directory and the trainers that work on it ---- */

typedef struct run_ctx {
    char dir[PATHBUF];  /* --out */
    char log[PATHBUF];  /* every trainer's stdout and stderr, appended */
    int dropout;        /* train with --dropout 0.2 */
    int epoch;          /* epochs saved, as of the last check */
    char tmp[MAX_TMP][80]; /* temporary files left behind so far */
    int ntmp;
    /* What the kills found. */
    int kills, kills_with_checkpoint, kills_mid_write, kills_before_checkpoint, kills_model_behind;
} run_ctx;

static void run_init(run_ctx *r, const char *name, int dropout)
{
    memset(r, 0, sizeof *r);
    snprintf(r->dir, sizeof r->dir, "%s/%s", data_dir, name);
    snprintf(r->log, sizeof r->log, "%s/%s.log", data_dir, name);
    r->dropout = dropout;
}

static void in_run(char *buf, const run_ctx *r, const char *name)
{
    int n = snprintf(buf, PATHBUF, "%s/%s", r->dir, name);
    assert_true(n > 0 && n < PATHBUF);
}

/* Kill a trainer left running by a failed assertion. */
static void kill_live_child(void)
{
    if (live_child > 0) {
        kill(live_child, SIGKILL);
        waitpid(live_child, NULL, 0);
        live_child = 0;
    }
}

static int test_teardown(void **state)
{
    (void)state;
    kill_live_child();
    return 0;
}

/* Fail with the end of the trainers' log. */
static void fail_log(const run_ctx *r, const char *what)
{
    kill_live_child();
    char tail[2048] = "";
    FILE *f = fopen(r->log, "r");
    if (f) {
        fseek(f, 0, SEEK_END);
        long size = ftell(f);
        fseek(f, size > (long)sizeof tail - 1 ? size - (long)sizeof tail + 1 : 0, SEEK_SET);
        size_t n = fread(tail, 1, sizeof tail - 1, f);
        tail[n] = 0;
        fclose(f);
    }
    fail_msg("%s: %s\n--- end of %s ---\n%s", r->dir, what, r->log, tail);
}

static pid_t spawn_train(run_ctx *r, const char *epochs, int resume)
{
    const char *argv[24];
    int n = 0;
    argv[n++] = LATENT_CLI, argv[n++] = "train", argv[n++] = "--data", argv[n++] = data_dir;
    argv[n++] = "--out", argv[n++] = r->dir, argv[n++] = "--epochs", argv[n++] = epochs;
    argv[n++] = "--batch", argv[n++] = "16", argv[n++] = "--val", argv[n++] = "40", argv[n++] = "--threads", argv[n++] = "1";
    if (r->dropout) argv[n++] = "--dropout", argv[n++] = "0.2";
    if (resume) argv[n++] = "--resume";
    argv[n] = NULL;
    FILE *f = fopen(r->log, "a");
    assert_non_null(f);
    fprintf(f, "=== %s:", resume ? "resume" : "start");
    for (int i = 1; i < n; i++) fprintf(f, " %s", argv[i]);
    fprintf(f, "\n");
    fclose(f);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(r->log, O_WRONLY | O_APPEND | O_CREAT, 0644);
        if (fd >= 0) {
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
            close(fd);
        }
        execv(LATENT_CLI, (char *const *)argv);
        _exit(127);
    }
    live_child = pid;
    return pid;
}

/* Every kill must land on a trainer that is still at work: one that has
 * exited on its own (an error, or the end of its epochs) fails the test. */
static void assert_running(run_ctx *r, pid_t pid, double t0)
{
    int st = 0;
    if (waitpid(pid, &st, WNOHANG) == pid) {
        live_child = 0;
        char what[128];
        snprintf(what, sizeof what, "latent train ended on its own (%s %d) before it was killed",
                 WIFEXITED(st) ? "exit status" : "signal", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
        fail_log(r, what);
    }
    if (now() - t0 > WAIT_LIMIT_S) fail_log(r, "timed out waiting for the moment to kill");
}

static void kill9(run_ctx *r, pid_t pid)
{
    assert_running(r, pid, now());
    assert_int_equal(kill(pid, SIGKILL), 0);
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    live_child = 0;
    if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL) fail_log(r, "latent train was not ended by the SIGKILL");
    r->kills++;
}

static int is_known_tmp(const run_ctx *r, const char *name)
{
    for (int i = 0; i < r->ntmp; i++)
        if (!strcmp(r->tmp[i], name)) return 1;
    return 0;
}

/* NAME.tmp.XXXXXX for one of the three files (prefix: which), as lt_write_file_atomic names them. */
static int is_tmp_name(const char *name, int *which)
{
    for (int k = 0; k < 3; k++) {
        size_t len = strlen(FILES[k]);
        if (strncmp(name, FILES[k], len) || strncmp(name + len, ".tmp.", 5)) continue;
        const char *x = name + len + 5;
        if (strlen(x) != 6) return 0;
        for (int i = 0; i < 6; i++)
            if (!((x[i] >= 'a' && x[i] <= 'z') || (x[i] >= 'A' && x[i] <= 'Z') || (x[i] >= '0' && x[i] <= '9'))) return 0;
        if (which) *which = k;
        return 1;
    }
    return 0;
}

/* Is there a temporary file of FILES[which] (any if which < 0) not seen before? */
static int new_tmp_exists(const run_ctx *r, int which)
{
    DIR *d = opendir(r->dir);
    if (!d) return 0;
    int found = 0, k;
    struct dirent *e;
    while (!found && (e = readdir(d)))
        if (is_tmp_name(e->d_name, &k) && (which < 0 || k == which) && !is_known_tmp(r, e->d_name)) found = 1;
    closedir(d);
    return found;
}

static off_t file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? sb.st_size : -1;
}

/* Identity of a file: a rename into place gives a new inode and mtime. */
typedef struct file_sig {
    int exists;
    ino_t ino;
    struct timespec mtime;
} file_sig;

static file_sig sig_of(const char *path)
{
    struct stat sb;
    file_sig s = {0};
    if (stat(path, &sb) == 0) s.exists = 1, s.ino = sb.st_ino, s.mtime = sb.st_mtim;
    return s;
}

static int sig_same(file_sig a, file_sig b)
{
    return a.exists == b.exists && a.ino == b.ino && a.mtime.tv_sec == b.mtime.tv_sec &&
           a.mtime.tv_nsec == b.mtime.tv_nsec;
}

/* ---- what a killed trainer leaves behind ---- */

typedef struct found {
    int epoch;      /* epochs in train_state.safetensors (0: no state) */
    int new_tmp;    /* temporary files left by this kill */
    int complete;   /* model and metrics.csv are the state's epoch */
} found;

/* Check the run directory after a kill; see the comment at the top. */
static found check_run(run_ctx *r)
{
    found out = {0};
    int have[3] = {0};
    DIR *d = opendir(r->dir);
    if (!d) {
        /* Killed before the directory was even made. */
        return out;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *nm = e->d_name;
        if (!strcmp(nm, ".") || !strcmp(nm, "..")) continue;
        int k, known = 0;
        for (k = 0; k < 3 && !known; k++)
            if (!strcmp(nm, FILES[k])) have[k] = known = 1;
        if (known) continue;
        if (!is_tmp_name(nm, NULL)) {
            closedir(d);
            char what[512];
            snprintf(what, sizeof what, "unexpected file '%s' in the run directory", nm);
            fail_log(r, what);
        }
        if (!is_known_tmp(r, nm)) {
            assert_true(r->ntmp < MAX_TMP && strlen(nm) < sizeof r->tmp[0]);
            memcpy(r->tmp[r->ntmp++], nm, strlen(nm) + 1);
            out.new_tmp++;
        }
    }
    closedir(d);

    char path[PATHBUF];
    lt_err err = {0};
    lt_st_file st = {0};
    const char *state_metrics = "";
    if (have[0]) {
        /* The state loads as a whole, and as a run's settings (what --resume reads first). */
        in_run(path, r, FILES[0]);
        if (lt_st_read(path, &st, &err)) fail_log(r, err.msg);
        lt_train_config cfg;
        char spec[8192];
        if (lt_train_load_config(r->dir, &cfg, spec, sizeof spec, &err)) fail_log(r, err.msg);
        assert_int_equal(cfg.batch, 16);
        assert_int_equal(cfg.val, 40);
        const char *ep = lt_st_meta(&st, "epoch"), *b = lt_st_meta(&st, "batch");
        state_metrics = lt_st_meta(&st, "metrics");
        assert_non_null(ep);
        assert_non_null(b);
        assert_non_null(state_metrics);
        out.epoch = atoi(ep);
        /* SIGKILL gives no chance for a mid-epoch save: only whole epochs are stored. */
        assert_string_equal(b, "0");
        assert_true(out.epoch >= 1);
        assert_int_equal(count_lines(state_metrics, strlen(state_metrics)), out.epoch + 1);
    } else if (have[1] || have[2]) {
        /* The state is written first: without it there can be nothing else. */
        fail_log(r, "model.safetensors or metrics.csv exists without train_state.safetensors");
    }

    lt_model *m = NULL;
    if (have[1]) {
        in_run(path, r, FILES[1]);
        if (lt_model_load(&m, path, &err)) fail_log(r, err.msg);
    }
    if (have[2]) {
        in_run(path, r, FILES[2]);
        void *data;
        size_t n;
        assert_int_equal(lt_read_file(path, &data, &n, &err), 0);
        /* metrics.csv is the state's table, or that table without its last
         * epoch (the kill came after the state was replaced, before metrics.csv was). */
        size_t full = strlen(state_metrics);
        int lines = count_lines(data, n);
        if (n > full || memcmp(data, state_metrics, n) != 0 || (n && ((char *)data)[n - 1] != '\n'))
            fail_log(r, "metrics.csv is not (a whole-line prefix of) the table in train_state.safetensors");
        if (lines == out.epoch + 1) out.complete = 1;
        else if (lines != out.epoch) fail_log(r, "metrics.csv is more than one epoch behind the state");
        free(data);
    } else if (have[0] && out.epoch > 1) {
        fail_log(r, "metrics.csv is missing although epochs before the last were complete");
    }
    if (have[0] && !have[1] && (out.epoch > 1 || have[2]))
        fail_log(r, "model.safetensors is missing although an earlier checkpoint was complete");
    if (out.complete) {
        /* The checkpoint was written to its end: the model is the state's parameters. */
        if (!m) fail_log(r, "metrics.csv is complete but there is no model");
        const lt_st_tensor *t = lt_st_find(&st, "params");
        assert_non_null(t);
        assert_int_equal(t->nbytes, m->n_params * sizeof(float));
        if (memcmp(t->data, m->params, t->nbytes)) fail_log(r, "model.safetensors differs from the state it was saved with");
    } else if (m) {
        const lt_st_tensor *t = lt_st_find(&st, "params");
        assert_non_null(t);
        if (t->nbytes != m->n_params * sizeof(float) || memcmp(t->data, m->params, t->nbytes)) r->kills_model_behind++;
    }
    lt_model_free(m);
    lt_st_free(&st);
    return out;
}

/* ---- kills ---- */

typedef enum { KILL_DELAY, KILL_MID_WRITE, KILL_AFTER_STATE, KILL_MODES } kill_mode;

/* One trainer's life: start it (fresh, or --resume when there is a run),
 * wait until it has shown it works (a fresh one saved its first epoch, a
 * resumed one saved an epoch more), then kill -9 it at a moment picked at
 * random, and check what it left. allow_early: a fresh trainer may instead be
 * killed before it saved anything. */
static void one_kill(run_ctx *r, int allow_early)
{
    int resume = r->epoch > 0;
    char state_path[PATHBUF], metrics_path[PATHBUF];
    in_run(state_path, r, FILES[0]);
    in_run(metrics_path, r, FILES[2]);
    off_t metrics0 = file_size(metrics_path);
    kill_mode mode = (kill_mode)(rnd() % KILL_MODES);
    int early = !resume && allow_early && rnd() % 3 == 0;
    int target = (int)(rnd() % 3);
    /* An early kill aims at the first few tens of ms, before or during the first checkpoint. */
    long delay_us = (long)(rnd() % (early ? 40001 : 300001));

    pid_t pid = spawn_train(r, BIG_EPOCHS, resume);
    double t0 = now();
    if (!early) {
        if (resume)
            /* metrics.csv is the last file of a checkpoint, and it grows by a line an epoch. */
            while (file_size(metrics_path) <= metrics0) assert_running(r, pid, t0), sleep_us(200);
        else
            while (access(state_path, F_OK) != 0) assert_running(r, pid, t0), sleep_us(200);
    }
    t0 = now();
    switch (mode) {
    case KILL_DELAY:
        sleep_us(delay_us);
        break;
    case KILL_MID_WRITE:
        while (!new_tmp_exists(r, target)) assert_running(r, pid, t0);
        break;
    case KILL_AFTER_STATE: {
        file_sig s0 = sig_of(state_path);
        while (sig_same(s0, sig_of(state_path))) assert_running(r, pid, t0);
        break;
    }
    default:
        break;
    }
    kill9(r, pid);

    found f = check_run(r);
    if (f.epoch < r->epoch) fail_log(r, "the saved epoch went backwards");
    if (resume && f.epoch <= r->epoch) fail_log(r, "the resumed trainer saved no epoch");
    if (f.epoch > 0) r->kills_with_checkpoint++;
    else r->kills_before_checkpoint++;
    if (f.new_tmp) r->kills_mid_write++;
    r->epoch = f.epoch;
    if (f.epoch == 0) {
        /* Nothing was saved: there is no run to resume, and a temporary file is
         * not taken for one (the next trainer starts afresh and must not be
         * told the directory already holds a run). */
        char cmd[3 * PATHBUF], out[4096];
        snprintf(cmd, sizeof cmd, "%s train --data %s --out %s --resume 2>&1", LATENT_CLI, data_dir, r->dir);
        FILE *p = popen(cmd, "r");
        assert_non_null(p);
        size_t n = fread(out, 1, sizeof out - 1, p);
        out[n] = 0;
        int st = pclose(p);
        assert_true(WIFEXITED(st));
        /* (The CLI reads the stored settings first, so it names the missing state file.) */
        if (WEXITSTATUS(st) == 0 || !strstr(out, FILES[0])) fail_msg("--resume without a saved run: %s", out);
    }
}

/* Resume the run to `epochs` epochs in all and let it finish. */
static void finish_run(run_ctx *r, int epochs)
{
    char e[32], want[64];
    snprintf(e, sizeof e, "%d", epochs);
    pid_t pid = spawn_train(r, e, r->epoch > 0);
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    live_child = 0;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) fail_log(r, "the final resume failed");
    /* The last epoch was run by this trainer and the run ends there. */
    void *log;
    size_t n;
    lt_err err = {0};
    assert_int_equal(lt_read_file(r->log, &log, &n, &err), 0);
    snprintf(want, sizeof want, "epoch %d/%d ", epochs, epochs);
    char *text = realloc(log, n + 1);
    assert_non_null(text);
    text[n] = 0;
    if (!strstr(text, want)) fail_log(r, "the final resume did not run the last epoch");
    free(text);
    found f = check_run(r);
    assert_int_equal(f.epoch, epochs);
    assert_true(f.complete);
    r->epoch = f.epoch;
}

static void report(const char *what, const run_ctx *r, int n)
{
    int kills = 0, with = 0, mid = 0, before = 0, behind = 0, tmp = 0;
    for (int i = 0; i < n; i++) {
        kills += r[i].kills, with += r[i].kills_with_checkpoint, mid += r[i].kills_mid_write;
        before += r[i].kills_before_checkpoint, behind += r[i].kills_model_behind, tmp += r[i].ntmp;
    }
    printf("%s: %d kills: %d with a checkpoint saved, %d before the first one, %d inside a checkpoint "
           "(temporary file left), %d with the model an epoch behind the state; %d temporary files left\n",
           what, kills, with, before, mid, behind, tmp);
}

/* ---- tests ---- */

/* Three runs (two under ASan), ten kills each, every kind of moment; then
 * each is resumed to one epoch more than it saved and finishes normally. */
static void test_kill9_anywhere(void **state)
{
    (void)state;
    enum { RUNS = KILL_RUNS, KILLS = 10 };
    run_ctx *r = calloc(RUNS, sizeof *r);
    assert_non_null(r);
    for (int i = 0; i < RUNS; i++) {
        char name[32];
        snprintf(name, sizeof name, "run%d", i);
        run_init(&r[i], name, 0);
        for (int k = 0; k < KILLS; k++) one_kill(&r[i], 1);
        finish_run(&r[i], r[i].epoch + 1);
    }
    report("kill -9", r, RUNS);
    int kills = 0, with = 0, mid = 0;
    for (int i = 0; i < RUNS; i++) kills += r[i].kills, with += r[i].kills_with_checkpoint, mid += r[i].kills_mid_write;
    /* Not vacuous: every kill hit a running trainer (kill9 checks), most of
     * them with a run saved, and some inside the writing of a checkpoint. */
    assert_int_equal(kills, RUNS * KILLS);
    assert_true(with >= KILLS);
    assert_true(mid >= 1);
    free(r);
}

/* A run killed -9 several times and resumed to E epochs ends with the same
 * model and training state, bit for bit, as a run of E epochs that was never
 * interrupted: resume continues exactly from the last saved epoch (a partial
 * epoch is lost and run again from the saved state). Dropout is on, so the
 * per-step random streams must line up too. */
static void test_kill9_resume_is_exact(void **state)
{
    (void)state;
    run_ctx a, b;
    run_init(&a, "killed", 1);
    run_init(&b, "straight", 1);
    for (int k = 0; k < 4; k++) one_kill(&a, 0);
    const int epochs = a.epoch + 2;
    finish_run(&a, epochs);
    finish_run(&b, epochs);  /* b has no run yet: a fresh, uninterrupted one */
    report("kill -9 then resume", &a, 1);
    assert_true(a.kills == 4 && a.kills_with_checkpoint == 4);

    char pa[PATHBUF], pb[PATHBUF];
    void *x, *y;
    size_t nx, ny;
    lt_err err = {0};
    in_run(pa, &a, FILES[1]);
    in_run(pb, &b, FILES[1]);
    assert_int_equal(lt_read_file(pa, &x, &nx, &err), 0);
    assert_int_equal(lt_read_file(pb, &y, &ny, &err), 0);
    assert_int_equal(nx, ny);
    if (memcmp(x, y, nx)) fail_msg("%s and %s differ", pa, pb);
    free(x), free(y);

    /* The optimizer's state and the step counter agree too; metrics.csv
     * agrees in everything but wall times. */
    lt_st_file sa, sb;
    in_run(pa, &a, FILES[0]);
    in_run(pb, &b, FILES[0]);
    assert_int_equal(lt_st_read(pa, &sa, &err), 0);
    assert_int_equal(lt_st_read(pb, &sb, &err), 0);
    const char *tensors[] = {"params", "optim.slot0", "optim.slot1"};
    for (int i = 0; i < 3; i++) {
        const lt_st_tensor *ta = lt_st_find(&sa, tensors[i]), *tb = lt_st_find(&sb, tensors[i]);
        assert_non_null(ta);
        assert_non_null(tb);
        assert_int_equal(ta->nbytes, tb->nbytes);
        if (memcmp(ta->data, tb->data, ta->nbytes)) fail_msg("tensor %s of the training states differs", tensors[i]);
    }
    assert_string_equal(lt_st_meta(&sa, "step"), lt_st_meta(&sb, "step"));
    assert_string_equal(lt_st_meta(&sa, "epoch"), lt_st_meta(&sb, "epoch"));
    char *ma = loss_columns(lt_st_meta(&sa, "metrics")), *mb = loss_columns(lt_st_meta(&sb, "metrics"));
    assert_string_equal(ma, mb);
    free(ma), free(mb);
    lt_st_free(&sa);
    lt_st_free(&sb);
}

static int group_setup(void **state)
{
    (void)state;
    data_dir = tu_mkdtemp();
    if (!data_dir) return -1;
    lt_dataset ds;
    tu_make_dataset(&ds, 300, 28, 28, 11);
    tu_write_idx_split(data_dir, "train", &ds);
    lt_dataset_free(&ds);
    const char *seed = getenv("LATENT_CRASH_SEED");
    rng_state = seed && *seed ? strtoull(seed, NULL, 0) : 20240917u;
    printf("kill moments from LATENT_CRASH_SEED=%llu\n", (unsigned long long)rng_state);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    kill_live_child();
    tu_rmtree(data_dir);
    free(data_dir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_kill9_anywhere, test_teardown),
        cmocka_unit_test_teardown(test_kill9_resume_is_exact, test_teardown),
    };
    int rc = cmocka_run_group_tests(tests, group_setup, group_teardown);
    tu_release_threads();
    return rc;
}
