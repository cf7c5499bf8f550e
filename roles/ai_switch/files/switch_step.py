#!/usr/bin/env python3
"""The host-side steps of an ai-switch, several in one process (one Ansible task each, not one per action).

    switch_step.py revoke|grant|safe|member-read|member-revoke|member-grant|member-safe|member-stop|member-start ARGS_JSON

ARGS_JSON is one JSON object (tasks/main.yml, vars/main.yml): the holder set (family, table,
set), the GPU machines, their project and services, the host's copies of the ruleset (persist),
the state file, the rulesets and batches of this switch, and check (Ansible's check mode).

  revoke  the old holder's elements out (the batch; else the no-holder ruleset reloaded; else the
          holder set emptied), the set read back (empty, or fail), the old holder's tracked
          connections forgotten (conntrack -D), "nobody" recorded (the host's copies of the ruleset
          and the state file), then the GPU services stopped
  grant   the new holder's elements in (the batch), the set read back (the new holder's bridge
          alone, or fail), the GPU services started, the new holder recorded with the report
  safe    the rescue: every action is tried whatever the previous one did: the holder set
          emptied, the no-holder ruleset reloaded, the set read back, "nobody" recorded, the
          services started, the report written (what failed, and what the safe state looks like)

On an Incus cluster (tasks/member.yml runs them on each member, over Ansible's connection; the
machine that runs anklume-gen keeps the state file, so no member step writes it):

  member-read    read only: every holder set the live table has, by name ("sets" in the output)
  member-revoke  revoke (the batch, else the no-holder ruleset, else every holder set emptied,
                 each judged by reading every holder set of the live table back: empty, or the
                 next way, or fail), the tracked connections forgotten, the boot copy = no holder
  member-grant   the grant batch, every holder set read back (exactly `expect`, or fail), the
                 member's boot copy = the new ruleset
  member-safe    every holder set emptied, the no-holder ruleset reloaded, read back, the boot
                 copy = no holder; exit 1 when the sets could not be read back empty
  member-stop, member-start   the GPU services of this member's GPU machines

The order inside a step is the switch's own (tasks/main.yml). The first action that fails ends
revoke and grant: its name is the step anklume-gen reports ("Stop the GPU services" ...).

Prints one JSON object on stdout: changed (what it changed; with check, what it would change),
took (milliseconds of each action, for bench/aiSwitch.ts), and on failure failed_step (why goes
to stderr). Exit status 0, or 1 when an action failed (safe: always 0).
"""
import json
import subprocess
import sys
import time

# The role's directory is no place for a __pycache__ (it may be read-only, and is a source tree).
sys.dont_write_bytecode = True
from install_atomic import write  # noqa: E402  (the role's atomic writer, beside this file)


class StepFailed(Exception):
    def __init__(self, step, error):
        super().__init__(error)
        self.step = step


class Step:
    def __init__(self, args):
        self.args = args
        self.check = bool(args.get("check"))
        self.changed = []
        self.took = {}
        # On a cluster member (member_boot.py passes what is left of the step's time limit): no
        # command outlives the step. None on one host, where the task's process ends with Ansible.
        self.deadline = time.monotonic() + float(args["timeout"]) if args.get("timeout") else None

    def time_left(self):
        """Seconds a command may still take (None: no limit)."""
        return None if self.deadline is None else max(0.1, self.deadline - time.monotonic())

    def command(self, argv):
        """subprocess.run of argv within the step's time limit; TimeoutExpired once it passed."""
        return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False, timeout=self.time_left())

    def timed(self, what, fn):
        start = time.monotonic()
        try:
            return fn()
        finally:
            self.took[what] = round((time.monotonic() - start) * 1000, 1) + self.took.get(what, 0)

    def run(self, what, argv, stdout=False):
        """One command, as an argument list (no shell); its exit status and stderr (stdout when asked)."""
        def go():
            # A program that cannot be run gets the shell's statuses: 127 not found, 126 not runnable.
            try:
                done = self.command(argv)
            except subprocess.TimeoutExpired:
                return 124, "%s: stopped, the step's time limit passed" % argv[0]
            except FileNotFoundError as err:
                return 127, "%s: %s" % (argv[0], err)
            except OSError as err:
                return 126, "%s: %s" % (argv[0], err)
            if stdout and done.returncode == 0:
                return 0, done.stdout
            return done.returncode, (done.stderr or done.stdout).strip()
        return self.timed(what, go)

    def change(self, step, what, argv):
        """A command that changes the host: in check mode only said; its failure fails `step`."""
        if self.check:
            self.changed.append("would run: " + " ".join(argv))
            return
        rc, err = self.run(what, argv)
        if rc != 0:
            raise StepFailed(step, "%s failed (exit %d): %s" % (" ".join(argv), rc, err))
        self.changed.append(" ".join(argv))

    def holders(self):
        """The elements of the holder set, as the kernel lists them."""
        a = self.args
        argv = ["nft", "-j", "list", "set", a["family"], a["table"], a["set"]]
        def go():
            try:
                done = self.command(argv)
            except subprocess.TimeoutExpired as err:
                raise OSError("%s: stopped, the step's time limit passed" % " ".join(argv)) from err
            if done.returncode != 0:
                raise OSError("%s failed (exit %d): %s" % (" ".join(argv), done.returncode, done.stderr.strip()))
            return done.stdout
        out = self.timed("nft list set (read back)", go)
        found = []
        for item in json.loads(out).get("nftables", []):
            if "set" in item:
                found.extend(item["set"].get("elem", []))
        return found

    def holder_sets(self):
        """The holder sets the live table has: ai_holder, and on a cluster ai_holder_subnet too.

        Emptying ai_holder alone leaves a cluster's holder subnet reaching ai-tools across members;
        the table may be another infra's (a fallback runs when the batch did not match), so the
        names come from the kernel, not from this switch. When the table cannot be listed, the
        holder set alone: its flush then fails and says why.
        """
        a = self.args
        names = [a["set"], a["set"] + "_subnet"]
        argv = ["nft", "-j", "-t", "list", "sets", a["family"]]
        rc, out = self.run("nft list sets", argv, stdout=True)
        if rc != 0:
            return names[:1]
        try:
            live = {item["set"]["name"] for item in json.loads(out).get("nftables", []) if "set" in item and item["set"].get("table") == a["table"]}
        except (ValueError, KeyError, TypeError, AttributeError):
            return names[:1]
        return [n for n in names if n in live] or names[:1]

    def flush_argv(self):
        """One nft transaction that empties every holder set the live table has."""
        a = self.args
        argv = ["nft"]
        for i, name in enumerate(self.holder_sets()):
            argv += ([";"] if i else []) + ["flush", "set", a["family"], a["table"], name]
        return argv

    def elements(self, name):
        """The elements of one set, as text: a bridge name, an address, or ADDR/LEN for a prefix."""
        a = self.args
        argv = ["nft", "-j", "list", "set", a["family"], a["table"], name]
        rc, out = self.run("nft list set (read back)", argv, stdout=True)
        if rc != 0:
            raise OSError("%s failed (exit %d): %s" % (" ".join(argv), rc, out))
        found = []
        for item in json.loads(out).get("nftables", []):
            for e in item.get("set", {}).get("elem", []) if "set" in item else []:
                found.append(element_text(e))
        return sorted(found)

    def services(self, step, verb):
        a = self.args
        if not a["services"]:
            return
        for machine in a["machines"]:
            argv = ["incus", "exec", machine, "--project", a["project"], "--", "systemctl", verb] + a["services"]
            self.change(step, "incus exec %s systemctl %s" % (machine, verb), argv)

    def record(self, step, ruleset, state, also=()):
        """The host's copies of the ruleset and the state file (durable, atomic), then `also`, in one go."""
        a = self.args
        if self.check:
            self.changed.extend("would write: " + path for path in a["persist"] + ([a["state_file"]] if a.get("state_file") else []) + [path for path, _ in also])
            return
        def go():
            with open(ruleset, "rb") as f:
                data = f.read()
            failed = []
            # A member of a cluster keeps no state file: the machine that runs anklume-gen does.
            states = [(a["state_file"], state.encode())] if a.get("state_file") else []
            for path, content in [(path, data) for path in a["persist"]] + states + list(also):
                try:
                    if write(path, content):
                        self.changed.append("wrote: " + path)
                except OSError as err:
                    failed.append("%s: %s" % (path, err))
            return failed
        try:
            failed = self.timed("write the ruleset copies and the state file", go)
        except OSError as err:
            failed = ["%s: %s" % (ruleset, err)]
        if failed:
            raise StepFailed(step, "; ".join(failed))


def revoke_live(s):
    """The revoke's nft part: the batch, else the no-holder ruleset, else every holder set emptied."""
    a = s.args
    batch = ["nft", "-f", a["revoke_batch"]]
    if s.check:
        s.changed.append("would run: " + " ".join(batch))
    else:
        # Nobody has access once this is done, whatever the live table held: the exact batch (it
        # also removes the old holder's allow elements), else a full reload of the no-holder
        # ruleset, else emptying the holder set, which alone closes ai-tools (checked first).
        ways = [
            ("Revoke AI access from the current holder", "nft -f revoke batch", batch),
            ("Revoke by reloading the no-holder ruleset (the batch did not match the live table)", "nft -f no-holder ruleset", ["nft", "-f", a["ruleset_none"]]),
            ("Revoke by emptying the holder set", "nft flush set", None),
        ]
        errors = []
        for step, what, argv in ways:
            # Listed only when needed: the live table's holder sets (ai_holder_subnet too, on a cluster).
            argv = argv or s.flush_argv()
            rc, err = s.run(what, argv)
            if rc == 0:
                s.changed.append(" ".join(argv))
                break
            errors.append("%s failed (exit %d): %s" % (" ".join(argv), rc, err))
        else:
            raise StepFailed(ways[-1][0], "; ".join(errors))


def revoke(s):
    a = s.args
    revoke_live(s)
    if not s.check:
        try:
            left = s.holders()
        except (OSError, ValueError) as err:
            raise StepFailed("Check that nobody holds AI access", str(err)) from err
        if left:
            raise StepFailed("Check that nobody holds AI access", "the holder set still names " + ", ".join(left))
    # The old holder's packets are dropped from here; its tracked connections are forgotten too,
    # so that none joins ai-tools to a domain without access (anklume-gen audit checks it).
    forget(s)
    # The truth from now on is "nobody", for the state file and for what the host loads at boot.
    s.record("Record that nobody holds AI access", a["ruleset_none"], "")
    s.services("Stop the GPU services", "stop")


def forget(s):
    """conntrack -D for each [source, destination] pair; nothing matched (exit 1) is no failure."""
    step = "Forget the connections between ai-tools and the old holder"
    for src, dst in s.args["forget_pairs"]:
        argv = ["conntrack", "-D", "-s", src, "-d", dst]
        if s.check:
            s.changed.append("would run: " + " ".join(argv))
            continue
        rc, err = s.run("conntrack -D", argv)
        if rc == 127:
            # No conntrack on this host: nothing is tracked by it to delete.
            print("conntrack is not installed: no tracked connection deleted", file=sys.stderr)
            return
        if rc == 0:
            s.changed.append("%s -> %s: %s" % (src, dst, err.splitlines()[-1] if err else "deleted"))
        elif rc != 1:
            raise StepFailed(step, "%s failed (exit %d): %s" % (" ".join(argv), rc, err))


def grant(s):
    a = s.args
    s.change("Grant AI access to the new holder", "nft -f grant batch", ["nft", "-f", a["grant_batch"]])
    if not s.check:
        step = "Check that the new holder alone holds AI access"
        try:
            found = s.holders()
        except (OSError, ValueError) as err:
            raise StepFailed(step, str(err)) from err
        if found != [a["new_bridge"]]:
            raise StepFailed(step, "the holder set names %s, expected [%s]" % (found, a["new_bridge"]))
    s.services("Start the GPU services", "start")
    # The host's copies of the ruleset and the state file change together: until here both said
    # "nobody" (a reboot in between loads no holder), from here both name the new holder.
    report = [(a["result_file"], json.dumps({"ok": True}).encode())] if a["result_file"] else []
    s.record("Record the new holder", a["ruleset_new"], a["new"] + "\n", report)


def safe(s):
    """Every action tried, whatever the previous one did; what each gave goes to the report."""
    a = s.args
    report = {"ok": False, "failed_task": a["failed_task"], "message": a["message"]}
    for what, argv in [("nft flush set", s.flush_argv()), ("nft -f no-holder ruleset", ["nft", "-f", a["ruleset_none"]])]:
        try:
            s.change("Restore the safe state", what, argv)
        except StepFailed as err:
            print(err, file=sys.stderr)
    try:
        report["revoked"] = s.holders() == []
    except (OSError, ValueError) as err:
        print(err, file=sys.stderr)
        report["revoked"] = False
    try:
        s.record("Restore the safe state", a["ruleset_none"], "")
        report["recorded"] = True
    except (OSError, StepFailed) as err:
        print(err, file=sys.stderr)
        report["recorded"] = False
    report["services_started"] = True
    for machine in a["machines"] if a["services"] else []:
        try:
            s.change("Restore the safe state", "incus exec %s systemctl start" % machine, ["incus", "exec", machine, "--project", a["project"], "--", "systemctl", "start"] + a["services"])
        except StepFailed as err:
            print(err, file=sys.stderr)
            report["services_started"] = False
    if a["result_file"] and not s.check:
        try:
            s.timed("write the report", lambda: write(a["result_file"], json.dumps(report).encode()))
        except OSError as err:
            print("%s: %s" % (a["result_file"], err), file=sys.stderr)


def element_text(e):
    """An element of `nft -j list set` as text: "net-pro", "10.100.2.10", "10.100.2.0/24", "A-B"."""
    if isinstance(e, dict) and "elem" in e:
        e = e["elem"].get("val", e["elem"])
    if isinstance(e, dict) and "prefix" in e:
        return "%s/%s" % (e["prefix"]["addr"], e["prefix"]["len"])
    if isinstance(e, dict) and "range" in e:
        return "%s-%s" % tuple(e["range"])
    return str(e)


def read_back(s, step, expect):
    """Every holder set of the live table against `expect` (a set not named there must be empty)."""
    try:
        names = s.holder_sets()
        seen = {name: s.elements(name) for name in names}
    except (OSError, ValueError) as err:
        raise StepFailed(step, str(err)) from err
    missing = sorted(set(expect) - set(seen))
    if missing:
        raise StepFailed(step, "the live table has no set %s" % ", ".join(missing))
    wrong = ["%s holds [%s], expected [%s]" % (n, ", ".join(v), ", ".join(sorted(expect.get(n, [])))) for n, v in sorted(seen.items()) if v != sorted(expect.get(n, []))]
    if wrong:
        raise StepFailed(step, "; ".join(wrong))


def member_revoke(s):
    """On one member of a cluster: the revoke, every holder set read back empty, the boot copy.

    The batch is written from the records (the machine that runs anklume-gen need not be a
    member), and a member may hold what they do not say: the one a failed switch could not reach
    keeps its old holder while the records say nobody, and the batch from nobody removes nothing.
    So each way is judged by what the sets read back, not by nft's exit status alone: the batch,
    else the no-holder ruleset reloaded, else every holder set emptied.
    """
    a = s.args
    check = "Check that nobody holds AI access"
    if s.check:
        s.changed.append("would run: nft -f " + a["revoke_batch"])
    else:
        ways = [("nft -f revoke batch", ["nft", "-f", a["revoke_batch"]]), ("nft -f no-holder ruleset", ["nft", "-f", a["ruleset_none"]]), ("nft flush set", None)]
        problems = []
        for what, argv in ways:
            argv = argv or s.flush_argv()
            rc, err = s.run(what, argv)
            if rc != 0:
                problems.append("%s failed (exit %d): %s" % (" ".join(argv), rc, err))
                continue
            s.changed.append(" ".join(argv))
            try:
                read_back(s, check, {})
                break
            except StepFailed as err:
                problems.append("after %s: %s" % (" ".join(argv), err))
        else:
            raise StepFailed(check, "; ".join(problems))
    forget(s)
    s.record("Record that nobody holds AI access", a["ruleset_none"], "")


def member_grant(s):
    """On one member of a cluster: the grant, every holder set read back as `expect`, the boot copy."""
    a = s.args
    s.change("Grant AI access to the new holder", "nft -f grant batch", ["nft", "-f", a["grant_batch"]])
    if not s.check:
        read_back(s, "Check that the new holder alone holds AI access", a["expect"])
    s.record("Record the new holder", a["ruleset_new"], "")


def member_safe(s):
    """On one member of a cluster, the safe state: every action tried; exit 1 unless read back empty."""
    a = s.args
    for what, argv in [("nft flush set", s.flush_argv()), ("nft -f no-holder ruleset", ["nft", "-f", a["ruleset_none"]])]:
        try:
            s.change("Restore the safe state", what, argv)
        except StepFailed as err:
            print(err, file=sys.stderr)
    if not s.check:
        read_back(s, "Check that nobody holds AI access", {})
    s.record("Record that nobody holds AI access", a["ruleset_none"], "")


def member_read(s):
    """On one member of a cluster, read only: every holder set the live table has, for the plan."""
    try:
        s.sets = {name: s.elements(name) for name in s.holder_sets()}
    except (OSError, ValueError) as err:
        raise StepFailed("Read the holder sets", str(err)) from err


STEPS = {
    "revoke": revoke,
    "grant": grant,
    "safe": safe,
    "member-read": member_read,
    "member-revoke": member_revoke,
    "member-grant": member_grant,
    "member-safe": member_safe,
    "member-stop": lambda s: s.services("Stop the GPU services", "stop"),
    "member-start": lambda s: s.services("Start the GPU services", "start"),
}


def main(argv):
    if len(argv) != 2 or argv[0] not in STEPS:
        print("usage: switch_step.py %s ARGS_JSON" % "|".join(STEPS), file=sys.stderr)
        return 2
    s = Step(json.loads(argv[1]))
    out = {}
    code = 0
    try:
        STEPS[argv[0]](s)
    except StepFailed as err:
        out = {"failed_step": err.step}
        print(err, file=sys.stderr)
        code = 1
    # member-read: what it read (the holder sets, by name).
    if getattr(s, "sets", None) is not None:
        out["sets"] = s.sets
    print(json.dumps(dict(out, changed=s.changed, took=s.took)))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
