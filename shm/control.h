/* SPDX-License-Identifier: MIT */
/*
 * control.h - the supervisor -> proxy control channel (FD_CONTROL)
 *
 * A stream socketpair carrying length-prefixed JSON documents: a 32-bit
 * length in host order, then that many bytes of JSON (at most
 * CONTROL_MSG_MAX). The supervisor sends one document at start-up and one
 * for each successful policy reload:
 *
 *   { "policy": { ...normalized policy (policy_to_json) ... },
 *     "nameservers": ["192.0.2.53:53", "[2001:db8::53]:53"],   (start-up only)
 *     "publish": [ { "host_address": "127.0.0.1", "host_port": 8080,
 *                    "guest_port": 80, "protocol": "tcp" } ],   (start-up only)
 *     "generation": 1 }
 *
 * The proxy trusts this channel (the supervisor is its parent), but still
 * parses it with the same strict code as a policy file.
 */
#ifndef MOAT_CONTROL_H
#define MOAT_CONTROL_H

#define CONTROL_MSG_MAX	(4u << 20)

#endif /* MOAT_CONTROL_H */
