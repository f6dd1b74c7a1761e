/**
 * ldap.conf parsing (every error at its line) and the escaping of
 * placeholders in filters (RFC 4515) and DN templates (RFC 4514).
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { FilterParser } from 'ldapts';
import { LDAP_DEFAULTS, LdapConfError, ldapServices, parseLdapConf } from '../../../core/tables/ldap-conf.ts';
import { escapeDnValue, escapeFilterValue, expandDn, expandFilter, placeholderValues } from '../../../core/tables/ldap-template.ts';

const EXAMPLE = fileURLToPath(new URL('../../../examples/ldap.conf', import.meta.url));

function problems(text: string): string[] {
  try {
    parseLdapConf(text, '/etc/appliance/ldap.conf');
  } catch (err) {
    if (err instanceof LdapConfError) return err.problems.map((p) => `${p.line}: ${p.message}`);
    throw err;
  }
  return [];
}

t.test('the shipped example parses, with the seed schema', async (t) => {
  const c = parseLdapConf(readFileSync(EXAMPLE, 'utf8'), EXAMPLE);
  t.same(c.urls, ['ldap://ldap1.example.org', 'ldap://ldap2.example.org']);
  t.equal(c.username, 'cn=mailAccountReader,ou=Manager,dc=example,dc=org');
  t.equal(c.password, 'change-me', 'a trailing comment is not part of a value');
  t.equal(c.basedn, 'ou=mail,dc=example,dc=org');
  t.equal(c.starttls, true);
  t.equal(c.caFile?.path, '/etc/ldap/tls/CA.pem');
  t.equal(c.timeoutMs, 5000);
  t.equal(c.cacheTtlMs, 60_000);
  t.equal(c.negativeCacheTtlMs, 10_000);
  t.equal(c.authBind, true);
  t.equal(c.bindDnTemplate, 'uid=%u,ou=mail,dc=example,dc=org');
  t.same(c.queries.alias, { filter: '(mailacceptinggeneralid=%s)', attributes: ['maildrop'] });
  t.same(c.queries.userinfo?.attributes, ['uidNumber', 'gidNumber', 'homeDirectory']);
  t.same(c.queries.mailaddrmap?.attributes, ['mailacceptinggeneralid', 'maildrop']);
  t.same(ldapServices(c).sort(), ['alias', 'credentials', 'domain', 'mailaddr', 'mailaddrmap', 'userinfo']);
});

t.test('forms: "key: value", quotes, comments, several urls on a line, defaults', async (t) => {
  const c = parseLdapConf(
    [
      '# comment',
      '  url: ldap://a.example, ldaps://b.example:1636',
      'basedn: "ou=mail,dc=example,dc=org"',
      'username cn=reader,dc=example,dc=org',
      'password "p#ss \\"word\\""   # the quotes keep the #',
      'alias_filter (mailacceptinggeneralid=%s)',
      'alias_attributes maildrop, mail',
      'timeout 1500ms',
      'cache_ttl 0',
      '',
    ].join('\r\n'),
    '/x/ldap.conf',
  );
  t.same(c.urls, ['ldap://a.example', 'ldaps://b.example:1636']);
  t.equal(c.basedn, 'ou=mail,dc=example,dc=org');
  t.equal(c.password, 'p#ss "word"');
  t.same(c.queries.alias?.attributes, ['maildrop', 'mail']);
  t.equal(c.timeoutMs, 1500);
  t.equal(c.cacheTtlMs, 0);
  t.equal(c.negativeCacheTtlMs, 0, 'the negative TTL defaults to no more than the positive one');
  t.equal(c.poolSize, LDAP_DEFAULTS.poolSize);
  t.equal(c.authBind, false);
  t.equal(c.scope, 'sub');
  t.same(ldapServices(c), ['alias']);
});

t.test('every problem is reported at its line', async (t) => {
  const text = [
    'url ldap://ok.example', // 1
    'url http://web.example', // 2
    'basedn ou=mail,dc=example,dc=org', // 3
    'basedn ou=other', // 4
    'usrname cn=x', // 5
    'alias_filter mailacceptinggeneralid=%s', // 6
    'alias_attributes maildrop', // 7
    'domain_filter (|(a=%s)(b=%s)', // 8
    'userinfo_filter (uid=%x)', // 9
    'userinfo_attributes uidNumber,homeDirectory', // 10
    'credentials_filter (uid=%u)', // 11
    'timeout soon', // 12
    'starttls maybe', // 13
    'this line is nonsense (', // 14
    'mailaddr_attributes mail', // 15
    'pool_size 0', // 16
    'auth_bind yes', // 17
    'bind_dn_template uid=fixed,dc=example,dc=org', // 18
    'password', // 19
  ].join('\n');
  t.same(problems(text), [
    '2: url "http://web.example": only ldap:// and ldaps:// are supported',
    '4: basedn is already set on line 3',
    '5: unknown key "usrname" (did you mean "username"?)',
    '6: alias_filter: "mailacceptinggeneralid=%s" must be in parentheses, e.g. (mailacceptinggeneralid=%s)',
    '8: domain_filter: unbalanced parentheses in "(|(a=%s)(b=%s)"',
    '9: userinfo_filter: unknown placeholder "%x" (use %s, %u, %n, %d or %%)',
    '10: userinfo_attributes: expected homeDirectory alone, or uidNumber,gidNumber,homeDirectory, got 2',
    '11: credentials_filter needs credentials_attributes: two attributes: the user name and the password hash (e.g. uid,userPassword)',
    '12: "soon" is not a duration (seconds, or with ms/s/m/h)',
    '13: expected yes or no, not "maybe"',
    '14: unknown key "this"',
    '15: mailaddr_attributes without mailaddr_filter',
    '16: expected a whole number from 1 to 64, not "0"',
    '18: bind_dn_template must contain the user (%u, %n or %d), e.g. uid=%u,ou=mail,dc=example,dc=org',
    '19: password needs a value',
  ]);
});

t.test('missing essentials and inconsistent keys', async (t) => {
  t.same(problems('# nothing\n'), [
    '1: no url: give at least one "url ldap://HOST[:PORT]" (several lines or values = failover)',
    '1: no basedn: give the search base, e.g. "basedn ou=mail,dc=example,dc=org"',
  ]);
  t.same(problems('url ldap://h\nbasedn dc=x\npassword secret\n'), ['3: password without username: the service bind needs both (or neither, for anonymous reads)']);
  t.same(problems('url ldaps://h\nbasedn dc=x\nstarttls yes\n'), ['3: starttls is for ldap:// urls; an ldaps:// url is already TLS']);
  t.same(problems('url ldap://h\nbasedn dc=x\nauth_bind yes\n'), ["3: auth_bind needs bind_dn_template, or credentials_filter to search for the user's DN"]);
  t.same(problems('url ldap://h/dc=x?uid\nbasedn dc=x\n'), ['1: url "ldap://h/dc=x?uid": give only the scheme, host and port (the base is "basedn", the bind "username")']);
  t.same(problems('url ldap://h\nbasedn dc=x\nalias_filter (&(a=%s)(b=\\zz))\nalias_attributes m\n').length, 1, 'a filter ldapts cannot parse');
  t.same(problems('url ldap://h\nbasedn dc=x\npassword "unterminated\n'), ['3: password: unterminated quoted value']);
  t.same(problems('url ldap://h\nbasedn dc=x\nbind_dn_template uid=%u,dc=x\n'), ['3: bind_dn_template is only used with "auth_bind yes"']);
});

t.test('RFC 4515 escaping of filter values', async (t) => {
  t.equal(escapeFilterValue('plain.user+tag@example.org'), 'plain.user+tag@example.org');
  t.equal(escapeFilterValue('*'), '\\2a');
  t.equal(escapeFilterValue('a(b)c'), 'a\\28b\\29c');
  t.equal(escapeFilterValue('back\\slash'), 'back\\5cslash');
  t.equal(escapeFilterValue('nul\0byte'), 'nul\\00byte');
  t.equal(escapeFilterValue('ümlaut'), 'ümlaut', 'UTF-8 stays as it is');
  // An attempt to widen the filter stays one literal value.
  const f = expandFilter('(mailacceptinggeneralid=%s)', '*)(uid=*');
  t.equal(f, '(mailacceptinggeneralid=\\2a\\29\\28uid=\\2a)');
  const parsed = FilterParser.parseString(f);
  t.equal(parsed.constructor.name, 'EqualityFilter', 'still one equality test, not a substring or OR');
  t.equal(expandFilter('(|(a=%s)(b=%n)(c=%d)(d=%u)(e=100%%))', 'x*y@dom(ain'), '(|(a=x\\2ay@dom\\28ain)(b=x\\2ay)(c=dom\\28ain)(d=x\\2ay@dom\\28ain)(e=100%))');
  t.same(placeholderValues('a@b@c.example'), { whole: 'a@b@c.example', local: 'a@b', domain: 'c.example' }, 'the domain follows the last @');
  t.same(placeholderValues('login'), { whole: 'login', local: 'login', domain: '' });
});

t.test('RFC 4514 escaping of DN values', async (t) => {
  t.equal(escapeDnValue('xomail'), 'xomail');
  t.equal(escapeDnValue('a,ou=admins'), 'a\\,ou\\=admins');
  t.equal(escapeDnValue('x+y"z;<>\\'), 'x\\+y\\"z\\;\\<\\>\\\\');
  t.equal(escapeDnValue('#lead'), '\\#lead');
  t.equal(escapeDnValue(' lead and trail '), '\\ lead and trail\\ ');
  t.equal(escapeDnValue('nul\0'), 'nul\\00');
  t.equal(expandDn('uid=%u,ou=mail,dc=example,dc=org', 'bob,ou=Manager'), 'uid=bob\\,ou\\=Manager,ou=mail,dc=example,dc=org');
});
