/* SPDX-License-Identifier: MIT */
/*
 * policy_cmd.h - `moat policy check|explain|default`
 */
#ifndef MOAT_POLICY_CMD_H
#define MOAT_POLICY_CMD_H

int policy_cmd_main(int argc, char **argv);

#endif /* MOAT_POLICY_CMD_H */
