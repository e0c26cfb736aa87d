/* io: PNG files through libpng.
 *
 * lt_png_write_gray() (declared in latent.h) writes an 8-bit grayscale PNG
 * atomically: to PATH.tmp.XXXXXX in the same directory, fsynced, then renamed
 * over PATH, so a reader sees the old picture or the new one, never half. */
#ifndef LATENT_IO_PNG_H
#define LATENT_IO_PNG_H

#include <stdint.h>

#include "latent.h"

/* Read any PNG as 8-bit grayscale: *pixels gets width*height bytes, row-major
 * (free() it). Other formats are converted rather than rejected: 1/2/4-bit gray
 * is expanded, 16-bit is reduced to 8, palette and RGB go through libpng's
 * rgb_to_gray with its default (ITU-R 709) weights, and alpha is dropped
 * without compositing. Returns LT_EIO when the file cannot be opened,
 * LT_EFORMAT when it is not a valid PNG, LT_ENOMEM on allocation failure. */
int lt_png_read_gray(const char *path, uint8_t **pixels, int *width, int *height, lt_err *err);

#endif
