#!/bin/bash
# scripts/fresh-check.sh — `make fresh-check`: the proof that a fresh Debian 12
# machine needs nothing but what README.md says.
#
#   1. a Debian 12 (bookworm) root made by debootstrap (default variant: the
#      required + important packages of a plain install, no make, no compiler),
#      kept under var/fresh-check/base and copied afresh for every check;
#   2. HEAD of this repository (git archive: tracked files only, no build
#      outputs, no node_modules, no var/) copied to /root/atelier in it;
#   3. in a chroot (the root bind-mounted on itself, /run a tmpfs, proc, sys,
#      dev mounted; undone by the EXIT trap), as root
#      as README.md says, with a clean environment: README's prerequisite line
#      (apt-get install make), then `make run` until it prints its URLs and
#      token, a request to each printed URL, Ctrl-C (SIGINT) and a clean stop,
#      then `make test`;
#   4. each step's result and time in var/fresh-check/<stamp>/summary.txt, the
#      full output next to it, the summary copied to var/fresh-check/last.txt.
#
# Only the debootstrap base and the downloaded .deb files (var/fresh-check/
# apt-archives, bind-mounted on the root's /var/cache/apt/archives) are reused
# between checks; FRESH_CLEAN=1 removes both first, FRESH_BASE_ONLY=1 only
# makes the base. Needs root (debootstrap,
# chroot, mount) and network access to the Debian mirror and the npm registry
# (the browser and OpenAPI tests run npm ci). The chroot shares the host's
# network: if 8080/8081 are taken on the host, make run gets other ports
# (ATELIER_PORT / ATELIER_SERVE_PORT, logged). The host's resolv.conf and
# site CAs (/usr/local/share/ca-certificates) are copied in: they belong to
# the network. /usr/sbin/policy-rc.d in the
# root keeps apt from starting the packaged PostgreSQL service (nothing of
# Atelier uses it; in a chroot it would outlive the check).
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
MIRROR=${FRESH_MIRROR:-http://deb.debian.org/debian}
top="$here/var/fresh-check"
base="$top/base"
root="$top/root"
archives="$top/apt-archives"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
out="$top/$stamp"
summary="$out/summary.txt"
RUN_TIMEOUT=${FRESH_RUN_TIMEOUT:-5400}
TEST_TIMEOUT=${FRESH_TEST_TIMEOUT:-5400}

[ "$(id -u)" = 0 ] || { echo "fresh-check: needs root (debootstrap, chroot, mount)" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "fresh-check: installing debootstrap"; apt-get install -y -q debootstrap >/dev/null || exit 1; }
git rev-parse HEAD >/dev/null 2>&1 || { echo "fresh-check: not a git checkout (it copies HEAD)" >&2; exit 1; }
mkdir -p "$out" "$archives"
[ "${FRESH_CLEAN:-0}" = 1 ] && rm -rf "$base" "$archives"/*.deb

note() { echo "$*" | tee -a "$summary"; }
failed=0
# step NAME SECONDS_TAKEN RC
step() {
	local r=ok
	[ "$3" = 0 ] || { r="FAIL (exit $3)"; failed=1; }
	note "$(printf '%-28s %6ss  %s' "$1" "$2" "$r")"
}

mounted=""
run_pgid=""
cleanup() {
	[ -n "$run_pgid" ] && kill -KILL -- "-$run_pgid" 2>/dev/null
	# Anything still running with the chroot as its root (a daemon a step
	# left behind) would hold the mounts: end those, by pid.
	if [ -d "$root" ]; then
		for p in /proc/[0-9]*; do
			[ "$(readlink "$p/root" 2>/dev/null)" = "$root" ] && kill -KILL "${p#/proc/}" 2>/dev/null
		done
		sleep 1
	fi
	for m in $mounted; do umount -R "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; done
	# what ip netns bound under the root's /run (and propagated) goes too
	if [ -d "$root" ]; then
		awk -v r="$root/" 'index($2, r) == 1 {print $2}' /proc/mounts | sort -r |
			while read -r m; do umount -l "$m" 2>/dev/null; done
	fi
	mounted=""
}
trap cleanup EXIT
trap 'exit 130' INT TERM

note "fresh-check $stamp: HEAD $(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo ' (uncommitted changes are NOT copied)'), mirror $MIRROR"

# 1. the base root, made once.
t0=$(date +%s)
if [ ! -x "$base/usr/bin/apt-get" ]; then
	rm -rf "$base.tmp"
	debootstrap --arch=amd64 bookworm "$base.tmp" "$MIRROR" >"$out/debootstrap.log" 2>&1
	rc=$?
	[ $rc = 0 ] && mv "$base.tmp" "$base"
	step "debootstrap bookworm" $(($(date +%s) - t0)) $rc
	[ $rc = 0 ] || { note "see $out/debootstrap.log"; exit 1; }
else
	step "debootstrap (cached base)" $(($(date +%s) - t0)) 0
fi

[ "${FRESH_BASE_ONLY:-0}" = 1 ] && { note "FRESH_BASE_ONLY: base made, stopping"; exit 0; }

# The network's own certificate authorities, as this host has them (a TLS
# proxy on the way to the npm registry, say): like resolv.conf, a property
# of the network, not of the machine. Put where Debian's ca-certificates
# looks for a site's CAs, its postinst (when make deps installs it) adds
# them to the system bundle. Without them npm ci fails here, though a
# machine on an open network would not need them.
copy_local_cas() {
	set -- /usr/local/share/ca-certificates/*.crt
	[ -e "$1" ] || return 0
	mkdir -p "$root/usr/local/share/ca-certificates" && cp "$@" "$root/usr/local/share/ca-certificates/" &&
		note "copied this host's local CAs into the root: $(basename -a "$@" | tr '\n' ' ')"
}

# 2. a fresh copy of it, and the repository.
t0=$(date +%s)
rm -rf "$root"
cp -a "$base" "$root" &&
	printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d" && chmod 755 "$root/usr/sbin/policy-rc.d" &&
	cp /etc/resolv.conf "$root/etc/resolv.conf" &&
	copy_local_cas &&
	printf 'deb %s bookworm main\ndeb %s bookworm-updates main\ndeb http://security.debian.org/debian-security bookworm-security main\n' \
		"$MIRROR" "$MIRROR" >"$root/etc/apt/sources.list" &&
	mkdir -p "$root/root/atelier" && git archive HEAD | tar -x -C "$root/root/atelier"
rc=$?
step "fresh root + git archive" $(($(date +%s) - t0)) $rc
[ $rc = 0 ] || exit 1
note "packages in the fresh root: $(chroot "$root" dpkg-query -W | wc -l); make: $(chroot "$root" sh -c 'command -v make || echo absent')"

# The root is a mount point of its own, and /run a tmpfs, as on a booted
# machine: `ip netns` (the hosts rig, the gang tests) makes / a slave mount
# and keeps its namespaces under /run/netns, which fails on a bare directory.
mount --bind "$root" "$root" && mount --make-private "$root" && mounted="$root $mounted"
mount -t tmpfs run "$root/run" && mounted="$root/run $mounted"
mount -t proc proc "$root/proc" && mounted="$root/proc $mounted"
mount -t sysfs sys "$root/sys" && mounted="$root/sys $mounted"
mount --rbind /dev "$root/dev" && mount --make-rslave "$root/dev" && mounted="$root/dev $mounted"
mount --bind "$archives" "$root/var/cache/apt/archives" && mounted="$root/var/cache/apt/archives $mounted"

# A login shell of root in the new machine: nothing of this host's environment.
inroot() {
	chroot "$root" /usr/bin/env -i HOME=/root USER=root LOGNAME=root SHELL=/bin/bash TERM=dumb \
		PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@" /bin/bash -lc "$CMD"
}

# 3a. README's prerequisite: make (a plain Debian 12 has none).
t0=$(date +%s)
CMD='apt-get update -q && apt-get install -y -q make' inroot >"$out/prereq.log" 2>&1
rc=$?
step "apt-get install make" $(($(date +%s) - t0)) $rc
[ $rc = 0 ] || exit 1

# 3b. make run: until it prints its URLs and token.
ports=""
for p in 8080 8081; do
	if ss -ltnH "sport = :$p" | grep -q .; then ports=busy; fi
done
envs=""
if [ -n "$ports" ]; then
	envs="ATELIER_PORT=18080 ATELIER_SERVE_PORT=18081"
	note "8080 or 8081 is taken on this host (the chroot shares its network): make run gets $envs"
fi
t0=$(date +%s)
CMD="cd /root/atelier && exec make run" setsid bash -c "$(declare -f inroot); root='$root'; CMD=\"\$CMD\"; inroot $envs" \
	>"$out/make-run.log" 2>&1 </dev/null &
runpid=$!
run_pgid=$runpid
up=0
# Milestones of make run, seen by polling its output (within 5 s): the
# package installs end where the build's first line appears, the build ends
# where run.sh's first line appears.
seen=""
milestone() {
	case " $seen " in *" $1 "*) return ;; esac
	grep -q "$2" "$out/make-run.log" || return
	seen="$seen $1"
	note "$(printf '  %-26s %6ss after make run started' "$1" $(($(date +%s) - t0)))"
}
while kill -0 $runpid 2>/dev/null; do
	milestone "packages installed, build" '^  CC '
	milestone "build done, run.sh starts" '^postgres: '
	grep -q '^Ctrl-C stops everything' "$out/make-run.log" && { up=1; break; }
	[ $(($(date +%s) - t0)) -gt "$RUN_TIMEOUT" ] && break
	sleep 5
done
t_up=$(($(date +%s) - t0))
[ $up = 1 ] && step "make run: up, URLs printed" $t_up 0 || step "make run: up, URLs printed" $t_up 1
if [ $up = 1 ]; then
	# The summary is for reading and pasting: the token is shown shortened.
	sed -n '/^Atelier is up/,/^Ctrl-C/p' "$out/make-run.log" | sed 's/\(atl_[0-9a-f]\{6\}\)[0-9a-f]*/\1…/; s/^/    /' >>"$summary"
	# Each printed URL answers (from inside the new machine).
	api=$(sed -n 's/^  API *\(http[^ ]*\).*/\1/p' "$out/make-run.log")
	page=$(sed -n 's/^  drawing page *\(http[^ ]*\).*/\1/p' "$out/make-run.log")
	tok=$(sed -n 's/^  operator token *\([^ ]*\).*/\1/p' "$out/make-run.log")
	t0=$(date +%s)
	CMD="curl -fsS $api/readyz && curl -fsS -o /dev/null $api/metrics && curl -fsS -o /dev/null $page &&
		printf 'header = \"Authorization: Bearer %s\"\n' '$tok' | curl -fsS -K - -o /dev/null $api/v1/runs" \
		inroot >"$out/make-run-urls.log" 2>&1
	step "printed URLs + token answer" $(($(date +%s) - t0)) $?
	# Ctrl-C, as a user would: SIGINT to make run's process group.
	t0=$(date +%s)
	kill -INT -- "-$run_pgid"
	for i in $(seq 1 120); do kill -0 $runpid 2>/dev/null || break; sleep 1; done
	if kill -0 $runpid 2>/dev/null; then
		step "make run: Ctrl-C stops it" $(($(date +%s) - t0)) 1
	else
		grep -q '^stopped\.' "$out/make-run.log"
		step "make run: Ctrl-C stops it" $(($(date +%s) - t0)) $?
	fi
else
	tail -30 "$out/make-run.log" | sed 's/^/    /' >>"$summary"
fi
kill -KILL -- "-$run_pgid" 2>/dev/null
run_pgid=""

# 3c. make test.
t0=$(date +%s)
CMD='cd /root/atelier && make test' timeout "$TEST_TIMEOUT" bash -c "$(declare -f inroot); root='$root'; CMD=\"\$CMD\"; inroot" \
	>"$out/make-test.log" 2>&1 </dev/null
rc=$?
step "make test" $(($(date +%s) - t0)) $rc
grep -E '^[0-9]+ (passed|failed)|^=+ .*(passed|failed|error).* =+$' "$out/make-test.log" | tail -3 | sed 's/^/    /' >>"$summary"
[ $rc = 0 ] || { grep -E '^(FAILED|ERROR) ' "$out/make-test.log" | head -30 | sed 's/^/    /' >>"$summary"; tail -20 "$out/make-test.log" | sed 's/^/    /' >>"$summary"; }

cleanup
# A passed check leaves no 3 GB root behind; a failed one keeps it to look into.
[ $failed = 0 ] && rm -rf "$root"
note "result: $([ $failed = 0 ] && echo PASS || echo "FAIL (the root is kept: var/fresh-check/root)"); logs in var/fresh-check/$stamp/"
cp "$summary" "$top/last.txt"
exit $failed
