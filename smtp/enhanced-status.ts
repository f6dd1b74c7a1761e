/**
 * ENHANCEDSTATUSCODES (RFC 2034, SPEC §smtp): smtp-server hides the
 * extension by default, so its own replies ("250 Accepted", "501 Error: Bad
 * recipient address syntax", "421 Timeout") went out without an enhanced
 * code and EHLO did not offer it. The listeners now enable it
 * (`hideENHANCEDSTATUSCODES: false`), and the library then prefixes every
 * reply with a code mapped from the basic one.
 *
 * Our own replies (smtp/replies.ts) already lead with a precise enhanced
 * code ("554 5.7.1 Relay access denied"); the library would add its generic
 * one in front ("554 5.6.0 5.7.1 …"). `send` is wrapped once, here, to leave
 * a message that already starts with an enhanced code alone. Checked
 * against smtp-server 3.21 (`send(code, data, context)`, context `false` =
 * no code).
 */
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';

const LEADING_ENHANCED = /^[245]\.\d{1,3}\.\d{1,3}(?: |$)/;

type Send = (code: number, data?: string | string[] | null, context?: string | false) => void;

let installed = false;

export function installEnhancedStatusPassThrough(): void {
  if (installed) return;
  installed = true;
  const proto = SMTPConnection.prototype as unknown as { send: Send };
  const original = proto.send;
  proto.send = function send(this: unknown, code, data, context) {
    const first = Array.isArray(data) ? data[0] : data;
    if (typeof first === 'string' && LEADING_ENHANCED.test(first)) return original.call(this, code, data, false);
    return original.call(this, code, data, context);
  };
}
