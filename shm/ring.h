/* SPDX-License-Identifier: MIT */
/*
 * ring.h - single-producer single-consumer record rings in the shared region
 *
 * See moat_shm.h for the protocol. A `struct ring` is one process's private
 * view of one ring: the capacity it trusts (taken from the header copy it
 * validated at start), its local head or tail, and the eventfds to wake.
 * A process is either the producer or the consumer of a given ring, never
 * both.
 */
#ifndef MOAT_RING_H
#define MOAT_RING_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "shm/moat_shm.h"

struct ring {
	struct moat_ring_ctl *ctl;
	uint8_t *data;
	uint64_t cap; /* power of two */
	uint64_t mask;
	uint64_t head;	 /* producer's local head (published by ring_flush) */
	uint64_t tail;	 /* consumer's local tail (published by ring_release) */
	uint64_t pub;	 /* head or tail value last published */
	int cons_efd;	 /* written to wake the consumer, -1 if none */
	int prod_efd;	 /* written to wake a producer waiting for space */
	uint64_t *wakes; /* counter bumped per eventfd write, may be NULL */
	uint64_t peeked; /* consumer: size of the record ring_peek() validated, 0 if none */
	bool corrupt;	 /* sticky: validation failed once */
};

/*
 * Errors, the same on every call that can fail:
 *   -ENOBUFS	the ring is full (producer): a state, not a fault; wait for
 *		space with ring_wait_space() and retry
 *   -EAGAIN	the ring is empty (consumer)
 *   -EBADMSG	the ring is corrupt: the peer published an impossible head,
 *		tail or record. Sticky (->corrupt stays set); the caller reports
 *		a MOAT_VIOL_RING_CORRUPT violation and never uses the ring again
 *   -EMSGSIZE	the record is larger than the ring allows (producer), or than
 *		the caller's buffer (ring_pop(): the record is skipped)
 */

/* Largest payload a ring of capacity @cap accepts (keeps progress possible). */
#define RING_MAX_RECORD(cap) ((uint32_t)((cap) / 4 - sizeof(struct moat_rec_hdr)))

void ring_attach(struct ring *r, void *part, uint64_t cap, int cons_efd, int prod_efd,
		 uint64_t *wakes);

/* Producer side */
int ring_reserve(struct ring *r, uint32_t len, void **payload);
void ring_commit(struct ring *r, uint32_t type, uint32_t len);
int ring_push(struct ring *r, uint32_t type, const void *buf, uint32_t len);
int ring_pushv(struct ring *r, uint32_t type, const struct iovec *iov, int iovcnt);
void ring_flush(struct ring *r);
bool ring_wait_space(struct ring *r, uint32_t len);
uint64_t ring_free_bytes(struct ring *r);

/* Consumer side */
int ring_pop(struct ring *r, uint32_t *type, void *buf, uint32_t bufsize);
int ring_peek(struct ring *r, uint32_t *type, const uint8_t **payload);
void ring_consume(struct ring *r);
void ring_release(struct ring *r);
bool ring_prepare_sleep(struct ring *r);
void ring_cancel_sleep(struct ring *r);
int ring_next_frame(struct ring *r, uint32_t max_frame, bool vnet_ok, const uint8_t **frame,
		    bool *vnet);

/* Either side / observers */
uint64_t ring_used_bytes(const struct moat_ring_ctl *ctl, uint64_t cap);

#endif /* MOAT_RING_H */
