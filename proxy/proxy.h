/* SPDX-License-Identifier: MIT */
/*
 * proxy.h - entry point of the proxy role (moat-proxy)
 */
#ifndef MOAT_PROXY_H
#define MOAT_PROXY_H

int proxy_main(void);

#endif
