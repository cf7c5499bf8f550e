#!/usr/bin/env python3
"""Write files atomically and durably: write(), which switch_step.py imports for the switch's records.

    install_atomic.py (--file SRC | --text TEXT) DEST [DEST ...] [(--file SRC | --text TEXT) DEST ...]

Each DEST gets the content of the preceding --file or --text: written to a temporary file in the
same directory, flushed to disk, then renamed over DEST, and the directory flushed too, so a reader
(or a power cut) sees the old or the new content, never an empty or half file. Missing parent directories are created (0755); files are 0644.
Prints one line per file whose content changed; exit status 0 when every write succeeded. The
command line is write() alone in a fresh process, which is how the tests watch its system calls
(test/files.test.ts, with strace).
"""
import os
import sys
import tempfile


def write(dest, data):
    parent = os.path.dirname(os.path.abspath(dest))
    os.makedirs(parent, mode=0o755, exist_ok=True)
    try:
        with open(dest, "rb") as current:
            if current.read() == data:
                return False
    except FileNotFoundError:
        pass
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=".anklume-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    # The rename is durable only once the directory entry is on disk.
    dirfd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dirfd)
    finally:
        os.close(dirfd)
    return True


def main(args):
    data = None
    failed = False
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("--file", "--text"):
            if i + 1 >= len(args):
                sys.exit("install_atomic: %s needs a value" % arg)
            if arg == "--file":
                with open(args[i + 1], "rb") as src:
                    data = src.read()
            else:
                data = args[i + 1].encode()
            i += 2
            continue
        if data is None:
            sys.exit("install_atomic: %s: no --file or --text before it" % arg)
        try:
            if write(arg, data):
                print("changed: %s" % arg)
        except OSError as err:
            print("install_atomic: %s: %s" % (arg, err), file=sys.stderr)
            failed = True
        i += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
