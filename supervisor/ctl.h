/* SPDX-License-Identifier: MIT */
/*
 * ctl.h - `moat ctl`, the control API's client
 */
#ifndef MOAT_CTL_H
#define MOAT_CTL_H

int ctl_main(int argc, char **argv);

#endif /* MOAT_CTL_H */
