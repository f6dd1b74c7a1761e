#!/usr/bin/env bash
# Installs the Debian packages the tests drive, when they are missing:
# python3 (smtplib; its pty module drives the password prompt) and swaks
# with its TLS modules, Dovecot's doveadm and Postfix (a private instance is
# the interop peer; the package's own service is never started), pebble (the
# ACME test CA the certificate tests issue from), slapd for LDAP tables
# (likewise a private instance, never the system one).
# Run by `npm test` (pretest); needs root (or sudo) only when something is missing.
set -euo pipefail
need=()
command -v python3 >/dev/null || need+=(python3)
command -v swaks >/dev/null || need+=(swaks)
command -v doveadm >/dev/null || need+=(dovecot-core)   # reads our Maildirs back (Dovecot compatibility)
[ -x /usr/sbin/postfix ] || need+=(postfix)              # a real MTA peer for outbound interop
command -v mbsync >/dev/null || need+=(isync)            # IMAP client: mbsync pulls and syncs a large mailbox (test/imap)
command -v pebble >/dev/null || need+=(pebble)           # Let's Encrypt's test CA: ACME issuance and renewal (test/acme)
[ -x /usr/sbin/slapd ] || need+=(slapd)                  # a private OpenLDAP (slapd, slapadd, slappasswd) for LDAP tables
command -v ldapsearch >/dev/null || need+=(ldap-utils)   # the seed's client tools (ldapsearch/ldapwhoami), to inspect the test directory
command -v openssl >/dev/null || need+=(openssl)         # the test CA for STARTTLS/ldaps to slapd
perl -MNet::SSLeay -MIO::Socket::SSL -e 1 2>/dev/null || need+=(libnet-ssleay-perl libio-socket-ssl-perl)
[ ${#need[@]} -eq 0 ] && exit 0
echo "installing test dependencies: ${need[*]}" >&2
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
$sudo apt-get update
# Postfix asks its debconf questions even non-interactively: answer "Local only".
echo "postfix postfix/main_mailer_type select Local only" | $sudo debconf-set-selections 2>/dev/null || true
echo "postfix postfix/mailname string localhost" | $sudo debconf-set-selections 2>/dev/null || true
# slapd: no system directory (tests run their own instance in a temp dir).
echo "slapd slapd/no_configuration boolean true" | $sudo debconf-set-selections 2>/dev/null || true
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${need[@]}"
