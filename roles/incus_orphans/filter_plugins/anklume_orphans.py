"""The Incus objects anklume made that the tree no longer names (the `incus query` lists in, a list out)."""

MARK = "user.anklume."


def anklume_orphans(live, machines, domains):
    """live: [projects, networks, instances] as `incus query .../?recursion=1` returns them.

    An instance is anklume's when its project is (marked user.anklume.domain), a network when it is
    marked itself. Protected unless marked user.anklume.ephemeral=true.
    """
    projects, networks, instances = live
    ours = {p["name"] for p in projects if MARK + "domain" in (p.get("config") or {})}
    wanted = {m["key"] for m in machines}
    bridges = {d["network"]["name"] for d in domains}
    orphans = []
    for inst in sorted(instances, key=lambda i: (i["project"], i["name"])):
        key = "%s/%s" % (inst["project"], inst["name"])
        if inst["project"] in ours and key not in wanted:
            orphans.append({
                "kind": "instance",
                "name": inst["name"],
                "project": inst["project"],
                "label": key,
                "protected": (inst.get("config") or {}).get(MARK + "ephemeral") != "true",
            })
    for net in sorted(networks, key=lambda n: n["name"]):
        config = net.get("config") or {}
        if MARK + "domain" in config and net["name"] not in bridges:
            orphans.append({
                "kind": "bridge",
                "name": net["name"],
                "project": "default",
                "label": net["name"],
                "protected": config.get(MARK + "ephemeral") != "true",
            })
    return orphans


class FilterModule:
    def filters(self):
        return {"anklume_orphans": anklume_orphans}
