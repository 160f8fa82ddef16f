/* 3DDFA landmark post-processing: de-whiten 62 parameters, reconstruct 68 points. */
#include <math.h>

#include "eq_kernels.h"
#include "eq_landmarks.h"

#define EQ_LM_FRAME 120.0 /* 3DDFA's parameter frame: a 120 x 120 pixel crop */

static void dewhiten(const eq_lm_model *m, const void *y, int y_dt, size_t row, float *p) {
    for (int i = 0; i < EQ_LM_PARAMS; i++) {
        const double out = eq_load_f(y, y_dt, row * EQ_LM_PARAMS + (size_t)i);
        const double eps = m->eps[m->n_eps == 1 ? 0 : i];
        p[i] = (float)(out * eps * m->std[i] + m->mean[i]);
    }
}

/* x, y, z of point k: u + w_shp alpha_shp + w_exp alpha_exp */
static void shape_point(const eq_lm_model *m, const float *p, int k, double X[3]) {
    for (int c = 0; c < 3; c++) {
        const int r = 3 * k + c;
        double v = m->u[r];
        for (int j = 0; j < EQ_LM_SHAPE; j++) v += m->w_shp[r * EQ_LM_SHAPE + j] * (double)p[12 + j];
        for (int j = 0; j < EQ_LM_EXP; j++) v += m->w_exp[r * EQ_LM_EXP + j] * (double)p[52 + j];
        X[c] = v;
    }
}

static void to_image(float *xy, int size, const double *roi) {
    /* the ROI rounded to whole pixels (half to even, as NumPy's rint) */
    const double x0 = nearbyint(roi[0]), y0 = nearbyint(roi[1]);
    const double w = nearbyint(roi[2]) - x0, h = nearbyint(roi[3]) - y0;
    for (int k = 0; k < EQ_LM_POINTS; k++) {
        xy[k] = (float)((double)xy[k] * w / size + x0);
        xy[EQ_LM_POINTS + k] = (float)((double)xy[EQ_LM_POINTS + k] * h / size + y0);
    }
}

void eq_landmarks_3ddfa(const eq_lm_model *m, const void *y, int y_dt, size_t n,
                        const double *roi, float *pts) {
    const double scale = m->size / EQ_LM_FRAME;
    for (size_t s = 0; s < n; s++) {
        float p[EQ_LM_PARAMS];
        float *xy = pts + s * 2 * EQ_LM_POINTS;
        dewhiten(m, y, y_dt, s, p);
        for (int k = 0; k < EQ_LM_POINTS; k++) {
            double X[3];
            shape_point(m, p, k, X);
            const double v0 = (double)p[0] * X[0] + (double)p[1] * X[1] + (double)p[2] * X[2] + p[3];
            const double v1 = (double)p[4] * X[0] + (double)p[5] * X[1] + (double)p[6] * X[2] + p[7];
            xy[k] = (float)((v0 - 1.0) * scale);
            xy[EQ_LM_POINTS + k] = (float)((EQ_LM_FRAME - v1) * scale);
        }
        if (roi) to_image(xy, m->size, roi);
    }
}
