#!/usr/bin/env bash
# Installs the Debian packages the tests drive, when they are missing:
# python3 (smtplib; its pty module drives the password prompt) and swaks
# with its TLS modules, and Dovecot's doveadm.
# Run by `npm test` (pretest); needs root (or sudo) only when something is missing.
set -euo pipefail
need=()
command -v python3 >/dev/null || need+=(python3)
command -v swaks >/dev/null || need+=(swaks)
command -v doveadm >/dev/null || need+=(dovecot-core)   # reads our Maildirs back (Dovecot compatibility)
perl -MNet::SSLeay -MIO::Socket::SSL -e 1 2>/dev/null || need+=(libnet-ssleay-perl libio-socket-ssl-perl)
[ ${#need[@]} -eq 0 ] && exit 0
echo "installing test dependencies: ${need[*]}" >&2
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
$sudo apt-get update
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${need[@]}"
