"""One step of a switch on one member of an Incus cluster, in ONE Ansible task (tasks/member.yml).

    python3 -c "$(cat member_boot.py)" member-<step>    < PAYLOAD_JSON

Run as `python3 -c` with its payload on stdin, so that a member's step costs one round trip: no
folder made, no file copied, none removed by tasks of their own (each a round trip over SSH; five
of them made a step on three members 15 s). PAYLOAD_JSON holds the helpers' sources and this
switch's rulesets (files: name -> text), switch_step.py's argument (args; its file paths are names
in files), for the step "stop" the flush of this member's GPU machines (flush), and what bounds the
step on the member (timeout, lock, run, seq).

A step never outlives its time limit, nor the safe state that follows it. Ansible's `timeout:` only
stops Ansible waiting, and a controller that stops ansible-playbook does not stop a process on a
member; a grant that landed after the safe state would give access while every record says nobody.
So, on the member:
  - the step runs in a process group of its own (setsid), holding an exclusive flock on the
    member's lock file (lock), where it writes its pid and start time;
  - it gives up on its own deadline, a little before the task's (timeout): its children are killed
    (their whole group), it answers "the time limit passed" and exits 1;
  - member-safe takes the same lock, killing the holder's process group first (only when the pid
    and start time in the lock file are that live process), then records a fence (run, seq): a
    step of the same switch with a lower seq that starts on this member later still (a slow SSH
    session) refuses to run.

The files go to a private folder (mkdtemp), switch_step.py runs from there with the step, then
for "stop" (the services stopped) gpu_flush.py flush for each GPU machine, as on one host; the
folder goes in every case. Prints switch_step.py's JSON (with failed_step when the flush failed,
and gpu_records: what each flush step recorded, "<machine>.<step>" -> its record, for the switch's
report, whether the flush succeeded or failed; a step past its time limit answers that alone),
passes its stderr on, and exits with its status, or 1 when a flush failed or the time limit passed.
"""
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

PATH_ARGS = ("revoke_batch", "grant_batch", "ruleset_none", "ruleset_new")
# The step gives up this long before the task's time limit (at most a quarter of it), so that its
# own answer, not Ansible's, says what happened.
MARGIN_S = 5.0


class TimeLimit(Exception):
    """The step's deadline on the member passed."""


def main(step):
    payload = json.load(sys.stdin)
    limit = float(payload.get("timeout") or 30)
    deadline = time.monotonic() + limit - min(MARGIN_S, limit / 4)
    try:
        # Its own process group: what member-safe kills, and nothing else.
        os.setsid()
    except OSError:
        pass
    lock = take_lock(payload["lock"], step, deadline)
    if isinstance(lock, str):
        return answer("Take the member's switch lock", lock)
    try:
        fenced = fence(payload, step)
        if fenced:
            return answer("Check that the switch has not been closed on this member", fenced)
        return run_step(step, payload, deadline)
    except TimeLimit:
        # Only a group of its own (setsid worked): never the group of the process that started it.
        if os.getpgrp() == os.getpid():
            kill_group(os.getpid(), spare=os.getpid())
        return answer("The member's time limit", "the step passed its time limit on the member (%g s): stopped, its processes killed" % limit)
    finally:
        release(lock)


def run_step(step, payload, deadline):
    work = tempfile.mkdtemp(prefix="anklume-ai-switch.")
    try:
        for name, text in payload["files"].items():
            # Names only: the payload names files, never a path elsewhere on the member.
            with open(os.path.join(work, os.path.basename(name)), "w") as f:
                f.write(text)
        args = dict(payload["args"])
        for key in PATH_ARGS:
            args[key] = os.path.join(work, os.path.basename(args[key]))
        # switch_step.py's own commands end before the deadline too.
        args["timeout"] = left(deadline)
        done = child([sys.executable, os.path.join(work, "switch_step.py"), step, json.dumps(args)], deadline)
        sys.stderr.write(done.stderr)
        if done.returncode != 0 or not payload.get("flush"):
            sys.stdout.write(done.stdout)
            return done.returncode
        out = json.loads(done.stdout)
        try:
            failed = flush(work, payload["flush"], out, deadline)
        finally:
            out["gpu_records"] = flush_records(os.path.join(work, "gpu"))
        if failed:
            out["failed_step"] = "Flush GPU memory"
            sys.stderr.write("; ".join(failed) + "\n")
        print(json.dumps(out))
        return 1 if failed else 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


def flush(work, spec, out, deadline):
    """gpu_flush.py flush for each GPU machine of this member; what failed, per machine."""
    failed = []
    for machine in spec["machines"]:
        argv = [sys.executable, os.path.join(work, "gpu_flush.py"), "flush",
                "--type", spec["types"].get(machine, "lxc"), "--project", spec["project"], "--instance", machine,
                "--proc-root", spec["proc_root"], "--record-dir", os.path.join(work, "gpu"),
                "--retries", str(spec["retries"]), "--delay", str(spec["delay"])]
        if spec["scrub"]:
            argv += ["--"] + spec["scrub"]
        done = child(argv, deadline)
        if done.returncode != 0:
            # gpu_flush.py names the machine in its message.
            failed.append((done.stderr or done.stdout).strip() or "%s: exit %d" % (machine, done.returncode))
        else:
            out.setdefault("changed", []).append("flushed " + machine)
    return failed


def flush_records(folder):
    """What gpu_flush.py recorded in folder, by file name without .json (<machine>.<step>)."""
    records = {}
    try:
        names = sorted(os.listdir(folder))
    except FileNotFoundError:
        return records
    for name in names:
        if not name.endswith(".json"):
            continue
        try:
            with open(os.path.join(folder, name), encoding="utf-8") as f:
                records[name[:-len(".json")]] = json.load(f)
        except (OSError, ValueError):
            # Half written when the step was stopped: the report lacks that step, as on one host.
            continue
    return records


def left(deadline):
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeLimit()
    return remaining


def child(argv, deadline):
    """A child in this step's process group, stopped at the deadline (TimeLimit)."""
    try:
        return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False, timeout=left(deadline))
    except subprocess.TimeoutExpired as err:
        raise TimeLimit() from err


def answer(failed_step, why):
    print(json.dumps({"failed_step": failed_step, "changed": []}))
    sys.stderr.write(why + "\n")
    return 1


def stat_fields(pid):
    """/proc/<pid>/stat from its third field on (state, ppid, pgrp, ...); None when gone."""
    try:
        with open("/proc/%s/stat" % pid) as f:
            stat = f.read()
        return stat[stat.rindex(")") + 2:].split()
    except (OSError, ValueError):
        return None


def start_time(pid):
    """A process's start time (clock ticks since boot, /proc/<pid>/stat field 22); None when gone."""
    fields = stat_fields(pid)
    return fields[19] if fields and len(fields) > 19 else None


def group_members(pgid):
    """The live (not zombie) processes of a process group."""
    found = []
    for entry in os.listdir("/proc"):
        fields = stat_fields(entry) if entry.isdigit() else None
        if fields and fields[0] != "Z" and int(fields[2]) == pgid:
            found.append(int(entry))
    return found


def kill_group(pgid, spare=None):
    """SIGKILL every process of the group but `spare`, until none is left (a child may fork meanwhile)."""
    for _ in range(100):
        victims = [pid for pid in group_members(pgid) if pid != spare]
        if not victims:
            return
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.02)


def take_lock(path, step, deadline):
    """The member's switch lock, held until release(); a string saying why when it cannot be had.

    A step waits for it until its deadline; member-safe kills the holder's process group (the
    holder is a step of a switch that was given up, or another controller's)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as err:
        return "%s: %s" % (path, err)
    holder = ""
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
            if step == "member-safe":
                kill_holder(holder)
            if time.monotonic() >= deadline:
                os.close(fd)
                return "%s is held by another switch step (pid and start time: %s) past this step's time limit" % (path, holder or "not written yet")
            time.sleep(0.05)
    os.ftruncate(fd, 0)
    os.pwrite(fd, ("%d %s\n" % (os.getpid(), start_time(os.getpid()))).encode(), 0)
    return fd


def kill_holder(holder):
    """SIGKILL the holder's process group, when the lock file names a live process by pid and start time."""
    try:
        pid, started = holder.split()
        pid = int(pid)
    except ValueError:
        # Not written yet (the holder has just taken the lock): the next round reads it.
        return
    fields = stat_fields(pid)
    if pid == os.getpid() or not fields or len(fields) < 20 or fields[19] != started:
        return
    try:
        # Its process group when it leads one (setsid worked), else the process alone.
        if int(fields[2]) == pid:
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def fence(payload, step):
    """member-safe records (run, seq); a step of that run with a lower seq refuses. Why, or None."""
    path = payload["lock"] + ".fence"
    mine = {"run": payload.get("run", ""), "seq": int(payload.get("seq") or 0)}
    if step == "member-safe":
        try:
            with open(path, "w") as f:
                json.dump(mine, f)
        except OSError as err:
            sys.stderr.write("%s: %s\n" % (path, err))
        return None
    try:
        with open(path) as f:
            fenced = json.load(f)
    except (OSError, ValueError):
        return None
    if mine["run"] and fenced.get("run") == mine["run"] and mine["seq"] < int(fenced.get("seq", 0)):
        return "the safe state of this switch already ran on this member (step %d); this step (%d) started after it and does nothing" % (fenced["seq"], mine["seq"])
    return None


def release(lock):
    if isinstance(lock, int):
        # Empty first: a pid left in the file could name another process once this one is gone.
        os.ftruncate(lock, 0)
        os.close(lock)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
