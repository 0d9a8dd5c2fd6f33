/* net.h - client of the HybridVmm synthetic NIC (a VMBus channel to the root's virtual switch). */
#ifndef NET_H
#define NET_H

#include <stdint.h>

#define NET_MAX_FRAME 1514

/* Finds and opens the NIC channel and learns its MAC. 0 on success. */
int net_init(void);
extern uint8_t net_mac[6];
/* Sends one Ethernet frame (14-1514 bytes). 0 on success. */
int net_send(const void *frame, uint32_t length);
/* Takes a received frame without waiting: its length, or -1 if none. */
int net_recv(void *frame, uint32_t cap);
/* Waits (halted, interrupts on) for a frame: its length. */
int net_recv_wait(void *frame, uint32_t cap);

#endif
