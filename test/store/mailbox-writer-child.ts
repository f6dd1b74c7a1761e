/**
 * A separate process appending to a mailbox (test/store/mailbox-concurrency.test.ts):
 * argv: ROOT TAG COUNT. Prints the JSON list of [subject, uid] it got.
 */
import { openMailStoreService } from '../../store/mailbox/index.ts';

const [root, tag, count] = process.argv.slice(2) as [string, string, string];
const log = { warn() {}, error() {}, info() {}, debug() {} } as never;
const store = openMailStoreService({ log, hostname: `child-${tag}` }).forRoot(root);
const out: [string, number][] = [];
const view = await store.open('INBOX', { readOnly: false });
for (let i = 0; i < Number(count); i++) {
  const subject = `${tag}-${i}`;
  const { uid } = await store.append('INBOX', { content: Buffer.from(`Subject: ${subject}\r\n\r\n${subject}\r\n`), flags: i % 2 ? [`kw-${tag}`] : [] });
  out.push([subject, uid]);
  if (i % 5 === 0) await view.sync();
}
await view.close();
process.stdout.write(JSON.stringify(out));
