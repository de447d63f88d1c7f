#!/usr/bin/env python3
"""Build (and optionally push) ptjaas's images with the tags their Dockerfiles declare.

Each Dockerfile under images/<name>/ says where its image goes and which version it is, in
labels: ``io.ptjaas.image.repository`` and ``org.opencontainers.image.version``. The tag is
``<repository>:<version>``, the same string the catalog in helm-values/ refers to (the tests
check that they match). Standard library only; needs a Docker engine except with --dry-run.

    python images/build.py                  # build all images
    python images/build.py hub --push       # build and push the hub image
    python images/build.py --dry-run        # print the docker commands
    python images/build.py --print-tags     # JSON: {name: tag}
"""

import argparse
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

IMAGES = Path(__file__).resolve().parent
ROOT = IMAGES.parent
# built from the repository root: the hub (it needs the package and the fragments) and the
# notebook images (they copy the servers' share-mode authorizer, ptjaas_spawner/serverauth.py)
CONTEXTS = {"hub": ROOT, "notebook-cpu": ROOT, "notebook-cuda": ROOT, "notebook-vscode": ROOT}


def _logical_lines(text):
    line = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            line += stripped[:-1] + " "
            continue
        yield (line + stripped).strip()
        line = ""
    if line:
        yield line.strip()


def _expand(value, args):
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), ""), value)


def parse_dockerfile(path):
    """{'from': [base images], 'labels': {...}, 'args': {...}} with ARG defaults substituted."""
    global_args, stage_args, labels, froms = {}, {}, {}, []
    in_stage = False
    for line in _logical_lines(Path(path).read_text()):
        instruction, _, rest = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "ARG":
            name, eq, default = rest.partition("=")
            name = name.strip()
            if not in_stage:
                global_args[name] = default.strip().strip('"')
            else:  # a bare ARG re-declares a global one inside the stage
                stage_args[name] = default.strip().strip('"') if eq else global_args.get(name, "")
        elif instruction == "FROM":
            froms.append(_expand(rest.split()[0], global_args))
            in_stage, stage_args, labels = True, {}, {}
        elif instruction == "LABEL":
            for token in shlex.split(rest):
                key, _, value = token.partition("=")
                labels[key] = _expand(value, {**global_args, **stage_args})
    return {"from": froms, "labels": labels, "args": {**global_args, **stage_args}}


def image_tag(path):
    labels = parse_dockerfile(path)["labels"]
    return f"{labels['io.ptjaas.image.repository']}:{labels['org.opencontainers.image.version']}"


def dockerfiles():
    return {p.parent.name: p for p in sorted(IMAGES.glob("*/Dockerfile"))}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help=f"images to build (default: all of {', '.join(dockerfiles())})")
    parser.add_argument("--push", action="store_true", help="push after building")
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    parser.add_argument("--print-tags", action="store_true", help="print {name: tag} as JSON and exit")
    opts = parser.parse_args(argv)
    files = dockerfiles()
    unknown = sorted(set(opts.names) - set(files))
    if unknown:
        parser.error(f"unknown image(s) {', '.join(unknown)}; known: {', '.join(files)}")
    names = opts.names or list(files)
    if opts.print_tags:
        print(json.dumps({name: image_tag(files[name]) for name in names}, indent=2))
        return 0
    for name in names:
        tag = image_tag(files[name])
        commands = [["docker", "build", "-f", str(files[name]), "-t", tag, str(CONTEXTS.get(name, files[name].parent))]]
        if opts.push:
            commands.append(["docker", "push", tag])
        for command in commands:
            print("+", shlex.join(command), flush=True)
            if not opts.dry_run:
                subprocess.run(command, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
