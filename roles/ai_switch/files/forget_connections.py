#!/usr/bin/env python3
"""Delete the tracked connections between pairs of subnets, all in one process (one Ansible task).

    forget_connections.py SRC DST [SRC DST ...]

Runs `conntrack -D -s SRC -d DST` for each pair. conntrack exits 1 when no entry matched, which is
no failure. On a host without conntrack nothing is tracked by it to delete: says so, exits 0.
Prints one line per pair whose entries were deleted; exit status 0 unless conntrack failed.
"""
import subprocess
import sys


def main(args):
    if len(args) % 2:
        print("forget_connections.py: expected SRC DST pairs", file=sys.stderr)
        return 2
    for src, dst in zip(args[::2], args[1::2]):
        try:
            r = subprocess.run(["conntrack", "-D", "-s", src, "-d", dst], capture_output=True, text=True, check=False)
        except FileNotFoundError:
            print("conntrack is not installed: no tracked connection deleted", file=sys.stderr)
            return 0
        if r.returncode == 0:
            print("%s -> %s: %s" % (src, dst, r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "deleted"))
        elif r.returncode != 1:
            print("conntrack -D -s %s -d %s failed (%d): %s" % (src, dst, r.returncode, r.stderr.strip()), file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
