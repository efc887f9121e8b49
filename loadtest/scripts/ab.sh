#!/usr/bin/env bash
# A/B of server builds with the loadtest: each run on a fresh Postgres database and Redis
# prefix, `conflux serve` with authentication on, the order of the builds rotated every
# round (this machine's noise drifts; rotation spreads it).
#
# usage: loadtest/scripts/ab.sh <rounds> <scenario> name=/path/to/conflux ...
#   (one build is fine: `ab.sh 3 w8 this=target/release/conflux` is three runs of it)
#   scenario: w2 (1,000 diamonds), w3 (20 s at 20 executions/s), w7 (tenant A's 2,000
#   diamonds at once, tenant B's probes meanwhile), w8 (100 schedules firing every
#   second for 30 s: tick lateness) or w9 (one map of 10,000 noop items, with the raw
#   limits measured in the same run)
# env: LOADTEST (default target/release/conflux-loadtest), OUT (default ab-results),
#      PGHOST/PGUSER (default 127.0.0.1/postgres), REDIS_URL (default redis://127.0.0.1:6379),
#      MODE (postgres, the default, or embedded: SQLite in a fresh data directory),
#      EXTRA (more flags for the scenario, e.g. "--w7-agent")
# Prints, per build, the median of each run's headline figures; the JSON reports stay in OUT.
set -euo pipefail
rounds=$1; scenario=$2; shift 2
loadtest=${LOADTEST:-target/release/conflux-loadtest}
out=${OUT:-ab-results}
pghost=${PGHOST:-127.0.0.1}; pguser=${PGUSER:-postgres}
redis=${REDIS_URL:-redis://127.0.0.1:6379}
mode=${MODE:-postgres}
read -r -a extra <<< "${EXTRA:-}"
token=ab-admin-token-0123456789abcdef0123456789

run() {
  local name=$1 bin=$2 round=$3
  local db="ab_${name//[^a-z0-9]/_}_${round}_$$" prefix="ab:${name}:${round}:$$:"
  local port=$((19000 + RANDOM % 1000)) dir="$out/${name}-${round}"
  rm -rf "$dir"; mkdir -p "$dir"
  if [ "$mode" = embedded ]; then
    CONFLUX_DATA_DIR="$dir/data" CONFLUX_ADMIN_TOKEN=$token CONFLUX_ADDR=127.0.0.1:$port \
      CONFLUX_LOG=warn "$bin" serve > "$dir/server.log" 2>&1 &
  else
    psql -q -h "$pghost" -U "$pguser" -d postgres -c "CREATE DATABASE $db" >/dev/null
    DATABASE_URL="postgres://$pguser@$pghost:5432/$db" REDIS_URL=$redis \
      CONFLUX_ADMIN_TOKEN=$token CONFLUX_REDIS_PREFIX=$prefix CONFLUX_ADDR=127.0.0.1:$port \
      CONFLUX_LOG=warn "$bin" serve > "$dir/server.log" 2>&1 &
  fi
  local pid=$!
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/ready" >/dev/null && break; sleep 0.2; done
  case $scenario in
    w2) "$loadtest" w2-diamond --url "http://127.0.0.1:$port" --token "$token" \
          --w2-executions 1000 ${extra[@]+"${extra[@]}"} --out "$dir/report.json" > "$dir/report.md" 2>&1 ;;
    w3) "$loadtest" w3-sustained --url "http://127.0.0.1:$port" --token "$token" \
          --w3-seconds 20 ${extra[@]+"${extra[@]}"} --out "$dir/report.json" > "$dir/report.md" 2>&1 ;;
    w7) "$loadtest" w7-fairness --url "http://127.0.0.1:$port" --token "$token" \
          ${extra[@]+"${extra[@]}"} --out "$dir/report.json" > "$dir/report.md" 2>&1 ;;
    w8) "$loadtest" w8-schedules --url "http://127.0.0.1:$port" --token "$token" \
          ${extra[@]+"${extra[@]}"} --out "$dir/report.json" > "$dir/report.md" 2>&1 ;;
    w9) "$loadtest" all --url "http://127.0.0.1:$port" --token "$token" --limits-rounds 1 \
          --skip w1-chain,w2-diamond,w3-sustained,w4-planning,w5-fanout,w6-chain40,w7-fairness,w8-schedules \
          ${extra[@]+"${extra[@]}"} --out "$dir/report.json" > "$dir/report.md" 2>&1 ;;
    *) echo "unknown scenario $scenario (w2, w3, w7, w8 or w9)" >&2; kill "$pid"; exit 2 ;;
  esac
  kill "$pid"; wait "$pid" 2>/dev/null || true
  if [ "$mode" != embedded ]; then
    psql -q -h "$pghost" -U "$pguser" -d postgres -c "DROP DATABASE $db WITH (FORCE)" >/dev/null
    redis-cli -u "$redis" --scan --pattern "${prefix}*" | xargs -r redis-cli -u "$redis" del >/dev/null
  else
    rm -rf "$dir/data"
  fi
  echo "round $round: $name done" >&2
}

builds=("$@"); n=${#builds[@]}
for r in $(seq 1 "$rounds"); do
  for i in $(seq 0 $((n - 1))); do
    b=${builds[$(( (i + r) % n ))]}
    run "${b%%=*}" "${b#*=}" "$r"
  done
done
case $scenario in
  w2) figures="tasks/s" ;;
  w3) figures="completion throughput" ;;
  w9) figures="submit → map completed, median|items/s (median run)|events/s (4 per item, median run)" ;;
  w8) figures="tick → ExecutionStarted p50|tick → ExecutionStarted p99|ticks started twice|ticks missing" ;;
  w7) figures="B: execute → first TaskStarted seen, p50 (during A's backlog)|B: execute → first TaskStarted seen, p99 (during A's backlog)|B: ExecutionStarted → TaskStarted (server), p99|A: first submit → backlog drained" ;;
esac
python3 - "$out" "$figures" "${builds[@]%%=*}" <<'PY'
import glob, json, statistics, sys
out, wanted, names = sys.argv[1], sys.argv[2].split("|"), sys.argv[3:]
for name in names:
    for figure in wanted:
        values = []
        for path in sorted(glob.glob(f"{out}/{name}-*/report.json")):
            figures = {f["name"]: f["value"] for s in json.load(open(path))["scenarios"] for f in s["figures"]}
            if figures.get(figure) is not None:
                values.append(figures[figure])
        if values:
            print(f"{name}: {figure} median {statistics.median(values):.1f} over {len(values)} runs {[round(v, 1) for v in values]}")
        else:
            print(f"{name}: {figure}: no values")
PY
