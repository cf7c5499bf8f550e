"""The one comparison between what the tree asks of Incus and what Incus has: the plan.

`make apply` runs it as the `anklume_plan` filter of incus_preflight, and the other roles carry out
its steps and nothing else; `anklume-gen apply --check` and `anklume-gen audit` run this file as a
script on the same tree and the same `incus query` answers. So the plan that is shown and the apply
that follows cannot disagree.

Input: the desired domains and machines (anklume_desired.py) and `live`, what Incus and the host
report. Output: `problems` (refusals: nothing may be made), `steps` (commands, in the order they
must run), `objects` (one entry per object that changes: create, update with its keys old -> new,
or delete) and `orphans` (what the tree no longer names, deleted only when asked and unprotected).
"""

import ipaddress
import json

MARK = "user.anklume."
ABSENT = None


def _by_name(items):
    return {i["name"]: i for i in items or []}


def _changes(desired, live, prefix):
    """The keys of `desired` whose live value differs: {prefix.key: [old, new]}."""
    return {prefix + k: [live.get(k, ABSENT), v] for k, v in sorted(desired.items()) if live.get(k, ABSENT) != v}


def _device_changes(desired, live):
    out = {}
    for name in sorted(set(desired) | set(live)):
        if desired.get(name) != live.get(name):
            out["devices." + name] = [live.get(name, ABSENT), desired.get(name, ABSENT)]
    return out


# What a gputype needs of a card, from /1.0/resources: mdev profiles, SR-IOV functions, NVIDIA (MIG).
GPUTYPE_NEEDS = {"mdev": "mdev", "sriov": "sriov", "mig": "nvidia"}


def _gpu_matches(device, card):
    need = GPUTYPE_NEEDS.get(device.get("gputype") or "physical")
    if need and not card.get(need):
        return False
    drm = card.get("drm") or {}
    checks = {
        "pci": card.get("pci_address"),
        "id": str(drm.get("id")) if drm.get("id") is not None else None,
        "vendorid": card.get("vendor_id"),
        "productid": card.get("product_id"),
    }
    return all(device.get(k) in (None, "") or device.get(k) == v for k, v in checks.items())


def _routed_elsewhere(domain, routes):
    subnet = ipaddress.ip_network(domain["network"]["config"]["ipv4.address"], strict=False)
    for route in routes or []:
        dst = route.get("dst")
        if not dst or dst == "default" or route.get("dev") == domain["network"]["name"]:
            continue
        try:
            net = ipaddress.ip_network(dst if "/" in dst else dst + "/32", strict=False)
        except ValueError:
            continue
        if net.version == 4 and net.prefixlen > 0 and net.overlaps(subnet):
            return "%s via %s" % (dst, route.get("dev", "?"))
    return None


def _effective_devices(machine, domain):
    """The devices Incus will give the instance: its profiles' in order, then its own (type none removes)."""
    profiles = {p["name"]: p for p in (domain or {}).get("profiles") or []}
    devices = {}
    for name in machine["profiles"]:
        devices.update((profiles.get(name) or {}).get("devices") or {})
    devices.update(machine["devices"])
    return {k: v for k, v in devices.items() if v.get("type") != "none"}


def _member_address(url):
    """The host of a member's URL as Incus lists it (https://100.64.1.101:8443 -> 100.64.1.101)."""
    host = (url or "").split("://", 1)[-1].rsplit(":", 1)[0]
    return host.strip("[]")


def _cluster_problems(cluster, live):
    """infra.yml's global.cluster (cluster: member -> address) against Incus's own view of its members."""
    clustered = ((live.get("server") or {}).get("environment") or {}).get("server_clustered", False)
    listed = {m["server_name"]: m for m in live.get("members") or []}
    if not cluster:
        if clustered:
            return ["This Incus is a cluster (members %s) but infra.yml has no global.cluster: its bridges would be "
                    "defined on no member and its instances placed by Incus. Describe the cluster in infra.yml "
                    "(global.cluster, each machine's member; docs/multi-host.md) and sync, or apply on a host that "
                    "is not clustered. Nothing was changed." % ", ".join(sorted(listed))]
        return []
    if not clustered:
        return ["infra.yml sets global.cluster (members %s) but this Incus is not clustered (incus query /1.0: "
                "environment.server_clustered is false): form the cluster first (incus admin init on each member; "
                "docs/multi-host.md), or remove global.cluster from infra.yml and sync. Nothing was changed."
                % ", ".join(sorted(cluster))]
    problems = []
    for name, address in sorted(cluster.items()):
        member = listed.get(name)
        if member is None:
            problems.append("Member '%s' of global.cluster is not in this Incus cluster (incus cluster list: %s): "
                            "add it (incus cluster add %s, then incus admin init on it), or fix its name in infra.yml. "
                            "Nothing was changed." % (name, ", ".join(sorted(listed)), name))
            continue
        if _member_address(member.get("url")) != address:
            problems.append("Member '%s': infra.yml gives its address as %s, but Incus lists it at %s (incus cluster "
                            "list): the routes between members go to infra.yml's address. Fix global.cluster.members.%s.address "
                            "and sync. Nothing was changed." % (name, address, member.get("url"), name))
        if member.get("status") != "Online":
            problems.append("Member '%s' is %s in incus cluster list (%s): a bridge is defined on every member at once, "
                            "so nothing can be made while one is down. Bring it back, then apply again. Nothing was changed."
                            % (name, str(member.get("status", "?")).upper(), member.get("message") or "no message"))
    return problems


def _problems(domains, machines, live, cluster=None):
    problems = _cluster_problems(cluster, live)
    pools = [p["name"] for p in live.get("pools") or []]
    pool = live.get("pool", "default")
    if pool not in pools:
        problems.append("Incus has no storage pool '%s' for the instances' root disks: create it "
                        "(`incus storage create %s dir`, or `incus admin init`)." % (pool, pool))
    networks = _by_name(live.get("networks"))
    projects = _by_name(live.get("projects"))
    for d in domains:
        net = networks.get(d["network"]["name"])
        # A bridge pending on some members (a cluster's run stopped between its two steps) cannot
        # carry the mark yet (Incus refuses member-specific user keys): the plan finishes it.
        if cluster and net is not None and net.get("status") == "Pending":
            net = None
        if net is not None and not (net.get("managed") and (net.get("config") or {}).get(MARK + "domain") == d["name"]):
            what = ("an Incus network without user.anklume.domain=%s" % d["name"]) if net.get("managed") else "an interface Incus does not manage"
            problems.append("Bridge '%s' already exists and is not anklume's (%s): rename or remove it, or rename "
                            "domain '%s' in infra.yml. Nothing was changed." % (d["network"]["name"], what, d["name"]))
        project = projects.get(d["project"])
        if project is not None and (project.get("config") or {}).get(MARK + "domain") != d["name"]:
            problems.append("Incus project '%s' already exists and is not anklume's (no user.anklume.domain=%s): rename or "
                            "remove it, or rename domain '%s' in infra.yml. Nothing was changed." % (d["project"], d["name"], d["name"]))
        if net is None:
            routed = _routed_elsewhere(d, live.get("routes"))
            if routed:
                problems.append("Domain '%s': its subnet %s is already routed on this host (%s): the bridge %s would "
                                "collide with it. Give the domain another subnet_id (or base_subnet), or remove that route."
                                % (d["name"], d["network"]["config"]["ipv4.address"], routed, d["network"]["name"]))
    aliases = {a["name"] for a in live.get("aliases") or []}
    fingerprints = [i.get("fingerprint", "") for i in live.get("images") or []]
    remotes = set((live.get("remotes") or {}).keys())
    cards = (live.get("resources") or {}).get("gpu", {}).get("cards") or []
    instances = {"%s/%s" % (i["project"], i["name"]): i for i in live.get("instances") or []}
    for m in machines:
        existing = instances.get(m["key"])
        if existing is not None and existing.get("type") != m["type"]:
            problems.append("%s exists as a %s but infra.yml makes it a %s: Incus cannot convert it. Delete it "
                            "(incus delete --force %s --project %s) and apply again." % (m["key"], existing.get("type"), m["type"], m["name"], m["project"]))
        if existing is None:
            image = m["image"]
            if not image:
                problems.append("No image for %s: set os_image on the machine or global.default_os_image in infra.yml, then sync." % m["name"])
            elif ":" in image:
                remote = image.split(":", 1)[0]
                if remote not in remotes:
                    problems.append("Machine '%s': image '%s' names the remote '%s', which this Incus client does not know "
                                    "(incus remote list): add it (incus remote add %s <url>), or import the image and name its alias."
                                    % (m["name"], image, remote, remote))
            elif image not in aliases and not any(f.startswith(image) for f in fingerprints if len(image) >= 12):
                problems.append("Machine '%s': no image '%s' in Incus (no such alias or fingerprint): import it "
                                "(incus image import META ROOTFS --alias %s) or fix os_image." % (m["name"], image, image))
        domain = next((d for d in domains if d["project"] == m["project"]), None)
        for name, device in sorted(_effective_devices(m, domain).items()):
            if device.get("type") != "gpu":
                continue
            if not any(_gpu_matches(device, c) for c in cards):
                wanted = ", ".join("%s=%s" % (k, device[k]) for k in ("gputype", "pci", "id", "vendorid", "productid") if device.get(k))
                problems.append("Machine '%s': device '%s' asks for a GPU (%s) that this host does not have (incus info --resources "
                                "lists %d GPU(s)): the instance could be created but never started. Remove gpu: true / the gpu device, "
                                "or apply on the host that has the GPU." % (m["name"], name, wanted or "type gpu", len(cards)))
    return problems


def _orphans(domains, machines, live):
    ours = {p["name"] for p in live.get("projects") or [] if MARK + "domain" in (p.get("config") or {})}
    wanted = {m["key"] for m in machines}
    bridges = {d["network"]["name"] for d in domains}
    orphans = []
    for inst in sorted(live.get("instances") or [], key=lambda i: (i["project"], i["name"])):
        key = "%s/%s" % (inst["project"], inst["name"])
        if inst["project"] in ours and key not in wanted:
            orphans.append({"kind": "instance", "name": inst["name"], "project": inst["project"], "label": key,
                            "protected": (inst.get("config") or {}).get(MARK + "ephemeral") != "true"})
    for net in sorted(live.get("networks") or [], key=lambda n: n["name"]):
        config = net.get("config") or {}
        if MARK + "domain" in config and net["name"] not in bridges:
            orphans.append({"kind": "bridge", "name": net["name"], "project": "default", "label": net["name"],
                            "protected": config.get(MARK + "ephemeral") != "true"})
    return orphans


def anklume_plan(domains, machines, live, options=None):
    """The plan: see the module's text. `options`: features (of new projects), network_project, start,
    delete_orphans, and on a cluster `cluster` (group_vars/all.yml's anklume_cluster_members)."""
    options = options or {}
    features = options.get("features") or {}
    network_project = options.get("network_project", "default")
    cluster = options.get("cluster") or None
    problems = _problems(domains, machines, live, cluster)
    steps = []

    def step(op, kind, ident, argv, changes=None, stdin=None, role=None):
        entry = {"op": op, "kind": kind, "id": ident, "argv": argv, "changes": changes or {}, "role": role}
        if stdin is not None:
            entry["stdin"] = stdin
        steps.append(entry)

    projects = _by_name(live.get("projects"))
    profiles_live = live.get("profiles") or {}
    for d in domains:
        if d["project"] not in projects:
            config = dict(features, **{MARK + "domain": d["name"]})
            step("create", "project", "project:" + d["project"],
                 ["incus", "project", "create", d["project"]] + ["--config=%s=%s" % kv for kv in sorted(config.items())],
                 {"config." + k: [ABSENT, v] for k, v in sorted(config.items())}, role="projects")
        have = _by_name(profiles_live.get(d["project"]))
        for p in d["profiles"]:
            ident = "profile:%s/%s" % (d["project"], p["name"])
            live_p = have.get(p["name"])
            # A new project comes with an empty `default` profile: it is updated, not created.
            if live_p is None and d["project"] not in projects and p["name"] == "default":
                live_p = {"config": {}, "devices": {}, "description": ""}
            body = {"config": p["config"], "devices": p["devices"]}
            if live_p is None:
                body = dict(body, name=p["name"], description=p.get("description", ""))
                changes = dict(_changes(p["config"], {}, "config."), **_device_changes(p["devices"], {}))
                step("create", "profile", ident, ["incus", "query", "-X", "POST", "/1.0/profiles?project=" + d["project"], "--data=" + json.dumps(body, sort_keys=True)],
                     changes, role="projects")
                continue
            description = p.get("description", live_p.get("description", ""))
            changes = dict(_changes(p["config"], live_p.get("config") or {}, "config."), **_device_changes(p["devices"], live_p.get("devices") or {}))
            for k in sorted(set(live_p.get("config") or {}) - set(p["config"])):
                changes["config." + k] = [live_p["config"][k], ABSENT]
            if description != live_p.get("description", ""):
                changes["description"] = [live_p.get("description", ""), description]
            if changes:
                body["description"] = description
                step("update", "profile", ident, ["incus", "query", "-X", "PUT", "/1.0/profiles/%s?project=%s" % (p["name"], d["project"]), "--data=" + json.dumps(body, sort_keys=True)],
                     changes, role="projects")

    networks = _by_name(live.get("networks"))
    # On a cluster a bridge is made in Incus's two steps: pending on each member (every member Incus
    # lists, not only infra.yml's: the network must exist on all), then created with its config.
    # A bridge left pending by a run that stopped half-way is finished the same way.
    members = sorted(m["server_name"] for m in live.get("members") or []) if cluster else []
    for d in domains:
        net = d["network"]
        ident = "bridge:" + net["name"]
        have = networks.get(net["name"])
        if have is None or (cluster and have.get("status") == "Pending"):
            pending = set((have or {}).get("locations") or [])
            for member in members:
                if member not in pending:
                    step("create", "bridge", ident, ["incus", "network", "create", net["name"], "--type", "bridge", "--project", network_project, "--target", member],
                         role="networks")
            step("create", "bridge", ident, ["incus", "network", "create", net["name"], "--type", "bridge", "--project", network_project]
                 + ["%s=%s" % kv for kv in sorted(net["config"].items())], _changes(net["config"], {}, "config."), role="networks")
            continue
        changes = _changes(net["config"], have.get("config") or {}, "config.")
        if changes:
            step("update", "bridge", ident, ["incus", "network", "set", net["name"], "--project", network_project]
                 + ["%s=%s" % (k[len("config."):], v[1]) for k, v in sorted(changes.items())], changes, role="networks")

    instances = {"%s/%s" % (i["project"], i["name"]): i for i in live.get("instances") or []}
    start = options.get("start", True)
    for m in machines:
        ident = "instance:" + m["key"]
        have = instances.get(m["key"])
        target = m.get("target")
        if have is None:
            argv = (["incus", "create", m["image"], m["name"], "--project", m["project"]] + (["--vm"] if m["type"] == "virtual-machine" else [])
                    + (["--target", target] if target else []))
            changes = {"image": [ABSENT, m["image"]], "type": [ABSENT, m["type"]], "profiles": [ABSENT, m["profiles"]]}
            if target:
                changes["location"] = [ABSENT, target]
            changes.update(_changes(m["config"], {}, "config."))
            changes.update(_device_changes(m["devices"], {}))
            step("create", "instance", ident, argv, changes, stdin=json.dumps({"config": m["config"], "devices": m["devices"], "profiles": m["profiles"]}, sort_keys=True), role="instances")
            if start:
                step("start", "instance", ident, ["incus", "start", m["name"], "--project", m["project"]], {"state": [ABSENT, "Running"]}, role="instances")
            continue
        if have.get("type") != m["type"]:
            continue
        status = have.get("status")
        if target and have.get("location") != target:
            # A container cannot move while it runs (no CRIU): stopped, moved, then started below.
            if status == "Running":
                step("update", "instance", ident, ["incus", "stop", m["name"], "--project", m["project"]], role="instances")
                status = "Stopped"
            step("update", "instance", ident, ["incus", "move", m["name"], "--project", m["project"], "--target", target],
                 {"location": [have.get("location"), target]}, role="instances")
        live_config = have.get("config") or {}
        changes = _changes(m["config"], live_config, "config.")
        changes.update(_device_changes(m["devices"], have.get("devices") or {}))
        if have.get("profiles") != m["profiles"]:
            changes["profiles"] = [have.get("profiles"), m["profiles"]]
        if changes:
            body = {
                "architecture": have.get("architecture"),
                "config": dict(live_config, **m["config"]),
                "devices": m["devices"],
                "profiles": m["profiles"],
                "ephemeral": have.get("ephemeral", False),
                "stateful": have.get("stateful", False),
                "description": have.get("description", ""),
            }
            step("update", "instance", ident, ["incus", "query", "-X", "PUT", "--wait", "/1.0/instances/%s?project=%s" % (m["name"], m["project"]),
                                               "--data=" + json.dumps(body, sort_keys=True)], changes, role="instances")
        # A running instance that was moved runs again, whatever `start` says.
        if status != "Running" and (start or have.get("status") == "Running"):
            state = {"state": [have.get("status"), "Running"]} if have.get("status") != "Running" else {}
            step("start", "instance", ident, ["incus", "start", m["name"], "--project", m["project"]], state, role="instances")

    orphans = _orphans(domains, machines, live)
    if options.get("delete_orphans"):
        for o in [o for o in orphans if not o["protected"] and o["kind"] == "instance"] + [o for o in orphans if not o["protected"] and o["kind"] == "bridge"]:
            argv = ["incus", "delete", "--force", o["name"], "--project", o["project"]] if o["kind"] == "instance" else ["incus", "network", "delete", o["name"]]
            step("delete", o["kind"], "%s:%s" % (o["kind"], o["label"]), argv, {}, role="orphans")

    objects = []
    by_id = {}
    for s in steps:
        entry = by_id.get(s["id"])
        if entry is None:
            entry = {"op": "update" if s["op"] == "start" else s["op"], "kind": s["kind"], "id": s["id"], "changes": {}}
            by_id[s["id"]] = entry
            objects.append(entry)
        entry["changes"].update(s["changes"])
    # With problems the roles refuse before any step runs; the objects still say how far Incus is
    # from the tree (the audit reports them), and apply --check shows the refusals instead.
    return {"problems": problems, "steps": [] if problems else steps, "objects": objects, "orphans": orphans}


class FilterModule:
    def filters(self):
        return {"anklume_plan": anklume_plan}


def _query(path):
    import subprocess
    r = subprocess.run(["incus", "query", path], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise RuntimeError("incus query %s: %s" % (path, r.stderr.strip() or "exit %d" % r.returncode))
    return json.loads(r.stdout)


def read_live(pool):
    """What the role's tasks read, read the same way (`incus query`, `incus remote list`, `ip -j route`)."""
    import subprocess
    projects = _query("/1.0/projects?recursion=1")
    server = _query("/1.0")
    live = {
        "server": server,
        # A server that is not clustered has no members to list (Incus answers an error).
        "members": _query("/1.0/cluster/members?recursion=1") if server.get("environment", {}).get("server_clustered") else [],
        "pool": pool,
        "pools": _query("/1.0/storage-pools?recursion=1"),
        "networks": _query("/1.0/networks?recursion=1"),
        "projects": projects,
        "profiles": {p["name"]: _query("/1.0/profiles?recursion=1&project=" + p["name"]) for p in projects},
        "instances": _query("/1.0/instances?recursion=1&all-projects=true"),
        "resources": _query("/1.0/resources"),
        "aliases": _query("/1.0/images/aliases?recursion=1"),
        "images": _query("/1.0/images?recursion=1"),
    }
    remotes = subprocess.run(["incus", "remote", "list", "--format", "json"], capture_output=True, text=True, check=False)
    live["remotes"] = json.loads(remotes.stdout) if remotes.returncode == 0 else {}
    routes = subprocess.run(["ip", "-j", "-4", "route", "show", "table", "all"], capture_output=True, text=True, check=False)
    live["routes"] = json.loads(routes.stdout or "[]") if routes.returncode == 0 else []
    return live


def role_defaults(extra):
    """The roles' own defaults (defaults/main.yml), overridden by extra vars: the values the play would use."""
    import os
    import yaml
    roles = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    values = {}
    for role in ("incus_preflight", "incus_projects", "incus_networks", "incus_instances", "incus_orphans"):
        with open(os.path.join(roles, role, "defaults", "main.yml"), encoding="utf-8") as f:
            values.update(yaml.safe_load(f) or {})
    values.update(extra)
    return values


def _bool(value):
    return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes", "on")


def main(argv):
    """python3 anklume_plan.py TREE [EXTRA-VARS-JSON]: the plan as JSON on stdout (exit 3: Incus could not be read)."""
    import os
    import sys
    import yaml
    from anklume_desired import anklume_domains, anklume_machines

    tree = argv[1]
    v = role_defaults(json.loads(argv[2]) if len(argv) > 2 else {})

    def load(path):
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f)

    all_vars = load(os.path.join(tree, "group_vars", "all.yml")) or {}
    names = all_vars.get("anklume_domains") or []
    cluster = all_vars.get("anklume_cluster_members") or {}
    domains = anklume_domains([load(os.path.join(tree, "group_vars", n + ".yml")) for n in names], v["incus_preflight_pool"], cluster)
    hosts = []
    for n in names:
        children = (load(os.path.join(tree, "inventory", n + ".yml")) or {}).get("all", {}).get("children", {})
        for group in children.values():
            hosts.extend((group or {}).get("hosts", {}) or {})
    machines = anklume_machines([load(os.path.join(tree, "host_vars", h + ".yml")) for h in hosts], domains, v["incus_preflight_gpu_device"])
    try:
        live = read_live(v["incus_preflight_pool"])
    except (RuntimeError, OSError) as err:
        json.dump({"error": str(err)}, sys.stdout)
        return 3
    plan = anklume_plan(domains, machines, live, {
        "features": v["incus_projects_features"],
        "network_project": v["incus_networks_project"],
        "start": _bool(v["incus_instances_start"]),
        "delete_orphans": _bool(v["incus_orphans_delete"]),
        "cluster": cluster,
    })
    json.dump(plan, sys.stdout, sort_keys=True)
    return 0


if __name__ == "__main__":
    import sys
    sys.exit(main(sys.argv))
