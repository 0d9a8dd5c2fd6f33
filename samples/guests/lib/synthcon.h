/* synthcon.h - client of the HybridVmm synthetic console (a VMBus channel):
 * output is batched into one packet and one HvSignalEvent per batch. */
#ifndef SYNTHCON_H
#define SYNTHCON_H

#include <stddef.h>
#include <stdint.h>

#define SYNTHCON_BATCH 2048

/* Finds and opens the console channel (vmbus_init must have succeeded). 0 on success. */
int synthcon_init(void);
/* Buffers output; a full batch is sent as one WRITE packet. */
void synthcon_write(const char *s, size_t n);
/* Sends what is buffered. */
void synthcon_flush(void);
/* Copies console input received so far (non-blocking); returns the byte count. */
size_t synthcon_read(char *buf, size_t cap);
int synthcon_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Batches sent and signals raised, for the demo. */
extern uint32_t synthcon_batches;

#endif
