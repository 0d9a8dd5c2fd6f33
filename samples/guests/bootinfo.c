/* bootinfo.c - prints what the boot loader and the CPU tell the guest:
 * Multiboot flags, memory sizes, command line, boot loader name, the memory
 * map, CPUID vendor/hypervisor leaves and an RDTSC delta.
 *
 * The output differs between machines (QEMU TCG vs HybridVmm), so this guest
 * is NOT compared with QEMU.
 */
#include "guest.h"

static void cpuid(uint32_t leaf, uint32_t r[4])
{
    __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(0));
}

static uint64_t rdtsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
}

static const char *cstr(uint32_t addr) { return (const char *)(uintptr_t)addr; }

uint32_t kmain(uint32_t magic, struct multiboot_info *mbi)
{
    serial_init();
    kprintf("bootinfo: magic %08x (%s)\n", magic,
            magic == MULTIBOOT_BOOTLOADER_MAGIC ? "ok" : "BAD");
    if (magic != MULTIBOOT_BOOTLOADER_MAGIC)
        return 1;
    kprintf("mbi at %p, flags %08x\n", (void *)mbi, mbi->flags);
    if (mbi->flags & MULTIBOOT_INFO_MEMORY)
        kprintf("mem_lower %u KiB, mem_upper %u KiB\n", mbi->mem_lower, mbi->mem_upper);
    if (mbi->flags & MULTIBOOT_INFO_CMDLINE)
        kprintf("cmdline [%s]\n", mbi->cmdline ? cstr(mbi->cmdline) : "");
    if (mbi->flags & MULTIBOOT_INFO_BOOT_LOADER_NAME)
        kprintf("boot loader [%s]\n", mbi->boot_loader_name ? cstr(mbi->boot_loader_name) : "");
    if (mbi->flags & MULTIBOOT_INFO_MEM_MAP) {
        kprintf("memory map (%u bytes at %08x):\n", mbi->mmap_length, mbi->mmap_addr);
        uint32_t p = mbi->mmap_addr, end = mbi->mmap_addr + mbi->mmap_length;
        while (p < end) {
            const struct multiboot_mmap_entry *e = (const void *)(uintptr_t)p;
            kprintf("  %016llx-%016llx type %u%s\n", e->addr, e->addr + e->len - 1, e->type,
                    e->type == MULTIBOOT_MEMORY_AVAILABLE ? " (RAM)" : "");
            p += e->size + 4;
        }
    }

    uint32_t r[4];
    char vendor[13];
    cpuid(0, r);
    memcpy(vendor, &r[1], 4);
    memcpy(vendor + 4, &r[3], 4);
    memcpy(vendor + 8, &r[2], 4);
    vendor[12] = '\0';
    kprintf("cpuid 0: max leaf %u, vendor [%s]\n", r[0], vendor);
    cpuid(1, r);
    kprintf("cpuid 1: eax %08x ebx %08x ecx %08x edx %08x\n", r[0], r[1], r[2], r[3]);
    if (r[2] & 0x80000000u) {
        uint32_t h[4];
        char sig[13];
        cpuid(0x40000000u, h);
        memcpy(sig, &h[1], 4);
        memcpy(sig + 4, &h[2], 4);
        memcpy(sig + 8, &h[3], 4);
        sig[12] = '\0';
        kprintf("hypervisor present: max leaf %08x, signature [%s]\n", h[0], sig);
    } else {
        kprintf("no hypervisor bit\n");
    }
    uint64_t t0 = rdtsc();
    volatile uint32_t spin = 0;
    for (int i = 0; i < 100000; i++)
        spin += (uint32_t)i;
    uint64_t t1 = rdtsc();
    kprintf("rdtsc: %llu ticks for a 100000-iteration loop\n", t1 - t0);
    return 0;
}
