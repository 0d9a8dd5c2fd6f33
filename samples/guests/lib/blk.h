/* blk.h - client of the HybridVmm synthetic block device (a VMBus channel). */
#ifndef BLK_H
#define BLK_H

#include <stdint.h>

#define BLK_SECTOR 512
#define BLK_MAX_SECTORS 8
#define BLK_OK 0
#define BLK_OUT_OF_RANGE 1
#define BLK_BAD_REQUEST 2
#define BLK_IO_ERROR 3

/* Finds and opens the disk channel and reads its capacity. 0 on success. */
int blk_init(void);
extern uint64_t blk_capacity;           /* in sectors */
/* Each returns the device status (BLK_OK, ...); negative for a transport failure. */
int blk_read(uint64_t sector, uint32_t count, void *buf);
int blk_write(uint64_t sector, uint32_t count, const void *buf);
int blk_flush(void);                    /* completes once the data is durable on the host */

#endif
