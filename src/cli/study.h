/* latent study: the report written from the stages' records. */
#ifndef LATENT_CLI_STUDY_H
#define LATENT_CLI_STUDY_H

#include <jansson.h>

/* Write DIR/results.json, DIR/report.md and DIR/report.html (images
 * embedded) from the preset and each stage's record (id -> stage.json). */
int study_report(json_t *preset, json_t *records, const char *dir, const char *preset_name, double seconds);

/* A value a finished stage produced: "stage.i.key.sub" is output i (the JSON
 * its command i printed) of the stage, then keys or array indices. NULL if
 * there is none. */
json_t *study_lookup(json_t *records, const char *path);

#endif
