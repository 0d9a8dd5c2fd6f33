/* multiboot.h - Multiboot (v1) definitions used by the HybridVmm sample guests. */
#ifndef GUEST_MULTIBOOT_H
#define GUEST_MULTIBOOT_H

#define MULTIBOOT_HEADER_MAGIC     0x1BADB002u /* in the kernel image header   */
#define MULTIBOOT_BOOTLOADER_MAGIC 0x2BADB002u /* in EAX when the kernel runs */

/* Header flags */
#define MULTIBOOT_PAGE_ALIGN 0x00000001u /* align modules on 4 KiB            */
#define MULTIBOOT_MEMORY_INFO 0x00000002u /* ask for mem_* and mmap_* fields   */
#define MULTIBOOT_AOUT_KLUDGE 0x00010000u /* NOT used: our ELFs load by PT_LOAD */

/* Info flags (mbi->flags) */
#define MULTIBOOT_INFO_MEMORY      0x00000001u
#define MULTIBOOT_INFO_BOOTDEV     0x00000002u
#define MULTIBOOT_INFO_CMDLINE     0x00000004u
#define MULTIBOOT_INFO_MODS        0x00000008u
#define MULTIBOOT_INFO_AOUT_SYMS   0x00000010u
#define MULTIBOOT_INFO_ELF_SHDR    0x00000020u
#define MULTIBOOT_INFO_MEM_MAP     0x00000040u
#define MULTIBOOT_INFO_DRIVE_INFO  0x00000080u
#define MULTIBOOT_INFO_CONFIG_TABLE 0x00000100u
#define MULTIBOOT_INFO_BOOT_LOADER_NAME 0x00000200u

#ifndef __ASSEMBLER__
#include <stdint.h>

struct multiboot_info {
    uint32_t flags;
    uint32_t mem_lower;          /* KiB below 1 MiB            (flags bit 0) */
    uint32_t mem_upper;          /* KiB above 1 MiB            (flags bit 0) */
    uint32_t boot_device;        /*                            (flags bit 1) */
    uint32_t cmdline;            /* physical address of a C string (bit 2)  */
    uint32_t mods_count;         /*                            (flags bit 3) */
    uint32_t mods_addr;
    uint32_t syms[4];            /* a.out or ELF symbol info (bits 4/5)      */
    uint32_t mmap_length;        /* bytes                      (flags bit 6) */
    uint32_t mmap_addr;
    uint32_t drives_length;      /*                            (flags bit 7) */
    uint32_t drives_addr;
    uint32_t config_table;       /*                            (flags bit 8) */
    uint32_t boot_loader_name;   /* physical address of a C string (bit 9)  */
    uint32_t apm_table;          /*                            (flags bit 10) */
};

/* One memory-map entry. 'size' does not count itself: next = (char*)e + e->size + 4. */
struct multiboot_mmap_entry {
    uint32_t size;
    uint64_t addr;
    uint64_t len;
    uint32_t type;               /* 1 = available RAM, anything else reserved */
} __attribute__((packed));

#define MULTIBOOT_MEMORY_AVAILABLE 1
#endif /* !__ASSEMBLER__ */

#endif
