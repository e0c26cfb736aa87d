#define _XOPEN_SOURCE 700 /* nftw */
/* latent study: the whole study in one command.
 *
 * A preset (a JSON file users can copy and edit, see presets/) lists stages;
 * each stage is a few ordinary latent commands. Running them as child
 * processes of this very binary keeps every stage reproducible by hand: the
 * report shows the exact command lines, and a user can rerun any of them.
 * A finished stage leaves DIR/STAGE/stage.json (its commands, their JSON
 * output, its wall time); a rerun skips it only when that file still matches
 * the preset and every file the stage promised is there. An interrupted
 * stage continues where it stopped (train and search resume). */
#include <errno.h>
#include <ftw.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/study.h"

static const char *study_usage =
    "Usage: latent study --out DIR [--preset quick|full|FILE] [--force STAGE] [--data DIR] [--threads N]\n"
    "       latent study --show-preset quick|full\n"
    "\n"
    "Runs every part of the study in order, each stage reusing what the previous\n"
    "ones produced: the baseline autoencoder, the optimizer comparison, random\n"
    "search with cross-validation, PCA and t-SNE maps with digits generated from\n"
    "them, the denoising autoencoder, the classifiers, the VAE. DIR receives one\n"
    "folder per stage, report.html (self-contained), report.md and results.json.\n"
    "Run it again after an interruption: finished stages are checked and skipped.\n"
    "Presets are JSON files: --show-preset prints one to copy and edit.";

/* Whether any command of stage st reads what stage id made: a path under
 * {out}/id or a value {=id.N.key}. */
static int uses_stage(const json_t *st, const char *id)
{
    char path[300], value[300];
    snprintf(path, sizeof path, "{out}/%s", id);
    snprintf(value, sizeof value, "{=%s.", id);
    const size_t lp = strlen(path);
    size_t i, j;
    const json_t *cmd, *arg;
    json_array_foreach(json_object_get(st, "commands"), i, cmd) json_array_foreach(cmd, j, arg) {
        const char *a = json_string_value(arg);
        for (const char *p = a ? strstr(a, path) : NULL; p; p = strstr(p + 1, path))
            if (p[lp] == '/' || p[lp] == 0) return 1;
        if (a && strstr(a, value)) return 1;
    }
    return 0;
}

/* Where presets live: next to the sources in a build tree, or installed. */
#ifndef LATENT_PRESET_DIRS
#define LATENT_PRESET_DIRS "presets"
#endif

static double wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int find_preset(const char *name, char *path, size_t size)
{
    struct stat sb;
    if (strchr(name, '/') || strstr(name, ".json")) {
        snprintf(path, size, "%s", name);
        return stat(path, &sb) == 0 ? 0 : -1;
    }
    char dirs[4096];
    snprintf(dirs, sizeof dirs, "%s", LATENT_PRESET_DIRS);
    for (char *save = NULL, *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        snprintf(path, size, "%s/%s.json", d, name);
        if (stat(path, &sb) == 0) return 0;
    }
    return -1;
}

/* Checks the preset's shape once, so later code can trust it. */
static int validate_preset(json_t *p, const char *path)
{
    json_t *stages = json_object_get(p, "stages");
    if (!json_is_array(stages) || !json_array_size(stages)) {
        fprintf(stderr, "latent study: %s: expected a non-empty \"stages\" array\n", path);
        return 1;
    }
    size_t i, j;
    json_t *st;
    json_array_foreach(stages, i, st) {
        const char *id = json_string_value(json_object_get(st, "id"));
        json_t *cmds = json_object_get(st, "commands");
        if (!id || !*id || strspn(id, "abcdefghijklmnopqrstuvwxyz0123456789_-") != strlen(id)) {
            fprintf(stderr, "latent study: %s: stage %zu: \"id\" must be lower-case letters, digits, '_' or '-'\n", path, i + 1);
            return 1;
        }
        for (j = 0; j < i; j++)
            if (!strcmp(id, json_string_value(json_object_get(json_array_get(stages, j), "id")))) {
                fprintf(stderr, "latent study: %s: stage id '%s' appears twice\n", path, id);
                return 1;
            }
        if (!json_is_string(json_object_get(st, "title")) || !json_is_array(cmds) || !json_array_size(cmds)) {
            fprintf(stderr, "latent study: %s: stage '%s' needs a \"title\" and a non-empty \"commands\" array\n", path, id);
            return 1;
        }
        json_t *c;
        json_array_foreach(cmds, j, c) {
            size_t k;
            json_t *a;
            int ok = json_is_array(c) && json_array_size(c) > 0;
            json_array_foreach(c, k, a) ok = ok && json_is_string(a);
            if (!ok) {
                fprintf(stderr, "latent study: %s: stage '%s', command %zu: expected an array of strings such as "
                        "[\"train\", \"--out\", \"{stage}/run\"]\n", path, id, j + 1);
                return 1;
            }
        }
    }
    return 0;
}

/* In a preset's strings "{out}" and "{stage}" become the study's folders,
 * and "{=stage.i.key}" a value an earlier stage produced (e.g. the searched
 * learning rate, "{=search.0.best.lr}"). *bad receives a reference that
 * names nothing. */
static char *expand_refs(const char *s, const char *out, const char *stage, json_t *records, const char **bad)
{
    size_t cap = strlen(s) + 1;
    for (const char *p = s; (p = strchr(p, '{')); p++) cap += strlen(out) + strlen(stage) + 64;
    char *r = malloc(cap), *w = r;
    if (!r) return NULL;
    while (*s) {
        const char *close = *s == '{' ? strchr(s, '}') : NULL;
        if (!strncmp(s, "{out}", 5)) w += sprintf(w, "%s", out), s += 5;
        else if (!strncmp(s, "{stage}", 7)) w += sprintf(w, "%s", stage), s += 7;
        else if (!strncmp(s, "{=", 2) && close && close - s < 200) {
            char path[256];
            snprintf(path, sizeof path, "%.*s", (int)(close - s - 2), s + 2);
            json_t *v = records ? study_lookup(records, path) : NULL;
            if (json_is_integer(v)) w += sprintf(w, "%lld", (long long)json_integer_value(v));
            else if (json_is_real(v)) w += sprintf(w, "%.10g", json_real_value(v));
            else if (json_is_string(v) && strlen(json_string_value(v)) < 64) w += sprintf(w, "%s", json_string_value(v));
            else if (bad) *bad = s;
            s = close + 1;
        } else *w++ = *s++;
    }
    *w = 0;
    return r;
}

static char *expand(const char *s, const char *out, const char *stage)
{
    return expand_refs(s, out, stage, NULL, NULL);
}

static int has_flag(char **argv, int argc, const char *flag)
{
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], flag)) return 1;
    return 0;
}

static const char *flag_value(char **argv, int argc, const char *flag)
{
    for (int i = 0; i + 1 < argc; i++)
        if (!strcmp(argv[i], flag)) return argv[i + 1];
    return NULL;
}

static int in_list(const char *cmd, const char *const *list)
{
    for (; *list; list++)
        if (!strcmp(cmd, *list)) return 1;
    return 0;
}

/* The commands that read the data set, take --threads, and can resume. */
static const char *const data_cmds[] = {"train", "eval", "reconstruct", "search", "compare", "embed", "generate",
                                        "interpolate", NULL};
static const char *const thread_cmds[] = {"train", "eval", "search", "compare", "embed", "sample", "generate",
                                          "interpolate", NULL};
static const char *const resume_cmds[] = {"train", "search", "compare", NULL};

/* The running child, to pass a Ctrl-C on to. Children get their own process
 * group, so a terminal's Ctrl-C reaches only us and each child sees the
 * signal exactly once (a second one would make latent train quit unsaved). */
static volatile pid_t child_pid;
static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    interrupted = 1;
    if (child_pid > 0) kill(child_pid, sig);
}

/* Run latent with argv (argv[0] = "latent", argv[1] the command) and capture its stdout; its
 * stderr (progress) goes straight to ours. Returns the exit code. */
static int run_child(char **argv, char **out_text)
{
    int fd[2];
    *out_text = NULL;
    if (pipe(fd)) return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        setpgid(0, 0);
        dup2(fd[1], STDOUT_FILENO);
        close(fd[0]), close(fd[1]);
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        execv("/proc/self/exe", argv);
        _exit(127);
    }
    child_pid = pid;
    if (interrupted) kill(pid, SIGINT); /* the signal came while we were forking */
    close(fd[1]);
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    ssize_t got;
    while (buf && (got = read(fd[0], buf + n, cap - n - 1)) != 0) {
        if (got < 0) {
            if (errno == EINTR) continue;
            break;
        }
        n += (size_t)got;
        if (cap - n < 2) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) break;
            buf = nb;
        }
    }
    close(fd[0]);
    if (buf) buf[n] = 0;
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    child_pid = 0;
    *out_text = buf;
    if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The last line of a command's stdout that is a JSON object, or null. */
static json_t *last_json(const char *text)
{
    json_t *found = NULL;
    const char *line = text;
    while (line && *line) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        if (len && line[0] == '{') {
            json_t *j = json_loadb(line, len, 0, NULL);
            if (j) {
                json_decref(found);
                found = j;
            }
        }
        line = end ? end + 1 : NULL;
    }
    return found ? found : json_null();
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

/* Is the stage's record there, for this very definition, with its files? */
static json_t *finished_record(const char *stage_dir, json_t *def, const char *out)
{
    char path[4300];
    snprintf(path, sizeof path, "%s/stage.json", stage_dir);
    json_t *rec = json_load_file(path, 0, NULL);
    if (!rec) return NULL;
    if (!json_equal(json_object_get(rec, "definition"), def) || !json_is_array(json_object_get(rec, "outputs"))) {
        json_decref(rec);
        return NULL;
    }
    size_t i;
    json_t *f;
    json_array_foreach(json_object_get(def, "figures"), i, f) {
        char *p = expand(json_string_value(json_object_get(f, "file")), out, stage_dir);
        struct stat sb;
        int ok = p && stat(p, &sb) == 0 && sb.st_size > 0;
        free(p);
        if (!ok) {
            json_decref(rec);
            return NULL;
        }
    }
    return rec;
}

/* Did the stage finish before under another definition? Its folder then
 * holds runs made with other settings, which must not be resumed. */
static int definition_changed(const char *out, const char *id, json_t *def)
{
    char path[4300];
    snprintf(path, sizeof path, "%s/%s/stage.json", out, id);
    json_t *rec = json_load_file(path, 0, NULL);
    int changed = rec && !json_equal(json_object_get(rec, "definition"), def);
    json_decref(rec);
    return changed;
}

static int run_stage(json_t *def, const char *out, const char *data, int threads, json_t *records, json_t **record)
{
    const char *id = json_string_value(json_object_get(def, "id"));
    char stage_dir[4200];
    snprintf(stage_dir, sizeof stage_dir, "%s/%s", out, id);
    lt_err err = {0};
    if (lt_mkdir_p(stage_dir, &err)) {
        fprintf(stderr, "latent study: %s\n", err.msg);
        return 1;
    }
    json_t *cmds_run = json_array(), *outputs = json_array();
    /* A command may read what an earlier command of its own stage printed
     * ("{=id.0.best.lr}" in the stage id): the stage's record so far stands in
     * the table while it runs, and the finished record replaces it. */
    json_t *partial = json_object();
    json_object_set(partial, "outputs", outputs);
    json_object_set_new(records, id, partial);
    double t0 = wall();
    size_t i;
    json_t *c;
    int rc = 0;
    json_array_foreach(json_object_get(def, "commands"), i, c) {
        int n = (int)json_array_size(c);
        char **argv = calloc((size_t)n + 8, sizeof(char *));
        int argc = 0;
        argv[argc++] = strdup("latent");
        const char *bad = NULL;
        for (int k = 0; k < n; k++)
            argv[argc++] = expand_refs(json_string_value(json_array_get(c, (size_t)k)), out, stage_dir, records, &bad);
        if (bad) {
            fprintf(stderr, "latent study: stage '%s': '%.*s' names no value of an earlier stage\n", id,
                    (int)strcspn(bad, "}") + 1, bad);
            for (int k = 0; k < argc; k++) free(argv[k]);
            free(argv);
            rc = EXIT_USAGE;
            break;
        }
        const char *cmd = argv[1];
        char tbuf[16];
        if (data && in_list(cmd, data_cmds) && !has_flag(argv, argc, "--data"))
            argv[argc++] = strdup("--data"), argv[argc++] = strdup(data);
        if (threads && in_list(cmd, thread_cmds) && !has_flag(argv, argc, "--threads")) {
            snprintf(tbuf, sizeof tbuf, "%d", threads);
            argv[argc++] = strdup("--threads"), argv[argc++] = strdup(tbuf);
        }
        /* An interrupted run continues: its folder already holds its state. */
        const char *o = flag_value(argv, argc, "--out");
        struct stat sb;
        char probe[4400];
        if (o && in_list(cmd, resume_cmds) && !has_flag(argv, argc, "--resume")) {
            snprintf(probe, sizeof probe, "%s/%s", o, !strcmp(cmd, "train") ? "train_state.safetensors" : ".");
            int resumable = stat(probe, &sb) == 0;
            if (resumable && strcmp(cmd, "train")) {
                snprintf(probe, sizeof probe, "%s/search.json", o);
                resumable = stat(probe, &sb) == 0;
            }
            if (resumable) argv[argc++] = strdup("--resume");
        }
        json_t *line = json_array();
        for (int k = 1; k < argc; k++) json_array_append_new(line, json_string(argv[k]));
        char shown[1024] = "";
        for (int k = 0; k < argc && strlen(shown) < 900; k++) snprintf(shown + strlen(shown), sizeof shown - strlen(shown), "%s%s", k ? " " : "", argv[k]);
        fprintf(stderr, "[%s] %s\n", id, shown);
        char *text = NULL;
        double c0 = wall();
        int code = run_child(argv, &text);
        json_t *res = last_json(text ? text : "");
        if (json_is_object(res)) json_object_set_new(res, "_seconds", json_real(wall() - c0));
        json_array_append_new(cmds_run, line);
        json_array_append_new(outputs, res);
        free(text);
        for (int k = 0; k < argc; k++) free(argv[k]);
        free(argv);
        if (code == EXIT_INTERRUPTED || code == 128 + SIGINT || code == 128 + SIGTERM || interrupted) {
            fprintf(stderr, "latent study: interrupted in stage '%s'; run the same command again to continue\n", id);
            rc = EXIT_INTERRUPTED;
            break;
        }
        if (code) {
            fprintf(stderr, "latent study: stage '%s' failed: `%s` exited with code %d (its message is above)\n", id,
                    shown, code);
            rc = 1;
            break;
        }
    }
    json_object_del(records, id);
    if (!rc) {
        json_t *rec = json_object();
        json_object_set(rec, "definition", def);
        json_object_set_new(rec, "commands", cmds_run);
        json_object_set_new(rec, "outputs", outputs);
        json_object_set_new(rec, "seconds", json_real(wall() - t0));
        time_t now = time(NULL);
        char when[64];
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
        json_object_set_new(rec, "finished", json_string(when));
        char path[4300], *text = json_dumps(rec, JSON_INDENT(1));
        snprintf(path, sizeof path, "%s/stage.json", stage_dir);
        if (!text || lt_write_file_atomic(path, text, strlen(text), &err)) {
            fprintf(stderr, "latent study: %s\n", text ? err.msg : "out of memory");
            rc = 1;
        }
        free(text);
        *record = rec;
    } else {
        json_decref(cmds_run);
        json_decref(outputs);
    }
    return rc;
}

int cmd_study(int argc, char **argv)
{
    const char *out = NULL, *preset = "quick", *force = NULL, *data = NULL, *show = NULL;
    int threads = 0;
    cli_opt opts[] = {
        {"--out", OPT_STRING, &out, "output directory (required)", 0, 0, 0},
        {"--preset", OPT_STRING, &preset, "quick (a miniature: under a minute on 2 cores), full (the study's protocol) or a JSON file", 0, 0, 0},
        {"--force", OPT_STRING, &force, "rerun this stage from scratch, and the stages that use what it made", 0, 0, 0},
        {"--data", OPT_STRING, &data, "directory with IDX files (default: the MNIST cache)", 0, 0, 0},
        {"--threads", OPT_INT, &threads, "threads for every stage (default: all cores)", 1, 1024, 0},
        {"--show-preset", OPT_STRING, &show, "print a preset (quick, full or a file) and exit", 0, 0, 0},
    };
    const int nopts = (int)(sizeof opts / sizeof opts[0]);
    int rc = cli_parse("study", study_usage, argc, argv, opts, nopts, NULL, 0, NULL);
    if (rc) return rc == 1 ? 0 : rc;
    char path[4096];
    const char *name = show ? show : preset;
    if (find_preset(name, path, sizeof path)) {
        fprintf(stderr, "latent study: --preset: no preset '%s' (expected quick, full or a JSON file; searched %s)\n", name,
                LATENT_PRESET_DIRS);
        return EXIT_USAGE;
    }
    json_error_t jerr;
    json_t *p = json_load_file(path, 0, &jerr);
    if (!p) {
        fprintf(stderr, "latent study: %s:%d: not valid JSON: %s\n", path, jerr.line, jerr.text);
        return EXIT_USAGE;
    }
    if (validate_preset(p, path)) {
        json_decref(p);
        return EXIT_USAGE;
    }
    if (show) {
        char *text = json_dumps(p, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        if (text) puts(text);
        free(text);
        json_decref(p);
        return 0;
    }
    if (!out) {
        fprintf(stderr, "latent study: --out DIR is required\n");
        json_decref(p);
        return EXIT_USAGE;
    }
    json_t *stages = json_object_get(p, "stages");
    size_t i, force_at = json_array_size(stages);
    json_t *st;
    if (force) {
        json_array_foreach(stages, i, st) if (!strcmp(force, json_string_value(json_object_get(st, "id")))) force_at = i;
        if (force_at == json_array_size(stages)) {
            fprintf(stderr, "latent study: --force: no stage '%s' in %s\n", force, path);
            json_decref(p);
            return EXIT_USAGE;
        }
    }
    lt_err err = {0};
    if (lt_mkdir_p(out, &err)) {
        fprintf(stderr, "latent study: %s\n", err.msg);
        json_decref(p);
        return 1;
    }
    /* The parent outlives a Ctrl-C: the running stage saves and exits 130,
     * and we report it. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    json_t *records = json_object();
    double t0 = wall();
    fprintf(stderr, "latent study: preset %s (%s), %zu stages, into %s\n", name, path, json_array_size(stages), out);
    /* A forced stage starts from nothing, and so do those built on it, directly or not. */
    const size_t n_stages = json_array_size(stages);
    char *redo = calloc(n_stages ? n_stages : 1, 1);
    if (!redo) {
        json_decref(p);
        return 1;
    }
    json_array_foreach(stages, i, st) {
        const char *id = json_string_value(json_object_get(st, "id"));
        redo[i] = i == force_at;
        if (!redo[i] && definition_changed(out, id, st)) {
            fprintf(stderr, "[%s] its definition in the preset changed since it ran: it runs again from scratch\n", id);
            redo[i] = 1;
        }
        for (size_t k = 0; k < i && !redo[i]; k++)
            redo[i] = redo[k] && uses_stage(st, json_string_value(json_object_get(json_array_get(stages, k), "id")));
    }
    json_array_foreach(stages, i, st) {
        const char *id = json_string_value(json_object_get(st, "id"));
        char stage_dir[4200];
        snprintf(stage_dir, sizeof stage_dir, "%s/%s", out, id);
        if (redo[i]) {
            struct stat sb;
            if (stat(stage_dir, &sb) == 0) nftw(stage_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        }
        if (interrupted) {
            fprintf(stderr, "latent study: interrupted before stage '%s'; run the same command again to continue\n", id);
            rc = EXIT_INTERRUPTED;
            break;
        }
        json_t *rec = finished_record(stage_dir, st, out);
        if (rec) {
            fprintf(stderr, "[%s] done before (%.0fs); skipped\n", id, json_real_value(json_object_get(rec, "seconds")));
        } else if ((rc = run_stage(st, out, data, threads, records, &rec))) {
            break;
        }
        json_object_set_new(records, id, rec);
    }
    if (!rc) rc = study_report(p, records, out, name, wall() - t0);
    free(redo);
    json_decref(records);
    json_decref(p);
    return rc;
}
