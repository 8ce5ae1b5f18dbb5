#!/usr/bin/env bash
# The Mux benchmark: packets per second through Strata's Mux and, in the same run, the
# kernel's answer to the same job (an nftables DNAT load balancer), on one namespace
# topology of three namespaces joined by veth pairs:
#
#   strata-bench-gen (sender) -- strata-bench-mux (the load balancer) -- strata-bench-sink
#
# The sender (crates/fabric/examples/blast.rs, over FLOWS flows) runs on CPU 0. By
# default (SENDER=xdp) the kernel makes the frames (XDP live frames) and hands them to
# the mux namespace's veth as XDP frames, as a NIC hands over what it received; the
# veth's NAPI poll (the driver's receive: where an XDP program runs, or where the frame
# becomes a socket buffer) runs on CPU 0 too, as a NIC's interrupt would (NAPI=sender).
# SENDER=socket sends by sendmmsg on a packet socket instead (the receiving veth must
# then copy each socket buffer, and free it on the receiving CPU).
#
# The load balancer runs on CPU 1: the Strata Mux process is pinned there
# (crates/runtime/examples/bench_mux.rs, the driver of `strata mux` with a fixed VIP
# table of four DIPs), once per link backend (LINKS: AF_PACKET sockets, then AF_XDP
# sockets fed by an XDP program), and receive processing after the driver is steered
# there with RPS, so the kernel's DNAT runs there too. NAPI=thread runs the NAPI poll
# in a thread pinned to CPU 1 as well. The sink drops what arrives at its ingress hook
# and counts it. Reported per variant: packets per second out of the load balancer,
# CPU 1's busy share (what a soaker spinning at the lowest priority does not get), and
# CPU 1's time per million packets (the fair figure when the sender saturates first).
#
# Then the HTTP stage: requests per second from wrk to a VIP whose four DIPs
# are served by one web server (crates/runtime/examples/http_server.rs) on a host built
# from a kernel VXLAN device, on a topology of its own:
#
#   strata-bench-client -- strata-bench-lb -- strata-bench-host
#            `---------- return path ---------'
#
# Through Strata's Mux the request goes in VXLAN to the host, which maps the VIP to the
# server, and the reply goes straight back to the client (direct server return), as in
# the SLB. Through the kernel's nftables DNAT, the reply goes back through the load
# balancer, which must undo its translation. wrk and the server run on CPU 0, the load
# balancer on CPU 1; each variant runs with keep-alive and with a new connection per
# request. Reported: requests per second, CPU 1's busy share and its time per thousand
# requests, and the Strata Mux process's CPU time per thousand requests.
#
# Root only. Usage: scripts/bench-mux.sh [SECONDS] [FLOWS]   (default 10 s, 1024 flows)
# STAGES="pps http" chooses the stages (default both); CONNS the HTTP connections (32);
# LINKS the Strata Mux's link backends, as STRATA_LINK names them (default "socket xdp";
# "ring" too); SENDER (xdp or socket) and NAPI (sender or thread), above. Also: RATE
# (the sender's pps, 0 flat out; SENDER=socket only), STRATA_XDP_FRAMES (the AF_XDP
# rings' size, 2048), INGRESS_DROP=1, PROFILE=FILE, RPS_CPUS=MASK (where the load
# balancer's receive processing runs, default CPU 1), MUX_PRIORITY=N (the Strata Mux at
# SCHED_FIFO priority N).
# Everything it creates is removed when it ends, also on failure.
set -euo pipefail

DURATION=${1:-10}
FLOWS=${2:-1024}
# The sender's rate in packets per second (0: flat out).
RATE=${RATE:-0}
# PROFILE=FILE records the Strata Mux process with perf while it is measured.
PROFILE=${PROFILE:-}
STAGES=${STAGES:-pps http}
# The Strata Mux's link backends measured (STRATA_LINK: socket, ring, xdp).
LINKS=${LINKS-socket xdp}
# How the sender sends: "socket" (sendmmsg on a packet socket: the receiving veth frees
# the sender's socket buffers on CPU 1) or "xdp" (the kernel's XDP live frames, as a NIC
# hands frames over; the mux namespace's veth then runs NAPI, with GRO on, for every
# variant).
SENDER=${SENDER:-xdp}
if [ "$SENDER" = xdp ] && [ "$RATE" != 0 ]; then
    echo "bench-mux: RATE needs SENDER=socket (the kernel's XDP generator sends flat out)" >&2
    exit 1
fi
# Where a veth's NAPI poll runs (the driver's receive, for a veth with an XDP program or
# GRO): "sender" (the default: on the CPU that sent the frame, CPU 0, as a NIC's
# interrupt would be) or "thread" (a thread of its own pinned to CPU 1).
NAPI=${NAPI:-sender}
CONNS=${CONNS:-32}
G=strata-bench-gen
M=strata-bench-mux
S=strata-bench-sink
C=strata-bench-client
L=strata-bench-lb
H=strata-bench-host
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
    echo "bench-mux: needs root (network namespaces)" >&2
    exit 1
fi
if [ "$(nproc)" -lt 2 ]; then
    echo "bench-mux: needs two CPUs (the sender and the load balancer each get one)" >&2
    exit 1
fi
# What it uses from Debian, installed when missing: nft (the kernel's load balancer and
# the sink), ethtool (GRO on the load balancer's veth), wrk (the HTTP stage).
packages=()
command -v nft >/dev/null || packages+=(nftables)
command -v ethtool >/dev/null || packages+=(ethtool)
command -v wrk >/dev/null || packages+=(wrk)
if [ ${#packages[@]} -gt 0 ]; then
    echo "installing: ${packages[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null ||
        { echo "bench-mux: could not install ${packages[*]}" >&2; exit 1; }
fi

echo "building (release)..." >&2
cargo build -q --release -p strata-runtime --example bench_mux --example http_server \
    -p strata-fabric --example blast --example soak
BIN=target/release/examples

MUX_PID=
SERVER_PID=
cleanup() {
    [ -n "$MUX_PID" ] && kill "$MUX_PID" 2>/dev/null || true
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
    for ns in $G $M $S $C $L $H; do ip netns del "$ns" 2>/dev/null || true; done
}
trap cleanup EXIT
cleanup

# The Mux process's user and system ticks (0 without one).
proc_ticks() {
    if [ -n "$MUX_PID" ]; then awk '{ print $14 + $15 }' "/proc/$MUX_PID/stat"; else echo 0; fi
}
sink_rx() { ip netns exec $S cat /sys/class/net/sink0/statistics/rx_packets; }
# CPU 1's busy share is what the soaker (crates/fabric/examples/soak.rs, spinning at
# the lowest priority on CPU 1) does not get: 1 - its rate / its rate alone (IDLE_RATE,
# measured first). /proc/stat would miss the short bursts out of idle a load balancer
# below saturation is made of.
soak() { taskset -c 1 "$BIN/soak" "$1"; }
send() {
    local how=()
    [ "$SENDER" = xdp ] && how=(--xdp)
    taskset -c 0 ip netns exec $G "$BIN/blast" "${how[@]}" gen0 "$MAC" 10.1.0.2 10.9.0.100:9 \
        "$1" "$FLOWS" "$RATE"
}

# A veth's NAPI poll (where an XDP program runs, and where XDP frames become socket
# buffers) is scheduled on the CPU that sent the frame, the sender's. With NAPI=thread it
# is run by a thread of its own instead (threaded NAPI), pinned to CPU 1 with the rest
# of the load balancer.
pin_napi() {
    local ns=$1 dev=$2 pid
    [ "$NAPI" = thread ] || return 0
    # A veth has NAPI only with a native XDP program (generic XDP runs where RPS says).
    ip netns exec "$ns" sh -c "echo 1 > /sys/class/net/$dev/threaded" 2>/dev/null || return 0
    for pid in $(pgrep "^napi/$dev-"); do taskset -pc 1 "$pid" >/dev/null; done
    echo "  NAPI threads of $dev on CPU 1: $(pgrep -d, "^napi/$dev-")" >&2
}

RESULTS=()
measure() {
    local label=$1
    send 1 >/dev/null # warm up: neighbors resolved, flows known
    sleep 0.5
    local rx0 rx1 w0 w1 sender p0 p1 soaked soak_pid
    rx0=$(sink_rx)
    p0=$(proc_ticks)
    soak "$DURATION" >/tmp/strata-bench-soak.out &
    soak_pid=$!
    w0=$(date +%s.%N)
    local perf_pid=
    if [ -n "$MUX_PID" ] && [ -n "$PROFILE" ]; then
        perf record -q -g -p "$MUX_PID" -o "$PROFILE" -- sleep "$DURATION" 2>/dev/null &
        perf_pid=$!
    fi
    sender=$(send "$DURATION")
    [ -z "$perf_pid" ] || wait "$perf_pid"
    w1=$(date +%s.%N)
    wait "$soak_pid"
    soaked=$(cat /tmp/strata-bench-soak.out)
    sleep 0.2
    rx1=$(sink_rx)
    p1=$(proc_ticks)
    if [ -n "$MUX_PID" ]; then
        echo "  the Mux process: $(awk -v p=$((p1 - p0)) -v n=$((rx1 - rx0)) -v hz="$(getconf CLK_TCK)" \
            'BEGIN { printf "%.3f CPU-s per Mpkt (user and system)", (p / hz) / (n / 1e6) }')" >&2
    fi
    local line
    line=$(awk -v l="$label" -v n=$((rx1 - rx0)) -v w="$(echo "$w1 - $w0" | bc)" \
        -v s="$soaked" -v idle="$IDLE_RATE" 'BEGIN {
            busy = 1 - s / idle
            if (busy < 0) busy = 0
            printf "%-24s %12.0f %9.0f%% %14.3f", l, n / w, busy * 100, busy * w / (n / 1e6)
        }')
    echo "  sender: $sender" >&2
    RESULTS+=("$line")
}

pps_stage() {
    for ns in $G $M $S; do
        ip netns add "$ns"
        ip -n "$ns" link set lo up
    done
    ip -n $G link add gen0 type veth peer name in0 netns $M
    ip -n $M link add out0 type veth peer name sink0 netns $S
    ip -n $G link set gen0 up
    ip -n $M link set in0 up
    ip -n $M link set out0 up
    ip -n $S link set sink0 up
    ip -n $S addr add 10.2.0.2/24 dev sink0
    # The sink answers ARP and drops every IPv4 packet at ingress (counted by the veth).
    ip netns exec $S nft -f - <<EOF
    table netdev sink {
        chain ingress {
            type filter hook ingress device "sink0" priority 0; policy accept;
            meta protocol ip drop
        }
    }
EOF
    # Receive processing in the mux namespace on CPU 1.
    ip netns exec $M sh -c "echo ${RPS_CPUS:-2} > /sys/class/net/in0/queues/rx-0/rps_cpus"
    [ "$SENDER" = xdp ] && ip netns exec $M ethtool -K in0 gro on >/dev/null
    MAC=$(ip -n $M -o link show in0 | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p')


    local link
    for link in $LINKS; do
        echo "Strata's Mux by $link (VXLAN to the host's PA)..." >&2
        # The kernel's own stack has nothing to do with the frames Strata takes (AF_PACKET
        # sees them before this hook; XDP takes them before the kernel builds anything):
        # dropping them here spares it routing and discarding each.
        if [ -n "${INGRESS_DROP:-}" ]; then
            ip netns exec $M nft -f - <<EOF
    table netdev strata {
        chain in0 { type filter hook ingress device "in0" priority 0; policy drop; }
        chain out0 { type filter hook ingress device "out0" priority 0; policy drop; }
    }
EOF
        fi
        STRATA_LINK=$link taskset -c 1 ${MUX_PRIORITY:+chrt -f "$MUX_PRIORITY"} \
            ip netns exec $M "$BIN/bench_mux" in0 out0 >/tmp/strata-bench-mux.out &
        MUX_PID=$!
        sleep 0.5
        pin_napi $M in0
        measure "strata mux ($link)"
        kill -TERM $MUX_PID
        wait $MUX_PID || true
        MUX_PID=
        echo "  mux: $(cat /tmp/strata-bench-mux.out)" >&2
        ip netns exec $M nft delete table netdev strata 2>/dev/null || true
    done

    echo "The kernel: nftables DNAT over the same four DIPs..." >&2
    ip -n $M addr add 10.1.0.1/24 dev in0
    ip -n $M addr add 10.2.0.1/24 dev out0
    ip -n $M route add 10.3.0.0/24 via 10.2.0.2
    ip netns exec $M sysctl -q -w net.ipv4.ip_forward=1
    ip netns exec $M nft -f - <<EOF
    table ip lb {
        chain prerouting {
            type nat hook prerouting priority dstnat; policy accept;
            ip daddr 10.9.0.100 udp dport 9 dnat to jhash ip saddr . udp sport mod 4 map {
                0 : 10.3.0.1, 1 : 10.3.0.2, 2 : 10.3.0.3, 3 : 10.3.0.4 }
        }
    }
EOF
    pin_napi $M in0
    measure "kernel nftables DNAT"

    echo
    printf "%-24s %12s %10s %14s\n" "load balancer" "pps out" "CPU 1" "CPU-s per Mpkt"
    for r in "${RESULTS[@]}"; do echo "$r"; done
    echo "(sender by $SENDER on CPU 0, load balancer on CPU 1; $DURATION s, $FLOWS flows, 60-byte frames)"
}

# One HTTP run of wrk against the VIP; its line of the table.
HTTP_RESULTS=()
http_measure() {
    local label=$1 mode=$2 header=()
    [ "$mode" = close ] && header=(-H "Connection: close")
    # Warm up: neighbors resolved, the server's threads started.
    ip netns exec $C wrk -t1 -c"$CONNS" -d1s "${header[@]}" http://10.9.0.100/ >/dev/null
    local p0 p1 out rps errors soak_pid soaked
    p0=$(proc_ticks)
    soak "$DURATION" >/tmp/strata-bench-soak.out &
    soak_pid=$!
    out=$(taskset -c 0 ip netns exec $C wrk -t1 -c"$CONNS" -d"${DURATION}s" "${header[@]}" \
        http://10.9.0.100/)
    p1=$(proc_ticks)
    wait "$soak_pid"
    soaked=$(cat /tmp/strata-bench-soak.out)
    rps=$(echo "$out" | awk '/^Requests\/sec:/ { print $2 }')
    errors=$(echo "$out" | awk '/Non-2xx|Socket errors/' | tr '\n' ' ')
    [ -z "$errors" ] || echo "  $label ($mode): $errors" >&2
    HTTP_RESULTS+=("$(awk -v l="$label" -v m="$mode" -v r="${rps:-0}" -v d="$DURATION" \
        -v p=$((p1 - p0)) -v s="$soaked" -v idle="$IDLE_RATE" -v mux="$MUX_PID" \
        -v hz="$(getconf CLK_TCK)" 'BEGIN {
            busy = 1 - s / idle
            if (busy < 0) busy = 0
            cpu1 = r > 0 ? sprintf("%.3f", busy * d * 1000 / (r * d / 1000)) : "-"
            per = mux != "" && r > 0 ? sprintf("%.3f", (p / hz * 1000) / (r * d / 1000)) : "-"
            printf "%-24s %-11s %12.0f %9.0f%% %14s %16s", l, m, r, busy * 100, cpu1, per
        }')")
}

http_stage() {
    local dip_mac=00:15:5d:03:00:01
    for ns in $C $L $H; do
        ip netns add "$ns"
        ip -n "$ns" link set lo up
    done
    ip -n $C link add c0 type veth peer name in0 netns $L
    ip -n $L link add out0 type veth peer name h0 netns $H
    ip -n $C link add r0 type veth peer name r1 netns $H
    ip -n $C link set c0 up
    ip -n $C link set r0 up
    ip -n $L link set in0 up
    ip -n $L link set out0 up
    ip -n $H link set h0 up
    ip -n $H link set r1 up
    ip -n $C addr add 10.1.0.2/24 dev c0
    ip -n $C addr add 10.4.0.1/24 dev r0
    ip -n $C route add 10.9.0.100/32 via 10.1.0.1
    ip -n $H addr add 10.2.0.2/24 dev h0
    ip -n $H addr add 10.4.0.2/24 dev r1
    for i in 1 2 3 4; do ip -n $H addr add "10.3.0.$i/32" dev lo; done
    # The host: a kernel VXLAN device with the DIPs' MAC, mapping the VIP to the server.
    ip -n $H link add vxlan0 address $dip_mac type vxlan id 4096 local 10.2.0.2 \
        dstport 4789 nolearning dev h0
    ip -n $H link set vxlan0 up
    # Replies come from the VIP by the return path, or from a DIP through the load
    # balancer: neither is where the other end routes to, so no reverse-path filter.
    local ns dev
    for ns in $C $H; do
        for dev in all default c0 r0 h0 r1 vxlan0; do
            ip netns exec $ns sysctl -qw "net.ipv4.conf.$dev.rp_filter=0" 2>/dev/null || true
        done
    done
    ip netns exec $H nft -f - <<EOF
table ip slb {
    chain prerouting {
        type nat hook prerouting priority dstnat; policy accept;
        iifname "vxlan0" ip daddr 10.9.0.100 tcp dport 80 dnat to 10.3.0.1
    }
}
EOF
    ip netns exec $L sh -c 'echo 2 > /sys/class/net/in0/queues/rx-0/rps_cpus'
    taskset -c 0 ip netns exec $H "$BIN/http_server" 0.0.0.0:80 &
    SERVER_PID=$!

    # The client computes its own TCP checksums: a frame an XDP program takes carries no
    # word of a checksum left to the device (see XdpLink). The same for every variant.
    ip netns exec $C ethtool -K c0 tx off >/dev/null
    ip -n $H route add 10.1.0.0/24 via 10.4.0.1
    local link
    for link in $LINKS; do
        echo "HTTP through Strata's Mux by $link (VXLAN to a kernel VXLAN host, DSR)..." >&2
        STRATA_LINK=$link taskset -c 1 ip netns exec $L "$BIN/bench_mux" in0 out0 tcp 80 \
            $dip_mac >/tmp/strata-bench-mux.out &
        MUX_PID=$!
        sleep 0.5
        [ "$link" = xdp ] && pin_napi $L in0
        http_measure "strata mux ($link)" keep-alive
        http_measure "strata mux ($link)" close
        kill -TERM $MUX_PID
        wait $MUX_PID || true
        MUX_PID=
        echo "  mux: $(cat /tmp/strata-bench-mux.out)" >&2
    done

    echo "HTTP through the kernel's nftables DNAT (replies back through it)..." >&2
    ip -n $H route replace 10.1.0.0/24 via 10.2.0.1
    ip -n $L addr add 10.1.0.1/24 dev in0
    ip -n $L addr add 10.2.0.1/24 dev out0
    ip -n $L route add 10.3.0.0/24 via 10.2.0.2
    ip netns exec $L sysctl -qw net.ipv4.ip_forward=1
    ip netns exec $L nft -f - <<EOF
table ip lb {
    chain prerouting {
        type nat hook prerouting priority dstnat; policy accept;
        ip daddr 10.9.0.100 tcp dport 80 dnat to jhash ip saddr . tcp sport mod 4 map {
            0 : 10.3.0.1, 1 : 10.3.0.2, 2 : 10.3.0.3, 3 : 10.3.0.4 }
    }
}
EOF
    http_measure "kernel nftables DNAT" keep-alive
    http_measure "kernel nftables DNAT" close

    echo
    printf "%-24s %-11s %12s %10s %14s %16s\n" "load balancer" "connection" "requests/s" \
        "CPU 1" "CPU 1 ms/1k" "Mux CPU-ms/1k"
    local r
    for r in "${HTTP_RESULTS[@]}"; do echo "$r"; done
    echo "(wrk -t1 -c$CONNS and the server on CPU 0, the load balancer on CPU 1; $DURATION s each)"
}

IDLE_RATE=$(soak 2)
echo "CPU 1 alone: $IDLE_RATE soaker rounds per second" >&2
for stage in $STAGES; do
    case $stage in
    pps) pps_stage ;;
    http) http_stage ;;
    *)
        echo "bench-mux: no stage $stage (pps, http)" >&2
        exit 1
        ;;
    esac
done
