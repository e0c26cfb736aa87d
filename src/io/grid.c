/* Image grids: the reconstruction figure and every later grid of digits. */
#include <stdlib.h>

#include "core/core.h"

#define GAP 2

int lt_write_image_grid(const char *path, const float *images, int n, int h, int w, int cols,
                        int scale, lt_err *err)
{
    if (n <= 0 || h <= 0 || w <= 0 || cols <= 0 || scale <= 0 || scale > 64)
        return lt_errf(err, LT_EINVAL, "%s: bad grid (%d images of %dx%d, %d columns, scale %d)", path, n, h, w, cols, scale);
    if (cols > n) cols = n;
    int rows = (n + cols - 1) / cols;
    int W = cols * (w * scale + GAP) + GAP, H = rows * (h * scale + GAP) + GAP;
    uint8_t *pix = lt_malloc((size_t)W * H, err);
    if (!pix) return LT_ENOMEM;
    /* Mid-grey background so the white-on-black digits stand apart. */
    for (size_t i = 0; i < (size_t)W * H; i++) pix[i] = 128;
    for (int k = 0; k < n; k++) {
        int oy = GAP + (k / cols) * (h * scale + GAP), ox = GAP + (k % cols) * (w * scale + GAP);
        const float *img = images + (size_t)k * h * w;
        for (int y = 0; y < h * scale; y++)
            for (int x = 0; x < w * scale; x++) {
                float v = img[(size_t)(y / scale) * w + x / scale];
                v = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
                pix[(size_t)(oy + y) * W + ox + x] = (uint8_t)(v * 255.0f + 0.5f);
            }
    }
    int rc = lt_png_write_gray(path, pix, W, H, err);
    free(pix);
    return rc;
}
