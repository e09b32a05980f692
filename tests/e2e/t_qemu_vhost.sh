#!/bin/bash
# t_qemu_vhost.sh — a real VMM on the vhost-user frontend (issue 15).
#
# QEMU's virtio-net is backed by moat-vhost: guest memory is a shared memfd
# (memory-backend-memfd,share=on), the device is -netdev vhost-user on
# moat's vhost-user:PATH. The guest kernel must get the DHCP lease, 3 ping
# replies, the HTTP token and the 4 MiB file intact through moat.
source "$(dirname "$0")/lib.sh"
source "$MOAT_SRC/tests/qemu/e2e_lib.sh"

qemu_prepare
topo_up
http_up
SOCK=$WORK/vhost.sock
QEMU_EXTRA=(-object memory-backend-memfd,id=mem,size=256M,share=on -numa node,memdev=mem
	-chardev "socket,id=chr0,path=$SOCK")

QEMU_NIC_OPTS=${QEMU_NIC_OPTS_VHOST-,vectors=0}
qemu_network_run "vhost-user:$SOCK" "vhost-user,id=n0,chardev=chr0"
grep -q "VMM connected" "$WORK/moat.log" || fail "moat-vhost did not log QEMU's connection"
[ ! -e "$SOCK" ] || fail "moat left its socket behind"
pass "QEMU guest over -netdev vhost-user: DHCP, ping, HTTP token and 4 MiB intact through moat-vhost"
