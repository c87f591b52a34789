#!/usr/bin/env bash
# Mount what a program in the arm64 root needs and run it there with chroot. Only this needs bash:
# harness.py runs it in a private mount namespace, so the mounts never reach the host and vanish
# with the command, even on SIGKILL:
#
#   unshare --mount --propagation private -- bash scripts/arm64/enter_root.sh ROOT CPUINFO COMMAND [ARG...]
#
# (unshare without --fork: the check below compares our namespace with our caller's.)
# ROOT: the arm64 root (absolute, outside the repository). CPUINFO: a file inside the root bound over
# /proc/cpuinfo (e.g. /etc/interformer-edge/cpuinfo), or '' for the host's. Mounts: /proc, the fake
# cpuinfo, /sys (read-only), /dev, /dev/pts and a tmpfs on /dev/shm; all unmounted again on exit.
set -euo pipefail

die() {
    printf '\033[1;31m[arm64] error:\033[0m enter_root.sh: %s\n' "$*" >&2
    exit 1
}

(($# >= 3)) || die "usage: enter_root.sh ROOT CPUINFO|'' COMMAND [ARG...]"
root=$1 cpuinfo=$2
shift 2
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

((EUID == 0)) || die "run as root (mount and chroot need it)"
[[ $root == /?* && $root != */ ]] || die "ROOT must be absolute, without a trailing slash (got '$root')"
case $root in
/bin* | /boot* | /dev* | /etc* | /lib* | /proc* | /sbin* | /sys* | /usr | /usr/* | /var | /tmp | /work | /root | /home)
    die "refusing to use '$root' as the arm64 root" ;;
"$repo" | "$repo"/*) die "the root must live outside the repository ($repo)" ;;
esac
for dir in proc sys dev; do
    [[ -d $root/$dir && ! -L $root/$dir ]] || die "$root/$dir is not a directory: not a complete root"
done
# The mounts below must stay in a namespace of our own: refuse to run in the host's, i.e. PID 1's or,
# if that cannot be read (containers, VMs), our caller's (unshare execs us, without --fork).
own_ns=$(readlink /proc/self/ns/mnt)
host_ns=$(readlink /proc/1/ns/mnt 2>/dev/null || readlink "/proc/$PPID/ns/mnt" 2>/dev/null || true)
[[ -n $own_ns && -n $host_ns && $own_ns != "$host_ns" ]] ||
    die "not in a private mount namespace; run me via unshare --mount --propagation private --"

mounted=()
# shellcheck disable=SC2317  # run by the EXIT trap
cleanup() {
    local i
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
        umount "${mounted[i]}" 2>/dev/null || umount -l "${mounted[i]}" || true
    done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mnt() {
    mount "$@"
    mounted+=("${!#}")
}
mnt -t proc proc "$root/proc"
if [[ -n $cpuinfo ]]; then mnt --bind "$root$cpuinfo" "$root/proc/cpuinfo"; fi
mnt -t sysfs -o ro sysfs "$root/sys"
mnt --bind /dev "$root/dev"
mnt --bind /dev/pts "$root/dev/pts"
mnt -t tmpfs -o size=256m tmpfs "$root/dev/shm"

status=0
chroot "$root" "$@" || status=$?
exit "$status"
