#!/usr/bin/env python3
"""The IMAP benchmark's client: Python's imaplib, the same for every server.

  imap-client.py HOST PORT USER PASSWORD ops WORD   -> one JSON object: seconds per operation
  imap-client.py HOST PORT USER PASSWORD clients N S -> N sessions at once for S seconds max

`ops` runs, in one session after its own login: login+SELECT, the header
FETCH a client does on first sync, BODYSTRUCTURE for all, every body, a UID
SEARCH SUBJECT, STORE +FLAGS on all (undone afterwards, untimed, so the tree
is left as found). Every response is read whole, as a client must; the byte
count returned is a check that both servers sent comparable answers.
"""
import imaplib
import json
import sys
import threading
import time

imaplib._MAXLINE = 1 << 30  # bodies arrive as literals; long lines are legal


def timed(fn):
    t = time.perf_counter()
    result = fn()
    return time.perf_counter() - t, result


def size_of(data):
    n = 0
    for part in data:
        if isinstance(part, tuple):
            n += sum(len(x) for x in part if isinstance(x, bytes))
        elif isinstance(part, bytes):
            n += len(part)
    return n


def check(typ, data, what):
    if typ != 'OK':
        raise SystemExit(f'{what}: {typ} {data!r}')
    return data


def ops(host, port, user, password, word):
    out = {}
    t0 = time.perf_counter()
    m = imaplib.IMAP4(host, port)
    m.login(user, password)
    typ, data = m.select('INBOX')
    check(typ, data, 'SELECT')
    out['login_select_s'] = time.perf_counter() - t0
    out['messages'] = int(data[0])
    s, (typ, data) = timed(lambda: m.uid('FETCH', '1:*', '(FLAGS INTERNALDATE RFC822.SIZE ENVELOPE)'))
    check(typ, data, 'FETCH headers')
    out['fetch_headers_s'] = s
    out['fetch_headers_bytes'] = size_of(data)
    s, (typ, data) = timed(lambda: m.uid('FETCH', '1:*', '(BODYSTRUCTURE)'))
    check(typ, data, 'FETCH BODYSTRUCTURE')
    out['fetch_bodystructure_s'] = s
    out['fetch_bodystructure_bytes'] = size_of(data)
    s, (typ, data) = timed(lambda: m.uid('FETCH', '1:*', '(BODY.PEEK[])'))
    check(typ, data, 'FETCH bodies')
    out['fetch_bodies_s'] = s
    out['fetch_bodies_bytes'] = size_of(data)
    s, (typ, data) = timed(lambda: m.uid('SEARCH', None, 'SUBJECT', word))
    check(typ, data, 'SEARCH')
    out['search_subject_s'] = s
    out['search_hits'] = len(data[0].split())
    s, (typ, data) = timed(lambda: m.uid('STORE', '1:*', '+FLAGS.SILENT', '(\\Flagged)'))
    check(typ, data, 'STORE')
    out['store_flags_s'] = s
    typ, data = m.uid('SEARCH', None, 'FLAGGED')
    out['flagged_after_store'] = len(data[0].split())
    # Undone, untimed: the corpus never sets \Flagged, so this restores the tree as made.
    check(*m.uid('STORE', '1:*', '-FLAGS.SILENT', '(\\Flagged)'), 'STORE undo')
    m.logout()
    print(json.dumps(out))


def clients(host, port, user, password, n, seconds):
    """n sessions at once, each: login, SELECT, FETCH FLAGS of all, then IDLE-like NOOPs until the end."""
    errors = []
    ready = threading.Barrier(n + 1, timeout=60)
    done = threading.Event()

    def one():
        try:
            m = imaplib.IMAP4(host, port)
            m.login(user, password)
            m.select('INBOX', readonly=True)
            m.uid('FETCH', '1:*', '(FLAGS)')
            ready.wait()
            while not done.wait(0.5):
                m.noop()
            m.logout()
        except Exception as e:  # noqa: BLE001 - reported, not hidden
            errors.append(repr(e))
            try:
                ready.abort()
            except Exception:  # noqa: BLE001
                pass

    threads = [threading.Thread(target=one, daemon=True) for _ in range(n)]
    for th in threads:
        th.start()
    try:
        ready.wait()
        print('READY', flush=True)
        # The parent samples memory now; it closes our stdin (or the time runs out) to end.
        deadline = time.time() + seconds
        while time.time() < deadline:
            if sys.stdin.readline() == '':
                break
    except threading.BrokenBarrierError:
        pass
    done.set()
    for th in threads:
        th.join(10)
    print(json.dumps({'clients': n, 'errors': errors[:5], 'error_count': len(errors)}), flush=True)


if __name__ == '__main__':
    host, port, user, password, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
    if mode == 'ops':
        ops(host, port, user, password, sys.argv[6])
    elif mode == 'clients':
        clients(host, port, user, password, int(sys.argv[6]), float(sys.argv[7]))
    else:
        raise SystemExit(f'unknown mode {mode}')
