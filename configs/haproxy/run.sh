#!/usr/bin/env bash
# make cluster-lb: the local three-node cluster (configs/local-cluster/run.sh)
# behind HAProxy (configs/haproxy/haproxy.cfg) terminating TLS on
# https://localhost:8443 with a self-signed certificate made on first use.
# Needs Debian's haproxy (apt-get install -y haproxy) and openssl.
# Ctrl-C drains the nodes, then stops HAProxy and the database.
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${DATA:-data/cluster}
LB=${LB:-127.0.0.1:8443}
mkdir -p "$DATA"
command -v haproxy >/dev/null || { echo "haproxy not found: apt-get install -y haproxy" >&2; exit 1; }

export CM_LB_BIND=$LB CM_LB_CERT=$DATA/lb.pem CM_LB_STATS=$PWD/$DATA/haproxy.sock
export CM_N1=127.0.0.1:8080 CM_N2=127.0.0.1:8082 CM_N3=127.0.0.1:8084
if [ ! -s "$CM_LB_CERT" ]; then
	echo "making a self-signed certificate for localhost in $CM_LB_CERT" >&2
	openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj /CN=localhost \
		-addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
		-keyout "$DATA/lb.key" -out "$DATA/lb.crt" 2>/dev/null
	cat "$DATA/lb.crt" "$DATA/lb.key" >"$CM_LB_CERT"
	chmod 600 "$CM_LB_CERT" "$DATA/lb.key"
fi
haproxy -c -q -f configs/haproxy/haproxy.cfg

# Behind the balancer, a draining node hands its clients back to the
# balancer (public_addr) once the balancer has taken it out (drain_delay >
# fall x inter of the health checks).
export COUPONMESH_CLUSTER_PUBLIC_ADDR=$LB COUPONMESH_CLUSTER_DRAIN_DELAY=1500ms

cluster_pid="" lb_pid=""
stop() {
	trap - INT TERM EXIT
	[ -n "$cluster_pid" ] && kill -TERM "$cluster_pid" 2>/dev/null && wait "$cluster_pid" 2>/dev/null || true
	[ -n "$lb_pid" ] && kill -TERM "$lb_pid" 2>/dev/null && wait "$lb_pid" 2>/dev/null || true
}
trap stop INT TERM EXIT

configs/local-cluster/run.sh &
cluster_pid=$!
# HAProxy after the nodes are ready (else it reports them all down first).
for addr in $CM_N1 $CM_N2 $CM_N3; do
	for _ in $(seq 100); do
		curl -sf "http://$addr/readyz" >/dev/null 2>&1 && break
		sleep 0.3
	done
done
haproxy -db -f configs/haproxy/haproxy.cfg 2> >(sed -u 's/^/[lb] /' >&2) &
lb_pid=$!

cat >&2 <<MSG
couponmesh behind HAProxy: https://localhost:${LB##*:} (self-signed: $DATA/lb.crt)
  WebSocket    wss://localhost:${LB##*:}/ws
  LB state     echo "show stat" | socat stdio $CM_LB_STATS   (or: ctl members)
MSG
wait "$cluster_pid" || true
