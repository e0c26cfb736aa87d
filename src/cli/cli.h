/* The latent command-line tool: a thin client of the library (include/latent.h). */
#ifndef LATENT_CLI_H
#define LATENT_CLI_H

#include "latent.h"

/* Exit codes: 0 success, 1 the work failed, 2 bad usage, 130 interrupted. */
enum { EXIT_USAGE = 2, EXIT_INTERRUPTED = 130 };

typedef enum { OPT_FLAG, OPT_INT, OPT_DOUBLE, OPT_STRING, OPT_U64 } opt_type;

typedef struct cli_opt {
    const char *name;      /* "--lr" */
    opt_type type;
    void *value;           /* int*, double*, const char**, uint64_t* */
    const char *help;
    double min, max;       /* allowed range for numbers (inclusive) */
    int given;             /* set by the parser */
} cli_opt;

/* Parse argv[1..] into opts. Positional arguments go into pos (at most npos).
 * Prints a one-line error naming the flag and returns EXIT_USAGE on bad input,
 * 1 when --help was printed (caller returns 0), 0 on success. */
int cli_parse(const char *cmd, const char *usage, int argc, char **argv, cli_opt *opts, int nopts,
              const char **pos, int npos, int *npos_found);
void cli_print_help(const char *usage, const cli_opt *opts, int nopts);
const cli_opt *cli_find(const cli_opt *opts, int nopts, const char *name);

/* --data DIR, else the MNIST cache. */
int cli_load_split(const char *data_dir, const char *split, lt_dataset *ds);

int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_reconstruct(int argc, char **argv);
int cmd_sample(int argc, char **argv);
int cmd_curves(int argc, char **argv);
int cmd_study(int argc, char **argv);
int cmd_embed(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_interpolate(int argc, char **argv);
int cmd_search(int argc, char **argv);
int cmd_compare(int argc, char **argv);

/* The MPI job this process belongs to (NULL outside train, search, compare). */
lt_dist *cli_dist(void);

#endif
