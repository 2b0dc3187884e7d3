#!/bin/busybox sh
# /init of the memcg-bpf VM: mount the host root read-only over 9p, add
# writable /tmp, the caller's directory, cgroup2, bpffs, debugfs, tracefs,
# run the job as root, write its exit code for the host, power off.
/bin/busybox mkdir -p /bin /proc /sys /dev /newroot /job
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
P9="trans=virtio,version=9p2000.L,msize=262144"
fail() {
	echo "memcg-bpf-vm: $*" > /dev/ttyS2
	echo 126 > /job/rc
	sync
	reboot -f
}
mount -t 9p -o "$P9,cache=none" job /job || { echo "memcg-bpf-vm: no job share" > /dev/ttyS0; reboot -f; }
R=/newroot
mount -t 9p -o "$P9,ro,cache=loose" hostroot $R || fail "cannot mount the host root over 9p"
mount -t tmpfs -o mode=1777 tmpfs $R/tmp || fail "cannot mount /tmp"
mount -t tmpfs -o mode=755 tmpfs $R/run || fail "cannot mount /run"
mkdir -p $R/run/memcg-bpf-vm
mount -o bind /job $R/run/memcg-bpf-vm || fail "cannot bind the job share"
mount -t proc proc $R/proc
mount -t sysfs sysfs $R/sys
mount -t devtmpfs devtmpfs $R/dev
mkdir -p $R/dev/pts $R/dev/shm
mount -t devpts devpts $R/dev/pts
mount -t tmpfs -o mode=1777 tmpfs $R/dev/shm
mount -t cgroup2 cgroup2 $R/sys/fs/cgroup || fail "cannot mount cgroup2"
echo +memory > $R/sys/fs/cgroup/cgroup.subtree_control || fail "cannot enable the memory controller"
mount -t bpf bpf $R/sys/fs/bpf || fail "cannot mount bpffs"
mount -t debugfs debugfs $R/sys/kernel/debug
mount -t tracefs tracefs $R/sys/kernel/tracing
CWD=$(cat /job/cwd)
mkdir -p "$R$CWD"
mount -t 9p -o "$P9,cache=none" cwd "$R$CWD" || fail "cannot mount $CWD"
stty -F /dev/ttyS1 raw -echo
stty -F /dev/ttyS2 raw -echo
chroot $R /bin/sh /run/memcg-bpf-vm/job.sh </dev/null >/dev/ttyS1 2>/dev/ttyS2
echo $? > /job/rc
sync
reboot -f
