/* latent study: the report written from the stages' records. */
#ifndef LATENT_CLI_STUDY_H
#define LATENT_CLI_STUDY_H

#include <jansson.h>

/* Write DIR/results.json, DIR/report.md and DIR/report.html (images
 * embedded) from the preset and each stage's record (id -> stage.json). */
int study_report(json_t *preset, json_t *records, const char *dir, const char *preset_name, double seconds);

#endif
