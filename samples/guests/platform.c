/* platform.c - probes the PC chipset devices a Multiboot kernel finds next to
 * COM1 and prints what it reads: QEMU's fw_cfg (0x510/0x511), port 0x80,
 * port 0x92, the i8042 (0x60/0x64), the MC146818 RTC/CMOS (0x70/0x71) and PCI
 * configuration mechanism 1 (0xCF8/0xCFC) with the host bridge at 00:00.0.
 *
 * Run it with -m 64M -rtc base=2024-02-29T23:58:00 under QEMU (and with
 * --rtc-base 2024-02-29T23:58:00 under hybridvmm, whose RAM is 64 MiB by
 * default), the same -append/--append and the same image path; it prints
 * nothing that depends on how long the machine took to boot, so the output
 * must match QEMU's byte for byte. It does not print the seconds, which depend
 * on how much virtual time the firmware took, only that they read as BCD.
 */
#include "guest.h"

static inline uint16_t inw(uint16_t port) { uint16_t v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port)); return v; }

/* ---- fw_cfg ---------------------------------------------------------------- */
#define FW_CFG_SELECTOR 0x510
#define FW_CFG_DATA     0x511

static void fw_cfg_select(uint16_t key) { outw(FW_CFG_SELECTOR, key); }

static uint64_t fw_cfg_read_le(uint16_t key, int bytes)
{
    uint64_t v = 0;
    fw_cfg_select(key);
    for (int i = 0; i < bytes; i++)
        v |= (uint64_t)inb(FW_CFG_DATA) << (i * 8);
    return v;
}

static void probe_fw_cfg(void)
{
    char sig[5];
    fw_cfg_select(0x0000);
    for (int i = 0; i < 4; i++)
        sig[i] = (char)inb(FW_CFG_DATA);
    sig[4] = 0;
    uint8_t past = inb(FW_CFG_DATA);
    kprintf("fw_cfg: signature [%s], then %02x past the end\n", sig, past);
    kprintf("fw_cfg: id bit 0 (traditional interface) %u\n", (unsigned)(fw_cfg_read_le(0x0001, 4) & 1));
    uint64_t ram = fw_cfg_read_le(0x0003, 8);
    /* (Multiboot's mem_upper is not compared: QEMU's firmware keeps some of the top of RAM for itself.) */
    kprintf("fw_cfg: ram size %08x%08x (%u MiB)\n", (uint32_t)(ram >> 32), (uint32_t)ram, (uint32_t)(ram >> 20));
    kprintf("fw_cfg: nb_cpus %u, max_cpus %u\n", (unsigned)fw_cfg_read_le(0x0005, 2), (unsigned)fw_cfg_read_le(0x000f, 2));
    uint32_t cmdline_size = (uint32_t)fw_cfg_read_le(0x0014, 4);
    kprintf("fw_cfg: cmdline size %u\n", cmdline_size);
    /* A key nobody set, and a key past the table, read as zeros. */
    kprintf("fw_cfg: unset key 0x0004 reads %02x, key 0x3fff reads %02x\n",
            (unsigned)fw_cfg_read_le(0x0004, 1), (unsigned)fw_cfg_read_le(0x3fff, 1));
    /* Port 0x510 read as a byte is the data port too. */
    fw_cfg_select(0x0000);
    uint8_t a = inb(FW_CFG_SELECTOR);
    uint8_t b = inb(FW_CFG_DATA);
    kprintf("fw_cfg: inb 0x510 then inb 0x511 on the signature: %c%c\n", a, b);
    /* Wider reads than a byte are not part of the interface. */
    fw_cfg_select(0x0000);
    uint16_t w = inw(FW_CFG_DATA);
    uint32_t l = inl(FW_CFG_SELECTOR);
    kprintf("fw_cfg: inw 0x511 %04x, inl 0x510 %08x, then inb %02x\n", w, l, inb(FW_CFG_DATA));
}

/* ---- ports 0x80 and 0x92 --------------------------------------------------- */
static void probe_misc_ports(void)
{
    kprintf("port 0x80: inb %02x inw %04x inl %08x\n", inb(0x80), inw(0x80), inl(0x80));
    uint8_t p92 = inb(0x92);
    kprintf("port 0x92: %02x (A20 %s)\n", p92, (p92 & 2) ? "on" : "off");
    /* Bits 7:6 (the disk LEDs) read back; A20 stays on (the guest runs at 1 MiB, and QEMU wraps
     * addresses at 1 MiB when it is off; HybridVmm does not) and bit 0 stays clear (a reset). */
    outb(0x92, 0xC2);
    uint8_t leds = inb(0x92);
    outb(0x92, p92 & ~1);
    uint8_t restored = inb(0x92);
    kprintf("port 0x92: 0xc2 reads back %02x, restored %02x\n", leds, restored);
}

/* ---- i8042 ----------------------------------------------------------------- */
static int kbc_wait_input_empty(void)
{
    for (int i = 0; i < 100000; i++)
        if (!(inb(0x64) & 0x02))
            return 1;
    return 0;
}

static int kbc_read_output(uint8_t *v)
{
    for (int i = 0; i < 100000; i++)
        if (inb(0x64) & 0x01) {
            *v = inb(0x60);
            return 1;
        }
    return 0;
}

static void kbc_command(uint8_t cmd)
{
    kbc_wait_input_empty();
    outb(0x64, cmd);
}

static void probe_i8042(void)
{
    uint8_t v = 0;
    kprintf("i8042: status %02x\n", inb(0x64));
    kbc_command(0x20);
    int ok = kbc_read_output(&v);
    uint8_t ccb = v;
    kprintf("i8042: command byte %s %02x, status after read %02x\n", ok ? "read" : "TIMEOUT", ccb, inb(0x64));
    kbc_command(0xAA);
    ok = kbc_read_output(&v);
    kprintf("i8042: self-test %s %02x, status %02x\n", ok ? "->" : "TIMEOUT", v, inb(0x64));
    kbc_command(0xAB);
    ok = kbc_read_output(&v);
    kprintf("i8042: keyboard interface test %s %02x\n", ok ? "->" : "TIMEOUT", v);
    kbc_command(0x60);
    kbc_wait_input_empty();
    outb(0x60, 0x45);
    kprintf("i8042: status after writing data %02x\n", inb(0x64));
    kbc_command(0x20);
    ok = kbc_read_output(&v);
    kprintf("i8042: command byte written 45 reads %s %02x\n", ok ? "back" : "TIMEOUT", v);
    kbc_command(0x60);
    kbc_wait_input_empty();
    outb(0x60, ccb);
    kprintf("i8042: nothing to read: status %02x\n", inb(0x64));
    kbc_command(0xD0);
    ok = kbc_read_output(&v);
    kprintf("i8042: output port %s %02x\n", ok ? "->" : "TIMEOUT", v);
    kbc_command(0xC0);
    ok = kbc_read_output(&v);
    kprintf("i8042: input port %s %02x\n", ok ? "->" : "TIMEOUT", v);
}

/* ---- RTC / CMOS ------------------------------------------------------------ */
static uint8_t cmos(uint8_t index)
{
    outb(0x70, index);
    return inb(0x71);
}

static void probe_rtc(void)
{
    kprintf("cmos: index port reads %02x\n", inb(0x70));
    /* UIP (A bit 7) and the update-ended flag (C bit 4) depend on the phase of the second the firmware left;
     * the periodic flag (C bit 6) is set at the rate register A selects on the MC146818 whether or not its
     * interrupt is enabled, but QEMU sets it only while the interrupt is enabled. */
    kprintf("cmos: A %02x B %02x C %02x D %02x (UIP, UF and PF masked)\n", cmos(0x0A) & 0x7F, cmos(0x0B), cmos(0x0C) & 0xAF, cmos(0x0D));
    kprintf("cmos: base memory %u KiB, extended %u KiB (0x30/0x31: %u KiB), above 16 MiB %u x 64 KiB\n",
            cmos(0x15) | cmos(0x16) << 8, cmos(0x17) | cmos(0x18) << 8, cmos(0x30) | cmos(0x31) << 8,
            cmos(0x34) | cmos(0x35) << 8);
    /* QEMU's pc_cmos_init: 0x5B-0x5D the RAM above 4 GiB in 64 KiB units, 0x5F the processors less one. */
    kprintf("cmos: above 4 GiB %u x 64 KiB, processors %u\n", cmos(0x5B) | cmos(0x5C) << 8 | (uint32_t)cmos(0x5D) << 16,
            cmos(0x5F) + 1u);
    kprintf("cmos: century %02x\n", cmos(0x32));
    /* Wait for an update not in progress, then read the date. */
    while (cmos(0x0A) & 0x80)
        ;
    uint8_t sec = cmos(0x00), min = cmos(0x02), hour = cmos(0x04), wday = cmos(0x06), day = cmos(0x07), mon = cmos(0x08),
            year = cmos(0x09);
    kprintf("rtc (BCD, 24h): 20%02x-%02x-%02x %02x:%02x, weekday %x, seconds BCD %s\n", year, mon, day, hour, min, wday,
            (sec & 0x0F) <= 9 && sec <= 0x59 ? "yes" : "no");
    /* Binary mode and 12-hour mode, as register B selects. */
    uint8_t b = cmos(0x0B);
    outb(0x70, 0x0B);
    outb(0x71, (b | 0x04) & ~0x02);
    while (cmos(0x0A) & 0x80)
        ;
    kprintf("rtc (binary, 12h): year %u month %u day %u hour %02x minute %u\n", cmos(0x09), cmos(0x08), cmos(0x07), cmos(0x04), cmos(0x02));
    outb(0x70, 0x0B);
    outb(0x71, b & ~0x06);
    while (cmos(0x0A) & 0x80)
        ;
    kprintf("rtc (BCD, 12h): hour %02x\n", cmos(0x04));
    outb(0x70, 0x0B);
    outb(0x71, b);
    /* Alarm registers and general-purpose CMOS memory hold what is written. */
    outb(0x70, 0x01);
    outb(0x71, 0x42);
    outb(0x70, 0x50);
    outb(0x71, 0xA5);
    kprintf("cmos: alarm seconds %02x, byte 0x50 %02x\n", cmos(0x01), cmos(0x50));
    /* Bit 7 of the index disables NMI; the register is still selected. */
    outb(0x70, 0x80 | 0x50);
    kprintf("cmos: index 0xd0 reads byte 0x50: %02x\n", inb(0x71));
    outb(0x70, 0x0D);
}

/* ---- PCI configuration mechanism 1 ----------------------------------------- */
static uint32_t pci_read(uint32_t bdf, uint8_t reg)
{
    outl(0xCF8, 0x80000000u | bdf << 8 | (reg & 0xFC));
    return inl(0xCFC);
}

static void probe_pci(void)
{
    uint32_t id = pci_read(0x00, 0x00);
    kprintf("pci 00:00.0: vendor %04x device %04x\n", id & 0xFFFF, id >> 16);
    kprintf("pci 00:00.0: class %08x header %08x\n", pci_read(0x00, 0x08), pci_read(0x00, 0x0C));
    for (uint8_t reg = 0x00; reg < 0x40; reg += 16)
        kprintf("pci 00:00.0 %02x: %08x %08x %08x %08x\n", reg, pci_read(0, reg), pci_read(0, reg + 4), pci_read(0, reg + 8), pci_read(0, reg + 12));
    outl(0xCF8, 0x80000000u);
    kprintf("pci 00:00.0 bytes: %02x %02x %02x %02x, words %04x %04x\n", inb(0xCFC), inb(0xCFD), inb(0xCFE), inb(0xCFF), inw(0xCFC), inw(0xCFE));
    kprintf("pci 0xcf8 reads %08x; byte reads of 0xcf8 %02x and of the reset control register 0xcf9 %02x\n", inl(0xCF8), inb(0xCF8), inb(0xCF9));
    kprintf("pci 00:1f.0 (empty): %08x; bus 1 00.0: %08x\n", pci_read(0x1F << 3, 0), pci_read(0x100, 0));
    outl(0xCF8, 0x00000000u);
    kprintf("pci enable bit clear: %08x\n", inl(0xCFC));
    outl(0xCF8, 0x80000000u | 0x04);
    uint32_t cmd = inl(0xCFC);
    outl(0xCFC, 0xFFFFFFFFu);
    kprintf("pci 00:00.0 command/status after writing ones: %08x (was %08x)\n", inl(0xCFC), cmd);
    outl(0xCFC, cmd);
}

uint32_t kmain(uint32_t magic, struct multiboot_info *mbi)
{
    serial_init();
    kprintf("platform: probing the PC chipset\n");
    if (magic != MULTIBOOT_BOOTLOADER_MAGIC)
        return 1;
    /* QEMU passes "<-kernel path> <-append string>"; word 0 is the program's name. */
    kprintf("multiboot cmdline [%s]\n", (mbi->flags & MULTIBOOT_INFO_CMDLINE) ? (const char *)(uintptr_t)mbi->cmdline : "(none)");
    probe_fw_cfg();
    probe_misc_ports();
    probe_i8042();
    probe_rtc();
    probe_pci();
    kprintf("platform: done\n");
    return 0;
}
