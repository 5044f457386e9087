#!/usr/bin/env python3
"""Mount one shared folder at the same path on a group of hosts, then check
that every host sees every other host's files there.

    python3 examples/python/nas_mount.py --inventory cluster.yaml --group gpu --kind nfs --source 10.0.0.5:/share
    python3 examples/python/nas_mount.py --inventory cluster.yaml --group gpu --kind sshfs \\
        --source root@nas:/srv/nas --identity /root/.ssh/nas_key
    python3 examples/python/nas_mount.py --inventory cluster.yaml --group gpu --unmount

Without --source the inventory's vars (nas_export, nas_type, mount_point) say
what to mount. A folder that already holds files, or another filesystem
already mounted there, is refused, never hidden.
"""
import argparse
import sys

import clusterkit as ck


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--inventory", required=True)
    ap.add_argument("--group", default="all")
    ap.add_argument("--kind", choices=["nfs", "sshfs", "bind"], default=None)
    ap.add_argument("--source", default=None, help="nfs: SERVER:/EXPORT; sshfs: [USER@]HOST:/PATH; bind: /PATH")
    ap.add_argument("--path", default=None, help="the mount point on every host (default: vars.mount_point or /mnt)")
    ap.add_argument("--identity", default=None, help="sshfs: the key the hosts use to reach the NAS")
    ap.add_argument("--persist", action="store_true", help="also add an /etc/fstab entry")
    ap.add_argument("--unmount", action="store_true")
    a = ap.parse_args()

    inventory = ck.Inventory.load(a.inventory)
    selected = inventory.select(a.group)
    hosts = inventory.hosts_for(a.group)
    if not selected:
        print(f"no hosts in {a.group}", file=sys.stderr)
        return 2
    first = selected[0]
    spec = ck.nas_spec_from_vars(first.extra.get("vars", {}), first.name)  # the inventory's NAS, if it names one
    if a.kind:
        spec.kind = a.kind
    if a.source is not None:
        spec.source = a.source
    if a.path:
        spec.mount_point = a.path
    if a.identity:
        spec.identity_file = a.identity
    spec.persist = a.persist
    nas = ck.NasMount(spec)  # raises clusterkit.Error naming the field when the spec cannot work

    outcomes = nas.unmount(hosts) if a.unmount else nas.mount(hosts)
    for o in outcomes:
        print(f"{o.host:12} {o.action:8} {'' if o.ok else 'FAILED: '}{o.message}")
    if a.unmount or not all(outcomes):
        return 0 if all(outcomes) else 1

    report = nas.check(hosts)
    for view in report.hosts:
        state = f"{view.fstype} {view.source}" if view.mounted else "not mounted"
        print(f"{view.host:12} {state}; sees {', '.join(view.sees)}" + (f"; {view.problem}" if view.problem else ""))
    for problem in report.problems:
        print(f"problem: {problem}")
    print("every host sees the same folder" if report.ok else "the hosts do NOT share the folder")
    return 0 if report.ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ck.Error as e:  # a spec that cannot work, an unknown host or group, ...
        print(f"error ({e.code}): {e}", file=sys.stderr)
        sys.exit(2)
