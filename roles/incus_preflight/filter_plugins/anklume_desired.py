"""What the generated tree asks Incus for, in the shape Incus reports it (every config value a string).

The tree (`anklume-gen sync`) holds infra.yml's values as the user wrote them: `limits.cpu: 2` or
`security.nesting: true` are numbers and booleans there, strings in Incus. Normalising them here
lets the roles compare the desired state with `incus query` output by plain equality, which is what
makes a second apply report no change.
"""

from ansible.errors import AnsibleFilterError

MARK = "user.anklume."


def incus_string(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return str(value)


def incus_map(mapping):
    return {str(k): incus_string(v) for k, v in (mapping or {}).items()}


def incus_devices(devices):
    return {str(name): incus_map(device) for name, device in (devices or {}).items()}


def filter_sources(devices, bridge):
    """Every NIC on the domain's bridge drops what the instance sends from another address than its
    own (and, with it, from another MAC address), unless infra.yml sets the key itself (validation
    warns when it turns it off): a machine-level policy names a machine by its address, and on a
    cluster the other members judge what comes over the member link by it."""
    for device in devices.values():
        if device.get("type") == "nic" and bridge in (device.get("network"), device.get("parent")):
            device.setdefault("security.ipv4_filtering", "true")
    return devices


def prefix_of(subnet):
    return subnet.split("/", 1)[1] if "/" in subnet else "24"


def anklume_domains(group_vars, pool, cluster_members=None):
    """One entry per domain: its project, bridge and profiles (`default` gets the root disk).

    `cluster_members` (group_vars/all.yml's anklume_cluster_members, on a cluster): the bridges
    are routed between members, so Incus must not masquerade what leaves them (it would rewrite a
    domain's address, its identity on the other member, into the member's own).
    """
    domains = []
    for gv in group_vars:
        name = gv["domain_name"]
        net = gv["incus_network"]
        ephemeral = incus_string(bool(gv.get("domain_ephemeral", False)))
        profiles = {}
        for pname, profile in (gv.get("incus_profiles") or {}).items():
            profile = profile or {}
            entry = {"config": incus_map(profile.get("config")), "devices": filter_sources(incus_devices(profile.get("devices")), net["name"])}
            if profile.get("description") is not None:
                entry["description"] = str(profile["description"])
            profiles[str(pname)] = entry
        default = profiles.setdefault("default", {"config": {}, "devices": {}})
        default["devices"].setdefault("root", {"type": "disk", "path": "/", "pool": pool})
        domains.append({
            "name": name,
            "project": gv.get("incus_project", name),
            "ephemeral": ephemeral,
            "network": {
                "name": net["name"],
                "config": {
                    "ipv4.address": "%s/%s" % (net["gateway"], prefix_of(net["subnet"])),
                    "ipv4.nat": "false" if cluster_members else "true",
                    # The isolation ruleset reasons about IPv4 addresses; no IPv6 path between domains.
                    "ipv6.address": "none",
                    MARK + "domain": name,
                    MARK + "ephemeral": ephemeral,
                },
            },
            "profiles": [dict(v, name=k) for k, v in sorted(profiles.items())],
        })
    return domains


def anklume_machines(host_vars, domains, gpu_device):
    """One entry per machine: image, type, profiles, config (with anklume's marks) and devices."""
    by_domain = {d["name"]: d for d in domains}
    machines = []
    for hv in host_vars:
        name = hv["instance_name"]
        domain = by_domain.get(hv.get("instance_domain"))
        if domain is None:
            raise AnsibleFilterError("host_vars of %s names domain %r, which the tree does not define" % (name, hv.get("instance_domain")))
        nic = {"type": "nic", "name": "eth0", "network": domain["network"]["name"]}
        if hv.get("instance_ip"):
            nic["ipv4.address"] = str(hv["instance_ip"])
        devices = {"eth0": nic}
        if hv.get("instance_gpu"):
            devices["gpu"] = incus_map(gpu_device)
        devices.update(incus_devices(hv.get("instance_devices")))
        filter_sources(devices, domain["network"]["name"])
        config = incus_map(hv.get("instance_config"))
        config[MARK + "domain"] = domain["name"]
        config[MARK + "ephemeral"] = incus_string(bool(hv.get("instance_ephemeral", False)))
        machines.append({
            "key": "%s/%s" % (domain["project"], name),
            "name": name,
            "project": domain["project"],
            "type": "virtual-machine" if hv.get("instance_type") == "vm" else "container",
            "image": hv.get("instance_os_image") or "",
            "profiles": [str(p) for p in (hv.get("instance_profiles") or ["default"])],
            "config": config,
            "devices": devices,
        })
        # On a cluster, the member it runs on (incus --target); one host has no key.
        if hv.get("instance_target"):
            machines[-1]["target"] = str(hv["instance_target"])
    return machines


class FilterModule:
    def filters(self):
        return {"anklume_domains": anklume_domains, "anklume_machines": anklume_machines}
