/**
 * Placeholders in ldap.conf filters and DN templates (Dovecot's letters):
 * `%s` and `%u` the whole key, `%n` its local part (before the last `@`, the
 * whole key when there is none), `%d` its domain (empty when there is none),
 * `%%` a percent sign. Every substituted value is escaped for where it goes:
 * RFC 4515 §3 in search filters (so `*`, `(`, `)`, `\` and NUL in an address
 * are matched literally and cannot change the filter), RFC 4514 §2.4 in DNs.
 */

/** RFC 4515 §3: `*` `(` `)` `\` NUL must be escaped as `\XX`; other controls are escaped too. */
export function escapeFilterValue(value: string): string {
  return value.replace(/[*()\\\u0000-\u001f\u007f]/g, (c) => `\\${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/**
 * RFC 4514 §2.4: `"` `+` `,` `;` `<` `>` `\` escaped with a backslash, NUL as
 * `\00`, a leading `#` or space and a trailing space escaped; other controls
 * as hex too (never meaningful in a login name).
 */
export function escapeDnValue(value: string): string {
  let out = value.replace(/["+,;<>\\=]|[\u0000-\u001f\u007f]/g, (c) =>
    /[\u0000-\u001f\u007f]/.test(c) ? `\\${c.charCodeAt(0).toString(16).padStart(2, '0')}` : `\\${c}`,
  );
  if (out.startsWith('#') || out.startsWith(' ')) out = `\\${out}`;
  if (out.endsWith(' ') && !out.endsWith('\\ ')) out = `${out.slice(0, -1)}\\ `;
  return out;
}

/** The placeholder letters a template may use. */
const LETTERS = new Set(['s', 'u', 'n', 'd', '%']);

/** The first unknown `%x` sequence of a template (or a lone trailing `%`), if any. */
export function badPlaceholder(template: string): string | undefined {
  for (const m of template.matchAll(/%(.?)/gs)) {
    if (!LETTERS.has(m[1]!)) return m[0];
  }
  return undefined;
}

/** Splits a key into the values of its placeholders. */
export function placeholderValues(key: string): { readonly whole: string; readonly local: string; readonly domain: string } {
  const at = key.lastIndexOf('@');
  return at === -1 ? { whole: key, local: key, domain: '' } : { whole: key, local: key.slice(0, at), domain: key.slice(at + 1) };
}

/** Substitutes the placeholders of a template with escaped parts of the key. */
export function expandTemplate(template: string, key: string, escape: (value: string) => string): string {
  const v = placeholderValues(key);
  return template.replace(/%(.)/gs, (whole, letter: string) => {
    switch (letter) {
      case 's':
      case 'u':
        return escape(v.whole);
      case 'n':
        return escape(v.local);
      case 'd':
        return escape(v.domain);
      case '%':
        return '%';
      default:
        return whole;
    }
  });
}

export function expandFilter(template: string, key: string): string {
  return expandTemplate(template, key, escapeFilterValue);
}

export function expandDn(template: string, key: string): string {
  return expandTemplate(template, key, escapeDnValue);
}
