#!/usr/bin/env bash
# Prove by emulation that the lean (torch-free) interformer-edge package works on aarch64.
# See `scripts/arm64/run.sh --help` and scripts/arm64/README.md.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/../.." && pwd)

ROOT=${ARM64_ROOT:-/var/tmp/interformer-arm64-root}
SUITE=${ARM64_SUITE:-bookworm}
MIRROR=${ARM64_MIRROR:-http://deb.debian.org/debian}
CPU_PROFILE=${ARM64_CPU:-pi5}
MODE=${ARM64_MODE:-auto}
ARTIFACTS=${ARTIFACTS:-auto}
BENCH=${ARM64_BENCH:-cli}
BENCH_SIZE=${ARM64_BENCH_SIZE:-320}
BENCH_RUNS=${ARM64_BENCH_RUNS:-3}
BENCH_LIMIT=${ARM64_BENCH_LIMIT:-1}
BENCH_CLICKS=${ARM64_BENCH_CLICKS:-3}
THREADS=${ARM64_THREADS:-$(nproc)}
CA_BUNDLE=${ARM64_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
TEST_EXPORTS=${ARM64_TEST_EXPORTS:-auto}
HOST_PYTHON=${ARM64_HOST_PYTHON:-}
TEST_EXTRAS=${ARM64_TEST_EXTRAS:-pytest>=8 scipy>=1.10 openvino>=2024.0 onnx>=1.16}
NICE=${ARM64_NICE:-10}
FAKE_CPUINFO=1
REBUILD=0
RUN_TESTS=1
OPEN_SHELL=0
PYTEST_EXTRA=()

# Paths inside the emulated root.
IN_BASE=/opt/interformer-edge
IN_SRC=$IN_BASE/src
IN_VENV=$IN_BASE/venv
IN_TEST_VENV=$IN_BASE/venv-test
IN_ARTIFACTS=$IN_BASE/artifacts
IN_BENCH_OUT=/tmp/interformer-bench
IN_TEST_EXPORTS=$IN_BASE/test-exports
IN_CPUINFO=/etc/interformer-edge/cpuinfo
IN_CA=/etc/interformer-edge/host-ca.crt
ROOT_OK_MARK=.interformer-arm64-root-ok
DEB_INCLUDE=python3,python3-venv,ca-certificates

usage() {
    cat <<EOF
Usage: scripts/arm64/run.sh [options] [-- extra pytest args]
       make test-arm64 [ARTIFACTS=/path/to/export]

Proves by emulation (qemu-user, Debian $SUITE arm64 root) that the lean, torch-free
interformer-edge package installs from PyPI wheels and works on aarch64 (Raspberry Pi 4/5 class):

  1. installs host tools if missing (debootstrap, qemu-user-static, binfmt-support; proot if needed)
  2. builds a Debian arm64 root with debootstrap (cached: later runs reuse it)
  3. creates a venv in the root and runs 'pip install <copy of this repo>' (aarch64 wheels from PyPI),
     checks that torch is NOT installed; pytest + scipy go into a separate test venv
  4. mounts /proc (with a Raspberry-Pi-style /proc/cpuinfo bound over it), /sys, /dev in a private
     mount namespace, so nothing can leak onto the host
  5. runs (a) an import smoke test, (b) the torch-free tests, (c) a short interformer-bench of an
     export (\$ARTIFACTS; by default the bundled model, exported on the host with torch and cached):
     latency, memory, parity and accuracy, labelled EMULATED — not Raspberry Pi figures
  6. prints a summary; exits non-zero if any step failed

Options (environment variable in brackets):
  --root DIR          arm64 root location, outside the repo [ARM64_ROOT, default $ROOT]
  --artifacts auto|none|DIR
                      export folder to benchmark (manifest.json + graphs, e.g. with an int8 decoder
                      from interformer-quantize); auto: the bundled default model, exported on the
                      host (host python with torch, see --test-exports) into ROOT.default-export,
                      cached by source hash; none: no benchmark [ARTIFACTS, default $ARTIFACTS]
  --cpu pi5|pi4       emulated board: pi5 = Cortex-A76 (QEMU_CPU=cortex-a76, dotprod),
                      pi4 = Cortex-A72 (QEMU_CPU=cortex-a72, no dotprod) [ARM64_CPU, default $CPU_PROFILE]
  --mode auto|binfmt|proot
                      how arm64 programs run: binfmt_misc + chroot, or PRoot with qemu (no binfmt
                      needed); auto tries binfmt first [ARM64_MODE, default $MODE]
  --bench cli|none    benchmark with the lean venv's interformer-bench, or none [ARM64_BENCH, default $BENCH]:
                      sizes ARM64_BENCH_SIZE=$BENCH_SIZE (square), ARM64_BENCH_RUNS=$BENCH_RUNS timed runs,
                      accuracy on ARM64_BENCH_LIMIT=$BENCH_LIMIT held-out object(s) x ARM64_BENCH_CLICKS=$BENCH_CLICKS
                      clicks; ARM64_BENCH_ARGS replaces those flags. Report: LOGS/bench-report/
  --threads N         largest thread count of the benchmark (it measures 1 and N)
                      [ARM64_THREADS, default $THREADS]
  --no-tests          skip the pytest step
  --test-exports auto|none|DIR
                      model folders for the runtime tests' light_export/tiny_export fixtures, which
                      conftest builds with torch: DIR holds prebuilt light/ tiny/ exports; auto builds
                      them on the host with scripts/arm64/make_test_exports.py (needs a host python
                      with torch, ARM64_HOST_PYTHON, default the repo's .venv or /work/venv; cached by
                      source hash in ROOT.test-exports); none: those tests are skipped
                      [ARM64_TEST_EXPORTS, default $TEST_EXPORTS]
  --no-fake-cpuinfo   do NOT bind a Raspberry Pi cpuinfo over /proc/cpuinfo (reproduces the trap)
  --rebuild           delete the cached root and build it again
  --shell             after setup, open an interactive shell inside the root
  --clean             delete the cached root and exit
  -h, --help          this text

Other environment: ARM64_SUITE ($SUITE), ARM64_MIRROR ($MIRROR),
  ARM64_CA_BUNDLE (host CA bundle copied into the root for pip; default $CA_BUNDLE),
  ARM64_TEST_EXTRAS (test venv additions, default "$TEST_EXTRAS"),
  ARM64_QEMU_CPU (override the qemu CPU model, e.g. max), ARM64_NICE (niceness of emulated
  processes, default $NICE; the machine is shared).
Needs root (debootstrap, chroot, mounts).
EOF
}

log() { printf '\033[1;34m[arm64]\033[0m %s\n' "$*"; }
warn() { printf '\033[1;33m[arm64] warning:\033[0m %s\n' "$*" >&2; }
die() {
    printf '\033[1;31m[arm64] error:\033[0m %s\n' "$*" >&2
    exit 1
}

while (($#)); do
    case $1 in
    -h | --help) usage; exit 0 ;;
    --root) ROOT=${2:?--root needs a directory}; shift 2 ;;
    --artifacts) ARTIFACTS=${2:?--artifacts needs a directory}; shift 2 ;;
    --cpu) CPU_PROFILE=${2:?--cpu needs pi5 or pi4}; shift 2 ;;
    --mode) MODE=${2:?--mode needs auto, binfmt or proot}; shift 2 ;;
    --bench) BENCH=${2:?--bench needs script, cli or none}; shift 2 ;;
    --threads) THREADS=${2:?--threads needs a number}; shift 2 ;;
    --no-tests) RUN_TESTS=0; shift ;;
    --test-exports) TEST_EXPORTS=${2:?--test-exports needs auto, none or a directory}; shift 2 ;;
    --no-fake-cpuinfo) FAKE_CPUINFO=0; shift ;;
    --rebuild) REBUILD=1; shift ;;
    --shell) OPEN_SHELL=1; shift ;;
    --clean) REBUILD=2; shift ;;
    --) shift; PYTEST_EXTRA=("$@"); break ;;
    *) usage >&2; die "unknown argument: $1" ;;
    esac
done

case $CPU_PROFILE in
pi5) QEMU_CPU_MODEL=cortex-a76 ;;
pi4) QEMU_CPU_MODEL=cortex-a72 ;;
*) die "--cpu must be pi5 or pi4, not '$CPU_PROFILE'" ;;
esac
QEMU_CPU_MODEL=${ARM64_QEMU_CPU:-$QEMU_CPU_MODEL}
CPUINFO_SRC=$SCRIPT_DIR/cpuinfo/$CPU_PROFILE.txt
[[ $MODE == auto || $MODE == binfmt || $MODE == proot ]] || die "--mode must be auto, binfmt or proot"
[[ $BENCH == cli || $BENCH == none ]] || die "--bench must be cli or none"
[[ $THREADS =~ ^[1-9][0-9]*$ ]] || die "--threads must be a positive integer"
[[ $ROOT == /* ]] || die "the root must be an absolute path (got '$ROOT')"
ROOT=${ROOT%/}
case $ROOT in
/ | /bin* | /boot* | /dev* | /etc* | /lib* | /proc* | /sbin* | /sys* | /usr | /usr/* | /var | /tmp | /work | /root | /home)
    die "refusing to use '$ROOT' as the arm64 root; pick a dedicated directory" ;;
"$REPO_DIR" | "$REPO_DIR"/*) die "the root must live outside the repository ($REPO_DIR)" ;;
esac
((EUID == 0)) || die "run as root (debootstrap, chroot and mounts need it)"
[[ -r $CPUINFO_SRC ]] || die "missing $CPUINFO_SRC"
if [[ $ARTIFACTS != auto && $ARTIFACTS != none ]]; then
    ARTIFACTS=$(cd "$ARTIFACTS" 2>/dev/null && pwd) || die "ARTIFACTS folder not found: ${ARTIFACTS}"
    [[ -f $ARTIFACTS/manifest.json ]] || die "ARTIFACTS=$ARTIFACTS has no manifest.json (not an export folder)"
fi

if [[ $TEST_EXPORTS != auto && $TEST_EXPORTS != none ]]; then
    TEST_EXPORTS=$(cd "$TEST_EXPORTS" 2>/dev/null && pwd) || die "test exports folder not found: $TEST_EXPORTS"
fi

LOG_DIR=$ROOT.logs
mkdir -p "$(dirname "$ROOT")" "$LOG_DIR"
exec 9>"$ROOT.lock"
flock -n 9 || die "another run is using $ROOT (lock $ROOT.lock)"

# ----------------------------------------------------------------------------------------------
# Mounts. Commands in the root run inside a private mount namespace (unshare), so their mounts
# vanish with them even on SIGKILL; the EXIT trap below additionally unmounts anything found under
# the root in the host namespace (e.g. after a crash of an older version or a manual chroot).

mounts_under_root() {
    findmnt -rn -o TARGET | awk -v r="$ROOT" 'index($0, r "/") == 1' | sort -r
}

unmount_root() {
    local target
    while read -r target; do
        [[ -n $target ]] || continue
        umount "$target" 2>/dev/null || umount -l "$target" 2>/dev/null || warn "could not unmount $target"
    done < <(mounts_under_root)
}

RUN_START=$SECONDS
RUN_MODE=$MODE
cleanup() {
    local rc=$?
    unmount_root
    if [[ -n $(mounts_under_root) ]]; then
        warn "mounts left under $ROOT:"
        mounts_under_root >&2
        rc=1
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ----------------------------------------------------------------------------------------------
# Steps and the summary. A step runs in a subshell with `set -e`; its status is recorded, never
# returned, so callers decide whether a failure stops the run (setup) or not (checks).

SUMMARY=()
FAILED=0
LAST_RC=0
step() {
    local name=$1 start=$SECONDS
    shift
    log "── $name"
    set +e
    (set -e; "$@")
    LAST_RC=$?
    set -e
    local took=$((SECONDS - start))
    if ((LAST_RC == 0)); then
        SUMMARY+=("$(printf '%-6s %-44s %5ss' PASS "$name" "$took")")
    else
        SUMMARY+=("$(printf '%-6s %-44s %5ss  (exit %s)' FAIL "$name" "$took" "$LAST_RC")")
        FAILED=1
        warn "step failed: $name (exit $LAST_RC)"
    fi
    if ((LAST_RC == 130 || LAST_RC == 143)); then # interrupted (SIGINT/SIGTERM): stop here
        print_summary
        die "interrupted"
    fi
}
skip() { SUMMARY+=("$(printf '%-6s %-44s %6s  %s' SKIP "$1" - "$2")"); }

INFO=()
print_summary() {
    local size
    size=$(du -sh --one-file-system "$ROOT" 2>/dev/null | cut -f1) || size='?'
    echo
    log "════════════════════════ summary ════════════════════════"
    printf '  %s\n' "${SUMMARY[@]}"
    echo
    printf '  %-22s %s\n' "mode" "$RUN_MODE" "root" "$ROOT ($size)" "emulated cpu" \
        "$CPU_PROFILE (QEMU_CPU=$QEMU_CPU_MODEL, fake cpuinfo: $([[ $FAKE_CPUINFO == 1 ]] && echo yes || echo NO))" \
        "logs" "$LOG_DIR" "total time" "$((SECONDS - RUN_START)) s"
    local line
    for line in "${INFO[@]}"; do printf '  %s\n' "$line"; done
    if ((FAILED)); then log "RESULT: FAILED"; else log "RESULT: OK — the lean package works on emulated aarch64"; fi
}
abort_if_failed() {
    if ((LAST_RC != 0)); then
        print_summary
        die "$1"
    fi
}

# ----------------------------------------------------------------------------------------------
# Host side.

APT_STAMP=$LOG_DIR/.apt-updated # a file, not a variable: steps run in subshells
rm -f "$APT_STAMP"
apt_install() {
    if [[ ! -e $APT_STAMP ]]; then
        log "apt-get update"
        apt-get update -qq
        touch "$APT_STAMP"
    fi
    log "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

host_tools() {
    local missing=()
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    command -v qemu-aarch64-static >/dev/null || missing+=(qemu-user-static)
    command -v update-binfmts >/dev/null || missing+=(binfmt-support)
    command -v unshare >/dev/null || missing+=(util-linux)
    if [[ $MODE == proot ]] && ! command -v proot >/dev/null; then missing+=(proot); fi
    if ((${#missing[@]})); then apt_install "${missing[@]}"; else log "host tools present"; fi
    qemu-aarch64-static --version | head -n1
}

# binfmt_misc: mount it if needed and enable the qemu-aarch64 handler. Returns non-zero if arm64
# ELF files cannot be executed transparently (then PRoot is used).
BINFMT_NOTE="not used (--mode proot)"
setup_binfmt() {
    local dir=/proc/sys/fs/binfmt_misc
    if ! mountpoint -q "$dir"; then
        if ! mount -t binfmt_misc binfmt_misc "$dir" 2>/dev/null; then
            BINFMT_NOTE="binfmt_misc cannot be mounted here"
            return 1
        fi
        log "mounted binfmt_misc on $dir"
    fi
    if ! grep -qx enabled "$dir/qemu-aarch64" 2>/dev/null; then
        update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
    fi
    if ! grep -qx enabled "$dir/qemu-aarch64" 2>/dev/null; then
        BINFMT_NOTE="qemu-aarch64 handler could not be registered"
        return 1
    fi
    if ! grep -q '^flags:.*F' "$dir/qemu-aarch64"; then
        # Without the F (fix-binary) flag the interpreter path is resolved inside the chroot.
        BINFMT_INTERP=$(awk '/^interpreter/ {print $2}' "$dir/qemu-aarch64")
    fi
    BINFMT_NOTE="qemu-aarch64 registered ($(awk '/^flags/ {print $2}' "$dir/qemu-aarch64") flags)"
    return 0
}
BINFMT_INTERP=

# The environment inside the root: reset, QEMU_CPU selects the emulated core (qemu reads it).
root_env() {
    local env=(env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
        LANG=C.UTF-8 TERM="${TERM:-dumb}" QEMU_CPU="$QEMU_CPU_MODEL" PIP_DISABLE_PIP_VERSION_CHECK=1
        PIP_DEFAULT_TIMEOUT=120 PYTHONUNBUFFERED=1)
    if [[ -f $ROOT$IN_CA ]]; then env+=(PIP_CERT="$IN_CA" SSL_CERT_FILE="$IN_CA" REQUESTS_CA_BUNDLE="$IN_CA"); fi
    local var
    for var in PIP_INDEX_URL PIP_EXTRA_INDEX_URL http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
        if [[ -n ${!var:-} ]]; then env+=("$var=${!var}"); fi
    done
    printf '%s\0' "${env[@]}"
}

# The mount-and-chroot helper run by `unshare --mount` (binfmt mode). Its own EXIT trap unmounts;
# the namespace guarantees the rest.
# shellcheck disable=SC2016  # expanded by the inner bash
ENTER_SNIPPET='
set -euo pipefail
root=$1 cpuinfo=$2; shift 2
mounted=()
cleanup() { local i; for ((i=${#mounted[@]}-1; i>=0; i--)); do umount "${mounted[i]}" 2>/dev/null || umount -l "${mounted[i]}"; done; }
trap cleanup EXIT
m() { mount "$@"; mounted+=("${!#}"); }
m -t proc proc "$root/proc"
if [[ -n $cpuinfo ]]; then m --bind "$root$cpuinfo" "$root/proc/cpuinfo"; fi
m -t sysfs -o ro sysfs "$root/sys"
m --bind /dev "$root/dev"
m --bind /dev/pts "$root/dev/pts"
m -t tmpfs -o size=256m tmpfs "$root/dev/shm"
chroot "$root" "$@"
'

# Run a command inside the root (niced: the machine is shared). IN_ROOT_BARE=1: no mounts of ours
# (debootstrap's second stage mounts /proc and /sys itself; the namespace drops them afterwards).
in_root() {
    local -a env
    mapfile -d '' env < <(root_env)
    local cpuinfo=
    if ((FAKE_CPUINFO)); then cpuinfo=$IN_CPUINFO; fi
    if [[ $RUN_MODE == binfmt ]]; then
        if [[ ${IN_ROOT_BARE:-0} == 1 ]]; then
            nice -n "$NICE" unshare --mount --propagation private -- chroot "$ROOT" "${env[@]}" "$@"
        else
            nice -n "$NICE" unshare --mount --propagation private -- \
                bash -c "$ENTER_SNIPPET" enter "$ROOT" "$cpuinfo" "${env[@]}" "$@"
        fi
    else
        local binds=(-b /dev -b /proc -b /sys)
        if [[ -n $cpuinfo && ${IN_ROOT_BARE:-0} != 1 ]]; then binds+=(-b "$ROOT$cpuinfo:/proc/cpuinfo"); fi
        nice -n "$NICE" proot -q "qemu-aarch64-static -cpu $QEMU_CPU_MODEL" -0 -r "$ROOT" -w /root \
            "${binds[@]}" "${env[@]}" "$@"
    fi
}

# Run a shell script inside the root, logging its output to $LOG_DIR/<name>.log.
in_root_sh() {
    local name=$1 script=$2
    in_root /bin/bash -euo pipefail -c "$script" 2>&1 | tee "$LOG_DIR/$name.log"
}

remove_root() {
    unmount_root
    [[ -z $(mounts_under_root) ]] || die "mounts remain under $ROOT; not deleting it"
    if [[ -e $ROOT ]]; then
        log "deleting $ROOT"
        rm -rf --one-file-system "$ROOT"
    fi
}

# ----------------------------------------------------------------------------------------------
# Root file system.

build_root() {
    if [[ -f $ROOT/$ROOT_OK_MARK ]]; then
        log "reusing cached root $ROOT (built $(cat "$ROOT/$ROOT_OK_MARK"))"
        return 0
    fi
    if [[ -e $ROOT ]]; then
        warn "$ROOT exists but is incomplete (interrupted build?); rebuilding"
        remove_root
    fi
    log "debootstrap stage 1: $SUITE arm64 (minbase + $DEB_INCLUDE) from $MIRROR"
    debootstrap --arch=arm64 --variant=minbase --foreign --include="$DEB_INCLUDE" \
        "$SUITE" "$ROOT" "$MIRROR" >"$LOG_DIR/debootstrap-1.log" 2>&1 ||
        { tail -n 20 "$LOG_DIR/debootstrap-1.log" >&2; return 1; }
    install_interp
    # PRoot: /proc must be a directory to bind onto (a /proc -> /proc symlink loops), and dash's
    # `[ -x ]` is wrong under PRoot's fake root, so debootstrap cannot find its own directory.
    if [[ -L $ROOT/proc ]]; then rm -f "$ROOT/proc" && mkdir "$ROOT/proc"; fi
    log "debootstrap stage 2 under qemu ($RUN_MODE); slow, several minutes"
    IN_ROOT_BARE=1 in_root /usr/bin/env DEBOOTSTRAP_DIR=/debootstrap /debootstrap/debootstrap --second-stage \
        >"$LOG_DIR/debootstrap-2.log" 2>&1 ||
        { tail -n 20 "$LOG_DIR/debootstrap-2.log" >&2; return 1; }
    rm -f "$ROOT"/var/cache/apt/archives/*.deb
    date -u +%Y-%m-%dT%H:%M:%SZ >"$ROOT/$ROOT_OK_MARK"
}

install_interp() {
    if [[ -n $BINFMT_INTERP ]]; then
        mkdir -p "$ROOT$(dirname "$BINFMT_INTERP")"
        cp "$(command -v qemu-aarch64-static)" "$ROOT$BINFMT_INTERP"
    fi
}

# Can arm64 programs of the root run through binfmt_misc + chroot?
binfmt_runs_root() {
    [[ -x $ROOT/bin/true || -x $ROOT/usr/bin/true ]] || return 1
    unshare --mount --propagation private -- chroot "$ROOT" /usr/bin/true 2>/dev/null
}

prepare_root_files() {
    mkdir -p "$ROOT/etc/interformer-edge" "$ROOT$IN_BASE"
    cp "$CPUINFO_SRC" "$ROOT$IN_CPUINFO"
    cp /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
    if [[ -r $CA_BUNDLE ]]; then cp "$CA_BUNDLE" "$ROOT$IN_CA"; else rm -f "$ROOT$IN_CA"; fi
}

sync_source() {
    local dest=$ROOT$IN_SRC
    rm -rf "$dest"
    mkdir -p "$dest"
    if git -C "$REPO_DIR" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        # Tracked + untracked-but-not-ignored files: the work tree as the lead sees it, no venvs/artifacts.
        (cd "$REPO_DIR" && git ls-files -z --cached --others --exclude-standard |
            while IFS= read -r -d '' f; do [[ -f $f ]] && printf '%s\0' "$f"; done |
            tar --null -T - -cf -) | tar -C "$dest" -xf -
    else
        tar -C "$REPO_DIR" --exclude=.git --exclude=__pycache__ --exclude='*.egg-info' --exclude=.venv \
            --exclude=./artifacts --exclude=./runs --exclude=./build --exclude=./dist -cf - . | tar -C "$dest" -xf -
    fi
    log "copied $(find "$dest" -type f | wc -l) files ($(du -sh "$dest" | cut -f1)) to $IN_SRC"
}

# A host python with torch (for the exports the emulated root cannot make): ARM64_HOST_PYTHON, else
# the repository's .venv, else /work/venv. Prints its path; fails if none has torch.
host_python() {
    local candidates=("$REPO_DIR/.venv/bin/python" /work/venv/bin/python) python
    if [[ -n $HOST_PYTHON ]]; then candidates=("$HOST_PYTHON"); fi
    for python in "${candidates[@]}"; do
        if [[ -x $python ]] && "$python" -c 'import torch' 2>/dev/null; then
            echo "$python"
            return 0
        fi
    done
    log "no host python with torch (${candidates[*]}); set ARM64_HOST_PYTHON" >&2
    return 1
}

# Host side: build (or reuse) the small exports the runtime tests' fixtures would build with torch.
TEST_EXPORTS_CACHE=$ROOT.test-exports
build_test_exports() {
    local python
    python=$(host_python) || { log "use --test-exports DIR|none instead"; return 1; }
    local key
    key=$(cd "$REPO_DIR" && {
        cat tests/conftest.py scripts/arm64/make_test_exports.py
        find core models export runtime package -name '*.py' -print0 | sort -z | xargs -0 cat
    } | sha256sum | cut -c1-16)
    if [[ -f $TEST_EXPORTS_CACHE/.key && $(cat "$TEST_EXPORTS_CACHE/.key") == "$key" ]]; then
        log "reusing test exports in $TEST_EXPORTS_CACHE (source hash $key)"
        return 0
    fi
    log "building test exports with $python (light, tiny) into $TEST_EXPORTS_CACHE"
    rm -rf "$TEST_EXPORTS_CACHE"
    (cd /tmp && nice -n "$NICE" "$python" "$REPO_DIR/scripts/arm64/make_test_exports.py" "$TEST_EXPORTS_CACHE") \
        >"$LOG_DIR/test-exports.log" 2>&1 || { tail -n 15 "$LOG_DIR/test-exports.log" >&2; return 1; }
    echo "$key" >"$TEST_EXPORTS_CACHE/.key"
    cat "$LOG_DIR/test-exports.log"
}

sync_test_exports() {
    rm -rf "$ROOT$IN_TEST_EXPORTS"
    local source=$TEST_EXPORTS
    [[ $source == auto ]] && source=$TEST_EXPORTS_CACHE
    if [[ $source != none && -d $source ]]; then
        cp -a "$source" "$ROOT$IN_TEST_EXPORTS"
        log "copied test exports $source to $IN_TEST_EXPORTS: $(cd "$source" && echo */)"
    fi
}

# Host side: the bundled default model exported with interformer-export (what `--artifacts auto`
# benchmarks), cached by the checkpoint and the exporter's sources.
DEFAULT_EXPORT_CACHE=$ROOT.default-export
build_default_export() {
    local python key
    python=$(host_python) || { log "use --artifacts DIR|none instead"; return 1; }
    key=$(cd "$REPO_DIR" && {
        sha256sum assets/*.pth
        find core models export runtime package -name '*.py' -print0 | sort -z | xargs -0 cat
    } | sha256sum | cut -c1-16)
    if [[ -f $DEFAULT_EXPORT_CACHE/manifest.json && -f $DEFAULT_EXPORT_CACHE.key &&
        $(cat "$DEFAULT_EXPORT_CACHE.key") == "$key" ]]; then
        log "reusing the default export in $DEFAULT_EXPORT_CACHE (source hash $key)"
        return 0
    fi
    log "exporting the bundled default model with $python into $DEFAULT_EXPORT_CACHE"
    rm -rf "$DEFAULT_EXPORT_CACHE" "$DEFAULT_EXPORT_CACHE.key"
    (cd /tmp && nice -n "$NICE" "$python" -m interformer_edge.export.cli -o "$DEFAULT_EXPORT_CACHE" -q) \
        >"$LOG_DIR/default-export.log" 2>&1 || { tail -n 15 "$LOG_DIR/default-export.log" >&2; return 1; }
    echo "$key" >"$DEFAULT_EXPORT_CACHE.key"
    cat "$LOG_DIR/default-export.log"
}

sync_artifacts() {
    rm -rf "$ROOT$IN_ARTIFACTS"
    if [[ -d $ARTIFACTS ]]; then
        cp -a "$ARTIFACTS" "$ROOT$IN_ARTIFACTS"
        log "copied $ARTIFACTS ($(du -sh "$ARTIFACTS" | cut -f1)) to $IN_ARTIFACTS"
    fi
}

copy_into_root() {
    prepare_root_files
    sync_source
    sync_artifacts
    sync_test_exports
}

# ----------------------------------------------------------------------------------------------
# Inside the root.

install_lean() {
    in_root_sh install-lean "
        [[ -x $IN_VENV/bin/python ]] || python3 -m venv $IN_VENV
        $IN_VENV/bin/python -m pip install --prefer-binary $IN_SRC
        echo '--- lean venv:'
        $IN_VENV/bin/python -m pip list --format=freeze
        if $IN_VENV/bin/python -m pip show torch >/dev/null 2>&1; then
            echo 'FAIL: torch is installed in the lean venv' >&2; exit 1
        fi
        echo 'torch: not installed (good)'
    "
}

smoke() {
    in_root_sh smoke "
        cd /tmp
        $IN_VENV/bin/python -c 'import platform, onnxruntime, interformer_edge.runtime; print(\"import ok:\", platform.machine(), \"onnxruntime\", onnxruntime.__version__)'
        $IN_VENV/bin/python $IN_SRC/scripts/arm64/smoke.py
    "
}

# The test venv sees the lean venv's packages through a .pth file and adds only $TEST_EXTRAS
# (scipy: reference implementation in tests/test_clicks.py; openvino: the runtime tests compare
# both backends; onnx: tests that build graph variants, e.g. an int8 decoder), so the lean venv
# stays exactly what 'pip install .' gives.
install_test_tools() {
    in_root_sh install-test-tools "
        [[ -x $IN_TEST_VENV/bin/python ]] || python3 -m venv $IN_TEST_VENV
        site=\$($IN_TEST_VENV/bin/python -c 'import sysconfig; print(sysconfig.get_paths()[\"purelib\"])')
        lean=\$($IN_VENV/bin/python -c 'import sysconfig; print(sysconfig.get_paths()[\"purelib\"])')
        echo \"\$lean\" > \"\$site/interformer-lean-venv.pth\"
        $IN_TEST_VENV/bin/python -m pip install --prefer-binary $TEST_EXTRAS
        $IN_TEST_VENV/bin/python -c 'import importlib.util as u, numpy; assert u.find_spec(\"torch\") is None, \"torch visible\"; print(\"tests use numpy\", numpy.__version__, \"from\", numpy.__file__)'
        if [[ -d \$site/numpy ]]; then echo 'FAIL: pip put a second numpy into the test venv' >&2; exit 1; fi
    "
}

run_pytest() {
    local extra=""
    if ((${#PYTEST_EXTRA[@]})); then extra=$(printf ' %q' "${PYTEST_EXTRA[@]}"); fi
    in_root_sh pytest "
        cd $IN_SRC
        if [[ -d $IN_TEST_EXPORTS ]]; then export INTERFORMER_TEST_EXPORTS=$IN_TEST_EXPORTS; fi
        rm -rf /tmp/pytest-of-root  # earlier runs' temporary folders (copies of the exports)
        trap 'rm -rf /tmp/interformer-pytest' EXIT
        $IN_TEST_VENV/bin/python scripts/arm64/run_tests.py --tests tests -- --basetemp=/tmp/interformer-pytest$extra
    "
}

run_bench() {
    # A short interformer-bench in the lean venv (no torch: no PyTorch row; no openvino: ONNX Runtime
    # only): every precision the export has, 1 and $THREADS threads, memory of a fresh process and
    # accuracy on a few held-out objects. Labelled as emulated in the terminal, report.json and report.md.
    local label="EMULATED (qemu $QEMU_CPU_MODEL, $CPU_PROFILE cpuinfo) — not Raspberry Pi figures"
    local args="--threads 1,$THREADS --sizes ${BENCH_SIZE}x$BENCH_SIZE --runs $BENCH_RUNS --budget 0 --warmup 1"
    args+=" --limit $BENCH_LIMIT --clicks $BENCH_CLICKS --memory-clicks $BENCH_CLICKS"
    args=${ARM64_BENCH_ARGS:-$args}
    rm -rf "$LOG_DIR/bench-report"
    local rc=0
    in_root_sh bench "
        cd /tmp
        rm -rf $IN_BENCH_OUT
        $IN_VENV/bin/interformer-bench $IN_ARTIFACTS $args --emulated '$label' --out $IN_BENCH_OUT
        $IN_VENV/bin/python $IN_SRC/scripts/arm64/bench_summary.py $IN_BENCH_OUT/report.json
    " || rc=$?
    if [[ -d $ROOT$IN_BENCH_OUT ]]; then
        cp -a "$ROOT$IN_BENCH_OUT" "$LOG_DIR/bench-report"
        log "benchmark report: $LOG_DIR/bench-report/report.md"
    fi
    return "$rc"
}

# ----------------------------------------------------------------------------------------------

main() {
    if ((REBUILD)); then
        remove_root
        rm -rf "$LOG_DIR"
        mkdir -p "$LOG_DIR"
        if ((REBUILD == 2)); then log "cleaned"; trap - EXIT; exit 0; fi
    fi
    log "repo $REPO_DIR → arm64 root $ROOT (profile $CPU_PROFILE, QEMU_CPU=$QEMU_CPU_MODEL)"

    step "host tools" host_tools
    abort_if_failed "could not install the host tools"

    RUN_MODE=$MODE
    if [[ $MODE != proot ]]; then
        if setup_binfmt; then
            RUN_MODE=binfmt
        elif [[ $MODE == binfmt ]]; then
            die "binfmt mode requested but: $BINFMT_NOTE"
        else
            warn "binfmt_misc unusable ($BINFMT_NOTE); falling back to PRoot + qemu"
            RUN_MODE=proot
        fi
    fi
    if [[ $RUN_MODE == proot ]] && ! command -v proot >/dev/null; then apt_install proot; fi
    INFO+=("$(printf '%-22s %s' binfmt_misc "$BINFMT_NOTE")")
    log "execution mode: $RUN_MODE ($BINFMT_NOTE)"

    step "arm64 root ($SUITE, debootstrap, cached)" build_root
    abort_if_failed "could not build the arm64 root (logs in $LOG_DIR)"
    if [[ $RUN_MODE == binfmt ]] && ! binfmt_runs_root; then
        [[ $MODE == auto ]] || die "binfmt is registered but cannot run $ROOT/usr/bin/true"
        warn "binfmt is registered but arm64 programs do not run; falling back to PRoot"
        RUN_MODE=proot
        command -v proot >/dev/null || apt_install proot
    fi

    if ((RUN_TESTS)) && [[ $TEST_EXPORTS == auto ]]; then
        step "test exports (host, torch; cached)" build_test_exports
        ((LAST_RC == 0)) || rm -rf "$TEST_EXPORTS_CACHE"
    fi
    if [[ $BENCH != none && $ARTIFACTS == auto ]]; then
        step "default model export (host, torch; cached)" build_default_export
        if ((LAST_RC == 0)); then ARTIFACTS=$DEFAULT_EXPORT_CACHE; else ARTIFACTS=none; fi
    fi
    step "copy repo (+ artifacts) into the root" copy_into_root
    abort_if_failed "could not copy the repository into the root"

    step "venv + pip install <repo> (lean, no torch)" install_lean
    abort_if_failed "the lean package does not install on aarch64"
    local versions
    versions=$(grep -E '^(numpy|onnxruntime|pillow|typer|rich|psutil)==' "$LOG_DIR/install-lean.log" | tr '\n' ' ') || true
    INFO+=("$(printf '%-22s %s' 'lean venv' "$versions")")

    if ((OPEN_SHELL)); then
        log "interactive shell in the root (exit to continue)"
        in_root /bin/bash -l || true
    fi

    step "(a) import smoke test" smoke
    local facts
    facts=$(grep -E '^(machine|cpuinfo_model|hwcap|onnxruntime):' "$LOG_DIR/smoke.log" 2>/dev/null | tr '\n' ';' | sed 's/;/; /g') || true
    INFO+=("$(printf '%-22s %s' 'smoke' "${facts:-n/a}")")

    if ((RUN_TESTS)); then
        step "test venv (pytest, scipy)" install_test_tools
        if ((LAST_RC == 0)); then
            step "(b) pytest (torch-free tests)" run_pytest
            local result
            result=$(grep -E '(passed|failed|error)' "$LOG_DIR/pytest.log" | tail -n1) || true
            INFO+=("$(printf '%-22s %s' 'pytest' "${result:-n/a}")")
        else
            skip "(b) pytest (torch-free tests)" "test venv failed"
        fi
    else
        skip "(b) pytest (torch-free tests)" "--no-tests"
    fi

    if [[ $BENCH == none ]]; then
        skip "(c) benchmark" "--bench none"
    elif [[ ! -d $ARTIFACTS ]]; then
        skip "(c) benchmark" "no export to benchmark (--artifacts none, or the default export failed)"
    else
        step "(c) interformer-bench (EMULATED)" run_bench
        local line
        while IFS= read -r line; do
            INFO+=("$(printf '%-22s %s' 'bench (EMULATED)' "${line#BENCH_SUMMARY }")")
        done < <(grep -E '^BENCH_SUMMARY' "$LOG_DIR/bench.log" 2>/dev/null || echo "BENCH_SUMMARY see $LOG_DIR/bench.log")
    fi

    print_summary
    return "$FAILED"
}

main
