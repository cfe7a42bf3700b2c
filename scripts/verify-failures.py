#!/usr/bin/env python3
"""Print the tests a Molecule verifier failed, from the JUnit XML files its pytest wrote.

``make molecule`` runs this after a scenario fails, so that the end of the output (all
that a CI log may keep) names the failed tests and their first lines of error, not only
Molecule's summary.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

LINES = 12


def main(paths: list[str]) -> int:
    for name in paths:
        path = Path(name)
        if not path.exists():
            print(f"verify-failures: no report at {path} (the scenario failed before its verifier)")
            continue
        # our own pytest wrote it, on this machine, a moment ago
        for case in ET.parse(path).iter("testcase"):  # noqa: S314
            for problem in [*case.iter("failure"), *case.iter("error")]:
                print(f"verify-failures: {case.get('classname')}::{case.get('name')}")
                text = (problem.text or problem.get("message") or "").strip().splitlines()
                for line in text[-LINES:]:
                    print(f"    {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
