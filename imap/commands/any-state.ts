/** CAPABILITY, NOOP, LOGOUT (RFC 3501 §6.1), ID (RFC 2971), ENABLE (RFC 5161). */
import type { CommandOf } from '../protocol/command.ts';
import { encodeString, type Piece } from '../protocol/encode.ts';
import type { ImapSession, Tagged } from '../session.ts';
import { version } from '../version.ts';

export async function capabilityCommand(s: ImapSession): Promise<Tagged> {
  await s.send(`* CAPABILITY ${s.capabilities().join(' ')}`);
  return { status: 'OK', text: 'CAPABILITY completed' };
}

/** The mailbox sync happens in the registry's announce step (forced for NOOP). */
export async function noopCommand(): Promise<Tagged> {
  return { status: 'OK', text: 'NOOP completed' };
}

export async function logoutCommand(s: ImapSession): Promise<Tagged> {
  await s.send('* BYE Logging out');
  s.state = 'logout';
  return { status: 'OK', text: 'LOGOUT completed' };
}

export async function idCommand(s: ImapSession, _tag: string, cmd: CommandOf<'ID'>): Promise<Tagged> {
  if (cmd.params) {
    const client = Object.fromEntries(cmd.params.filter(([k]) => ['name', 'version', 'os', 'vendor'].includes(k.toLowerCase())).map(([k, v]) => [k.toLowerCase(), v]));
    s.log.debug({ client }, 'client id');
  }
  const out: Piece[] = ['* ID (', ...encodeString('name'), ' ', ...encodeString('appliance'), ' ', ...encodeString('version'), ' ', ...encodeString(version), ')'];
  await s.send(out);
  return { status: 'OK', text: 'ID completed' };
}

/** No ENABLE-able extension is offered yet, so nothing is ever enabled (RFC 5161 §3.1). */
export async function enableCommand(s: ImapSession): Promise<Tagged> {
  await s.send('* ENABLED');
  return { status: 'OK', text: 'ENABLE completed' };
}
