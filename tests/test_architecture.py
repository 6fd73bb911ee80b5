"""The architecture held to the code: one home per business rule, imports that point one way, and
packages that are used through the names their __init__ gives.

Everything here reads the source with `ast`; nothing is imported or run.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from crm_core import customers, platform, segmentation, service
from db.models import RISK_LEVELS

ROOT = Path(__file__).resolve().parent.parent
# The product's own code (tests may spell rules out to check them independently).
SOURCE_PACKAGES = ("crm_core", "ml", "batch", "demo", "db", "ui", "pages", "crm_cli", "api")
CRM_CORE_PACKAGES = ("platform", "customers", "imports", "service", "loyalty", "segmentation", "risk", "referrals",
                     "reporting", "webhooks", "campaigns", "success", "social", "journeys", "orders", "vouchers")


def _files(*packages: str) -> list[Path]:
    found = [p for name in packages for p in sorted((ROOT / name).rglob("*.py")) if "migrations" not in p.parts]
    if "pages" in packages:
        found.append(ROOT / "streamlit_app.py")
    return found


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(absolute module, imported names, line) of every import statement in the file."""
    module = _module(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.Import):
            found.extend((alias.name, [], node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            found.append((target, [alias.name for alias in node.names], node.lineno))
    return found


# --------------------------------------------------------------------------- one home per rule

# name -> the one module that may define it
PINNED_NAMES = {
    "RISK_FLOORS": "crm_core/segmentation/churn_levels.py",
    "AT_RISK_LEVELS": "crm_core/segmentation/churn_levels.py",
    "AT_RISK_PROBABILITY": "crm_core/segmentation/churn_levels.py",
    "GONE_STATUSES": "crm_core/customers/rules.py",
    "COUNTED_CUSTOMER": "crm_core/customers/rules.py",
    "TEXT_LIMITS": "crm_core/customers/rules.py",
    "DEFAULT_TIER_THRESHOLDS": "crm_core/loyalty/rules.py",
    "DEFAULT_CALENDAR": "crm_core/service/business_calendar.py",
    "DEFAULT_POLICY_MINUTES": "crm_core/service/sla.py",
    "SHOP_COUNTRY": "crm_core/platform/shop.py",
    "SHOP_TIMEZONE": "crm_core/platform/shop.py",
    "SHOP_CURRENCY": "crm_core/platform/shop.py",
    "HISTORICAL_RUN_TIME": "crm_core/platform/dates.py",
    "UNDONE_ORDER_STATUSES": "db/models.py",
    "OPEN_COMPLAINT_STATUSES": "crm_core/service/complaints.py",
}
# Names the rules went by before they had one home: none of them may come back.
RETIRED_NAMES = {"RISK_THRESHOLDS", "RISK_BANDS", "HIDDEN_STATUSES", "FINAL_STATUSES", "CLOSED_STATUSES",
                 "TIER_THRESHOLDS", "BUSINESS_CALENDAR", "TICKET_PRIORITY_MINUTES", "EXPORTED", "CURRENCY",
                 "REVERSING_ORDER_STATUSES", "PROBLEM_ORDER_STATUSES", "UNDONE_STATUSES"}
PINNED_FUNCTIONS = {"midnight": "crm_core/platform/dates.py", "end_of": "crm_core/platform/dates.py"}
RETIRED_FUNCTIONS = {"_midnight", "_end_of"}


def _definitions() -> list[tuple[str, str, int, str]]:
    """(kind, name, line, file) of every module-level assignment and every function definition."""
    found = []
    for path in _files(*SOURCE_PACKAGES):
        rel = str(path.relative_to(ROOT))
        tree = _tree(path)
        for node in tree.body:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
                node, ast.AnnAssign) else []
            for target in targets:
                for name in ast.walk(target):
                    if isinstance(name, ast.Name):
                        found.append(("name", name.id, node.lineno, rel))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                found.append(("function", node.name, node.lineno, rel))
    return found


def test_each_pinned_rule_is_defined_once_in_its_home():
    definitions = _definitions()
    for name, home in PINNED_NAMES.items():
        places = [f"{file}:{line}" for kind, n, line, file in definitions if kind == "name" and n == name]
        assert len(places) == 1 and places[0].startswith(home + ":"), f"{name} is defined at {places}, home {home}"
    for name, home in PINNED_FUNCTIONS.items():
        places = [f"{file}:{line}" for kind, n, line, file in definitions if kind == "function" and n == name]
        assert len(places) == 1 and places[0].startswith(home + ":"), f"{name}() is defined at {places}, home {home}"
    again = [f"{n} at {file}:{line}" for kind, n, line, file in definitions
             if (kind == "name" and n in RETIRED_NAMES) or (kind == "function" and n in RETIRED_FUNCTIONS)]
    assert not again, f"a rule is defined again under an old name: {again}"


def _literals(node: ast.AST) -> list | None:
    """The constant elements of a tuple, list or set literal (None when it is not all constants)."""
    if isinstance(node, ast.Tuple | ast.List | ast.Set) and all(isinstance(e, ast.Constant) for e in node.elts):
        return [e.value for e in node.elts]
    return None


def _is_midnight_time(node: ast.AST) -> bool:
    """`dt.time()`, `time()`, `dt.time.min` or `dt.datetime.min.time()`: the time of a midnight."""
    if isinstance(node, ast.Call) and not node.args and not node.keywords:
        func = node.func
        return (isinstance(func, ast.Name) and func.id == "time") or (
            isinstance(func, ast.Attribute) and func.attr == "time"
            and (isinstance(func.value, ast.Name) or (isinstance(func.value, ast.Attribute) and func.value.attr == "min")))
    return (isinstance(node, ast.Attribute) and node.attr == "min"
            and ((isinstance(node.value, ast.Name) and node.value.id == "time")
                 or (isinstance(node.value, ast.Attribute) and node.value.attr == "time")))


def test_no_copy_of_a_pinned_value_outside_its_home():
    """The values themselves are not spelled out again: the gone statuses, the at-risk levels, the undone
    order and open complaint statuses, the risk band floors, the tier thresholds, a calendar or the
    midnight of a date."""
    copies = []
    for path in _files(*SOURCE_PACKAGES):
        rel = str(path.relative_to(ROOT))
        for node in ast.walk(_tree(path)):
            values = _literals(node)
            if values is not None:
                if sorted(map(str, values)) == ["erased", "merged"] and rel != PINNED_NAMES["GONE_STATUSES"]:
                    copies.append(f"gone statuses at {rel}:{node.lineno}")
                if sorted(map(str, values)) == ["cancelled", "refunded", "returned"] \
                        and rel != PINNED_NAMES["UNDONE_ORDER_STATUSES"]:
                    copies.append(f"undone order statuses at {rel}:{node.lineno}")
                if sorted(map(str, values)) == ["escalated", "investigating", "open"] \
                        and rel != PINNED_NAMES["OPEN_COMPLAINT_STATUSES"]:
                    copies.append(f"open complaint statuses at {rel}:{node.lineno}")
                if values == ["excellent", "good", "fair", "poor", "critical"] and rel != "db/models.py":
                    copies.append(f"health levels at {rel}:{node.lineno} (db.models.HEALTH_LEVELS)")
                if values == ["high", "critical"] and rel not in (PINNED_NAMES["AT_RISK_LEVELS"],
                                                                   "crm_core/service/complaints.py"):
                    copies.append(f"at-risk levels at {rel}:{node.lineno}")
            if isinstance(node, ast.Dict):
                keys = {k.value for k in node.keys if isinstance(k, ast.Constant)}
                numbers = {v.value for v in node.values if isinstance(v, ast.Constant)}
                if {"critical", "high"} <= keys and 0.75 in numbers and rel != PINNED_NAMES["RISK_FLOORS"]:
                    copies.append(f"risk bands at {rel}:{node.lineno}")
                if {"bronze", "silver", "gold"} <= keys and {1_000, 5_000} <= numbers \
                        and rel != PINNED_NAMES["DEFAULT_TIER_THRESHOLDS"]:
                    copies.append(f"tier thresholds at {rel}:{node.lineno}")
                if "working_periods" in keys and rel != PINNED_NAMES["DEFAULT_CALENDAR"]:
                    copies.append(f"a business calendar at {rel}:{node.lineno}")
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "combine"
                    and len(node.args) == 2 and _is_midnight_time(node.args[1]) and rel != PINNED_FUNCTIONS["midnight"]):
                copies.append(f"a midnight spelled out at {rel}:{node.lineno}")
    assert not copies, "use the one definition instead: " + "; ".join(copies)


def test_the_risk_bands_lifecycle_and_search_agree():
    """Lifecycle's at-risk probability is the floor of the "high" level, the first at-risk level."""
    assert tuple(segmentation.RISK_FLOORS) == RISK_LEVELS
    assert tuple(RISK_LEVELS[RISK_LEVELS.index("high"):]) == segmentation.AT_RISK_LEVELS
    assert segmentation.AT_RISK_PROBABILITY == segmentation.RISK_FLOORS["high"] == 0.5
    assert segmentation.DEFAULT_LIFECYCLE_RULES["at_risk_probability"] == segmentation.AT_RISK_PROBABILITY
    assert [segmentation.risk_level(p) for p in (0.0, 0.2499, 0.25, 0.4999, 0.5, 0.7499, 0.75, 1.0)] == [
        "low", "low", "medium", "medium", "high", "high", "critical", "critical"]
    assert segmentation.risk_band("critical") == (0.75, 1.01) and segmentation.risk_band("low") == (0.0, 0.25)


def test_the_demo_shop_and_the_domain_share_their_defaults():
    import demo

    assert customers.GONE_STATUSES == ("merged", "erased")
    assert service.DEFAULT_CALENDAR["timezone"] == platform.SHOP_TIMEZONE
    assert service.DEFAULT_CALENDAR["country"] == platform.SHOP_COUNTRY
    assert "crm_core" in {node.split(".")[0] for node, _, _ in _imports(ROOT / "demo/simulator.py")}
    assert demo.Simulator is not None


def test_the_snapshot_step_is_the_only_writer_of_customer_analytics():
    """Models write their own tables; the snapshot reads them when the refresh builds it."""
    home = "crm_core/segmentation/snapshot.py"
    writes = []
    for path in _files(*SOURCE_PACKAGES):
        rel = str(path.relative_to(ROOT))
        if rel in (home, "db/models.py"):
            continue
        for node in ast.walk(_tree(path)):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.id if isinstance(node.func, ast.Name) else node.func.attr \
                if isinstance(node.func, ast.Attribute) else ""
            target = ast.unparse(node.args[0]) if node.args else ""
            if name == "CustomerAnalytics" or (name in ("insert", "update", "delete")
                                                and target.startswith("CustomerAnalytics")):
                writes.append(f"{rel}:{node.lineno}")
            if any(isinstance(a, ast.Constant) and isinstance(a.value, str)
                   and any(f"{verb} customer_analytics" in a.value.lower() for verb in ("insert into", "update", "delete from"))
                   for a in node.args):
                writes.append(f"{rel}:{node.lineno} (SQL text)")
    assert not writes, f"customer_analytics is written outside {home}: {writes}"


# --------------------------------------------------------------------------- imports point one way

# What each top-level package may import from this project (besides itself).
ALLOWED = {
    "db": set(),
    "crm_core": {"db"},
    "ml": {"crm_core", "db"},
    "batch": {"ml", "crm_core", "db"},
    "demo": {"crm_core", "db"},
    "ui": {"batch", "ml", "crm_core", "db"},
    "pages": {"ui", "batch", "ml", "crm_core", "db"},
    "streamlit_app": {"ui", "crm_core", "db"},
    "crm_cli": {"batch", "ml", "crm_core", "db", "demo"},
    "api": {"batch", "ml", "crm_core", "db"},
}
PROJECT = {"db", "crm_core", "ml", "batch", "demo", "ui", "pages", "crm_cli", "streamlit_app", "tests", "bench", "api"}
NO_WEB = {"crm_core", "ml", "batch", "db", "demo"}  # never streamlit or fastapi


def test_imports_point_one_way():
    wrong = []
    for path in _files(*ALLOWED):
        top = _module(path).split(".")[0]
        for target, _names, line in _imports(path):
            first = target.split(".")[0]
            if first in PROJECT and first != top and first not in ALLOWED[top]:
                wrong.append(f"{path.relative_to(ROOT)}:{line} ({top} -> {first})")
            if top in NO_WEB and first in ("streamlit", "fastapi"):
                wrong.append(f"{path.relative_to(ROOT)}:{line} ({top} -> {first})")
    assert not wrong, "imports that point the wrong way: " + "; ".join(wrong)


def test_crm_core_modules_import_the_submodule_they_need():
    """Inside crm_core, a module imports another's submodule, never a package's API (no import cycles)."""
    wrong = []
    for path in _files("crm_core"):
        if path.name == "__init__.py":
            continue
        for target, names, line in _imports(path):
            if target == "crm_core" or (target.startswith("crm_core.") and target.count(".") == 1
                                        and not all((ROOT / target.replace(".", "/") / f"{n}.py").exists()
                                                    for n in names)):
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {target} {names}")
    assert not wrong, "; ".join(wrong)


def test_everyone_else_calls_crm_core_through_its_packages():
    """Pages, ui, the crm command, the batch, models and the demo use `from crm_core import <package>`."""
    wrong = []
    for path in _files("ml", "batch", "demo", "ui", "pages", "crm_cli", "api"):
        for target, names, line in _imports(path):
            if target.startswith("crm_core.") or (target == "crm_core" and not set(names) <= set(CRM_CORE_PACKAGES)):
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {target} {names}")
    assert not wrong, "; ".join(wrong)


@pytest.mark.parametrize("package", [f"crm_core.{name}" for name in CRM_CORE_PACKAGES] + ["batch", "demo", "ml.health"])
def test_each_package_names_its_public_functions(package):
    module = importlib.import_module(package)
    init = ROOT / package.replace(".", "/") / "__init__.py"
    imported = {alias.asname or alias.name for node in _tree(init).body if isinstance(node, ast.ImportFrom)
                for alias in node.names}
    assert sorted(module.__all__) == sorted(imported), "__all__ lists exactly what the package imports"
    submodules = {p.stem for p in init.parent.glob("*.py")}
    assert not set(module.__all__) & submodules, "a public name may not hide a submodule of the same name"
    assert all(not name.startswith("_") for name in module.__all__)


def test_the_four_kinds_of_actor_meet_the_actor_protocol():
    from db.models import User

    staff = User(id=7, username="maria", full_name="Maria", role="analyst", is_active=True, password_hash="x")
    signed_in = platform.SignedInUser(7, "maria", "Maria", "analyst")
    token = platform.TokenActor(7, "maria", "analyst", True, token_id=3, read_only=False)
    for actor in (staff, signed_in, token, platform.SYSTEM):
        assert isinstance(actor, platform.Actor)
        platform.require(actor, "overview.view")
    assert platform.SYSTEM.id is None and platform.SYSTEM.username == "system"
    with pytest.raises(platform.PermissionDenied, match="anonymous"):
        platform.require(None, "overview.view")
    read_only = platform.TokenActor(7, "maria", "admin", True, token_id=3, read_only=True)
    platform.require(read_only, "overview.view")
    with pytest.raises(platform.PermissionDenied, match="read-only"):
        platform.require(read_only, "customers.edit")


def test_services_type_whoever_acts_as_an_actor():
    """No getattr over actors: whoever acts is typed `Actor` (or a concrete kind), never `Any`."""
    loose = []
    for path in _files("crm_core", "ml", "batch"):
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                for arg in [*node.args.args, *node.args.kwonlyargs]:
                    if arg.arg in ("actor", "viewer") and isinstance(arg.annotation, ast.Name) \
                            and arg.annotation.id == "Any":
                        loose.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}({arg.arg})")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr") \
                    and node.args and isinstance(node.args[0], ast.Name) and node.args[0].id in ("actor", "viewer", "user"):
                loose.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.func.id}({node.args[0].id}, ...)")
    assert not loose, "type the actor instead: " + "; ".join(loose)
