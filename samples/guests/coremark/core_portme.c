/* core_portme.c - the port layer of CoreMark for the HybridVmm sample guests (32-bit Multiboot v1 kernels).
 *
 * Written for HybridVmm after EEMBC's barebones/core_portme.c. kmain() turns the Multiboot command line into
 * argc/argv and calls CoreMark's main(); portable_init() reads the seeds and the iteration count from it:
 *
 *   (nothing)                  the performance run (seeds 0,0,0x66), COREMARK_ITERATIONS iterations
 *   N                          the performance run, N iterations
 *   SEED1 SEED2 SEED3 [N]      CoreMark's own argument order, e.g. "0x3415 0x3415 0x66 100" for the
 *                              validation run (its run rules ask for both seed sets to validate)
 *
 * Numbers are decimal or 0x-hexadecimal. Under QEMU and `hybridvmm run` the command line starts with the
 * kernel's path (QEMU's "-kernel X -append ARGS" gives "X ARGS"), which is skipped. A command line this
 * port cannot read is reported on COM1 and the guest exits with code 2 before running anything. */
#include "coremark.h"
#include "guest.h"

#define EXIT_BAD_COMMAND_LINE 2
#define MAX_ARGS              8
#define CMDLINE_MAX           256

ee_u32 default_num_contexts = 1;

/* SEED_VOLATILE: CoreMark's get_seed_32() (core_util.c) reads seeds 1-3, the iteration count (4) and the
 * algorithm mask (5, 0 = all) from these. portable_init() sets them from the command line before main()
 * reads them, so the compiler cannot fold them either way. The defaults are the performance run's. */
volatile ee_s32 seed1_volatile = 0x0;
volatile ee_s32 seed2_volatile = 0x0;
volatile ee_s32 seed3_volatile = 0x66;
volatile ee_s32 seed4_volatile = COREMARK_ITERATIONS;
volatile ee_s32 seed5_volatile = 0;

static char  cmdline_copy[CMDLINE_MAX];
static char *arguments[MAX_ARGS + 1];

int
ee_printf(const char *fmt, ...)
{
    char    buf[256];
    va_list ap;
    va_start(ap, fmt);
    int n = kvsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    serial_write(buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
    return n;
}

/* ---- timing: RDTSC, in units of 1024 cycles ------------------------------ */

static CORE_TICKS start_time_val, stop_time_val;

static CORE_TICKS
read_ticks(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return (CORE_TICKS)((((uint64_t)hi << 32) | lo) >> 10);
}

void
start_time(void)
{
    start_time_val = read_ticks();
}

void
stop_time(void)
{
    stop_time_val = read_ticks();
}

CORE_TICKS
get_time(void)
{
    return stop_time_val - start_time_val;
}

/* Nominal: see COREMARK_NOMINAL_SECS in core_portme.h. */
secs_ret
time_in_secs(CORE_TICKS ticks)
{
    (void)ticks;
    return COREMARK_NOMINAL_SECS;
}

/* ---- command line -------------------------------------------------------- */

static int
is_number_start(char c)
{
    return (c >= '0' && c <= '9') || c == '-';
}

/* Parses a decimal or 0x-hexadecimal number, optionally negative, that fits in 32 bits signed. */
static int
parse_number(const char *s, ee_s32 *value)
{
    int      negative = 0;
    uint32_t limit, v = 0, base = 10;
    if (*s == '-')
    {
        negative = 1;
        s++;
    }
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
    {
        base = 16;
        s += 2;
    }
    if (*s == 0)
        return 0;
    limit = negative ? 0x80000000u : 0x7FFFFFFFu;
    for (; *s; s++)
    {
        uint32_t digit;
        if (*s >= '0' && *s <= '9')
            digit = (uint32_t)(*s - '0');
        else if (base == 16 && *s >= 'a' && *s <= 'f')
            digit = (uint32_t)(*s - 'a' + 10);
        else if (base == 16 && *s >= 'A' && *s <= 'F')
            digit = (uint32_t)(*s - 'A' + 10);
        else
            return 0;
        if (v > (limit - digit) / base)
            return 0;
        v = v * base + digit;
    }
    *value = negative ? (ee_s32)(0u - v) : (ee_s32)v;
    return 1;
}

static void
bad_command_line(const char *why, const char *word)
{
    ee_printf("coremark: bad command line: %s%s%s%s\n", why, word ? " '" : "", word ? word : "", word ? "'" : "");
    ee_printf("coremark: expected [ITERATIONS] or SEED1 SEED2 SEED3 [ITERATIONS], numbers in decimal or 0x-hex,"
              " e.g. '2000' or '0x3415 0x3415 0x66 2000'\n");
    guest_exit(EXIT_BAD_COMMAND_LINE);
}

void
portable_init(core_portable *p, int *argc, char *argv[])
{
    ee_s32 values[4];
    int    count = *argc - 1;

    if (sizeof(ee_ptr_int) != sizeof(ee_u8 *))
        ee_printf("ERROR! Please define ee_ptr_int to a type that holds a pointer!\n");
    if (sizeof(ee_u32) != 4)
        ee_printf("ERROR! Please define ee_u32 to a 32b unsigned type!\n");

    if (count == 2 || count > 4)
        bad_command_line("wrong number of arguments", 0);
    for (int i = 0; i < count; i++)
        if (!parse_number(argv[i + 1], &values[i]))
            bad_command_line("not a 32-bit number:", argv[i + 1]);
    if (count == 1)
        seed4_volatile = values[0];
    if (count >= 3)
    {
        seed1_volatile = values[0];
        seed2_volatile = values[1];
        seed3_volatile = values[2];
    }
    if (count == 4)
        seed4_volatile = values[3];
    /* 0 asks CoreMark to size the run to 10 s by its clock, which this port does not have. */
    if (seed4_volatile <= 0)
        bad_command_line("the iteration count must be at least 1", 0);

    ee_printf("CoreMark on a HybridVmm sample guest: seeds 0x%x 0x%x 0x%x, %d iterations; the time is nominal "
              "(no CoreMark score, see docs/coremark.md)\n",
              seed1_volatile, seed2_volatile, seed3_volatile, seed4_volatile);
    p->portable_id = 1;
}

void
portable_fini(core_portable *p)
{
    p->portable_id = 0;
}

/* Splits the Multiboot command line at spaces into argv, skipping a first word that is not a number (the
 * kernel's path, as QEMU and `hybridvmm run` pass it). */
static int
split_command_line(const struct multiboot_info *mbi)
{
    int    argc = 0;
    size_t n    = 0;
    char  *s;

    arguments[argc++] = "coremark";
    if (!(mbi->flags & MULTIBOOT_INFO_CMDLINE) || mbi->cmdline == 0)
        return argc;
    const char *src = (const char *)(uintptr_t)mbi->cmdline;
    while (src[n] && n < CMDLINE_MAX - 1)
    {
        cmdline_copy[n] = src[n];
        n++;
    }
    if (src[n])
        bad_command_line("longer than 255 bytes", 0);
    cmdline_copy[n] = 0;

    int first = 1;
    for (s = cmdline_copy; *s;)
    {
        while (*s == ' ' || *s == '\t')
            *s++ = 0;
        if (!*s)
            break;
        char *word = s;
        while (*s && *s != ' ' && *s != '\t')
            s++;
        if (first && !is_number_start(*word))
        {
            first = 0;
            continue;
        }
        first = 0;
        if (argc == MAX_ARGS)
            bad_command_line("too many arguments", 0);
        arguments[argc++] = word;
    }
    arguments[argc] = 0;
    return argc;
}

int main(int argc, char *argv[]);

uint32_t
kmain(uint32_t magic, struct multiboot_info *mbi)
{
    (void)magic;
    serial_init();
    int argc = split_command_line(mbi);
    return (uint32_t)main(argc, arguments);
}
