#!/usr/bin/env python3
"""Run one command on every host of an inventory, print per-host results.

    python3 examples/python/fanout.py INVENTORY [SELECTOR] -- CMD...
    sudo python3 examples/python/fanout.py --lab -- uname -r    # makes a 3-host lab, runs, removes it

The output is read with asyncio's `async for` over ck.stream_lines (the
blocking run_on_hosts with an on_line callback gives the same lines).
"""
import asyncio
import sys

import clusterkit as ck


def main(argv: list[str]) -> int:
    if "--" not in argv:
        print(__doc__, file=sys.stderr)
        return 2
    split = argv.index("--")
    opts, command = argv[1:split], argv[split + 1:]
    lab = None
    if opts and opts[0] == "--lab":
        lab = ck.lab_up(hosts=3, name="pyex", subnet="10.88.21")
        inventory = lab.inventory()
        selector = "all"
    else:
        inventory = ck.Inventory.load(opts[0])
        selector = opts[1] if len(opts) > 1 else "all"
    try:
        hosts = inventory.hosts_for(selector)

        async def run() -> list[ck.HostOutcome]:
            async with ck.stream_lines(hosts, command, timeout=60) as lines:
                async for host, stream, text in lines:
                    print(f"{host}: {text}", file=sys.stderr if stream == "stderr" else sys.stdout)
            assert lines.outcomes is not None  # the loop ran to its end
            return lines.outcomes

        outcomes = asyncio.run(run())
        failed = [o for o in outcomes if not o.ok]
        for o in failed:
            print(f"{o.host}: {o.error or f'exit {o.result.exit_code}'}", file=sys.stderr)
        print(f"{len(outcomes) - len(failed)}/{len(outcomes)} hosts succeeded")
        return 0 if not failed else 1
    finally:
        if lab is not None:
            ck.lab_down(name="pyex")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
