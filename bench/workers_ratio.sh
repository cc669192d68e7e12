#!/bin/sh
# Throughput of stream_echo_server --workers 1 against --workers 2:
# interleaved runs of the same load (two echo_client processes, 50
# connections each, 64-byte messages, one in flight per connection), wall-clock.
#   bench/workers_ratio.sh [ROUNDS_PER_CONNECTION] [RUNS]
cd "$(dirname "$0")/.." || exit 1
rounds=${1:-4000}
runs=${2:-5}
load() { # port
    start=$(date +%s.%N)
    for c in 1 2; do
        target/echo_client --port "$1" --conns 50 --size 64 --rounds "$rounds" --independent --quiet &
    done
    wait
    python3 -c "import sys; print(round(float(sys.argv[2]) - float(sys.argv[1]), 3))" "$start" "$(date +%s.%N)"
}
for run in $(seq "$runs"); do
    for workers in 1 2; do
        target/stream_echo_server --port 0 --quiet --workers $workers > /tmp/workers.$$ &
        server=$!
        sleep 0.3
        seconds=$(load "$(head -1 /tmp/workers.$$)")
        kill -TERM $server; wait $server
        echo "run $run workers $workers: $seconds s for $((100 * rounds)) round trips"
    done
done
rm -f /tmp/workers.$$
