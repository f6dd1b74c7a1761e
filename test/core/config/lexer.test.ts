import t from 'tap';
import { lexConfigText, type LexResult } from '../../../core/config/lexer.ts';

const FILE = '/etc/appliance/appliance.conf';

function lex(text: string, files: Record<string, string> = {}): LexResult {
  return lexConfigText(text, FILE, {
    readFile: (p) => {
      const body = files[p];
      if (body === undefined) throw Object.assign(new Error(`ENOENT: ${p}`), { code: 'ENOENT' });
      return body;
    },
  });
}

/** Each statement as `type:value` tokens (`word` tokens as their bare value). */
function shapes(r: LexResult): string[][] {
  return r.statements.map((s) => s.tokens.map((tok) => (tok.type === 'word' ? tok.value : `${tok.type}:${tok.value}`)));
}

const diags = (r: LexResult) => r.diagnostics.map((d) => `${d.pos.file === FILE ? '' : `${d.pos.file}:`}${d.pos.line}:${d.pos.col}: ${d.message}`);

t.test('words, strings, tables and punctuation', async (t) => {
  const r = lex('match from any !for domain <domains> action "local"\ntable t { a = b, c = "d e" }\n');
  t.same(diags(r), []);
  t.same(shapes(r), [
    ['match', 'from', 'any', '!:!', 'for', 'domain', 'table:domains', 'action', 'string:local'],
    ['table', 't', '{:{', 'a', '=:=', 'b', ',:,', 'c', '=:=', 'string:d e', '}:}'],
  ]);
  const tok = r.statements[0]!.tokens;
  t.same(tok[6]!.pos, { file: FILE, line: 1, col: 28 }, '<domains> is positioned at its "<"');
  t.same(tok[8]!.pos, { file: FILE, line: 1, col: 45 });
});

t.test('key=value without spaces splits, other "=" stay in the word', async (t) => {
  const r = lex('table t { a=b, x.y@z=w }\nacme directory https://h/dir?x=1\n');
  t.same(diags(r), []);
  t.same(shapes(r), [
    ['table', 't', '{:{', 'a', '=:=', 'b', ',:,', 'x.y@z', '=:=', 'w', '}:}'],
    ['acme', 'directory', 'https://h/dir?x=1'],
  ]);
});

t.test('comments', async (t) => {
  const r = lex('# a whole-line comment\n   # indented\nhostname a.example # trailing\ndata-dir "/x#y" # "#" inside quotes is text\n#\n');
  t.same(diags(r), []);
  t.same(shapes(r), [['hostname', 'a.example'], ['data-dir', 'string:/x#y']]);
  t.equal(r.statements[0]!.pos.line, 3);
});

t.test('backslash continuation joins lines, positions stay true', async (t) => {
  const r = lex('listen on 0.0.0.0 \\\n   port 25 \\\n\ttag MX\nhostname h.example\n');
  t.same(diags(r), []);
  t.same(shapes(r), [['listen', 'on', '0.0.0.0', 'port', '25', 'tag', 'MX'], ['hostname', 'h.example']]);
  const [listen, host] = r.statements;
  t.same(listen!.tokens[3]!.pos, { file: FILE, line: 2, col: 4 }, '"port" is on line 2');
  t.same(listen!.tokens[5]!.pos, { file: FILE, line: 3, col: 2 }, '"tag" is on line 3');
  t.equal(host!.pos.line, 4);
});

t.test('CRLF line ends and continuations', async (t) => {
  const r = lex('hostname a.example\r\nlisten on lo \\\r\n port 25\r\n');
  t.same(diags(r), []);
  t.same(shapes(r), [['hostname', 'a.example'], ['listen', 'on', 'lo', 'port', '25']]);
});

t.test('quoted strings and escapes', async (t) => {
  const r = lex(
    [
      'a "say \\"hi\\"" "back\\\\slash" "\\Drafts" \'single "q"\' \'it\\\'s\' ""',
    ].join('\n'),
  );
  t.same(diags(r), []);
  t.same(r.statements[0]!.tokens.map((x) => [x.type, x.value]), [
    ['word', 'a'],
    ['string', 'say "hi"'],
    ['string', 'back\\slash'],
    ['string', '\\Drafts'],
    ['string', 'single "q"'],
    ['string', "it's"],
    ['string', ''],
  ]);
});

t.test('multi-line { } blocks are one statement, with or without commas', async (t) => {
  const r = lex('table users {\n  alice = x\n  bob = y,\n\n  # a comment inside\n  carol = z\n}\nhostname h.example\n');
  t.same(diags(r), []);
  t.same(shapes(r), [
    ['table', 'users', '{:{', 'alice', '=:=', 'x', 'bob', '=:=', 'y', ',:,', 'carol', '=:=', 'z', '}:}'],
    ['hostname', 'h.example'],
  ]);
  t.equal(r.statements[1]!.pos.line, 8);
});

t.test('password hashes stay literal words', async (t) => {
  const bcrypt = '$2b$08$1f4SvI3pbJcJG60M/PHoEOAzCt/ZSVUaSK9lvm7EMwCCoUM1DGUO2';
  const argon = '$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo';
  const sha = '$6$rounds=5000$salt$hash/.';
  const r = lex(`table users { alice = ${bcrypt}, bob = ${argon}, carol = ${sha} }\n`);
  t.same(diags(r), []);
  t.same(shapes(r)[0], ['table', 'users', '{:{', 'alice', '=:=', bcrypt, ',:,', 'bob', '=:=', argon, ',:,', 'carol', '=:=', sha, '}:}']);
});

t.test('macros', async (t) => {
  t.test('single and multi-word values, positioned at the reference', async (t) => {
    const r = lex('lan = "0.0.0.0 port 25"\nmx = mx.example.org\nlisten on $lan tag MX\nhostname $mx\n');
    t.same(diags(r), []);
    t.same(shapes(r), [['listen', 'on', '0.0.0.0', 'port', '25', 'tag', 'MX'], ['hostname', 'mx.example.org']]);
    for (const tok of r.statements[0]!.tokens.slice(2, 5)) t.same(tok.pos, { file: FILE, line: 3, col: 11 });
  });
  t.test('a macro may be defined from another one', async (t) => {
    const r = lex('a = "x.example"\nb = $a\nhostname $b\n');
    t.same(diags(r), []);
    t.same(shapes(r), [['hostname', 'x.example']]);
  });
  t.test('a macro is only known after its definition', async (t) => {
    const r = lex('hostname $h\nh = "late.example"\nhostname $h\n');
    t.same(diags(r), ['1:10: undefined macro $h']);
    t.same(shapes(r), [['hostname', 'late.example']], 'the statement with the error is dropped');
  });
  t.test('undefined macro', async (t) => {
    const r = lex('listen on $nope port 25\n');
    t.same(diags(r), ['1:11: undefined macro $nope']);
    t.same(r.statements, []);
  });
  t.test('malformed definitions', async (t) => {
    const r = lex('x = a b\ny = $undefined\n');
    t.same(diags(r), ['1:3: macro x: expected one value, as in x = "value"', '2:5: undefined macro $undefined']);
  });
  t.test('a "$" not before a letter is text', async (t) => {
    const r = lex('a $5 x$y $\n');
    t.same(diags(r), []);
    t.same(shapes(r), [['a', '$5', 'x$y', '$']]);
  });
});

t.test('include', async (t) => {
  t.test('relative paths resolve against the including file', async (t) => {
    const r = lex('include "tables.conf"\nhostname main.example\n', {
      '/etc/appliance/tables.conf': 'table a { x }\ninclude "sub/more.conf"\n',
      '/etc/appliance/sub/more.conf': 'table b { y }\ninclude \'../last.conf\'\n',
      '/etc/appliance/last.conf': 'table c { z }\n',
    });
    t.same(diags(r), []);
    t.same(shapes(r).map((s) => s.slice(0, 2)), [['table', 'a'], ['table', 'b'], ['table', 'c'], ['hostname', 'main.example']]);
    t.same(r.files, [FILE, '/etc/appliance/tables.conf', '/etc/appliance/sub/more.conf', '/etc/appliance/last.conf']);
    t.equal(r.statements[1]!.pos.file, '/etc/appliance/sub/more.conf', 'statements keep the file they come from');
  });
  t.test('macros cross include boundaries', async (t) => {
    const r = lex('d = "example.org"\ninclude "/etc/appliance/t.conf"\nhostname $h\n', {
      '/etc/appliance/t.conf': 'table domains { $d }\nh = "mx.example.org"\n',
    });
    t.same(diags(r), []);
    t.same(shapes(r), [['table', 'domains', '{:{', 'example.org', '}:}'], ['hostname', 'mx.example.org']]);
  });
  t.test('an include loop is reported at the include line', async (t) => {
    const r = lex('include "a.conf"\n', {
      '/etc/appliance/a.conf': 'table a { x }\ninclude "b.conf"\n',
      '/etc/appliance/b.conf': 'include "a.conf"\n',
    });
    t.same(diags(r), ['/etc/appliance/b.conf:1:9: include loop: /etc/appliance/a.conf includes itself']);
  });
  t.test('including the main file is a loop too', async (t) => {
    const r = lex('include "a.conf"\n', { '/etc/appliance/a.conf': `include "${FILE}"\n` });
    t.same(diags(r), [`/etc/appliance/a.conf:1:9: include loop: ${FILE} includes itself`]);
  });
  t.test('missing file and malformed include', async (t) => {
    const r = lex('include "missing.conf"\ninclude\ninclude a b\n');
    t.same(diags(r), [
      '1:9: cannot read /etc/appliance/missing.conf: no such file',
      '2:1: include: expected one file name, as in include "/etc/appliance/tables.conf"',
      '3:1: include: expected one file name, as in include "/etc/appliance/tables.conf"',
    ]);
  });
});

t.test('lexical errors drop their statement and report once', async (t) => {
  t.test('unterminated quote', async (t) => {
    const r = lex('data-dir "/var/lib\nhostname ok.example\n');
    t.same(diags(r), ['1:10: unterminated quoted string']);
    t.same(shapes(r), [['hostname', 'ok.example']]);
  });
  t.test('unclosed {', async (t) => {
    const r = lex('hostname ok.example\ntable t { a, b\nlisten on lo\n');
    t.same(diags(r), ["2:9: '{' is never closed"]);
    t.same(shapes(r), [['hostname', 'ok.example']]);
  });
  t.test("unexpected '}' is skipped", async (t) => {
    const r = lex('table t { a } }\n');
    t.same(diags(r), ["1:15: unexpected '}'"]);
    t.same(shapes(r), [['table', 't', '{:{', 'a', '}:}']]);
  });
  t.test('bad table references', async (t) => {
    const r = lex('match for domain <domains action "x"\nmatch for domain <a b> reject\nhostname ok.example\n');
    t.same(diags(r), ["1:18: '<' without closing '>': table references are written <name>", '2:18: invalid table name <a b>']);
    t.same(shapes(r), [['hostname', 'ok.example']]);
  });
});
