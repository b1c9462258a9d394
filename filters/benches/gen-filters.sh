#!/bin/sh
# Prints the filter lists of filters/BENCH.md, one expression per line, for
# `nsctl filter bench --filters`. Same sets as benches/classify.rs:
# distinct ports P = 1024 + i, hosts A = 10.x.y.1 with x.y = i.
#
#   gen-filters.sh udp|tcp|host COUNT > list.txt
set -eu
kind=${1:?usage: gen-filters.sh udp|tcp|host COUNT}
count=${2:?usage: gen-filters.sh udp|tcp|host COUNT}
i=0
while [ "$i" -lt "$count" ]; do
    port=$((1024 + i))
    case $kind in
        udp) echo "udp dst port $port" ;;
        tcp) echo "tcp dst port $port" ;;
        host) echo "ip dst host 10.$((i >> 8 & 255)).$((i & 255)).1 and udp dst port $port" ;;
        *) echo "unknown kind $kind: udp, tcp or host" >&2; exit 2 ;;
    esac
    i=$((i + 1))
done
