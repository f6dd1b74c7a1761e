/**
 * ACME Renewal Information (RFC 9773): when the directory has a
 * `renewalInfo` URL, the CA suggests a window in which to renew each
 * certificate (earlier than usual when it plans a mass revocation). The
 * certificate is named by its ARI identifier: base64url(authority key
 * identifier) "." base64url(serial number's DER content octets).
 */
import { X509Certificate } from 'node:crypto';
import { acmeAxios, parseRetryAfter } from './http.ts';

export interface RenewalWindow {
  readonly start: Date;
  readonly end: Date;
  readonly explanationUrl?: string;
  /** When to ask again (Retry-After of the answer). */
  readonly pollAfter?: Date;
}

/** The ARI certificate identifier; throws when the certificate has no authority key identifier. */
export function ariCertId(pem: string): string {
  const x = new X509Certificate(pem);
  const aki = authorityKeyIdentifier(x.raw);
  if (!aki) throw new Error('the certificate has no authority key identifier');
  return `${b64url(aki)}.${b64url(serialOctets(x.serialNumber))}`;
}

/** Fetches the suggested window; throws on a malformed answer (the caller falls back to the lifetime rule). */
export async function fetchRenewalWindow(renewalInfoUrl: string, pem: string, now = new Date()): Promise<RenewalWindow> {
  const url = `${renewalInfoUrl.replace(/\/+$/, '')}/${ariCertId(pem)}`;
  const resp = await acmeAxios.get(url, { validateStatus: null, responseType: 'json', maxContentLength: 64 * 1024 });
  if (resp.status !== 200) throw new Error(`renewal information ${url} answered HTTP ${resp.status}`);
  const data = resp.data as { suggestedWindow?: { start?: unknown; end?: unknown }; explanationURL?: unknown } | null;
  const start = typeof data?.suggestedWindow?.start === 'string' ? new Date(data.suggestedWindow.start) : undefined;
  const end = typeof data?.suggestedWindow?.end === 'string' ? new Date(data.suggestedWindow.end) : undefined;
  if (!start || !end || Number.isNaN(start.getTime()) || Number.isNaN(end.getTime()) || end < start) {
    throw new Error(`renewal information ${url} has no valid suggestedWindow`);
  }
  const pollAfter = parseRetryAfter(resp.headers['retry-after'], now);
  return {
    start,
    end,
    ...(typeof data?.explanationURL === 'string' ? { explanationUrl: data.explanationURL } : {}),
    ...(pollAfter ? { pollAfter } : {}),
  };
}

function b64url(buf: Buffer): string {
  return buf.toString('base64url');
}

/** The serial's DER INTEGER content: Node gives hex without the sign octet a positive integer needs. */
export function serialOctets(hex: string): Buffer {
  let h = hex.replace(/[^0-9A-Fa-f]/g, '');
  if (h.length % 2 === 1) h = `0${h}`;
  const bytes = Buffer.from(h, 'hex');
  return bytes.length > 0 && (bytes[0]! & 0x80) !== 0 ? Buffer.concat([Buffer.from([0]), bytes]) : bytes;
}

interface Tlv {
  readonly tag: number;
  readonly start: number;
  readonly end: number;
}

function readTlv(buf: Buffer, offset: number): Tlv {
  const tag = buf[offset];
  let len = buf[offset + 1];
  if (tag === undefined || len === undefined) throw new Error('truncated DER');
  let start = offset + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4) throw new Error('unsupported DER length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + (buf[start + i] ?? 0);
    start += n;
  }
  if (start + len > buf.length) throw new Error('truncated DER');
  return { tag, start, end: start + len };
}

function children(buf: Buffer, tlv: Tlv): Tlv[] {
  const out: Tlv[] = [];
  for (let off = tlv.start; off < tlv.end; ) {
    const c = readTlv(buf, off);
    out.push(c);
    off = c.end;
  }
  return out;
}

const OID_AKI = Buffer.from([0x55, 0x1d, 0x23]);

/** Certificate → tbsCertificate → [3] extensions → authorityKeyIdentifier → [0] keyIdentifier. */
export function authorityKeyIdentifier(der: Buffer): Buffer | undefined {
  const cert = readTlv(der, 0);
  const tbs = children(der, cert)[0];
  if (!tbs) return undefined;
  const extsWrapper = children(der, tbs).find((c) => c.tag === 0xa3);
  if (!extsWrapper) return undefined;
  const exts = children(der, extsWrapper)[0];
  if (!exts) return undefined;
  for (const ext of children(der, exts)) {
    const parts = children(der, ext);
    const oid = parts[0];
    if (!oid || oid.tag !== 0x06 || !der.subarray(oid.start, oid.end).equals(OID_AKI)) continue;
    const value = parts[parts.length - 1];
    if (!value || value.tag !== 0x04) return undefined;
    const seq = readTlv(der, value.start);
    const keyId = children(der, seq).find((c) => c.tag === 0x80);
    return keyId ? Buffer.from(der.subarray(keyId.start, keyId.end)) : undefined;
  }
  return undefined;
}
