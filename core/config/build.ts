/**
 * Draft → frozen Config: applies the defaults (SPEC §config), resolves the
 * implicit userbase of `maildir` actions, and freezes the result. Nothing
 * here reports errors except what only becomes known with the defaults.
 */
import { join } from 'node:path';
import type { Diagnostic } from './diagnostics.ts';
import { defaultHostname, type Draft } from './parser.ts';
import { LETS_ENCRYPT_DIRECTORY, type ActionDecl, type Config, type PkiDecl, type TableRef } from './types.ts';

export const defaults = {
  dataDir: '/var/lib/appliance',
  user: 'appliance',
  queueTtl: 4 * 86_400_000,
  /** Outbound SMTP connections in all (Postfix: default_process_limit 100; small machines want fewer). */
  queueConcurrency: 20,
  /** Per destination (domain or relay host): Postfix's initial_destination_concurrency. */
  queueDestinationConcurrency: 5,
  warnInterval: 4 * 3_600_000,
  maxMessageSize: 35 * 1024 * 1024,
  subAddrDelim: '+',
  maxRcpt: 1000,
  maxMails: 100,
  connectionsPerIp: 20,
  smtpIdleTimeout: 5 * 60_000,
  imapConnectionsPerUserIp: 10,
  imapIdleTimeout: 30 * 60_000,
  authFailureDelay: 2000,
  authMaxFailures: 10,
} as const;

export function buildConfig(d: Draft, files: readonly string[]): { config: Config; diagnostics: Diagnostic[] } {
  const diagnostics: Diagnostic[] = [];
  const dataDir = d.dataDir?.value ?? defaults.dataDir;
  const maxMessageSize = d.smtp.maxMessageSize ?? defaults.maxMessageSize;
  const actions = new Map<string, ActionDecl>();
  const implicitUserbase = singleAuthTable(d);
  for (const [name, action] of d.actions) {
    if (action.method.type === 'maildir' && !action.method.userbase) {
      if (implicitUserbase) {
        actions.set(name, { ...action, method: { ...action.method, userbase: implicitUserbase } });
        continue;
      }
      const count = new Set([...d.listeners, ...d.imapListeners].flatMap((l) => (l.auth ? [l.auth.table.name] : []))).size;
      diagnostics.push({
        pos: action.pos,
        message: `action "${name}": maildir without userbase, and the listeners use ${count === 0 ? 'no' : count} auth tables, so the users it delivers to are unknown; add userbase <table>`,
      });
    }
    actions.set(name, action);
  }
  const pki = new Map<string, PkiDecl>();
  for (const [name, p] of d.pki) pki.set(name, { ...p, ...(p.acme ? { acme: { altNames: [...p.acme.altNames] } } : {}) });

  const config: Config = {
    path: d.configPath,
    files,
    hostname: d.hostname?.value ?? defaultHostname(),
    dataDir,
    user: d.user?.value ?? defaults.user,
    pki,
    tables: new Map(d.tables),
    listeners: [...d.listeners],
    actions,
    rules: [...d.rules],
    imap: {
      listeners: [...d.imapListeners],
      mailboxes: [...d.imapMailboxes],
      limits: {
        connectionsPerUserIp: d.imapLimits.connectionsPerUserIp ?? defaults.imapConnectionsPerUserIp,
        maxLiteralSize: d.imapLimits.maxLiteralSize ?? maxMessageSize,
        idleTimeout: d.imapLimits.idleTimeout ?? defaults.imapIdleTimeout,
      },
    },
    acme: {
      directory: d.acme.directory ?? LETS_ENCRYPT_DIRECTORY,
      ...(d.acme.contact ? { contact: d.acme.contact } : {}),
      ...(d.acme.challenge ? { challenge: d.acme.challenge } : {}),
      ...(d.acme.ca ? { ca: d.acme.ca } : {}),
    },
    queue: {
      ttl: d.queueTtl ?? defaults.queueTtl,
      concurrency: d.queueConcurrency ?? defaults.queueConcurrency,
      destinationConcurrency: Math.min(d.queueDestinationConcurrency ?? defaults.queueDestinationConcurrency, d.queueConcurrency ?? defaults.queueConcurrency),
    },
    bounce: { warnIntervals: d.warnIntervals ?? [defaults.warnInterval] },
    smtp: {
      subAddrDelim: d.smtp.subAddrDelim ?? defaults.subAddrDelim,
      authenticationResults: d.smtp.authenticationResults ?? true,
      limits: {
        maxMessageSize,
        maxRcpt: d.smtp.maxRcpt ?? defaults.maxRcpt,
        maxMails: d.smtp.maxMails ?? defaults.maxMails,
        connectionsPerIp: d.smtp.connectionsPerIp ?? defaults.connectionsPerIp,
        idleTimeout: d.smtp.idleTimeout ?? defaults.smtpIdleTimeout,
      },
    },
    dkim: [...d.dkim],
    control: { socket: d.controlSocket ?? join(dataDir, 'control.sock') },
    log: { level: d.logLevel ?? 'info' },
    auth: {
      failureDelay: d.authFailureDelay ?? defaults.authFailureDelay,
      maxFailures: d.authMaxFailures ?? defaults.authMaxFailures,
    },
    ...(d.resolver ? { resolver: d.resolver } : {}),
    ...(d.metrics ? { metrics: d.metrics } : {}),
  };
  return { config: deepFreeze(config), diagnostics };
}

/** SPEC: without userbase, a maildir action's users are the one auth table of the listeners. */
function singleAuthTable(d: Draft): TableRef | undefined {
  const refs = [...d.listeners, ...d.imapListeners].flatMap((l) => (l.auth ? [l.auth.table] : []));
  const names = new Set(refs.map((r) => r.name));
  return names.size === 1 ? refs[0] : undefined;
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    if (value instanceof Map) {
      for (const v of value.values()) deepFreeze(v);
    } else {
      for (const v of Object.values(value)) deepFreeze(v);
    }
  }
  return value;
}
