/**
 * The command registry: for each command, the states it is valid in
 * (RFC 3501 §6) and its handler. The gate here checks the state before any
 * handler runs, and announces pending mailbox changes after it, at the
 * moments RFC 3501 §7.4.1 allows (no EXPUNGE during FETCH, STORE, SEARCH).
 */
import type { Command, CommandName, CommandOf } from '../protocol/command.ts';
import type { ImapSession, ImapState, Tagged } from '../session.ts';
import { appendCommand } from './append.ts';
import { authenticateCommand, loginCommand } from './auth.ts';
import { capabilityCommand, enableCommand, idCommand, logoutCommand, noopCommand } from './any-state.ts';
import { copyCommand } from './copy.ts';
import { expungeCommand, uidExpungeCommand } from './expunge.ts';
import { fetchCommand } from './fetch.ts';
import { idleCommand } from './idle.ts';
import { listCommand, lsubCommand, namespaceCommand } from './list.ts';
import { createCommand, deleteCommand, renameCommand, subscribeCommand } from './mailboxes.ts';
import { searchCommand } from './search.ts';
import { checkCommand, closeCommand, selectCommand, unselectCommand } from './select.ts';
import { starttlsCommand } from './starttls.ts';
import { statusCommand } from './status.ts';
import { storeCommand } from './store.ts';

type Handler<N extends CommandName> = (s: ImapSession, tag: string, cmd: CommandOf<N>) => Promise<Tagged>;

interface Entry<N extends CommandName> {
  readonly states: readonly ImapState[];
  readonly run: Handler<N>;
}

const ANY: readonly ImapState[] = ['not-authenticated', 'authenticated', 'selected'];
const NOT_AUTH: readonly ImapState[] = ['not-authenticated'];
const AUTH: readonly ImapState[] = ['authenticated', 'selected'];
const SELECTED: readonly ImapState[] = ['selected'];

const registry: { readonly [N in CommandName]: Entry<N> } = {
  CAPABILITY: { states: ANY, run: capabilityCommand },
  NOOP: { states: ANY, run: noopCommand },
  LOGOUT: { states: ANY, run: logoutCommand },
  ID: { states: ANY, run: idCommand },
  ENABLE: { states: AUTH, run: enableCommand },
  STARTTLS: { states: NOT_AUTH, run: starttlsCommand },
  LOGIN: { states: NOT_AUTH, run: loginCommand },
  AUTHENTICATE: { states: NOT_AUTH, run: authenticateCommand },
  SELECT: { states: AUTH, run: selectCommand },
  EXAMINE: { states: AUTH, run: selectCommand },
  CREATE: { states: AUTH, run: createCommand },
  DELETE: { states: AUTH, run: deleteCommand },
  RENAME: { states: AUTH, run: renameCommand },
  SUBSCRIBE: { states: AUTH, run: subscribeCommand },
  UNSUBSCRIBE: { states: AUTH, run: subscribeCommand },
  LIST: { states: AUTH, run: listCommand },
  LSUB: { states: AUTH, run: lsubCommand },
  NAMESPACE: { states: AUTH, run: namespaceCommand },
  STATUS: { states: AUTH, run: statusCommand },
  APPEND: { states: AUTH, run: appendCommand },
  IDLE: { states: AUTH, run: idleCommand },
  CHECK: { states: SELECTED, run: checkCommand },
  CLOSE: { states: SELECTED, run: closeCommand },
  UNSELECT: { states: SELECTED, run: unselectCommand },
  EXPUNGE: { states: SELECTED, run: expungeCommand },
  'UID EXPUNGE': { states: SELECTED, run: uidExpungeCommand },
  SEARCH: { states: SELECTED, run: searchCommand },
  FETCH: { states: SELECTED, run: fetchCommand },
  STORE: { states: SELECTED, run: storeCommand },
  COPY: { states: SELECTED, run: copyCommand },
  MOVE: { states: SELECTED, run: copyCommand },
};

/** Commands during which EXPUNGE must not be sent (RFC 3501 §7.4.1). */
const NO_EXPUNGE: ReadonlySet<CommandName> = new Set(['FETCH', 'STORE', 'SEARCH']);
/** Commands that look at the directory even without a change event (other programs). */
const FORCE_SYNC: ReadonlySet<CommandName> = new Set(['NOOP', 'CHECK']);

export async function runCommand(s: ImapSession, tag: string, cmd: Command): Promise<Tagged> {
  const entry = registry[cmd.name] as Entry<CommandName>;
  if (!entry.states.includes(s.state)) {
    const why = s.state === 'not-authenticated' ? 'Log in first' : s.state === 'selected' || !SELECTED.includes(s.state) ? `${cmd.name} is not valid in this state` : 'Select a mailbox first';
    return { status: 'BAD', text: s.state === 'authenticated' && entry.states === SELECTED ? 'No mailbox selected' : why };
  }
  const result = await entry.run(s, tag, cmd as never);
  const sel = s.selected;
  if (sel && s.state === 'selected' && result.status !== 'BAD') {
    for (const line of await sel.announce({ allowExpunge: !NO_EXPUNGE.has(cmd.name), force: FORCE_SYNC.has(cmd.name) })) await s.send(line);
  }
  return result;
}
