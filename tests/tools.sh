#!/bin/sh
# A test tool that is a Debian package, for `make test`: installed with apt when its command
# is missing and we are root with apt (a few seconds). Elsewhere its tests skip and say why,
# unless CI is set: then a missing tool fails `make test`, since CI must not turn green by
# skipping (tests/conftest.py turns those skips into failures too).
# usage: tools.sh COMMAND PACKAGE WHAT-NEEDS-IT
command=$1 package=$2 what=$3
command -v "$command" >/dev/null 2>&1 && exit 0
[ "$command" = docker-compose ] && docker compose version >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
	echo "installing $package (apt) for $what"
	{ apt-get install -y -qq --no-install-recommends "$package" >/dev/null 2>&1 ||
		{ apt-get update -qq >/dev/null 2>&1 &&
			apt-get install -y -qq --no-install-recommends "$package" >/dev/null 2>&1; }; } &&
		exit 0
	problem="could not install $package"
else
	problem="$command not found"
fi
if [ -n "$CI" ]; then
	echo "$problem, and CI is set: $what needs it" >&2
	exit 1
fi
echo "$problem: $what will skip"
