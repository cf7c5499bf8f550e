#!/usr/bin/env python3
"""The steps of the VRAM flush of an ai-switch, for one GPU machine of ai-tools.

    gpu_flush.py STEP --type lxc|vm --project P --instance I --record-dir DIR [--proc-root R]
                 [--retries N --delay S] [-- CMD...]

STEP is kill, scrub (runs CMD in the GPU machine), verify, reset or scan; or flush, all of them in
that order in one process (one Ansible task per GPU machine): kill, scrub (when CMD is given),
verify (looked at again up to N more times, S seconds apart: a killed process can take a moment
to leave the GPU), reset, scan. Each step writes its result to DIR/<instance>.<step>.json, so that
anklume-gen can report what happened even when a later step fails, and a single step prints it as
one JSON object; flush prints one JSON object instead: changed (a process was killed or a GPU
reset), took (milliseconds of each step, for bench/aiSwitch.ts), and when a step failed,
failed_step (the name anklume-gen reports; why goes to stderr). Exit status: 0 done (a failed or skipped
GPU reset is a warning, not a failure, and so is a failed scan after the flush); 1 the step failed
(why on stderr); 3 (verify) a compute process of the instance, or one whose owner cannot be told,
is still on the GPU.

Where it runs (docs/ai-switch.md):
- lxc: nvidia-smi and kill run on the HOST. The NVIDIA driver has no PID-namespace support
  (NVIDIA/nvidia-docker issue #1483): NVML inside a container reports host PIDs, which name no
  process there, or the wrong one. The host lists every compute process, and the cgroup of each
  PID (<proc root>/<pid>/cgroup) tells whether it runs in the instance: Incus runs a container in
  /lxc.payload.<project>_<name> (/lxc.payload.<name> in the default project).
- vm: the VM has its own kernel, driver and PIDs: every command runs inside, through incus exec.
nvidia-smi is found on PATH (the tests put a recording stand-in there). On the host a process is
killed through a pidfd, never by number (Machine.kill says why); in a VM, by kill -9 inside.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

PAYLOAD = "lxc.payload."
APPS_QUERY = ["nvidia-smi", "--query-compute-apps=pid,gpu_uuid,used_memory", "--format=csv,noheader,nounits"]
GPUS_QUERY = ["nvidia-smi", "--query-gpu=index,uuid,memory.used,memory.total", "--format=csv,noheader,nounits"]
# Processes that may hold the instance's memory: never left behind by a successful flush.
MUST_GO = ("instance", "unknown")


class StepError(Exception):
    pass


def payload_name(project, instance):
    return instance if project == "default" else "%s_%s" % (project, instance)


def cgroup_owner(text, project, instance):
    """Who a process belongs to, from the text of its /proc/<pid>/cgroup.

    Returns (owner, container): owner is "instance", "container" (another Incus container, named
    by container), "host" (in no container's payload), or "unknown" (nothing readable, or lines
    naming the instance and another container at once: too odd to kill, too odd to let pass).
    Lines are "<id>:<controllers>:<path>", cgroup v1 (one per hierarchy) or v2 ("0::<path>");
    only the path's first component decides, so a cgroup a container creates below its own
    (named like another container's, say) never changes whose process it is.
    """
    containers = set()
    lines = 0
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3 or not parts[2].startswith("/"):
            continue
        lines += 1
        top = parts[2][1:].split("/", 1)[0]
        if top.startswith(PAYLOAD) and len(top) > len(PAYLOAD):
            containers.add(top[len(PAYLOAD):])
    own = payload_name(project, instance)
    if lines == 0 or (own in containers and len(containers) > 1):
        return "unknown", None
    if containers == {own}:
        return "instance", None
    if containers:
        return "container", ",".join(sorted(containers))
    return "host", None


class Machine:
    def __init__(self, args):
        self.type = args.type
        self.project = args.project
        self.instance = args.instance
        self.proc_root = args.proc_root
        self.record_dir = args.record_dir
        # A single step prints its result; flush prints its own summary instead.
        self.quiet = False
        self.killed = []
        self.reset_done = False
        self.inside = ["incus", "exec", args.instance, "--project", args.project, "--"]
        self.prefix = self.inside if args.type == "vm" else []

    def run(self, argv, inside=False):
        cmd = (self.inside if inside else self.prefix) + argv
        try:
            done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
        except OSError as err:
            raise StepError("%s: %s" % (" ".join(cmd), err)) from err
        return done

    def query(self, argv):
        done = self.run(argv)
        if done.returncode != 0:
            raise StepError("%s failed (exit %d): %s" % (" ".join(argv), done.returncode, (done.stderr or done.stdout).strip()))
        return [[f.strip() for f in line.split(",")] for line in done.stdout.splitlines() if line.strip()]

    def gpus(self):
        return [
            {"index": f[0], "uuid": f[1], "memory_used_mib": mib(f[2]), "memory_total_mib": mib(f[3])}
            for f in self.query(GPUS_QUERY)
            if len(f) >= 4
        ]

    def owner(self, pid):
        if self.type == "vm":
            return "instance", None
        try:
            with open(os.path.join(self.proc_root, pid, "cgroup"), encoding="utf-8", errors="replace") as f:
                text = f.read()
        except OSError:
            # Exited since the listing, or a proc root that is not the host's: the latter must
            # not pass for "nothing left", so this is unknown (verify retries, then fails closed).
            return "unknown", None
        return cgroup_owner(text, self.project, self.instance)

    def kill(self, pid):
        """SIGKILL for one compute process of the instance; False when it is gone, or not the instance's.

        On the host the PID is pinned first with a pidfd, then its cgroup is read again: if the
        process exited and its PID went to another since the listing, the read sees the newcomer
        and judges it, and the signal can only reach the process the pidfd names (or fails because
        it has exited). So nothing outside the instance is ever signalled, whatever the timing.
        """
        if self.type == "vm":
            done = self.run(["kill", "-9", pid])
            if done.returncode != 0 and "No such process" not in done.stderr:
                raise StepError("kill -9 %s failed (exit %d): %s" % (pid, done.returncode, done.stderr.strip()))
            return True
        try:
            fd = os.pidfd_open(int(pid))
        except ProcessLookupError:
            return False
        except OSError as err:
            raise StepError("kill -9 %s failed: pidfd_open: %s" % (pid, err)) from err
        try:
            if self.owner(pid)[0] != "instance":
                return False
            signal.pidfd_send_signal(fd, signal.SIGKILL)
            return True
        except ProcessLookupError:
            return False
        except OSError as err:
            raise StepError("kill -9 %s failed: %s" % (pid, err)) from err
        finally:
            os.close(fd)

    def processes(self):
        found = []
        for f in self.query(APPS_QUERY):
            if len(f) < 2 or not f[0].isdigit():
                continue
            owner, container = self.owner(f[0])
            entry = {"pid": f[0], "gpu_uuid": f[1], "used_memory_mib": mib(f[2]) if len(f) > 2 else None, "owner": owner}
            if container:
                entry["container"] = container
            found.append(entry)
        return found

    def record(self, step, result):
        inside = self.type == "vm" or step == "scrub"
        result = dict(result, step=step, machine=self.instance, type=self.type, where="instance" if inside else "host")
        text = json.dumps(result, sort_keys=True)
        os.makedirs(self.record_dir, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.record_dir, prefix=".gpu-", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text + "\n")
        os.replace(tmp, os.path.join(self.record_dir, "%s.%s.json" % (self.instance, step)))
        if not self.quiet:
            print(text)


def mib(field):
    """nvidia-smi's nounits numbers; "[N/A]" and the like when the driver does not say."""
    try:
        return int(float(field))
    except ValueError:
        return None


def step_kill(m, _args):
    result = {"killed": []}
    try:
        result["gpus_before"] = m.gpus()
        result["processes"] = m.processes()
        for p in result["processes"]:
            if p["owner"] == "instance" and m.kill(p["pid"]):
                result["killed"].append(p["pid"])
    finally:
        m.record("kill", result)
    m.killed = result["killed"]
    return 0


def step_scrub(m, args):
    done = m.run(args.command, inside=True)
    m.record("scrub", {"command": args.command, "rc": done.returncode, "detail": (done.stderr or done.stdout).strip()[-2000:]})
    if done.returncode != 0:
        raise StepError("%s failed in %s (exit %d): %s" % (" ".join(args.command), m.instance, done.returncode, done.stderr.strip()))
    return 0


def step_verify(m, _args):
    processes = m.processes()
    left = [p for p in processes if p["owner"] in MUST_GO]
    m.record("verify", {"processes": processes, "left": left})
    if left:
        print("%s: still on the GPU: %s" % (m.instance, ", ".join(describe(p) for p in left)), file=sys.stderr)
        return 3
    return 0


def step_reset(m, _args):
    processes = m.processes()
    resets = []
    for gpu in m.gpus():
        users = [p for p in processes if p["gpu_uuid"] == gpu["uuid"]]
        if users:
            resets.append({"uuid": gpu["uuid"], "index": gpu["index"], "reset": "skipped", "detail": "in use by " + ", ".join(describe(p) for p in users)})
            continue
        done = m.run(["nvidia-smi", "--gpu-reset", "-i", gpu["uuid"]])
        detail = ((done.stderr or "") + " " + (done.stdout or "")).strip()
        resets.append({"uuid": gpu["uuid"], "index": gpu["index"], "reset": "done" if done.returncode == 0 else "failed", "detail": detail})
    m.record("reset", {"gpus": resets})
    m.reset_done = any(r["reset"] == "done" for r in resets)
    return 0


def step_scan(m, _args):
    m.record("scan", {"gpus": m.gpus()})
    return 0


def describe(p):
    who = {"instance": "the instance", "host": "the host", "unknown": "owner unknown"}.get(p["owner"])
    return "pid %s (%s)" % (p["pid"], who or "container " + p.get("container", "?"))


# The flush's steps in order, each with the name anklume-gen reports when it fails (they were one
# Ansible task each before they shared a process).
FLUSH = [
    ("kill", "Kill the GPU compute processes of the GPU machine"),
    ("scrub", "Scrub the freed GPU memory"),
    ("verify", "Verify that no GPU compute process is left in the GPU machine"),
    ("reset", "Try a GPU reset where no process uses the GPU"),
    ("scan", "Read the GPU memory in use after the flush"),
]


def attempt(m, args, name):
    """One step of the flush: its exit status (a StepError is said on stderr, and is 1)."""
    # A killed process can take a moment to leave the GPU: verify looks again before it fails.
    for n in range(1 + (args.retries if name == "verify" else 0)):
        if n:
            time.sleep(args.delay)
        try:
            code = STEPS[name](m, args)
        except StepError as err:
            print("%s: %s" % (m.instance, err), file=sys.stderr)
            return 1
        if code == 0:
            return 0
    return code


def step_flush(m, args):
    m.quiet = True
    took = {}
    failed = {}
    code = 0
    for name, title in FLUSH:
        if name == "scrub" and not args.command:
            continue
        start = time.monotonic()
        code = attempt(m, args, name)
        took["%s: %s" % (m.instance, name)] = round((time.monotonic() - start) * 1000, 1)
        # The memory read after the flush is a report, not a condition of the switch.
        if code != 0 and name != "scan":
            failed = {"failed_step": title}
            break
    print(json.dumps(dict(failed, changed=bool(m.killed) or m.reset_done, took=took)))
    return code if failed else 0


STEPS = {"kill": step_kill, "scrub": step_scrub, "verify": step_verify, "reset": step_reset, "scan": step_scan, "flush": step_flush}


def main(argv):
    parser = argparse.ArgumentParser(description="VRAM flush steps of an ai-switch")
    parser.add_argument("step", choices=sorted(STEPS))
    parser.add_argument("--type", choices=["lxc", "vm"], required=True)
    parser.add_argument("--project", required=True)
    parser.add_argument("--instance", required=True)
    parser.add_argument("--record-dir", required=True)
    parser.add_argument("--proc-root", default="/proc")
    parser.add_argument("--retries", type=int, default=0)
    parser.add_argument("--delay", type=float, default=1)
    # Everything after "--" is the scrub command, options included: split before argparse sees it.
    command = argv[argv.index("--") + 1:] if "--" in argv else []
    args = parser.parse_args(argv[: len(argv) - len(command) - 1] if "--" in argv else argv)
    args.command = command
    if args.step == "scrub" and not command:
        parser.error("scrub needs the command after --")
    m = Machine(args)
    try:
        return STEPS[args.step](m, args)
    except StepError as err:
        print("%s: %s" % (args.instance, err), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
