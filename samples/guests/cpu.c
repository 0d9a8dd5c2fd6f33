/* cpu.c - the CPU-exercise guest (and benchmark).
 *
 * Runs a set of integer workloads and instruction-level edge tests and prints
 * one hex digest per line ("name digest"). The output must be identical under
 * QEMU and HybridVmm, so only architecturally DEFINED results are folded into
 * the digests: undefined flags are masked out per instruction, and nothing
 * machine-specific (CPUID, RDTSC, memory map) is printed.
 *
 * CPU_SCALE scales the workloads; 1 gives roughly 25-30 million instructions.
 */
#include "guest.h"

#ifndef CPU_SCALE
#define CPU_SCALE 1
#endif

#define CRC_BYTES   (64 * 1024 * CPU_SCALE)     /* CRC-32 buffer (bitwise + table) */
#define SIEVE_N     (300000 * CPU_SCALE)        /* sieve upper bound */
#define MAT_N       48                          /* matrix multiply size (N x N) */
#define MAT_ROUNDS  (2 * CPU_SCALE)
#define SORT_N      (16384 * CPU_SCALE)         /* heapsort element count */
#define ARITH64_N   (3000 * CPU_SCALE)          /* 64-bit div/mod iterations */

/* EFLAGS bits */
#define F_CF 0x0001u
#define F_PF 0x0004u
#define F_AF 0x0010u
#define F_ZF 0x0040u
#define F_SF 0x0080u
#define F_OF 0x0800u
#define F_ARITH (F_CF | F_PF | F_AF | F_ZF | F_SF | F_OF)
#define F_FIXED 0x0002u /* bit 1 always reads as 1 */

/* ---- helpers ----------------------------------------------------------- */
static uint32_t rng_state;
static uint32_t rng(void)
{
    uint32_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return rng_state = x;
}

static inline uint32_t rotl(uint32_t v, unsigned n) { return (v << (n & 31)) | (v >> ((32 - n) & 31)); }
static inline uint32_t mix(uint32_t h, uint32_t v) { return (rotl(h, 5) ^ v) * 0x9E3779B1u; }

static const uint32_t edges[] = {
    0, 1, 2, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0x8000, 0xffff,
    0x7fffffff, 0x80000000, 0x80000001, 0xfffffffe, 0xffffffff, 0x12345678,
};
#define NEDGES (sizeof edges / sizeof edges[0])

static void report(const char *name, uint32_t digest) { kprintf("%-9s %08x\n", name, digest); }

/* ---- CRC-32 ------------------------------------------------------------ */
static uint8_t crc_buf[CRC_BYTES];
static uint32_t crc_table[256];

static uint32_t crc32_bitwise(const uint8_t *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    while (n--) {
        c ^= *p++;
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1)));
    }
    return ~c;
}

static uint32_t crc32_table_fn(const uint8_t *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    while (n--)
        c = crc_table[(c ^ *p++) & 0xFF] ^ (c >> 8);
    return ~c;
}

static void test_crc32(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0xEDB88320u : c >> 1;
        crc_table[i] = c;
    }
    rng_state = 0x12345678u;
    for (size_t i = 0; i < CRC_BYTES; i += 4) {
        uint32_t r = rng();
        memcpy(&crc_buf[i], &r, 4);
    }
    uint32_t check = crc32_table_fn((const uint8_t *)"123456789", 9); /* cbf43926 */
    uint32_t a = crc32_bitwise(crc_buf, CRC_BYTES);
    uint32_t b = crc32_table_fn(crc_buf, CRC_BYTES);
    if (a != b || check != 0xCBF43926u)
        kprintf("crc32 MISMATCH bitwise=%08x table=%08x check=%08x\n", a, b, check);
    report("crc32", b);
}

/* ---- sieve of Eratosthenes --------------------------------------------- */
static uint8_t sieve[SIEVE_N + 1];

static void test_sieve(void)
{
    memset(sieve, 1, sizeof sieve);
    sieve[0] = sieve[1] = 0;
    for (uint32_t i = 2; i * i <= SIEVE_N; i++)
        if (sieve[i])
            for (uint32_t j = i * i; j <= SIEVE_N; j += i)
                sieve[j] = 0;
    uint32_t count = 0, h = 0;
    for (uint32_t i = 0; i <= SIEVE_N; i++)
        if (sieve[i]) {
            count++;
            h = mix(h, i);
        }
    kprintf("%-9s %u %08x\n", "sieve", count, h);
}

/* ---- integer matrix multiply ------------------------------------------- */
static int32_t ma[MAT_N][MAT_N], mb[MAT_N][MAT_N], mc[MAT_N][MAT_N];

static void test_matrix(void)
{
    rng_state = 0xCAFEBABEu;
    for (int i = 0; i < MAT_N; i++)
        for (int j = 0; j < MAT_N; j++) {
            ma[i][j] = (int32_t)(rng() % 2001) - 1000;
            mb[i][j] = (int32_t)(rng() % 2001) - 1000;
        }
    uint32_t h = 0;
    for (int r = 0; r < MAT_ROUNDS; r++) {
        for (int i = 0; i < MAT_N; i++)
            for (int j = 0; j < MAT_N; j++) {
                int32_t s = 0;
                for (int k = 0; k < MAT_N; k++)
                    s += ma[i][k] * mb[k][j];
                mc[i][j] = s;
            }
        for (int i = 0; i < MAT_N; i++)
            for (int j = 0; j < MAT_N; j++) {
                h = mix(h, (uint32_t)mc[i][j]);
                ma[i][j] = mc[i][j] >> 12;   /* arithmetic shift, feeds the next round */
            }
    }
    report("matmul", h);
}

/* ---- heapsort ---------------------------------------------------------- */
static uint32_t sort_buf[SORT_N];

static void sift_down(uint32_t *a, size_t start, size_t end)
{
    size_t root = start;
    while (2 * root + 1 < end) {
        size_t child = 2 * root + 1;
        if (child + 1 < end && a[child] < a[child + 1])
            child++;
        if (a[root] >= a[child])
            return;
        uint32_t t = a[root];
        a[root] = a[child];
        a[child] = t;
        root = child;
    }
}

static void test_sort(void)
{
    rng_state = 0x0BADF00Du;
    for (size_t i = 0; i < SORT_N; i++)
        sort_buf[i] = rng() >> (i & 7);   /* some duplicates-prone small values too */
    for (size_t i = SORT_N / 2; i-- > 0;)
        sift_down(sort_buf, i, SORT_N);
    for (size_t end = SORT_N; end-- > 1;) {
        uint32_t t = sort_buf[0];
        sort_buf[0] = sort_buf[end];
        sort_buf[end] = t;
        sift_down(sort_buf, 0, end);
    }
    uint32_t h = 0, unsorted = 0;
    for (size_t i = 0; i < SORT_N; i++) {
        if (i && sort_buf[i - 1] > sort_buf[i])
            unsorted++;
        h = mix(h, sort_buf[i]);
    }
    if (unsorted)
        kprintf("sort NOT SORTED (%u inversions)\n", unsorted);
    report("heapsort", h);
}

/* ---- 64-bit arithmetic (libgcc __udivdi3/__divdi3/__umoddi3/__moddi3) --- */
static uint64_t rng64(void) { uint64_t hi = rng(); return (hi << 32) | rng(); }

static void test_arith64(void)
{
    rng_state = 0x600DCAFEu;
    uint64_t acc = 0x0123456789ABCDEFull;
    for (uint32_t i = 0; i < ARITH64_N; i++) {
        uint64_t a = rng64();
        uint64_t b = rng64() >> (i % 64);
        if (b == 0)
            b = 0x9E3779B97F4A7C15ull;
        int64_t sa = (int64_t)a, sb = (int64_t)b;
        if (i & 1)
            sb = -sb;
        if (sb == -1 && sa == INT64_MIN)
            sb = 3;
        acc += a / b;
        acc ^= a % b;
        acc = (acc << 7) | (acc >> 57);
        acc += (uint64_t)(sa / sb);
        acc ^= (uint64_t)(sa % sb);
        acc = acc * 0x5851F42D4C957F2Dull + (a >> (i % 64)) + (uint64_t)(sa >> (i % 63));
        acc -= (uint64_t)((uint32_t)a) * (uint32_t)(b >> 32);   /* 32x32->64 mul */
        if ((int64_t)acc < sa)
            acc ^= 0x8000000000000001ull;
    }
    /* a few fixed cases with well-known answers */
    volatile uint64_t big = 0xFFFFFFFFFFFFFFFFull, ten = 10;
    volatile int64_t neg = -1000000000000ll, seven = 7;
    acc = acc * 31 + big / ten + big % ten + (uint64_t)(neg / seven) + (uint64_t)(neg % seven);
    kprintf("%-9s %016llx\n", "arith64", acc);
    kprintf("%-9s %llu %lld %lld\n", "div64", big / ten, neg / seven, neg % seven);
}

/* ---- string instructions ----------------------------------------------- */
static uint8_t str_src[4096] __attribute__((aligned(16)));
static uint8_t str_dst[4096] __attribute__((aligned(16)));

static uint32_t get_flags(void)
{
    uint32_t f;
    __asm__ volatile("pushfl; popl %0" : "=r"(f));
    return f;
}

static void test_strings(void)
{
    uint32_t h = 0;
    const uint32_t sb = (uint32_t)(uintptr_t)str_src, db = (uint32_t)(uintptr_t)str_dst;
    rng_state = 0x5EED5EEDu;
    for (int i = 0; i < 4096; i++)
        str_src[i] = (uint8_t)rng();

    for (int round = 0; round < 24 * CPU_SCALE; round++) {
        uint32_t soff = rng() & 63, doff = rng() & 63, len = 512 + (rng() & 1023);
        void *d = str_dst + doff;
        const void *s = str_src + soff;
        uint32_t n = len;

        /* rep stosd: clear the destination with a pattern */
        {
            void *dd = str_dst;
            uint32_t cnt = 1024, pat = 0xA5A50000u | (uint32_t)round;
            __asm__ volatile("rep stosl" : "+D"(dd), "+c"(cnt) : "a"(pat) : "memory");
            h = mix(h, (uint32_t)(uintptr_t)dd - db);
            h = mix(h, cnt);
        }
        /* rep movsb, forward, misaligned */
        __asm__ volatile("rep movsb" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
        h = mix(h, (uint32_t)(uintptr_t)d - db);
        h = mix(h, (uint32_t)(uintptr_t)s - sb);
        h = mix(h, n);
        /* rep movsd */
        d = str_dst + 2048 + (doff & ~3u);
        s = str_src + soff;
        n = len / 8;
        __asm__ volatile("rep movsl" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
        h = mix(h, (uint32_t)(uintptr_t)d - db);
        /* rep movsw (operand-size prefix) */
        d = str_dst + 3072;
        s = str_src + 1 + soff;
        n = 200;
        __asm__ volatile("rep movsw" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
        h = mix(h, (uint32_t)(uintptr_t)s - sb);

        /* repe cmpsb: find the first difference (we plant one) */
        uint32_t pos = rng() % len;
        str_dst[doff + pos] ^= 0x40;
        d = str_dst + doff;
        s = str_src + soff;
        n = len;
        uint32_t fl;
        __asm__ volatile("repe cmpsb\n\tpushfl\n\tpopl %3"
                         : "+D"(d), "+S"(s), "+c"(n), "=r"(fl) : : "memory", "cc");
        h = mix(h, (uint32_t)(uintptr_t)s - sb);
        h = mix(h, n);
        h = mix(h, fl & F_ARITH);
        /* repe cmpsd over equal data: runs to the end, ZF=1 */
        d = str_dst + 2048 + (doff & ~3u);
        s = str_src + soff;
        n = len / 8;
        __asm__ volatile("repe cmpsl\n\tpushfl\n\tpopl %3"
                         : "+D"(d), "+S"(s), "+c"(n), "=r"(fl) : : "memory", "cc");
        h = mix(h, n);
        h = mix(h, fl & F_ARITH);

        /* repne scasb: search for a byte */
        uint8_t want = (uint8_t)rng();
        d = str_src;
        n = 4096;
        __asm__ volatile("repne scasb\n\tpushfl\n\tpopl %2"
                         : "+D"(d), "+c"(n), "=r"(fl) : "a"(want) : "memory", "cc");
        h = mix(h, (uint32_t)(uintptr_t)d - sb);
        h = mix(h, n);
        h = mix(h, fl & F_ARITH);

        /* DF=1: overlapping move up by 'doff+1' bytes, done backwards (memmove) */
        d = str_dst + 1023 + doff + 1;
        s = str_dst + 1023;
        n = 1024;
        __asm__ volatile("std\n\trep movsb\n\tcld" : "+D"(d), "+S"(s), "+c"(n) : : "memory", "cc");
        h = mix(h, (uint32_t)(uintptr_t)d - db);
        h = mix(h, (uint32_t)(uintptr_t)s - db);
        /* DF=1: rep stosd downwards */
        d = str_dst + 4092;
        n = 64;
        __asm__ volatile("std\n\trep stosl\n\tcld" : "+D"(d), "+c"(n) : "a"(0x5A5A0000u + (uint32_t)round) : "memory", "cc");
        h = mix(h, (uint32_t)(uintptr_t)d - db);
        /* DF=1: repne scasb backwards from the end */
        d = str_src + 4095;
        n = 4096;
        __asm__ volatile("std\n\trepne scasb\n\tpushfl\n\tcld\n\tpopl %2"
                         : "+D"(d), "+c"(n), "=r"(fl) : "a"(want) : "memory", "cc");
        h = mix(h, (uint32_t)(uintptr_t)d - sb);
        h = mix(h, n);
        h = mix(h, fl & F_ARITH);
        /* DF=1: repe cmpsb backwards */
        d = str_src + 4095;
        s = str_src + 4095;
        n = 300;
        __asm__ volatile("std\n\trepe cmpsb\n\tpushfl\n\tcld\n\tpopl %3"
                         : "+D"(d), "+S"(s), "+c"(n), "=r"(fl) : : "memory", "cc");
        h = mix(h, n);
        h = mix(h, fl & F_ARITH);
        /* lodsl loop, DF=1, with loop */
        {
            const void *ls = str_dst + 4092;
            uint32_t cnt = 128, sum = 0, tmp;
            __asm__ volatile("std\n"
                             "1:\tlodsl\n\t"
                             "addl %%eax, %2\n\t"
                             "roll $3, %2\n\t"
                             "loop 1b\n\t"
                             "cld"
                             : "+S"(ls), "+c"(cnt), "+r"(sum), "=a"(tmp) : : "memory", "cc");
            h = mix(h, sum);
            h = mix(h, (uint32_t)(uintptr_t)ls - db);
        }
        /* rep with ECX=0 does nothing and keeps the flags */
        {
            void *zd = str_dst;
            const void *zs = str_src;
            uint32_t zc = 0, fin = F_FIXED | F_CF | F_ZF | F_OF, fout;
            __asm__ volatile("pushl %4\n\tpopfl\n\trepe cmpsb\n\tpushfl\n\tpopl %3"
                             : "+D"(zd), "+S"(zs), "+c"(zc), "=r"(fout) : "r"(fin) : "memory", "cc");
            h = mix(h, fout & F_ARITH);
            h = mix(h, (uint32_t)(uintptr_t)zd - db);
        }
        /* stosb/lodsb/xlatb: translate 256 bytes through a table */
        {
            const void *ls = str_src + 256;
            void *sd = str_dst + 512;
            uint32_t cnt = 256, tmp;
            __asm__ volatile("1:\tlodsb\n\t"
                             "xlatb\n\t"
                             "stosb\n\t"
                             "loop 1b"
                             : "+S"(ls), "+D"(sd), "+c"(cnt), "=&a"(tmp) : "b"(str_src) : "memory");
        }
        h = mix(h, crc32_table_fn(str_dst, sizeof str_dst));
    }
    (void)get_flags;
    report("strings", h);
}

/* ---- BCD: daa das aaa aas aam aad ------------------------------------- */
#define BCD_OP(insn, ax, fl)                                                   \
    __asm__ volatile("pushl %1\n\tpopfl\n\t" insn "\n\tpushfl\n\tpopl %1"     \
                     : "+a"(ax), "+r"(fl) : : "cc")

static void test_bcd(void)
{
    uint32_t h = 0;
    static const uint32_t ahs[] = { 0x00, 0x01, 0x09, 0x7f, 0xfe, 0xff };
    static const uint32_t other[] = { 0, F_PF | F_ZF | F_SF | F_OF };
    for (uint32_t al = 0; al < 256; al++)
        for (uint32_t cf = 0; cf < 2; cf++)
            for (uint32_t af = 0; af < 2; af++)
                for (uint32_t o = 0; o < 2; o++) {
                    uint32_t fin = F_FIXED | other[o] | (cf ? F_CF : 0) | (af ? F_AF : 0);
                    uint32_t ax, fl;
                    /* daa/das: OF undefined */
                    ax = 0x1200 | al; fl = fin; BCD_OP("daa", ax, fl);
                    h = mix(h, (ax & 0xffff) ^ ((fl & (F_ARITH & ~F_OF)) << 16));
                    ax = 0x3400 | al; fl = fin; BCD_OP("das", ax, fl);
                    h = mix(h, (ax & 0xffff) ^ ((fl & (F_ARITH & ~F_OF)) << 16));
                    /* aaa/aas: only AF and CF defined; AH matters */
                    for (uint32_t k = 0; k < sizeof ahs / sizeof ahs[0]; k++) {
                        ax = (ahs[k] << 8) | al; fl = fin; BCD_OP("aaa", ax, fl);
                        h = mix(h, (ax & 0xffff) ^ ((fl & (F_AF | F_CF)) << 16));
                        ax = (ahs[k] << 8) | al; fl = fin; BCD_OP("aas", ax, fl);
                        h = mix(h, (ax & 0xffff) ^ ((fl & (F_AF | F_CF)) << 16));
                    }
                    if (cf | af)
                        continue; /* aam/aad ignore CF/AF on input */
                    /* aam/aad: SF ZF PF defined; base 10 and other bases */
                    ax = 0x5500 | al; fl = fin; BCD_OP("aam", ax, fl);
                    h = mix(h, (ax & 0xffff) ^ ((fl & (F_SF | F_ZF | F_PF)) << 16));
                    ax = 0x5500 | al; fl = fin; BCD_OP("aam $16", ax, fl);
                    h = mix(h, (ax & 0xffff) ^ ((fl & (F_SF | F_ZF | F_PF)) << 16));
                    ax = 0x5500 | al; fl = fin; BCD_OP("aam $7", ax, fl);
                    h = mix(h, (ax & 0xffff) ^ ((fl & (F_SF | F_ZF | F_PF)) << 16));
                    for (uint32_t hi = 0; hi < 256; hi += 17) {
                        ax = (hi << 8) | al; fl = fin; BCD_OP("aad", ax, fl);
                        h = mix(h, (ax & 0xffff) ^ ((fl & (F_SF | F_ZF | F_PF)) << 16));
                        ax = (hi << 8) | al; fl = fin; BCD_OP("aad $16", ax, fl);
                        h = mix(h, (ax & 0xffff) ^ ((fl & (F_SF | F_ZF | F_PF)) << 16));
                    }
                }
    report("bcd", h);
}

/* ---- bit operations ---------------------------------------------------- */
static uint32_t bitstr[64];

static uint32_t popcount_by_hand(uint32_t v)
{
    v = v - ((v >> 1) & 0x55555555u);
    v = (v & 0x33333333u) + ((v >> 2) & 0x33333333u);
    v = (v + (v >> 4)) & 0x0F0F0F0Fu;
    return (v * 0x01010101u) >> 24;
}

static void test_bits(void)
{
    uint32_t h = 0;
    rng_state = 0xB175B175u;
    for (int i = 0; i < 64; i++)
        bitstr[i] = rng();
    for (uint32_t it = 0; it < 2000 * CPU_SCALE; it++) {
        uint32_t v = it < NEDGES ? edges[it] : rng() >> (it & 31);
        uint32_t r, fl;
        /* bsf/bsr: ZF defined; destination only when the source is non-zero */
        r = 0xDEADBEEF;
        __asm__ volatile("bsfl %2, %0\n\tpushfl\n\tpopl %1" : "+r"(r), "=r"(fl) : "r"(v) : "cc");
        h = mix(h, (v ? r : 0) ^ ((fl & F_ZF) << 16));
        r = 0xDEADBEEF;
        __asm__ volatile("bsrl %2, %0\n\tpushfl\n\tpopl %1" : "+r"(r), "=r"(fl) : "r"(v) : "cc");
        h = mix(h, (v ? r : 0) ^ ((fl & F_ZF) << 16));
        /* 16-bit bsf/bsr */
        uint16_t r16 = 0x1234, v16 = (uint16_t)(v ^ (v >> 16));
        __asm__ volatile("bsfw %2, %0\n\tpushfl\n\tpopl %1" : "+r"(r16), "=r"(fl) : "r"(v16) : "cc");
        h = mix(h, (v16 ? r16 : 0) ^ ((fl & F_ZF) << 16));
        /* bt/bts/btr/btc register forms: only CF defined */
        uint32_t bit = rng(), x = v;
        __asm__ volatile("btl %2, %0\n\tpushfl\n\tpopl %1" : "+r"(x), "=r"(fl) : "r"(bit) : "cc");
        h = mix(h, x ^ (fl & F_CF));
        __asm__ volatile("btsl %2, %0\n\tpushfl\n\tpopl %1" : "+r"(x), "=r"(fl) : "r"(bit) : "cc");
        h = mix(h, x ^ (fl & F_CF));
        __asm__ volatile("btrl %2, %0\n\tpushfl\n\tpopl %1" : "+r"(x), "=r"(fl) : "r"(bit >> 5) : "cc");
        h = mix(h, x ^ (fl & F_CF));
        __asm__ volatile("btcl $13, %0\n\tpushfl\n\tpopl %1" : "+r"(x), "=r"(fl) : : "cc");
        h = mix(h, x ^ (fl & F_CF));
        /* bt* on a memory bit string with a register offset: the offset is
         * signed and may address outside the dword at the base (-512..1535) */
        int32_t off = (int32_t)(rng() % 2048) - 512;
        __asm__ volatile("btcl %2, %1\n\tpushfl\n\tpopl %0"
                         : "=r"(fl), "+m"(bitstr[16]) : "r"(off) : "memory", "cc");
        h = mix(h, fl & F_CF);
        __asm__ volatile("btsl %2, %1\n\tpushfl\n\tpopl %0"
                         : "=r"(fl), "+m"(bitstr[16]) : "r"(off + 7) : "memory", "cc");
        h = mix(h, fl & F_CF);
        /* bswap, popcount */
        uint32_t sw = v;
        __asm__("bswap %0" : "+r"(sw));
        h = mix(h, sw);
        h = mix(h, popcount_by_hand(v));
        /* shld/shrd: count masked to 5 bits; OF only for count 1, AF never */
        uint32_t other = rng(), cnt = it & 31;
        uint32_t m = cnt == 0 ? F_ARITH : cnt == 1 ? (F_ARITH & ~F_AF) : (F_CF | F_PF | F_ZF | F_SF);
        uint32_t fin = F_FIXED | ((it & 1) ? F_ARITH : 0);
        x = v; fl = fin;
        __asm__ volatile("pushl %1\n\tpopfl\n\tshldl %%cl, %3, %0\n\tpushfl\n\tpopl %1"
                         : "+r"(x), "+r"(fl) : "c"(cnt), "r"(other) : "cc");
        h = mix(h, x ^ (fl & m));
        x = v; fl = fin;
        __asm__ volatile("pushl %1\n\tpopfl\n\tshrdl %%cl, %3, %0\n\tpushfl\n\tpopl %1"
                         : "+r"(x), "+r"(fl) : "c"(cnt + 32), "r"(other) : "cc");
        h = mix(h, x ^ (fl & m));
        /* 16-bit shld/shrd with counts 1..15 (larger counts are undefined) */
        uint32_t c16 = 1 + (it % 15);
        uint32_t m16 = c16 == 1 ? (F_ARITH & ~F_AF) : (F_CF | F_PF | F_ZF | F_SF);
        uint16_t y = (uint16_t)v;
        fl = fin;
        __asm__ volatile("pushl %1\n\tpopfl\n\tshldw %%cl, %3, %0\n\tpushfl\n\tpopl %1"
                         : "+r"(y), "+r"(fl) : "c"(c16), "r"((uint16_t)other) : "cc");
        h = mix(h, y ^ ((fl & m16) << 16));
        y = (uint16_t)v;
        fl = fin;
        __asm__ volatile("pushl %1\n\tpopfl\n\tshrdw $5, %2, %0\n\tpushfl\n\tpopl %1"
                         : "+r"(y), "+r"(fl) : "r"((uint16_t)other) : "cc");
        h = mix(h, y ^ ((fl & (F_CF | F_PF | F_ZF | F_SF)) << 16));
    }
    for (int i = 0; i < 64; i++)
        h = mix(h, bitstr[i]);
    report("bitops", h);
}

/* ---- 16-bit operand-size arithmetic ------------------------------------ */
#define OP16(insn, a, b, fl)                                                   \
    __asm__ volatile("pushl %1\n\tpopfl\n\t" insn " %2, %0\n\tpushfl\n\tpopl %1" \
                     : "+r"(a), "+r"(fl) : "r"(b) : "cc")
#define UN16(insn, a, fl)                                                      \
    __asm__ volatile("pushl %1\n\tpopfl\n\t" insn " %0\n\tpushfl\n\tpopl %1"   \
                     : "+r"(a), "+r"(fl) : : "cc")

static void test_arith16(void)
{
    uint32_t h = 0;
    for (uint32_t i = 0; i < NEDGES; i++)
        for (uint32_t j = 0; j < NEDGES; j++)
            for (uint32_t c = 0; c < 2; c++) {
                uint16_t a, b = (uint16_t)(edges[j] ^ (edges[j] >> 16));
                uint16_t a0 = (uint16_t)(edges[i] ^ (edges[i] >> 16));
                uint32_t fin = F_FIXED | (c ? (F_ARITH & ~F_ZF) : F_ZF), fl;
#define FOLD(mask) h = mix(h, (uint32_t)a ^ ((fl & (mask)) << 16))
                a = a0; fl = fin; OP16("addw", a, b, fl); FOLD(F_ARITH);
                a = a0; fl = fin; OP16("adcw", a, b, fl); FOLD(F_ARITH);
                a = a0; fl = fin; OP16("subw", a, b, fl); FOLD(F_ARITH);
                a = a0; fl = fin; OP16("sbbw", a, b, fl); FOLD(F_ARITH);
                a = a0; fl = fin; OP16("cmpw", a, b, fl); FOLD(F_ARITH);
                a = a0; fl = fin; OP16("andw", a, b, fl); FOLD(F_ARITH & ~F_AF);
                a = a0; fl = fin; OP16("orw", a, b, fl); FOLD(F_ARITH & ~F_AF);
                a = a0; fl = fin; OP16("xorw", a, b, fl); FOLD(F_ARITH & ~F_AF);
                a = a0; fl = fin; OP16("testw", a, b, fl); FOLD(F_ARITH & ~F_AF);
                a = a0; fl = fin; OP16("imulw", a, b, fl); FOLD(F_CF | F_OF);
                a = a0; fl = fin; UN16("negw", a, fl); FOLD(F_ARITH);
                a = a0; fl = fin; UN16("notw", a, fl); FOLD(F_ARITH);
                a = a0; fl = fin; UN16("incw", a, fl); FOLD(F_ARITH);
                a = a0; fl = fin; UN16("decw", a, fl); FOLD(F_ARITH);
                a = a0; fl = fin; UN16("shlw", a, fl); FOLD(F_ARITH & ~F_AF);
                a = a0; fl = fin; UN16("sarw", a, fl); FOLD(F_ARITH & ~F_AF);
                a = a0; fl = fin; UN16("shrw", a, fl); FOLD(F_ARITH & ~F_AF);
                a = a0; fl = fin; UN16("rolw", a, fl); FOLD(F_ARITH);
                a = a0; fl = fin; UN16("rcrw", a, fl); FOLD(F_ARITH);
                /* 16-bit xadd / xchg / movsx / movzx */
                a = a0; {
                    uint16_t bb = b;
                    fl = fin;
                    __asm__ volatile("pushl %1\n\tpopfl\n\txaddw %2, %0\n\tpushfl\n\tpopl %1"
                                     : "+r"(a), "+r"(fl), "+r"(bb) : : "cc");
                    FOLD(F_ARITH);
                    h = mix(h, bb);
                }
                {
                    uint32_t sx, zx;
                    __asm__("movswl %1, %0" : "=r"(sx) : "r"(a0));
                    __asm__("movzwl %1, %0" : "=r"(zx) : "r"(b));
                    h = mix(h, sx ^ rotl(zx, 7));
                }
                /* mul/imul/div/idiv on DX:AX */
                {
                    uint16_t ax = a0, dx = 0x5555;
                    fl = fin;
                    __asm__ volatile("pushl %2\n\tpopfl\n\tmulw %3\n\tpushfl\n\tpopl %2"
                                     : "+a"(ax), "+d"(dx), "+r"(fl) : "r"(b) : "cc");
                    h = mix(h, ax | ((uint32_t)dx << 16));
                    h = mix(h, fl & (F_CF | F_OF));
                    ax = a0; fl = fin;
                    __asm__ volatile("pushl %2\n\tpopfl\n\timulw %3\n\tpushfl\n\tpopl %2"
                                     : "+a"(ax), "+d"(dx), "+r"(fl) : "r"(b) : "cc");
                    h = mix(h, ax | ((uint32_t)dx << 16));
                    h = mix(h, fl & (F_CF | F_OF));
                    if (b) {
                        ax = a0; dx = (uint16_t)(b - 1) & (uint16_t)edges[(i + j) % NEDGES];
                        __asm__ volatile("divw %2" : "+a"(ax), "+d"(dx) : "r"(b) : "cc");
                        h = mix(h, ax | ((uint32_t)dx << 16));
                        /* idiv: sign-extend AX into DX (cwd) so the quotient fits,
                         * except -32768 / -1 which would raise #DE */
                        if (!(a0 == 0x8000 && b == 0xffff)) {
                            ax = a0;
                            __asm__ volatile("cwtd\n\tidivw %2" : "+a"(ax), "=&d"(dx) : "r"(b) : "cc");
                            h = mix(h, ax | ((uint32_t)dx << 16));
                        }
                    }
                }
#undef FOLD
            }
    report("arith16", h);
}

/* ---- adc/sbb/rcl/rcr/imul/div chains over edge values ------------------ */
#define OP32(insn, a, b, fl)                                                   \
    __asm__ volatile("pushl %1\n\tpopfl\n\t" insn " %2, %0\n\tpushfl\n\tpopl %1" \
                     : "+r"(a), "+r"(fl) : "r"(b) : "cc")
#define SH32(insn, a, cnt, fl)                                                 \
    __asm__ volatile("pushl %1\n\tpopfl\n\t" insn " %%cl, %0\n\tpushfl\n\tpopl %1" \
                     : "+r"(a), "+r"(fl) : "c"(cnt) : "cc")
#define SH8(insn, a, cnt, fl)                                                  \
    __asm__ volatile("pushl %1\n\tpopfl\n\t" insn " %%cl, %0\n\tpushfl\n\tpopl %1" \
                     : "+q"(a), "+r"(fl) : "c"(cnt) : "cc")

static uint32_t shift_mask(uint32_t cnt, int rotate)
{
    cnt &= 31;
    if (cnt == 0)
        return F_ARITH;                      /* nothing changes */
    if (rotate)                              /* only CF (and OF for 1) written */
        return cnt == 1 ? F_ARITH : (F_ARITH & ~F_OF);
    return cnt == 1 ? (F_ARITH & ~F_AF) : (F_CF | F_PF | F_ZF | F_SF);
}

static void test_edges(void)
{
    static const uint32_t counts[] = { 0, 1, 2, 7, 8, 9, 15, 16, 17, 31, 32, 33 };
    uint32_t h = 0;
    for (uint32_t i = 0; i < NEDGES; i++)
        for (uint32_t j = 0; j < NEDGES; j++)
            for (uint32_t c = 0; c < 2; c++) {
                const uint32_t a0 = edges[i], b = edges[j];
                const uint32_t fin = F_FIXED | (c ? (F_ARITH & ~F_ZF) : F_ZF);
                uint32_t a, fl, chain = a0, cfl = fin;
#define FOLD(mask) h = mix(h, a ^ rotl(fl & (mask), 20))
                a = a0; fl = fin; OP32("addl", a, b, fl); FOLD(F_ARITH);
                a = a0; fl = fin; OP32("adcl", a, b, fl); FOLD(F_ARITH);
                a = a0; fl = fin; OP32("subl", a, b, fl); FOLD(F_ARITH);
                a = a0; fl = fin; OP32("sbbl", a, b, fl); FOLD(F_ARITH);
                a = a0; fl = fin; OP32("cmpl", a, b, fl); FOLD(F_ARITH);
                a = a0; fl = fin; OP32("andl", a, b, fl); FOLD(F_ARITH & ~F_AF);
                a = a0; fl = fin; OP32("imull", a, b, fl); FOLD(F_CF | F_OF);
                a = a0; fl = fin; OP32("xorl", a, b, fl); FOLD(F_ARITH & ~F_AF);
                /* a carry chain: adc/sbb feeding each other's CF */
                OP32("adcl", chain, b, cfl);
                OP32("sbbl", chain, a0, cfl);
                OP32("adcl", chain, chain, cfl);
                cfl = (cfl & F_ARITH) | F_FIXED;
                h = mix(h, chain ^ rotl(cfl, 20));
                /* 8-bit adc/sbb */
                {
                    uint8_t x = (uint8_t)a0, y = (uint8_t)(b >> 3);
                    fl = fin;
                    __asm__ volatile("pushl %1\n\tpopfl\n\tadcb %2, %0\n\tsbbb %2, %0\n\tadcb %0, %0\n\tpushfl\n\tpopl %1"
                                     : "+q"(x), "+r"(fl) : "q"(y) : "cc");
                    h = mix(h, x ^ rotl(fl & F_ARITH, 20));
                }
                /* one-operand mul/imul: CF=OF defined */
                {
                    uint32_t lo = a0, hi, f = fin;
                    __asm__ volatile("pushl %2\n\tpopfl\n\tmull %3\n\tpushfl\n\tpopl %2"
                                     : "+a"(lo), "=d"(hi), "+r"(f) : "r"(b) : "cc");
                    h = mix(mix(h, lo), hi ^ (f & (F_CF | F_OF)));
                    lo = a0; f = fin;
                    __asm__ volatile("pushl %2\n\tpopfl\n\timull %3\n\tpushfl\n\tpopl %2"
                                     : "+a"(lo), "=d"(hi), "+r"(f) : "r"(b) : "cc");
                    h = mix(mix(h, lo), hi ^ (f & (F_CF | F_OF)));
                    uint32_t r3;
                    f = fin;
                    __asm__ volatile("pushl %1\n\tpopfl\n\timull $-7, %2, %0\n\tpushfl\n\tpopl %1"
                                     : "=r"(r3), "+r"(f) : "r"(a0) : "cc");
                    h = mix(h, r3 ^ (f & (F_CF | F_OF)));
                    f = fin;
                    __asm__ volatile("pushl %1\n\tpopfl\n\timull $0x10001, %2, %0\n\tpushfl\n\tpopl %1"
                                     : "=r"(r3), "+r"(f) : "r"(a0) : "cc");
                    h = mix(h, r3 ^ (f & (F_CF | F_OF)));
                }
                /* div/idiv (flags undefined): keep the quotient in range */
                if (b) {
                    uint32_t lo = a0, hi = edges[(i * 7 + j) % NEDGES] % b;
                    __asm__ volatile("divl %2" : "+a"(lo), "+d"(hi) : "r"(b) : "cc");
                    h = mix(mix(h, lo), hi);
                    if (!(a0 == 0x80000000u && b == 0xffffffffu)) {
                        lo = a0;
                        __asm__ volatile("cltd\n\tidivl %2" : "+a"(lo), "=&d"(hi) : "r"(b) : "cc");
                        h = mix(mix(h, lo), hi);
                    }
                }
                /* neg/inc/dec (inc/dec keep CF) */
                a = a0; fl = fin; UN16("negl", a, fl); FOLD(F_ARITH);
                a = a0; fl = fin; UN16("incl", a, fl); FOLD(F_ARITH);
                a = a0; fl = fin; UN16("decl", a, fl); FOLD(F_ARITH);
                /* shifts and rotates by CL over interesting counts */
                {
                    uint32_t cnt = counts[j % (sizeof counts / sizeof counts[0])];
                    a = a0; fl = fin; SH32("shll", a, cnt, fl); FOLD(shift_mask(cnt, 0));
                    a = a0; fl = fin; SH32("shrl", a, cnt, fl); FOLD(shift_mask(cnt, 0));
                    a = a0; fl = fin; SH32("sarl", a, cnt, fl); FOLD(shift_mask(cnt, 0));
                    a = a0; fl = fin; SH32("roll", a, cnt, fl); FOLD(shift_mask(cnt, 1));
                    a = a0; fl = fin; SH32("rorl", a, cnt, fl); FOLD(shift_mask(cnt, 1));
                    a = a0; fl = fin; SH32("rcll", a, cnt, fl); FOLD(shift_mask(cnt, 1));
                    a = a0; fl = fin; SH32("rcrl", a, cnt, fl); FOLD(shift_mask(cnt, 1));
                }
                /* 8-bit rotates through carry: count is (CL & 31) mod 9 */
                for (uint32_t cnt = 0; cnt < 32; cnt += 1 + (i & 3)) {
                    uint8_t x = (uint8_t)(a0 ^ b);
                    fl = fin; SH8("rclb", x, cnt, fl);
                    h = mix(h, x ^ rotl(fl & shift_mask(cnt, 1), 20));
                    x = (uint8_t)(a0 ^ b); fl = fin; SH8("rcrb", x, cnt, fl);
                    h = mix(h, x ^ rotl(fl & shift_mask(cnt, 1), 20));
                    x = (uint8_t)(a0 ^ b); fl = fin; SH8("rolb", x, cnt, fl);
                    h = mix(h, x ^ rotl(fl & shift_mask(cnt, 1), 20));
                    if (cnt < 8) {
                        x = (uint8_t)(a0 ^ b); fl = fin; SH8("sarb", x, cnt, fl);
                        h = mix(h, x ^ rotl(fl & shift_mask(cnt, 0), 20));
                    }
                }
#undef FOLD
            }
    report("edges", h);
}

/* ---- setcc/cmovcc/xadd/cmpxchg/cmpxchg8b/enter/leave/pusha/lahf ------- */
#define SETCC(cc)                                                              \
    __asm__ volatile("cmpl %2, %1\n\tset" cc " %b0" : "=q"(r) : "r"(a), "r"(b) : "cc"); \
    h = mix(h, r & 0xff)

static void test_misc(void)
{
    uint32_t h = 0;
    for (uint32_t i = 0; i < NEDGES; i++)
        for (uint32_t j = 0; j < NEDGES; j++) {
            uint32_t a = edges[i], b = edges[j], r = 0;
            SETCC("o"); SETCC("no"); SETCC("b"); SETCC("ae");
            SETCC("e"); SETCC("ne"); SETCC("be"); SETCC("a");
            SETCC("s"); SETCC("ns"); SETCC("p"); SETCC("np");
            SETCC("l"); SETCC("ge"); SETCC("le"); SETCC("g");
            uint32_t m = 0x1111;
            __asm__ volatile("cmpl %2, %1\n\tcmovll %2, %0\n\tcmovbel %1, %0" : "+r"(m) : "r"(a), "r"(b) : "cc");
            h = mix(h, m);
            /* cmpxchg: both outcomes */
            uint32_t mem = a, eax = b, fl;
            __asm__ volatile("cmpxchgl %3, %1\n\tpushfl\n\tpopl %0"
                             : "=r"(fl), "+m"(mem), "+a"(eax) : "r"(a ^ b) : "cc", "memory");
            h = mix(mix(h, mem), eax ^ (fl & F_ARITH));
            /* xadd */
            uint32_t x = a, y = b;
            __asm__ volatile("xaddl %1, %0\n\tpushfl\n\tpopl %2" : "+r"(x), "+r"(y), "=r"(fl) : : "cc");
            h = mix(mix(h, x), y ^ (fl & F_ARITH));
            /* cmpxchg8b: equal and not-equal */
            uint64_t q = ((uint64_t)a << 32) | b;
            uint32_t lo = (j & 1) ? b : ~b, hi = a, nlo = b ^ 0xF0F0F0F0u, nhi = a + 1;
            __asm__ volatile("cmpxchg8b %1\n\tpushfl\n\tpopl %4"
                             : "+a"(lo), "+m"(q), "+d"(hi), "+b"(nlo), "=r"(fl) : "c"(nhi) : "cc", "memory");
            h = mix(mix(mix(h, lo), hi), (uint32_t)q ^ (uint32_t)(q >> 32) ^ (fl & F_ZF));
            /* lahf/sahf, cbw/cwde/cwd/cdq */
            uint32_t ax = a;
            __asm__ volatile("cmpl %1, %0\n\tlahf" : "+a"(ax) : "r"(b) : "cc");
            h = mix(h, (ax >> 8) & (F_CF | F_PF | F_AF | F_ZF | F_SF));
            uint32_t ext = a, edx;
            __asm__("cbtw\n\tcwtl" : "+a"(ext));
            h = mix(h, ext);
            ext = a;
            __asm__("cltd" : "+a"(ext), "=d"(edx));
            h = mix(h, edx);
            ext = a;
            __asm__("cwtd" : "+a"(ext), "=d"(edx));
            h = mix(h, edx & 0xffff);
        }
    /* pusha/popa round trip with a clobbered register set, enter/leave nesting */
    for (uint32_t i = 0; i < NEDGES; i++) {
        uint32_t v = edges[i], out, depth;
        __asm__ volatile("pushl %%ebp\n\t"
                         "movl %%esp, %%ebp\n\t"   /* enter level>0 reads [ebp-4k] */
                         "movl %%esp, %%edx\n\t"
                         "enter $24, $3\n\t"         /* level 3: copies 2 frame pointers */
                         "movl %%esp, %%ecx\n\t"
                         "movl %%edx, %1\n\t"
                         "subl %%ecx, %1\n\t"        /* bytes allocated by enter */
                         "pushal\n\t"
                         "xorl %%eax, %%eax\n\t"
                         "notl %%esi\n\t"
                         "popal\n\t"
                         "leave\n\t"
                         "popl %%ebp\n\t"
                         "movl %%esi, %0"
                         : "=r"(out), "=&r"(depth) : "S"(v) : "ecx", "edx", "memory", "cc");
        h = mix(mix(h, out), depth);
        /* loopz / loopnz */
        uint32_t cnt = 10, zz = v;
        __asm__ volatile("1:\tincl %1\n\ttestl $3, %1\n\tloopnz 1b" : "+c"(cnt), "+r"(zz) : : "cc");
        h = mix(mix(h, cnt), zz);
        cnt = 10; zz = v;
        __asm__ volatile("1:\tshrl $1, %1\n\ttestl %1, %1\n\tloopz 1b" : "+c"(cnt), "+r"(zz) : : "cc");
        h = mix(mix(h, cnt), zz);
    }
    report("misc", h);
}

uint32_t kmain(uint32_t magic, struct multiboot_info *mbi)
{
    (void)mbi;
    serial_init();
    kprintf("cpu: HybridVmm CPU exercise (scale %u)\n", (uint32_t)CPU_SCALE);
    if (magic != MULTIBOOT_BOOTLOADER_MAGIC)
        kprintf("warning: bad multiboot magic %08x\n", magic);
    test_crc32();
    test_sieve();
    test_matrix();
    test_sort();
    test_arith64();
    test_strings();
    test_bcd();
    test_bits();
    test_arith16();
    test_edges();
    test_misc();
    kprintf("cpu: done\n");
    return 0;
}
