/* enlnet.c - two guests ping each other over the root's virtual switch.
 * Command line "pong": answers 3 ICMP echo requests to 10.0.0.2, then exits.
 * Command line "ping": from 10.0.0.1, sends echo requests to 10.0.0.2 (to the
 * broadcast MAC: there is no ARP here) until 3 replies came back; a request
 * that gets no reply within a while (polled, RDTSC-free) is sent again.
 * Frames are real Ethernet II / IPv4 / ICMP with checksums. Output: synthetic console. */
#include "guest.h"
#include "hv.h"
#include "vmbus.h"
#include "synthcon.h"
#include "net.h"

#define PINGS 3

static uint8_t frame[NET_MAX_FRAME];
static uint8_t reply[NET_MAX_FRAME];

static uint16_t be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }

static uint16_t checksum(const uint8_t *p, int n)
{
    uint32_t sum = 0;
    for (int i = 0; i + 1 < n; i += 2)
        sum += be16(p + i);
    if (n & 1)
        sum += (uint32_t)p[n - 1] << 8;
    while (sum >> 16)
        sum = (sum & 0xFFFF) + (sum >> 16);
    return (uint16_t)~sum;
}

/* Ethernet (14) + IPv4 (20) + ICMP echo (8) + 32 bytes of data = 74 bytes. */
static int build_icmp(uint8_t *f, const uint8_t dst_mac[6], uint8_t src_ip, uint8_t dst_ip, uint8_t type, uint16_t seq)
{
    memcpy(f, dst_mac, 6);
    memcpy(f + 6, net_mac, 6);
    put16(f + 12, 0x0800);
    uint8_t *ip = f + 14;
    memset(ip, 0, 20);
    ip[0] = 0x45;
    put16(ip + 2, 20 + 8 + 32);
    ip[8] = 64;                                 /* TTL */
    ip[9] = 1;                                  /* ICMP */
    ip[12] = 10; ip[15] = src_ip;
    ip[16] = 10; ip[19] = dst_ip;
    put16(ip + 10, checksum(ip, 20));
    uint8_t *icmp = ip + 20;
    memset(icmp, 0, 8);
    icmp[0] = type;                             /* 8 request, 0 reply */
    put16(icmp + 4, 0x4856);                    /* identifier "HV" */
    put16(icmp + 6, seq);
    for (int i = 0; i < 32; i++)
        icmp[8 + i] = (uint8_t)('a' + i % 26);
    put16(icmp + 2, checksum(icmp, 8 + 32));
    return 14 + 20 + 8 + 32;
}

/* A valid ICMP echo of 'type' for 'ip': its sequence number, else -1. */
static int parse_icmp(const uint8_t *f, int n, uint8_t type, uint8_t ip_last)
{
    if (n < 14 + 28 || be16(f + 12) != 0x0800)
        return -1;
    const uint8_t *ip = f + 14, *icmp = ip + 20;
    if (ip[9] != 1 || ip[19] != ip_last || checksum(ip, 20) != 0 || icmp[0] != type)
        return -1;
    if (checksum(icmp, be16(ip + 2) - 20) != 0)
        return -1;
    return be16(icmp + 6);
}

static void mac_str(char *s, const uint8_t *m)
{
    ksnprintf(s, 18, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
}

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
    int pinger = strcmp(last_word(cmdline), "ping") == 0;
    serial_init();
    if (vmbus_init() != 0 || synthcon_init() != 0 || net_init() != 0) {
        kprintf("enlnet: no synthetic console or NIC\n");
        return 2;
    }
    char mac[18];
    mac_str(mac, net_mac);
    uint8_t my_ip = pinger ? 1 : 2;
    synthcon_printf("enlnet %s: 10.0.0.%u at %s\n", pinger ? "ping" : "pong", my_ip, mac);
    synthcon_flush();

    if (!pinger) {
        for (int answered = 0; answered < PINGS;) {
            int n = net_recv_wait(frame, sizeof frame);
            int seq = parse_icmp(frame, n, 8, 2);
            if (seq < 0)
                continue;
            int len = build_icmp(reply, frame + 6, 2, frame[14 + 15], 0, (uint16_t)seq);
            net_send(reply, (uint32_t)len);
            mac_str(mac, frame + 6);
            synthcon_printf("enlnet pong: echo request seq=%d from 10.0.0.%u (%s), replied\n", seq, frame[14 + 15], mac);
            answered++;
        }
        synthcon_flush();
        return 0;
    }

    static const uint8_t broadcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
    int sent = 0;
    for (int seq = 1; seq <= PINGS; seq++) {
        int got = 0;
        while (!got) {
            int len = build_icmp(frame, broadcast, 1, 2, 8, (uint16_t)seq);
            net_send(frame, (uint32_t)len);
            sent++;
            /* Poll for the reply; the switch delivers it when this vCPU next stops, so give it time. */
            for (int spin = 0; spin < 20000 && !got; spin++) {
                int n = net_recv(reply, sizeof reply);
                if (n > 0 && parse_icmp(reply, n, 0, 1) == seq)
                    got = 1;
                else
                    __asm__ volatile("pause");
            }
        }
        mac_str(mac, reply + 6);
        synthcon_printf("enlnet ping: echo reply seq=%d from 10.0.0.%u (%s)\n", seq, reply[14 + 15], mac);
    }
    synthcon_printf("enlnet ping: %d replies to %d requests\n", PINGS, sent);
    synthcon_flush();
    return 0;
}
