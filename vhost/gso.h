/* SPDX-License-Identifier: MIT */
/*
 * gso.h - software segmentation and checksum completion for the guest
 *
 * The vhost-user backend's answer to a guest whose virtio-net driver did not
 * negotiate GUEST_CSUM / GUEST_TSO4 / GUEST_TSO6: a MOAT_REC_FRAME_VNET record
 * (struct moat_vnet_hdr + Ethernet frame) from the netstack is finished here
 * into plain frames, each with complete checksums. Pure code over the
 * buffers it is given: no allocation, no system calls. See the Theory of
 * Operation in gso.c.
 */
#ifndef MOAT_GSO_H
#define MOAT_GSO_H

#include <stddef.h>
#include <stdint.h>

#include "shm/moat_shm.h"

/**
 * typedef gso_emit_fn - takes one finished frame from gso_segment()
 * @arg:	the caller's context, passed through
 * @frame:	the frame, in the caller's scratch buffer (valid until the call
 *		returns; the next piece overwrites it)
 * @len:	its length, at most the scratch buffer's
 *
 * Return: 0 to go on, or a negative errno to stop the walk (gso_segment()
 * returns it as is; a positive value also stops it and becomes -ECANCELED).
 */
typedef int (*gso_emit_fn)(void *arg, const uint8_t *frame, size_t len);

int gso_checksum(uint8_t *frame, size_t len, const struct moat_vnet_hdr *h);
int gso_segment(const uint8_t *frame, size_t len, const struct moat_vnet_hdr *h, uint8_t *scratch,
		size_t scratch_len, gso_emit_fn emit, void *arg);

#endif /* MOAT_GSO_H */
