/* SPDX-License-Identifier: MIT */
/*
 * pcap.h - --pcap: a classic pcap file of every frame crossing the guest port
 *
 * Included by the supervisor's guest port only.
 */
#ifndef MOAT_PCAP_H
#define MOAT_PCAP_H

#include <stddef.h>
#include <stdint.h>

struct pcap;

struct pcap *pcap_open(const char *path, uint32_t snaplen, char *err, size_t errlen);
void pcap_frame(struct pcap *p, const void *frame, uint32_t len);
int pcap_flush(struct pcap *p);
uint64_t pcap_frames(const struct pcap *p);
void pcap_close(struct pcap *p);

#endif /* MOAT_PCAP_H */
