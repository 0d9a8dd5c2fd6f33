/* Freestanding integer workload for the CPU core's end-to-end test (integer-workload.bin is this file built as below;
   _start = 0x102b0, the hlt = 0x10549, results = 0x12020).
   Build: gcc -m32 -O2 -march=i686 -ffreestanding -fno-pic -fno-stack-protector -nostdlib -static
          -Wl,-Ttext=0x10000 -Wl,-e,_start -o kernel.elf kernel.c -lgcc && objcopy -O binary kernel.elf kernel.bin */
typedef unsigned int u32; typedef unsigned long long u64; typedef int i32; typedef long long i64;

volatile u32 results[64];
volatile u32 seed[8] = {0x0123456789u & 0xffffffffu, 13, 977, 0x80010001u, 0x11223344u, 200, 0xf0f0f00fu, 7};
static u32 table[256];
static char text[64];

__attribute__((noinline))  u32 crc32(const unsigned char *p, u32 n) {
    u32 c = 0xffffffffu;
    while (n--) { c ^= *p++; for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & -(c & 1)); }
    return ~c;
}
__attribute__((noinline))  void sort(i32 *a, int n) {
    for (int i = 1; i < n; i++) { i32 v = a[i]; int j = i - 1; while (j >= 0 && a[j] > v) { a[j + 1] = a[j]; j--; } a[j + 1] = v; }
}
__attribute__((noinline))  int fmt(char *out, i32 v) {
    char tmp[16]; int n = 0, len = 0; u32 u = v < 0 ? -(u32)v : (u32)v;
    do { tmp[n++] = '0' + u % 10; u /= 10; } while (u);
    if (v < 0) out[len++] = '-';
    while (n) out[len++] = tmp[--n];
    out[len] = 0; return len;
}
__attribute__((noinline))  int classify(int x) {
    switch (x) { case 0: return 11; case 1: return 13; case 2: return 17; case 3: return 19; case 4: return 23;
                 case 5: return 29; case 6: return 31; case 7: return 37; default: return -1; }
}
__attribute__((noinline))  u64 mix64(u64 a, u64 b, int s) { return ((a << s) | (b >> (64 - s))) ^ (a * b) ^ (a / (b | 1)) ^ (u64)((i64)a % (i64)(b | 3)); }

void _start(void) {
    for (u32 i = 0; i < 256; i++) table[i] = i * 2654435761u;
    results[0] = crc32((const unsigned char *)table, sizeof table - seed[7]);
    i32 arr[12] = {5, -3, 99, 0, -2147483647 - 1, 2147483647, 7, 7, -1, 42, 13, -13};
    arr[3] = (i32)seed[4] ^ (i32)seed[3];
    sort(arr, 12);
    for (int i = 0; i < 12; i++) results[1 + i] = arr[i];
    results[13] = fmt(text, (i32)(seed[3] << 3) | (i32)0x80000000);
    results[14] = text[1] | (text[10] << 8);
    results[15] = 0; for (int i = -2 + (int)seed[7] - 7; i < 10; i++) results[15] = results[15] * 7 + classify(i);
    u64 m = mix64(0x0123456789abcdefull * seed[1], 0xfedcba9876543210ull + seed[2], seed[1]);
    results[16] = (u32)m; results[17] = (u32)(m >> 32);
    i64 sd = (i64)-1234567890123ll * seed[7] / (i32)seed[2]; results[18] = (u32)sd; results[19] = (u32)(sd >> 32);
    u32 bits = 0; for (u32 v = seed[3]; v; v &= v - 1) bits += __builtin_ctz(v) ^ __builtin_clz(v);
    results[20] = bits;
    results[21] = __builtin_bswap32(seed[4]);
    i32 s = 0; for (i32 i = -1000 * (i32)seed[7] / 7; i < 1000; i += (i32)seed[7]) s += (i >> 3) + (i / 3) + (i % 5) + (u32)i / 9u;
    results[22] = s;
    short h = (short)(seed[4] * 3); unsigned char b = (unsigned char)seed[5]; results[23] = (i32)h * b + (h >> 2) + (b << 3);
    results[24] = (u32)__builtin_popcount(seed[6]);
    __asm__ volatile("hlt");
    for (;;) { }
}
