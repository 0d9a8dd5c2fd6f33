/* enlcon.c - the same text through the emulated UART or the synthetic console.
 * Command line "uart": every byte is an OUT to COM1 (one intercept per byte;
 * the LSR is polled once per 16 bytes, the FIFO depth). Command line "synth":
 * the text goes in 2 KiB batches over a VMBus channel, one HvSignalEvent each.
 * The bytes printed are identical; docs/enlightened-io.md compares the costs. */
#include "guest.h"
#include "hv.h"
#include "vmbus.h"
#include "synthcon.h"

static int use_synth;

static void uart_write(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (i % 16 == 0)
            while (!(inb(COM1 + 5) & 0x20))
                ;
        outb(COM1, (uint8_t)s[i]);
    }
}

static void out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void out(const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    int n = kvsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    size_t len = n < (int)sizeof buf ? (size_t)n : sizeof buf - 1;
    if (use_synth)
        synthcon_write(buf, len);
    else
        uart_write(buf, len);
}

static const char *const words[] = {
    "hypervisor", "partition", "channel", "grant", "ring", "signal", "message", "interrupt",
};

/* The mode is the command line's last word: QEMU and `hybridvmm run` pass
 * "<kernel path> <arguments>", a VM configured in code may pass the mode alone. */
static const char *last_word(const char *s)
{
    const char *word = s;
    for (; *s; s++)
        if (*s == ' ' && s[1] != 0)
            word = s + 1;
    return word;
}

uint32_t kmain(uint32_t magic, struct multiboot_info *mbi)
{
    (void)magic;
    const char *cmdline = (mbi->flags & MULTIBOOT_INFO_CMDLINE) ? (const char *)mbi->cmdline : "";
    use_synth = strcmp(last_word(cmdline), "synth") == 0;
    if (use_synth) {
        if (vmbus_init() != 0 || synthcon_init() != 0) {
            serial_init();
            kprintf("enlcon: no synthetic console\n");
            return 2;
        }
    } else {
        serial_init();
    }

    out("enlcon: 100 lines of text\n");
    uint32_t sum = 0;
    for (int line = 0; line < 100; line++) {
        const char *w = words[line % 8];
        for (const char *p = w; *p; p++)
            sum = sum * 31 + (uint8_t)*p + (uint32_t)line;
        out("line %3d: the %-10s carries bytes, checksum %08x\n", line, w, sum);
    }
    out("enlcon: done\n");

    if (use_synth) {
        char input[128];
        size_t n = synthcon_read(input, sizeof input - 1);
        if (n > 0) {
            input[n] = 0;
            out("enlcon: console input: %s", input);
        }
        synthcon_flush();
    }
    return 0;
}
