/* The ACL side of the armcl backend (eqa_acl.cpp, C++): u8·u8 -> S32 GEMMs with
 * ACL 20.08's NEGEMMLowpMatrixMultiplyCore (output stage NONE, no bias). */
#ifndef EQA_ACL_H
#define EQA_ACL_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One configured GEMM: D[m][n] = Σ_k (A[m][k] + a_off)·(B[k][n] - 128) in S32, with
 * a_off = -128 when A holds signed values stored +128, else 0. ``a`` is the arena bytes
 * of A when the layer can read them as they are (u8, row-major [m][k]), else NULL; ACL
 * uses them in place when it needs no row padding (see eqa_gemm_a). ``b`` is [k][n]
 * stored +128, copied once into ACL's layout. Create every GEMM before the first run. */
typedef struct eqa_gemm eqa_gemm;
eqa_gemm *eqa_gemm_create(int m, int n, int k, const uint8_t *a, int a_signed,
                          const uint8_t *b);
/* Where A must be written (row stride in bytes): ``a`` itself, or the shared scratch. */
uint8_t *eqa_gemm_a(eqa_gemm *g);
size_t eqa_gemm_a_stride(const eqa_gemm *g);
/* The S32 result and its row stride in elements. */
const int32_t *eqa_gemm_d(eqa_gemm *g);
size_t eqa_gemm_d_stride(const eqa_gemm *g);
void eqa_gemm_run(eqa_gemm *g);
/* Heap bytes ACL and this glue keep (reshaped B, scratch A/D, row/column sums). */
size_t eqa_workspace_bytes(void);

#ifdef __cplusplus
}
#endif
#endif
