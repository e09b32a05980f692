/* SPDX-License-Identifier: MIT */
/*
 * netstack.h - entry point of the netstack role (moat-netstack)
 */
#ifndef MOAT_NETSTACK_H
#define MOAT_NETSTACK_H

int netstack_main(void);

#endif
