#!/usr/bin/env bash
# The NAT lab on its own (scripts/test.sh runs it too): network namespaces with cone,
# restricted-cone, full-cone, symmetric, UDP-blocked and TLS-only routers around the real
# matchmaker and coturn, and the tests that connect players across them. Needs root.
#   scripts/nat_lab.sh            run the lab tests, printing each pair's path and time
#   scripts/nat_lab.sh --hold     build the lab and keep it for 10 minutes to explore
#                                 (ip netns list; ip netns exec NS …)
# SQUADLINK_LAB_ONLY=symmetric,tls-only limits the matrix to those kinds;
# SQUADLINK_LAB_LOG=squadlink=trace sets the players' log level (logs kept on failure).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
source scripts/env.sh
if [[ ${1:-} == --hold ]]; then
  exec cargo test --locked -p squadlink-bench --test nat_lab hold -- --ignored --nocapture
fi
exec cargo test --locked -p squadlink-bench --test nat_lab -- --nocapture
