/* SPDX-License-Identifier: MIT */
/*
 * fuzz_vhostmsg.c - libFuzzer harness for the vhost-user message check
 * (shm/vhostmsg.c): the first byte is the number of descriptors that came
 * with the message, the rest the message. An accepted message must be
 * self-consistent (the invariants the backend relies on).
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#include "vhost/vhostmsg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vhostmsg m;
	const char *why;
	int rc;

	if (size < 1)
		return 0;
	rc = vhostmsg_check(data + 1, size - 1, data[0] % 12, &m, &why);
	if (rc == 0) {
		if (m.index >= VHOSTMSG_QUEUES || m.nregions > VHOSTMSG_MAX_REGIONS ||
		    m.cfg_size > VHOSTMSG_CONFIG_MAX)
			__builtin_trap();
		for (uint32_t i = 0; i < m.nregions; i++)
			if (!m.region[i].size ||
			    m.region[i].gpa + m.region[i].size < m.region[i].gpa)
				__builtin_trap();
	} else if (rc != -EBADMSG && rc != -ENOTSUP) {
		__builtin_trap();
	} else if (!why) {
		__builtin_trap();
	}
	return 0;
}
