"""Drives redlock-py for tests/interop_redlock_py.rs: one long-lived process per Redlock, so
it can hold a lock while the Rust side acts.

Usage: redlock_py_driver.py RETRY_COUNT RETRY_DELAY_S HOST:PORT [HOST:PORT ...]

Builds `redlock.Redlock([{"host": h, "port": p}, ...], retry_count=..., retry_delay=...)`
(plain dicts, as redlock-py's README does: redis-py defaults, so no socket timeouts), prints
one `ready ...` line, then answers one line per command line on stdin. Resources and values
travel as lowercase hex so any bytes fit on a line; a resource that is valid UTF-8 is handed to
redlock-py as a `str` (what applications do; redis-py encodes it back to the same bytes).

  ready <redlock-py version> <redis-py version> <quorum> <retry_count> <retry_delay>
  probe                   -> probe <retry_count if 0 is passed> <retry_delay if 0 is passed>
  lock RES_HEX TTL_MS     -> locked <validity_ms> <key_hex>   (lock() returned a Lock)
                           | false <key_hex>                   (lock() returned False)
                           | raised <ExceptionName> <key_hex>  (lock() raised)
  unlock RES_HEX KEY_HEX  -> unlocked                          (unlock() returned)
                           | raised <ExceptionName>            (unlock() raised)
  quit                    -> (exits 0)

<key_hex> is the random value lock() generated for that call (redlock-py's `Lock.key`),
captured by wrapping `get_unique_id` on the instance, so the test also learns it when lock()
returns False or raises. `unlock` builds `redlock.Lock(0, resource, key)` itself, so any key
(a wrong one, or resplock's `guard.value()`) can be used.

If `redlock` or `redis` cannot be imported it prints `import-error <message>` and exits 3.
"""

import sys


def out(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


try:
    from importlib.metadata import version

    import redis  # noqa: F401
    import redlock
except Exception as e:  # noqa: BLE001 - report anything that stops the import
    out("import-error %s: %s" % (type(e).__name__, str(e).replace("\n", " ")))
    sys.exit(3)


def resource_of(res_hex):
    raw = bytes.fromhex(res_hex)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


def main():
    retry_count = int(sys.argv[1])
    retry_delay = float(sys.argv[2])
    servers = []
    for hp in sys.argv[3:]:
        host, port = hp.rsplit(":", 1)
        servers.append({"host": host, "port": int(port)})
    dlm = redlock.Redlock(servers, retry_count=retry_count, retry_delay=retry_delay)

    generated = []
    original_get_unique_id = dlm.get_unique_id

    def capturing_get_unique_id():
        val = original_get_unique_id()
        generated.append(val)
        return val

    dlm.get_unique_id = capturing_get_unique_id

    out(
        "ready %s %s %d %d %s"
        % (version("redlock-py"), version("redis"), dlm.quorum, dlm.retry_count, dlm.retry_delay)
    )

    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        op = words[0]
        if op == "quit":
            return
        if op == "probe":
            zero = redlock.Redlock(servers, retry_count=0, retry_delay=0)
            out("probe %d %s" % (zero.retry_count, zero.retry_delay))
        elif op == "lock":
            resource, ttl = resource_of(words[1]), int(words[2])
            del generated[:]
            try:
                result = dlm.lock(resource, ttl)
            except Exception as e:  # noqa: BLE001 - the test asserts which one
                out("raised %s %s" % (type(e).__name__, generated[-1].hex() if generated else "-"))
                continue
            if result is False:
                out("false %s" % generated[-1].hex())
            else:
                out("locked %d %s" % (result.validity, result.key.hex()))
        elif op == "unlock":
            lock = redlock.Lock(0, resource_of(words[1]), bytes.fromhex(words[2]))
            try:
                dlm.unlock(lock)
            except Exception as e:  # noqa: BLE001
                out("raised %s" % type(e).__name__)
                continue
            out("unlocked")
        else:
            out("unknown-command %s" % op)


if __name__ == "__main__":
    main()
