/* edgeq C kernel library: 3DDFA landmark post-processing (eq_landmarks.c).
 *
 * A 3DDFA network outputs 62 whitened parameters per face. Post-processing (the same
 * maths as edgeq.data.face3d, float32 where the Python code rounds to float32):
 *   p[i]  = (float)(y[i] * eps[i] * std[i] + mean[i])            de-whitening
 *   X_k   = u_k + w_shp_k . p[12:52] + w_exp_k . p[52:62]         68 points, 3D
 *   v     = [p0 p1 p2; p4 p5 p6] X_k + (p3, p7)                   the 120-px frame
 *   x, y  = (float)((v0 - 1) * size/120), (float)((120 - v1) * size/120)   crop pixels
 * and, with a ROI (x0, y0, x1, y1 rounded to integers), image pixels:
 *   x_img = (float)(x * (x1 - x0) / size + x0), same for y.
 */
#ifndef EQ_LANDMARKS_H
#define EQ_LANDMARKS_H

#include <stddef.h>

#define EQ_LM_PARAMS 62
#define EQ_LM_POINTS 68
#define EQ_LM_SHAPE 40
#define EQ_LM_EXP 10

typedef struct {
    const double *eps;   /* dequantisation of the output: n_eps = 1 or 62 values */
    int n_eps;
    const double *mean;  /* [62] whitening mean (float32 values) */
    const double *std;   /* [62] whitening std */
    const double *u;     /* [204] mean shape, x y z per point */
    const double *w_shp; /* [204][40] shape basis, row-major */
    const double *w_exp; /* [204][10] expression basis */
    int size;            /* crop side in pixels (the network input) */
} eq_lm_model;

/* y: n rows of 62 outputs (element type y_dt); pts: n faces of [2][68] float32 points,
 * in crop pixels, or in image pixels when roi (4 doubles) is not NULL. */
void eq_landmarks_3ddfa(const eq_lm_model *m, const void *y, int y_dt, size_t n,
                        const double *roi, float *pts);

#endif
