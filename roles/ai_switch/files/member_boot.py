"""One step of a switch on one member of an Incus cluster, in ONE Ansible task (tasks/member.yml).

    python3 -c "$(cat member_boot.py)" member-<step>    < PAYLOAD_JSON

Run as `python3 -c` with its payload on stdin, so that a member's step costs one round trip: no
folder made, no file copied, none removed by tasks of their own (each a round trip over SSH; five
of them made a step on three members 15 s). PAYLOAD_JSON holds the helpers' sources and this
switch's rulesets (files: name -> text), switch_step.py's argument (args; its file paths are names
in files), and for the step "stop" the flush of this member's GPU machines (flush).

The files go to a private folder (mkdtemp), switch_step.py runs from there with the step, then
for "stop" (the services stopped) gpu_flush.py flush for each GPU machine, as on one host; the
folder goes in every case. Prints switch_step.py's JSON (with failed_step when the flush failed),
passes its stderr on, and exits with its status, or 1 when a flush failed.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

PATH_ARGS = ("revoke_batch", "grant_batch", "ruleset_none", "ruleset_new")


def main(step):
    payload = json.load(sys.stdin)
    work = tempfile.mkdtemp(prefix="anklume-ai-switch.")
    try:
        for name, text in payload["files"].items():
            # Names only: the payload names files, never a path elsewhere on the member.
            with open(os.path.join(work, os.path.basename(name)), "w") as f:
                f.write(text)
        args = dict(payload["args"])
        for key in PATH_ARGS:
            args[key] = os.path.join(work, os.path.basename(args[key]))
        done = subprocess.run([sys.executable, os.path.join(work, "switch_step.py"), step, json.dumps(args)], stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
        sys.stderr.write(done.stderr)
        if done.returncode != 0 or not payload.get("flush"):
            sys.stdout.write(done.stdout)
            return done.returncode
        out = json.loads(done.stdout)
        failed = flush(work, payload["flush"], out)
        if failed:
            out["failed_step"] = "Flush GPU memory"
            sys.stderr.write("; ".join(failed) + "\n")
        print(json.dumps(out))
        return 1 if failed else 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


def flush(work, spec, out):
    """gpu_flush.py flush for each GPU machine of this member; what failed, per machine."""
    failed = []
    for machine in spec["machines"]:
        argv = [sys.executable, os.path.join(work, "gpu_flush.py"), "flush",
                "--type", spec["types"].get(machine, "lxc"), "--project", spec["project"], "--instance", machine,
                "--proc-root", spec["proc_root"], "--record-dir", os.path.join(work, "gpu"),
                "--retries", str(spec["retries"]), "--delay", str(spec["delay"])]
        if spec["scrub"]:
            argv += ["--"] + spec["scrub"]
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            # gpu_flush.py names the machine in its message.
            failed.append((done.stderr or done.stdout).strip() or "%s: exit %d" % (machine, done.returncode))
        else:
            out.setdefault("changed", []).append("flushed " + machine)
    return failed


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
