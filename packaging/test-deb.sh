#!/usr/bin/env bash
# Build the Debian package, install it on this machine, run the installed binary with the
# installed config as the unit's user, reload it, stop it, remove and purge the package —
# checking each step. Needs root, dpkg, a broker at 127.0.0.1:5672 (guest) and ports 8080
# and 8081 free (the example config's listeners). systemd need not run: the unit is checked
# with `systemd-analyze verify` and `security --offline`, and the service is started the way
# the unit starts it (same user, same command). Leaves the machine as it found it, but for
# the example config's queues on the broker (prefix `wingspan`, as the demo's).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n== %s\n' "$*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

if ! command -v cargo-deb >/dev/null 2>&1; then
  say "installing cargo-deb (once)"
  cargo install --locked cargo-deb
fi
if dpkg -s wingspan >/dev/null 2>&1; then
  fail "a wingspan package is installed already; remove it first (dpkg -P wingspan)"
fi
had_user=no; getent passwd wingspan >/dev/null && had_user=yes
had_state=no; [ -e /var/lib/wingspan ] && had_state=yes

say "building the package"
cargo deb -p wingspan
deb=$(ls -t target/debian/wingspan_*.deb | head -1)
dpkg-deb --info "$deb" | sed -n '1,40p'
dpkg-deb --contents "$deb" > target/debian/contents.txt
for f in ./usr/bin/wingspan ./etc/wingspan/wingspan.toml ./etc/wingspan/adapters/hl7v2/decode.vrl \
         ./usr/share/wingspan/schemas/v1/envelope.schema.json ./usr/lib/systemd/system/wingspan.service; do
  grep -q " $f\$" target/debian/contents.txt || fail "the package lacks $f"
done

say "installing it"
dpkg -i "$deb"
getent passwd wingspan >/dev/null || fail "no wingspan user"
[ "$(stat -c '%U:%G %a' /var/lib/wingspan)" = "wingspan:wingspan 750" ] || fail "state directory: $(stat -c '%U:%G %a' /var/lib/wingspan)"
[ "$(stat -c '%U:%G %a' /etc/wingspan/wingspan.toml)" = "root:wingspan 640" ] || fail "config: $(stat -c '%U:%G %a' /etc/wingspan/wingspan.toml)"
grep -q '^/etc/wingspan/wingspan.toml$' /var/lib/dpkg/info/wingspan.conffiles || fail "the config is not a conffile"

say "checking the unit"
systemd-analyze verify /usr/lib/systemd/system/wingspan.service
systemd-analyze security --offline=true --threshold=20 /usr/lib/systemd/system/wingspan.service | tail -1
grep -q '^ExecReload=/bin/kill -HUP \$MAINPID$' /usr/lib/systemd/system/wingspan.service || fail "no reload by SIGHUP"

say "running the installed binary as the unit's user, with the installed config"
runuser -u wingspan -- /usr/bin/wingspan check --config /etc/wingspan
log=$(mktemp)
runuser -u wingspan -- /usr/bin/wingspan run --config /etc/wingspan > "$log" 2>&1 &
pid=$!
cleanup_run() {
  pkill -TERM -u wingspan -f '/usr/bin/wingspan run' 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
trap cleanup_run EXIT
for _ in $(seq 1 100); do
  curl -fsS http://127.0.0.1:8080/readyz >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { cat "$log"; fail "the gateway exited"; }
  sleep 0.2
done
curl -fsS http://127.0.0.1:8080/readyz >/dev/null || { cat "$log"; fail "not ready"; }
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer dev-rehab-token' \
  -H 'Content-Type: application/json' --data-binary @config/examples/enforcement.material.submit.json \
  http://127.0.0.1:8080/v1/messages)
case "$code" in 200|202) echo "message accepted: $code";; *) cat "$log"; fail "message answered $code";; esac
[ -n "$(find /var/lib/wingspan -user wingspan -name '*.db' | head -1)" ] || fail "no state store owned by wingspan"

say "reloading (SIGHUP, as ExecReload sends it)"
runuser_pid=$(pgrep -u wingspan -f '/usr/bin/wingspan run' | head -1)
kill -HUP "$runuser_pid"
for _ in $(seq 1 50); do grep -q 'config reload' "$log" && break; sleep 0.2; done
grep -q 'config reload' "$log" || { cat "$log"; fail "no reload after SIGHUP"; }
kill -0 "$runuser_pid" || fail "the gateway died on SIGHUP"
cleanup_run
trap - EXIT
echo "stopped"

say "removing, then purging"
dpkg -r wingspan
[ ! -e /usr/bin/wingspan ] || fail "the binary is still there after removal"
[ -d /var/lib/wingspan ] || fail "removal deleted the state (the audit trail)"
dpkg -P wingspan
[ ! -e /etc/wingspan/wingspan.toml ] || fail "the config is still there after purge"
[ -d /var/lib/wingspan ] || fail "purge deleted the state (the audit trail)"

# This test's own leftovers: the state it created and the user, unless they were here before.
[ "$had_state" = yes ] || rm -rf /var/lib/wingspan
[ "$had_user" = yes ] || { deluser --system --quiet wingspan 2>/dev/null || userdel wingspan; }
getent group wingspan >/dev/null && [ "$had_user" = no ] && { delgroup --system --quiet wingspan 2>/dev/null || groupdel wingspan; } || true
rm -f "$log"
say "package test passed"
