#!/usr/bin/env bash
# make cluster: the embedded database as its own process and three nodes on
# loopback, configured by configs/local-cluster/n{1,2,3}.yaml. Ctrl-C drains
# the nodes, then stops the database.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-bin/couponmesh}
DATA=${DATA:-data/cluster}
mkdir -p "$DATA"

db_pid=""
node_pids=()
stop() {
	trap - INT TERM EXIT
	echo "stopping the nodes (drain), then the database" >&2
	for p in "${node_pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${node_pids[@]}"; do wait "$p" 2>/dev/null || true; done
	[ -n "$db_pid" ] && kill -TERM "$db_pid" 2>/dev/null && wait "$db_pid" 2>/dev/null || true
}
trap stop INT TERM EXIT

"$BIN" devdb --addr 127.0.0.1:27018 --data "$DATA/db" 2> >(sed -u 's/^/[db] /' >&2) &
db_pid=$!
for _ in $(seq 50); do
	(exec 3<>/dev/tcp/127.0.0.1/27018) 2>/dev/null && break
	sleep 0.2
done

for n in 1 2 3; do
	"$BIN" node --config "configs/local-cluster/n$n.yaml" 2> >(sed -u "s/^/[n$n] /" >&2) &
	node_pids+=($!)
done

cat >&2 <<'MSG'
couponmesh: three nodes starting
  web and API  http://127.0.0.1:8080  http://127.0.0.1:8082  http://127.0.0.1:8084
  admin        127.0.0.1:8081  127.0.0.1:8083  127.0.0.1:8085
  members      bin/couponmesh ctl --admin 127.0.0.1:8081 members
  drain n2     bin/couponmesh ctl --admin 127.0.0.1:8081 drain n2
Ctrl-C stops everything.
MSG
# Run until every node has exited (drained or killed) or Ctrl-C.
for p in "${node_pids[@]}"; do wait "$p" || true; done
