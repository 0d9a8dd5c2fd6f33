/* core_portme.h - the port layer of CoreMark for the HybridVmm sample guests (32-bit Multiboot v1 kernels).
 *
 * Written for HybridVmm; the layout follows EEMBC's barebones/core_portme.h. Everything else in this
 * directory is EEMBC's CoreMark, unmodified (see SOURCE and docs/coremark.md).
 *
 * The guests have no FPU (HAS_FLOAT 0: CoreMark then reports seconds as whole numbers), no libc (ee_printf
 * goes to COM1 through lib/printf.c) and no heap (MEM_STATIC). Seeds and the iteration count come from
 * the Multiboot command line (SEED_VOLATILE: the seed*_volatile variables in core_portme.c). */
#ifndef CORE_PORTME_H
#define CORE_PORTME_H

#include <stddef.h>

#define HAS_FLOAT   0
#define HAS_TIME_H  0
#define USE_CLOCK   0
#define HAS_STDIO   0
#define HAS_PRINTF  0

#define COMPILER_VERSION "GCC"__VERSION__
#define COMPILER_FLAGS   "-O2 -m32 -march=i686 -ffreestanding -mno-80387 (samples/guests/Makefile)"
#define MEM_LOCATION     "STATIC"

typedef signed short   ee_s16;
typedef unsigned short ee_u16;
typedef signed int     ee_s32;
typedef unsigned char  ee_u8;
typedef unsigned int   ee_u32;
typedef ee_u32         ee_ptr_int;
typedef size_t         ee_size_t;

/* Align an offset to a 32-bit boundary (used by the matrix initialisation). */
#define align_mem(x) (void *)(4 + (((ee_ptr_int)(x)-1) & ~3))

/* Ticks are RDTSC cycles divided by 1024 (32 bits would wrap after about a second on a 3 GHz host). */
#define CORETIMETYPE ee_u32
typedef ee_u32 CORE_TICKS;

#define SEED_METHOD SEED_VOLATILE
#define MEM_METHOD  MEM_STATIC

#define MULTITHREAD       1
#define USE_PTHREAD       0
#define USE_FORK          0
#define USE_SOCKET        0
#define MAIN_HAS_NOARGC   0
#define MAIN_HAS_NORETURN 0

/* The iteration count when the command line names none: a run of a few seconds under HybridVmm's
 * interpreter. Override with -DCOREMARK_ITERATIONS=N (make COREMARK_ITERATIONS=N) or on the command line. */
#ifndef COREMARK_ITERATIONS
#define COREMARK_ITERATIONS 100
#endif

/* What time_in_secs() reports whatever the run took. CoreMark counts a run of under 10 s as an error
 * ("Must execute for at least 10 secs"), and such a run never prints "Correct operation validated." even
 * when every CRC matches. This port does not measure a CoreMark score: the guest has no clock it can trust
 * (HybridVmm's TSC counts retired instructions, QEMU TCG's follows the host), and the hosts time the runs
 * from outside (bench/compare-qemu.sh). So the seconds are nominal, the validation rests on the CRCs alone,
 * and the "Total time" and "Iterations/Sec" lines mean nothing. */
#define COREMARK_NOMINAL_SECS 10

extern ee_u32 default_num_contexts;

typedef struct CORE_PORTABLE_S
{
    ee_u8 portable_id;
} core_portable;

void portable_init(core_portable *p, int *argc, char *argv[]);
void portable_fini(core_portable *p);

#if !defined(PROFILE_RUN) && !defined(PERFORMANCE_RUN) && !defined(VALIDATION_RUN)
#if (TOTAL_DATA_SIZE == 1200)
#define PROFILE_RUN 1
#elif (TOTAL_DATA_SIZE == 2000)
#define PERFORMANCE_RUN 1
#else
#define VALIDATION_RUN 1
#endif
#endif

int ee_printf(const char *fmt, ...);

#endif /* CORE_PORTME_H */
