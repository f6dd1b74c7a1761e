/**
 * One issuance with acme-client, step by step (not `auto()`: its own
 * pre-check of the challenge resolves names through the system resolver,
 * and it would hide which step failed): directory check, account, order,
 * HTTP-01 for each name through our responder, finalize with a CSR for a
 * fresh RSA 2048 key, download the chain. The caller stores and installs.
 */
import { X509Certificate, createPrivateKey, generateKeyPair } from 'node:crypto';
import { promisify } from 'node:util';
import { Client, crypto as acmeCrypto } from 'acme-client';
import type { ChallengeResponder } from './responder.ts';
import { AcmeError, acmeAxios, describeError } from './http.ts';

export interface AcmeDirectory {
  readonly url: string;
  readonly newAccount: string;
  readonly newOrder: string;
  readonly renewalInfo?: string;
}

export interface IssueRequest {
  readonly directory: string;
  readonly accountKey: string;
  readonly contact?: string;
  /** The pki name first, then the alt names. */
  readonly names: readonly string[];
  readonly responder: ChallengeResponder;
  /** The account's URL at this CA when known (from an earlier registration): no account request at all. */
  readonly accountUrl?: string;
  /** ARI identifier of the certificate this one replaces (sent when the CA supports ARI). */
  readonly replaces?: string;
  readonly progress: (message: string) => void;
}

export interface Issued {
  readonly cert: string;
  readonly key: string;
  readonly accountUrl: string;
}

/** Reads the directory and checks it is one: a clear error for an unreachable URL or a web page. */
export async function readDirectory(url: string): Promise<AcmeDirectory> {
  let resp;
  try {
    resp = await acmeAxios.get(url, { validateStatus: null, responseType: 'text', transformResponse: (d: unknown) => d, maxContentLength: 256 * 1024 });
  } catch (err) {
    throw new AcmeError(`ACME directory ${url}: ${err instanceof AcmeError ? err.message.replace(` (${url})`, '') : describeError(err)}`, { cause: err });
  }
  if (resp.status !== 200) throw new AcmeError(`ACME directory ${url} answered HTTP ${resp.status}; is the URL right?`);
  let d: Record<string, unknown> | undefined;
  try {
    const parsed: unknown = JSON.parse(String(resp.data));
    if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)) d = parsed as Record<string, unknown>;
  } catch {
    // not JSON: reported below
  }
  if (!d || typeof d.newNonce !== 'string' || typeof d.newAccount !== 'string' || typeof d.newOrder !== 'string') {
    throw new AcmeError(`${url} is not an ACME directory (no newNonce/newAccount/newOrder in its answer); check "acme directory"`);
  }
  return {
    url,
    newAccount: d.newAccount,
    newOrder: d.newOrder,
    ...(typeof d.renewalInfo === 'string' ? { renewalInfo: d.renewalInfo } : {}),
  };
}

function newClient(req: IssueRequest, accountUrl?: string): Client {
  return new Client({
    directoryUrl: req.directory,
    accountKey: req.accountKey,
    // Polling of authorizations/orders: the library's 5 s minimum shows up as stalls; the CA is usually done in well under a second.
    backoffAttempts: 12,
    backoffMin: 250,
    backoffMax: 5000,
    ...(accountUrl ? { accountUrl } : {}),
  });
}

/**
 * A client bound to the account: the known account URL if the CA still
 * knows it (one POST-as-GET), else a registration of the same key (newAccount
 * with the contact; for a key the CA already knows it answers 200 with the
 * URL, and acme-client then sends an update that a CA may refuse as empty —
 * the account exists all the same).
 */
async function accountClient(req: IssueRequest): Promise<{ client: Client; accountUrl: string }> {
  if (req.accountUrl) {
    const client = newClient(req, req.accountUrl);
    try {
      await client.updateAccount({});
      return { client, accountUrl: req.accountUrl };
    } catch {
      req.progress(`the CA does not confirm the account ${req.accountUrl}; registering the account key again`);
    }
  }
  const client = newClient(req);
  try {
    await client.createAccount({ termsOfServiceAgreed: true, ...(req.contact ? { contact: [req.contact] } : {}) });
  } catch (err) {
    try {
      return { client, accountUrl: client.getAccountUrl() };
    } catch {
      throw err;
    }
  }
  return { client, accountUrl: client.getAccountUrl() };
}

export async function issueCertificate(req: IssueRequest): Promise<Issued> {
  const { progress } = req;
  const directory = await readDirectory(req.directory);
  const { client, accountUrl } = await accountClient(req);
  progress(`account ${accountUrl}`);
  const order = await client.createOrder({
    identifiers: req.names.map((value) => ({ type: 'dns', value })),
    // RFC 9773 §5: tell the CA which certificate this replaces (only to a CA that speaks ARI).
    ...(req.replaces && directory.renewalInfo ? { replaces: req.replaces } : {}),
  } as Parameters<Client['createOrder']>[0]);
  progress(`order ${order.url} for ${req.names.join(', ')}`);
  const authorizations = await client.getAuthorizations(order);
  for (const authz of authorizations) {
    const name = authz.identifier.value;
    if (authz.status === 'valid') {
      progress(`${name}: already authorized`);
      continue;
    }
    const challenge = authz.challenges.find((c) => c.type === 'http-01');
    if (!challenge) throw new AcmeError(`the CA offers no http-01 challenge for ${name} (offered: ${authz.challenges.map((c) => c.type).join(', ')})`);
    const keyAuthorization = await client.getChallengeKeyAuthorization(challenge);
    req.responder.set(challenge.token, keyAuthorization);
    try {
      progress(`${name}: http-01 challenge ready on port ${req.responder.port}; asking the CA to validate`);
      await client.completeChallenge(challenge);
      await client.waitForValidStatus(authz);
      progress(`${name}: validated`);
    } finally {
      req.responder.remove(challenge.token);
    }
  }
  const { privateKey } = await promisify(generateKeyPair)('rsa', { modulusLength: 2048 });
  const key = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const [, csr] = await acmeCrypto.createCsr({ commonName: req.names[0]!, altNames: [...req.names] }, key);
  progress('finalizing the order');
  const finalized = await client.finalizeOrder(order, csr);
  const cert = await client.getCertificate(finalized);
  const leaf = new X509Certificate(cert);
  if (!leaf.checkPrivateKey(createPrivateKey(key))) throw new AcmeError('the CA returned a certificate for another key');
  for (const name of req.names) {
    if (!leaf.checkHost(name, { wildcards: false })) throw new AcmeError(`the CA returned a certificate that does not cover ${name}`);
  }
  progress(`issued: serial ${leaf.serialNumber}, valid until ${new Date(leaf.validTo).toISOString()}`);
  return { cert, key, accountUrl };
}
