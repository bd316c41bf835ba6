#!/bin/sh
# The bench's tools that are not Python packages, for `make bench` and `make bench-full`:
# wrk (the load generator) and dynalite (a fast upstream, from bench/package.json). Both
# are optional: without wrk the bench's Python generator (bench.httpload) drives it, and the
# report warns; without node and npm it uses moto as its upstream, and it says so. Never
# fails the make target.
cd "$(dirname "$0")" || exit 0

if ! command -v wrk >/dev/null 2>&1; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
		echo "bench: installing wrk (apt-get install -y wrk)"
		apt-get install -y -q wrk >/dev/null 2>&1 ||
			{ apt-get update -q >/dev/null 2>&1 && apt-get install -y -q wrk >/dev/null 2>&1; } ||
			echo "bench: could not install wrk; the bench's Python generator drives it"
	else
		echo "bench: wrk not found (apt-get install wrk, or brew install wrk); the bench's Python generator drives it"
	fi
fi

if [ ! -f node_modules/.installed ] || [ package-lock.json -nt node_modules/.installed ]; then
	if command -v npm >/dev/null 2>&1; then
		echo "bench: installing dynalite (npm ci in bench/)"
		if npm ci --no-audit --no-fund --loglevel=error; then
			touch node_modules/.installed
		else
			echo "bench: could not install dynalite; the bench uses moto as its upstream"
		fi
	else
		echo "bench: npm not found; the bench uses moto as its upstream (node 20+ gives dynalite)"
	fi
fi
exit 0
