/* printf.c - a small vsnprintf-style formatter for the sample guests. */
#include "guest.h"

struct out {
    char *buf;
    size_t size;
    size_t len;   /* characters produced so far (may exceed size) */
};

static void emit(struct out *o, char c)
{
    if (o->len + 1 < o->size)
        o->buf[o->len] = c;
    o->len++;
}

static void emit_padded(struct out *o, const char *s, size_t n, int width, int left, char pad)
{
    int fill = width > (int)n ? width - (int)n : 0;
    if (!left) {
        /* zero padding goes after the sign */
        if (pad == '0' && n && *s == '-') {
            emit(o, *s++);
            n--;
        }
        while (fill-- > 0)
            emit(o, pad);
    }
    while (n--)
        emit(o, *s++);
    if (left)
        while (fill-- > 0)
            emit(o, ' ');
}

/* Converts v to text in 'base' at the end of tmp; returns the first char.
 * 64-bit division by a constant: gcc calls __udivdi3/__umoddi3 (libgcc)
 * unless the base is a power of two. Bases 16 use shifts. */
static char *utoa64(char *end, uint64_t v, unsigned base, int upper)
{
    const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    char *p = end;
    *--p = '\0';
    if (base == 16) {
        do {
            *--p = digits[v & 15];
            v >>= 4;
        } while (v);
    } else if (v <= 0xFFFFFFFFu) {
        uint32_t w = (uint32_t)v;   /* cheap 32-bit path */
        do {
            *--p = digits[w % 10];
            w /= 10;
        } while (w);
    } else {
        do {
            *--p = digits[v % 10];
            v /= 10;
        } while (v);
    }
    return p;
}

int kvsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
    struct out o = { buf, size, 0 };
    char tmp[24];

    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            emit(&o, *fmt);
            continue;
        }
        fmt++;
        int left = 0;
        char pad = ' ';
        for (;; fmt++) {
            if (*fmt == '-')
                left = 1;
            else if (*fmt == '0')
                pad = '0';
            else
                break;
        }
        int width = 0;
        if (*fmt == '*') {
            width = va_arg(ap, int);
            fmt++;
        } else {
            while (*fmt >= '0' && *fmt <= '9')
                width = width * 10 + (*fmt++ - '0');
        }
        int lng = 0;
        while (*fmt == 'l') {
            lng++;
            fmt++;
        }
        if (left)
            pad = ' ';

        char *s;
        switch (*fmt) {
        case '%':
            emit(&o, '%');
            break;
        case 'c':
            tmp[0] = (char)va_arg(ap, int);
            emit_padded(&o, tmp, 1, width, left, ' ');
            break;
        case 's':
            s = va_arg(ap, char *);
            if (!s)
                s = "(null)";
            emit_padded(&o, s, strlen(s), width, left, ' ');
            break;
        case 'd':
        case 'i': {
            int64_t v = lng >= 2 ? va_arg(ap, int64_t) : (int64_t)va_arg(ap, int32_t);
            uint64_t mag = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
            s = utoa64(tmp + sizeof tmp, mag, 10, 0);
            if (v < 0)
                *--s = '-';
            emit_padded(&o, s, strlen(s), width, left, pad);
            break;
        }
        case 'u':
        case 'x':
        case 'X':
        case 'p': {
            uint64_t v;
            if (*fmt == 'p')
                v = (uintptr_t)va_arg(ap, void *);
            else
                v = lng >= 2 ? va_arg(ap, uint64_t) : (uint64_t)va_arg(ap, uint32_t);
            s = utoa64(tmp + sizeof tmp, v, *fmt == 'u' ? 10 : 16, *fmt == 'X');
            if (*fmt == 'p') {
                *--s = 'x';
                *--s = '0';
            }
            emit_padded(&o, s, strlen(s), width, left, pad);
            break;
        }
        case '\0':
            fmt--;          /* lone '%' at the end: stop cleanly */
            break;
        default:            /* unknown conversion: print it verbatim */
            emit(&o, '%');
            emit(&o, *fmt);
            break;
        }
    }
    if (size)
        buf[o.len < size ? o.len : size - 1] = '\0';
    return (int)o.len;
}

int ksnprintf(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = kvsnprintf(buf, size, fmt, ap);
    va_end(ap);
    return n;
}

int kprintf(const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    int n = kvsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    serial_write(buf, n < (int)sizeof buf ? (size_t)n : sizeof buf - 1);
    return n;
}
