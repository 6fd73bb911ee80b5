"""The README held to the code: the role table against the navigation and the permission table,
the `crm` command block against the command's parser."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from crm_cli.main import build_parser
from db.models import ROLES
from ui.navigation import PAGES, pages_for

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def _section(title: str) -> str:
    start = README.index(title)
    following = re.search(r"^#{2,3} ", README[start + len(title):], re.M)
    return README[start:start + len(title) + (following.start() if following else len(README))]


def role_table() -> dict[str, list[str]]:
    """role -> the page titles the README's demo-user table lists for it."""
    rows = {}
    for line in _section("### Demo users").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = [p.strip() for p in cells[2].split(",")]
    return rows


def test_the_role_table_lists_what_each_role_sees():
    table = role_table()
    assert sorted(table) == sorted(ROLES), "one row per role"
    for role, listed in table.items():
        shown = [page.title for page in pages_for(role)]
        if listed == ["every page"]:
            assert shown == [page.title for page in PAGES], f"{role} does not see every page"
        else:
            assert listed == shown, f"the README's pages for {role} differ from what the role sees"


def _commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], argparse.ArgumentParser]:
    """Every command path of the parser, leaves and groups, with its parser."""
    found = {prefix: parser}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.update(_commands(sub, (*prefix, name)))
    return found


def documented_commands() -> set[tuple[str, ...]]:
    """The command paths written in the README's `crm` block: `crm` and the words that name commands."""
    block = _section("## The `crm` command")
    code = block[block.index("```bash") + len("```bash"):]
    code = code[:code.index("```")]
    known = _commands(build_parser())
    paths = set()
    for line in code.splitlines():
        line = line.split("#", 1)[0]
        for match in re.finditer(r"(?:^|[\s|])crm((?:\s+[a-z][a-z-]*)+)", line):
            path: tuple[str, ...] = ()
            for word in match.group(1).split():
                if (*path, word) not in known:
                    break
                path = (*path, word)
            paths.add(path)
    return paths


def test_the_command_block_documents_every_command_and_only_real_ones():
    known = _commands(build_parser())
    leaves = {path for path, parser in known.items() if path and not any(
        isinstance(a, argparse._SubParsersAction) for a in parser._actions)}
    documented = documented_commands()
    assert () not in documented, "every `crm` line names a command the parser knows"
    assert documented <= set(known)
    missing = sorted(" ".join(p) for p in leaves - documented)
    assert not missing, f"commands the README's block does not show: {missing}"
    groups = sorted(" ".join(p) for p in documented - leaves)
    assert not groups, f"lines that name a group, not a command: {groups}"


# --------------------------------------------------------------------------- docs/architecture.md

ROOT = Path(__file__).resolve().parent.parent
ARCHITECTURE = (ROOT / "docs" / "architecture.md").read_text()


def package_map() -> str:
    """The code block under "## Package map"."""
    section = ARCHITECTURE[ARCHITECTURE.index("## Package map"):]
    return section[section.index("```") + 3:].split("```", 1)[0]


def _modules(folder: Path) -> set[str]:
    return {p.stem for p in folder.glob("*.py") if p.stem != "__init__"}


def test_the_package_map_names_every_package_and_module():
    """A package or module added since the guide was written shows up here until the map names it."""
    text = package_map()
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text))
    tops = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests"}
    missing = [f"{top}/" for top in sorted(tops) if not re.search(rf"^{top}/", text, re.M)]
    domains = sorted(p.parent.name for p in (ROOT / "crm_core").glob("*/__init__.py"))
    missing += [f"crm_core/{d}/" for d in domains if not re.search(rf"^  {d}/", text, re.M)]
    folders = [ROOT / "ml", ROOT / "ml" / "health", ROOT / "batch", ROOT / "crm_cli", ROOT / "ui", ROOT / "api",
               ROOT / "api" / "routes", *(ROOT / "crm_core" / d for d in domains)]
    for folder in folders:
        missing += [f"{folder.relative_to(ROOT)}/{m}.py" for m in sorted(_modules(folder)) if m not in words]
    assert not missing, f"docs/architecture.md's package map does not name: {missing}"
