/* guest.h - the tiny freestanding library shared by the HybridVmm sample guests. */
#ifndef GUEST_H
#define GUEST_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include "multiboot.h"

/* ---- port I/O ---------------------------------------------------------- */
static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outw(uint16_t port, uint16_t v) { __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outl(uint16_t port, uint32_t v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }
static inline uint8_t inb(uint16_t port) { uint8_t v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline uint32_t inl(uint16_t port) { uint32_t v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port)); return v; }

/* ---- COM1 16550 UART at 0x3F8 ------------------------------------------ */
#define COM1 0x3F8
void serial_init(void);                 /* 115200 8N1, FIFO on, no interrupts */
void serial_putc(char c);               /* raw byte: '\n' is NOT expanded to "\r\n" */
void serial_write(const char *s, size_t n);
void serial_puts(const char *s);        /* no newline appended */

/* ---- formatted output -------------------------------------------------- */
/* Supports %% %c %s %d %i %u %x %X %p, flags '-' and '0', a width (or '*'),
 * and the length modifiers l (ignored: long is 32-bit) and ll (64-bit). */
int kvsnprintf(char *buf, size_t size, const char *fmt, va_list ap);
int ksnprintf(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int kprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- exit (isa-debug-exit at 0xF4) ------------------------------------- */
/* Writes 'code' as a 32-bit value to port 0xF4. HybridVmm reports 'code';
 * QEMU exits with status (code << 1) | 1. Falls back to cli;hlt forever. */
#define EXIT_PORT 0xF4
void guest_exit(uint32_t code) __attribute__((noreturn));

/* ---- string.h subset (gcc may emit calls to these on its own) ---------- */
void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);

/* Every guest defines this. Returning from it exits with the returned code. */
uint32_t kmain(uint32_t magic, struct multiboot_info *mbi);

#endif
