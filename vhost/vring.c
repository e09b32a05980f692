/* SPDX-License-Identifier: MIT */
/*
 * vring.c - virtio split virtqueues in guest memory, read as hostile input
 *
 * Theory of Operation
 * -------------------
 * Guest memory is shared with a guest that may be hostile, so every value in
 * it is read once into a local and checked before it is used, and nothing is
 * trusted across two reads:
 *
 * - Addresses. vring_translate() maps [gpa, gpa + len) into one region of
 *   the memory table, or fails: a buffer that crosses a region's end, wraps
 *   around 2^64, or lies outside every region is refused (never a partial or
 *   a wild pointer).
 * - The rings. vring_setup() checks the queue size (a power of two up to
 *   32768), the alignment virtio requires (descriptors 16, avail 2, used 4)
 *   and that each whole ring lies in one region.
 * - The avail index. The number of new entries (avail->idx - last_avail,
 *   16-bit arithmetic) can never exceed the queue size; more is a corrupt
 *   ring (-EIO), which the caller reports and stops using.
 * - Chains. A head index must be below num; a chain follows NEXT flags for
 *   at most num descriptors (a loop is -EBADMSG, not a hang), takes at most
 *   VRING_MAX_SEGS buffers, and puts every writable buffer after every
 *   readable one (virtio's rule). One indirect table is allowed, as the only
 *   descriptor of a chain; it must lie in guest memory, hold a whole number
 *   of descriptors and at most VRING_MAX_SIZE of them, and may not nest.
 * - The used ring is only written, one element then the index, with a
 *   release barrier between them so the guest never sees an index ahead of
 *   its element.
 */
#include <errno.h>
#include <string.h>

#include "vhost/vring.h"

/**
 * vring_translate() - where guest memory [@gpa, @gpa + @len) is mapped
 * @m:		the memory table
 * @gpa:	guest physical address
 * @len:	bytes (0 is allowed and still needs @gpa inside a region)
 *
 * Return: the host address, or NULL unless the whole range lies in one region.
 */
void *vring_translate(const struct vring_mem *m, uint64_t gpa, uint64_t len)
{
	for (unsigned i = 0; i < m->n && i < VRING_MAX_REGIONS; i++) {
		uint64_t off = gpa - m->gpa[i];

		if (gpa < m->gpa[i] || off >= m->size[i] || len > m->size[i] - off)
			continue;
		return m->hva[i] + off;
	}
	return NULL;
}

/**
 * vring_gpa_of_uva() - the guest physical address of a VMM address
 * @m:		the memory table
 * @uva:	an address in the VMM's mapping of guest memory
 * @gpa:	set on success
 *
 * SET_VRING_ADDR names the rings by the VMM's own addresses; the rings are
 * then checked and walked by guest physical address like everything else.
 *
 * Return: 0, or -EINVAL unless @uva lies in a region.
 */
int vring_gpa_of_uva(const struct vring_mem *m, uint64_t uva, uint64_t *gpa)
{
	for (unsigned i = 0; i < m->n && i < VRING_MAX_REGIONS; i++) {
		if (uva >= m->uva[i] && uva - m->uva[i] < m->size[i]) {
			*gpa = m->gpa[i] + (uva - m->uva[i]);
			return 0;
		}
	}
	return -EINVAL;
}

/**
 * vring_setup() - check and attach one queue
 * @v:		our view, filled
 * @m:		the memory table
 * @num:	queue size (VHOST_USER_SET_VRING_NUM)
 * @desc_gpa, @avail_gpa, @used_gpa: the three parts (VHOST_USER_SET_VRING_ADDR,
 *		already translated from the VMM's addresses to guest physical)
 *
 * Return: 0, or -EINVAL (the queue is unusable; nothing is attached).
 */
int vring_setup(struct vring *v, const struct vring_mem *m, unsigned num, uint64_t desc_gpa,
		uint64_t avail_gpa, uint64_t used_gpa)
{
	void *d, *a, *u;

	memset(v, 0, sizeof(*v));
	if (!num || num > VRING_MAX_SIZE || (num & (num - 1)) || (desc_gpa & 15) ||
	    (avail_gpa & 1) || (used_gpa & 3))
		return -EINVAL;
	d = vring_translate(m, desc_gpa, (uint64_t)num * sizeof(struct vring_desc));
	a = vring_translate(m, avail_gpa, 4u + 2u * num + 2u);
	u = vring_translate(m, used_gpa, 4u + (uint64_t)num * sizeof(struct vring_used_elem) + 2u);
	if (!d || !a || !u)
		return -EINVAL;
	v->num = (uint16_t)num;
	v->desc = d;
	v->avail = a;
	v->used = u;
	return 0;
}

/* Copy descriptor @i of @table (of @n) out of guest memory, once. */
static struct vring_desc desc_read(volatile struct vring_desc *table, unsigned i)
{
	struct vring_desc d;

	d.addr = table[i].addr;
	d.len = table[i].len;
	d.flags = table[i].flags;
	d.next = table[i].next;
	return d;
}

/* Add one buffer to @c. Return: 0 or -EBADMSG. */
static int add_segment(struct vring_chain *c, const struct vring_mem *m, const struct vring_desc *d)
{
	void *p = vring_translate(m, d->addr, d->len);

	if (!p)
		return -EBADMSG;
	if (d->flags & VRING_DESC_F_WRITE) {
		if (c->n_in == VRING_MAX_SEGS)
			return -EBADMSG;
		c->in[c->n_in++] = (struct iovec){ p, d->len };
		c->in_len += d->len;
	} else {
		if (c->n_in || c->n_out == VRING_MAX_SEGS)
			return -EBADMSG; /* readable after writable */
		c->out[c->n_out++] = (struct iovec){ p, d->len };
		c->out_len += d->len;
	}
	return 0;
}

/* Walk the chain that starts at @head in @table of @n descriptors. */
static int walk(struct vring_chain *c, const struct vring_mem *m, volatile struct vring_desc *table,
		unsigned n, unsigned head, bool indirect_ok)
{
	unsigned i = head;

	for (unsigned steps = 0;; steps++) {
		struct vring_desc d;
		int rc;

		if (i >= n || steps >= n)
			return -EBADMSG; /* out of the table, or a loop */
		d = desc_read(table, i);
		if (d.flags & VRING_DESC_F_INDIRECT) {
			volatile struct vring_desc *t;

			if (!indirect_ok || steps || (d.flags & VRING_DESC_F_NEXT) ||
			    d.len % sizeof(struct vring_desc) || !d.len ||
			    d.len / sizeof(struct vring_desc) > VRING_MAX_SIZE)
				return -EBADMSG;
			t = vring_translate(m, d.addr, d.len);
			if (!t || (d.addr & 15))
				return -EBADMSG;
			return walk(c, m, t, d.len / sizeof(struct vring_desc), 0, false);
		}
		rc = add_segment(c, m, &d);
		if (rc < 0)
			return rc;
		if (!(d.flags & VRING_DESC_F_NEXT))
			return 0;
		i = d.next;
	}
}

/**
 * vring_pop() - take the next available chain
 * @v:	the queue
 * @m:	the memory table
 * @c:	filled with the chain's buffers (valid until it is pushed)
 *
 * Return: 0, -EAGAIN if the driver made none available, -EBADMSG if the
 * chain is impossible (its head is consumed and in @c->head, so that the
 * caller hands it back unused and a bad chain cannot be offered again and
 * again), or -EIO if the avail index is impossible (the queue is unusable).
 */
int vring_pop(struct vring *v, const struct vring_mem *m, struct vring_chain *c)
{
	uint16_t idx = __atomic_load_n(&v->avail[1], __ATOMIC_ACQUIRE);
	uint16_t head;

	if ((uint16_t)(idx - v->last_avail) > v->num)
		return -EIO;
	if (idx == v->last_avail)
		return -EAGAIN;
	head = v->avail[2 + (v->last_avail & (v->num - 1))];
	v->last_avail++;
	memset(c, 0, sizeof(*c));
	c->head = head;
	return walk(c, m, v->desc, v->num, head, true);
}

/**
 * vring_start() - take up a queue where the driver's indices are
 * @v:		a queue from vring_setup()
 * @last_avail:	the next avail entry to take (VHOST_USER_SET_VRING_BASE)
 *
 * Our used index continues from the one in guest memory (read once): a
 * backend that attaches to a running queue (a VMM that reconnected) must
 * not hand out used entries the driver has already seen.
 */
void vring_start(struct vring *v, uint16_t last_avail)
{
	v->last_avail = last_avail;
	v->used_idx = __atomic_load_n((volatile uint16_t *)(v->used + 2), __ATOMIC_ACQUIRE);
}

/**
 * vring_wants_interrupt() - should the device signal the driver now?
 * @v:	the queue
 *
 * Return: false if the driver set VRING_AVAIL_F_NO_INTERRUPT (it polls).
 */
bool vring_wants_interrupt(const struct vring *v)
{
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return !(v->avail[0] & VRING_AVAIL_F_NO_INTERRUPT);
}

/**
 * vring_push() - hand a chain back to the driver as used
 * @v:		the queue
 * @head:	the chain's head (from vring_pop())
 * @len:	bytes the device wrote into its writable buffers
 */
void vring_push(struct vring *v, uint16_t head, uint32_t len)
{
	volatile struct vring_used_elem *e = (volatile struct vring_used_elem *)(v->used + 4) +
					     (v->used_idx & (v->num - 1));

	e->id = head;
	e->len = len;
	v->used_idx++;
	__atomic_store_n((volatile uint16_t *)(v->used + 2), v->used_idx, __ATOMIC_RELEASE);
}
