/* serial.c - polled COM1 output and the isa-debug-exit port. */
#include "guest.h"

#define UART_THR 0 /* transmit holding register (DLAB=0) */
#define UART_DLL 0 /* divisor latch low (DLAB=1) */
#define UART_IER 1 /* interrupt enable (DLAB=0) */
#define UART_DLM 1 /* divisor latch high (DLAB=1) */
#define UART_FCR 2 /* FIFO control */
#define UART_LCR 3 /* line control */
#define UART_MCR 4 /* modem control */
#define UART_LSR 5 /* line status */
#define LSR_THRE 0x20

void serial_init(void)
{
    outb(COM1 + UART_IER, 0x00);    /* no interrupts: we never enable IF */
    outb(COM1 + UART_LCR, 0x80);    /* DLAB=1: the next two writes set the divisor */
    outb(COM1 + UART_DLL, 0x01);    /* divisor 1 = 115200 baud (must not print!) */
    outb(COM1 + UART_DLM, 0x00);
    outb(COM1 + UART_LCR, 0x03);    /* DLAB=0, 8 data bits, no parity, 1 stop bit */
    outb(COM1 + UART_FCR, 0xC7);    /* enable + clear FIFOs, 14-byte threshold */
    outb(COM1 + UART_MCR, 0x03);    /* DTR | RTS; OUT2 off (no IRQ), no loopback */
}

void serial_putc(char c)
{
    while (!(inb(COM1 + UART_LSR) & LSR_THRE))
        ;
    outb(COM1 + UART_THR, (uint8_t)c);
}

void serial_write(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        serial_putc(s[i]);
}

void serial_puts(const char *s)
{
    while (*s)
        serial_putc(*s++);
}

void guest_exit(uint32_t code)
{
    outl(EXIT_PORT, code);
    for (;;)
        __asm__ volatile("cli; hlt");
}
