/** The commented config `appliance init` writes: small, valid, and a map of what can be changed. */

export interface StarterOptions {
  readonly domain: string;
  readonly hostname: string;
  readonly dataDir: string;
  readonly unprivileged: boolean;
  readonly address: string;
  readonly user: string;
}

export function starterConfig(o: StarterOptions): string {
  const port = (standard: number, high: number) => (o.unprivileged ? high : standard);
  const q = (s: string) => JSON.stringify(s);
  return `# appliance configuration, written by "appliance init".
# Grammar: OpenSMTPD's smtpd.conf(5), extended for IMAP, ACME and DKIM.
# "appliance check" validates this file and prints it back normalised.

# --- identity and storage
hostname ${o.hostname}
data-dir ${q(o.dataDir)}
# started as root, the appliance binds its ports then runs as this user
user ${o.user}

# --- certificates: self-signed until you use real files or ACME:
#   pki ${o.hostname} cert "/etc/ssl/${o.hostname}.pem"
#   pki ${o.hostname} key  "/etc/ssl/private/${o.hostname}.key"
# or, obtained and renewed from Let's Encrypt:
#   pki ${o.hostname} acme
#   acme contact "mailto:postmaster@${o.domain}"
#   acme challenge http-01 listen on 0.0.0.0 port 80
pki ${o.hostname} self-signed

# --- tables
table domains { ${o.domain} }
# users and their passwords:  appliance table add users alice@${o.domain}
table users db
# aliases:  appliance table add aliases postmaster@${o.domain} alice@${o.domain}
#           appliance table add aliases @${o.domain} alice@${o.domain}   (catch-all)
table aliases db

# --- SMTP: MX for the world, submission for your users' mail clients
listen on ${o.address} port ${port(25, 2525)} tls pki ${o.hostname} tag MX
listen on ${o.address} port ${port(587, 2587)} tls-require pki ${o.hostname} auth <users> senders <users> masquerade tag SUBMIT
listen on ${o.address} port ${port(465, 2465)} smtps pki ${o.hostname} auth <users> senders <users> masquerade tag SUBMIT

# --- what happens to mail: first match wins, no match is a rejection
action "local" maildir virtual <aliases> userbase <users>
action "out"   relay

match from any for domain <domains> action "local"
match from any tag SUBMIT for any action "out"
match from local for any action "out"
match from any for any reject

# --- IMAP for reading mail
imap listen on ${o.address} port ${port(993, 2993)} smtps pki ${o.hostname} auth <users>
imap listen on ${o.address} port ${port(143, 2143)} tls-require pki ${o.hostname} auth <users>
imap mailbox "Drafts" special-use "\\Drafts" auto subscribe
imap mailbox "Sent"   special-use "\\Sent"   auto subscribe
imap mailbox "Junk"   special-use "\\Junk"   auto subscribe
imap mailbox "Trash"  special-use "\\Trash"  auto subscribe

# --- limits and logs
smtp max-message-size 35M
# SPF, DKIM and DMARC of incoming mail, recorded in Authentication-Results ("no" turns it off)
smtp authentication-results yes
queue ttl 4d
bounce warn-interval 4h
auth failure-delay 2s
log level info
# Prometheus metrics (queue size, deliveries, certificate expiry…), loopback only:
#   metrics listen on 127.0.0.1 port 9154
`;
}
