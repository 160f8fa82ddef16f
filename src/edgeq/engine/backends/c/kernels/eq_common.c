/* Element access by dtype code: used outside inner loops and by the generic kernels. */
#include "eq_kernels.h"

size_t eq_dtype_size(int dt) {
    switch (dt) {
    case EQ_U8: case EQ_S8: return 1;
    case EQ_U16: case EQ_S16: return 2;
    case EQ_U32: case EQ_S32: case EQ_F32: return 4;
    default: return 8;
    }
}

int64_t eq_load_i(const void *p, int dt, size_t i) {
    switch (dt) {
    case EQ_U8: return ((const uint8_t *)p)[i];
    case EQ_S8: return ((const int8_t *)p)[i];
    case EQ_U16: return ((const uint16_t *)p)[i];
    case EQ_S16: return ((const int16_t *)p)[i];
    case EQ_U32: return ((const uint32_t *)p)[i];
    case EQ_S32: return ((const int32_t *)p)[i];
    case EQ_S64: return ((const int64_t *)p)[i];
    case EQ_F32: return (int64_t)((const float *)p)[i];
    default: return (int64_t)((const double *)p)[i];
    }
}

void eq_store_i(void *p, int dt, size_t i, int64_t v) {
    switch (dt) {
    case EQ_U8: ((uint8_t *)p)[i] = (uint8_t)v; break;
    case EQ_S8: ((int8_t *)p)[i] = (int8_t)v; break;
    case EQ_U16: ((uint16_t *)p)[i] = (uint16_t)v; break;
    case EQ_S16: ((int16_t *)p)[i] = (int16_t)v; break;
    case EQ_U32: ((uint32_t *)p)[i] = (uint32_t)v; break;
    case EQ_S32: ((int32_t *)p)[i] = (int32_t)v; break;
    case EQ_S64: ((int64_t *)p)[i] = v; break;
    case EQ_F32: ((float *)p)[i] = (float)v; break;
    default: ((double *)p)[i] = (double)v; break;
    }
}

double eq_load_f(const void *p, int dt, size_t i) {
    switch (dt) {
    case EQ_F32: return ((const float *)p)[i];
    case EQ_F64: return ((const double *)p)[i];
    default: return (double)eq_load_i(p, dt, i);
    }
}

void eq_store_f(void *p, int dt, size_t i, double v) {
    switch (dt) {
    case EQ_F32: ((float *)p)[i] = (float)v; break;
    case EQ_F64: ((double *)p)[i] = v; break;
    default: eq_store_i(p, dt, i, (int64_t)v); break;
    }
}
