/* SPDX-License-Identifier: MIT */
#ifndef MOAT_RUN_H
#define MOAT_RUN_H

int run_main(int argc, char **argv);

#endif
