/* Flag parsing shared by every command: "--flag value" or "--flag=value",
 * numbers range-checked, and a one-line error naming the flag on bad input. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

const cli_opt *cli_find(const cli_opt *opts, int nopts, const char *name)
{
    for (int i = 0; i < nopts; i++)
        if (!strcmp(opts[i].name, name)) return &opts[i];
    return NULL;
}

void cli_print_help(const char *usage, const cli_opt *opts, int nopts)
{
    printf("%s\n\nOptions:\n", usage);
    for (int i = 0; i < nopts; i++) {
        const char *arg = opts[i].type == OPT_FLAG ? "" : opts[i].type == OPT_STRING ? " VALUE" : " N";
        char left[48];
        snprintf(left, sizeof left, "%s%s", opts[i].name, arg);
        printf("  %-22s %s\n", left, opts[i].help);
    }
    printf("  %-22s %s\n", "--help", "show this help");
}

static int set_value(const char *cmd, cli_opt *o, const char *v)
{
    char *end;
    errno = 0;
    switch (o->type) {
    case OPT_FLAG: return 0;
    case OPT_STRING:
        if (!*v) {
            fprintf(stderr, "latent %s: %s: expected a value, found an empty string\n", cmd, o->name);
            return EXIT_USAGE;
        }
        *(const char **)o->value = v;
        return 0;
    case OPT_INT:
    case OPT_U64: {
        long long x = strtoll(v, &end, 10);
        if (*v == 0 || *end || errno || x < o->min || x > o->max) {
            fprintf(stderr, "latent %s: %s: expected an integer from %.0f to %.0f, found '%s'\n", cmd, o->name,
                    o->min, o->max, v);
            return EXIT_USAGE;
        }
        if (o->type == OPT_INT) *(int *)o->value = (int)x;
        else *(uint64_t *)o->value = (uint64_t)x;
        return 0;
    }
    case OPT_DOUBLE: {
        double x = strtod(v, &end);
        if (*v == 0 || *end || errno || !isfinite(x) || x < o->min || x > o->max) {
            fprintf(stderr, "latent %s: %s: expected a number from %g to %g, found '%s'\n", cmd, o->name, o->min,
                    o->max, v);
            return EXIT_USAGE;
        }
        *(double *)o->value = x;
        return 0;
    }
    }
    return 0;
}

int cli_parse(const char *cmd, const char *usage, int argc, char **argv, cli_opt *opts, int nopts,
              const char **pos, int npos, int *npos_found)
{
    int np = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            cli_print_help(usage, opts, nopts);
            return 1;
        }
        if (strncmp(a, "--", 2) != 0 || !a[2]) {
            if (np == npos) {
                fprintf(stderr, "latent %s: unexpected argument '%s' (see latent %s --help)\n", cmd, a, cmd);
                return EXIT_USAGE;
            }
            pos[np++] = a;
            continue;
        }
        char name[64];
        const char *eq = strchr(a, '=');
        size_t len = eq ? (size_t)(eq - a) : strlen(a);
        if (len >= sizeof name) len = sizeof name - 1;
        memcpy(name, a, len);
        name[len] = 0;
        cli_opt *o = (cli_opt *)cli_find(opts, nopts, name);
        if (!o) {
            fprintf(stderr, "latent %s: unknown option '%s' (see latent %s --help)\n", cmd, name, cmd);
            return EXIT_USAGE;
        }
        o->given = 1;
        if (o->type == OPT_FLAG) {
            if (eq) {
                fprintf(stderr, "latent %s: %s takes no value\n", cmd, name);
                return EXIT_USAGE;
            }
            *(int *)o->value = 1;
            continue;
        }
        const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (!v) {
            fprintf(stderr, "latent %s: %s needs a value\n", cmd, name);
            return EXIT_USAGE;
        }
        int rc = set_value(cmd, o, v);
        if (rc) return rc;
    }
    if (npos_found) *npos_found = np;
    return 0;
}

int cli_load_split(const char *data_dir, const char *split, lt_dataset *ds)
{
    char dir[4096];
    lt_err err = {0};
    if (!data_dir) {
        if (lt_default_data_dir(dir, sizeof dir, &err)) {
            fprintf(stderr, "latent: %s\n", err.msg);
            return 1;
        }
        data_dir = dir;
    }
    if (lt_dataset_load(ds, data_dir, split, &err)) {
        fprintf(stderr, "latent: %s\n", err.msg);
        return 1;
    }
    return 0;
}

volatile int cli_stop_requested;

static void on_stop_signal(int sig)
{
    (void)sig;
    cli_stop_requested = 1;
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
}

void cli_catch_stop(void)
{
    signal(SIGINT, on_stop_signal);
    signal(SIGTERM, on_stop_signal);
}

void cli_fmt_duration(char *buf, size_t n, double s)
{
    if (!isfinite(s) || s < 0) s = 0;
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else if (t >= 60) snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
    else snprintf(buf, n, "%lds", t);
}

double cli_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}
