#!/bin/sh
# Runs a command inside a fresh network namespace where only loopback exists and is up, so nothing it
# starts can reach past 127.0.0.1 / ::1 (the adversarial suite: keys and redirects naming any host).
#
#   tools/netns-run.sh CMD [ARG...]
#
# As root, `unshare -n`; otherwise `unshare -rn` (a user namespace, where the kernel allows unprivileged
# ones). A fresh namespace has `lo` down: it is brought up with `ip link set lo up`. When neither works
# (a container without CAP_SYS_ADMIN, no `ip`), the command runs in the current network namespace, and a
# warning says so: the tests still run, but what the provider could reach is then not bounded by the
# kernel, and the unreachable-network probe is left out.
set -eu

for flags in -n -rn; do
  if unshare "$flags" sh -c 'ip link set lo up' >/dev/null 2>&1; then
    exec unshare "$flags" sh -c 'ip link set lo up && exec "$@"' sh "$@"
  fi
done
echo "WARNING: tools/netns-run.sh: cannot create a loopback-only network namespace here (unshare -n" \
  "not permitted, or no 'ip'); running without one: $*" >&2
exec "$@"
