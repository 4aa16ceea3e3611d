"""`mixtrain doctor`: check a home for damage and say how to fix it; ``--fix`` repairs what is safe.

In team mode it first checks the shared services (``services``: PostgreSQL, the S3 bucket, the Ray
cluster) with this machine's settings and credentials, one line each, and skips the store checks
whose service is down (they would only repeat the same cause).

Why: faults (a killed write, a full disk, a truncated file) leave state that normal commands refuse
with one line each; the doctor looks at everything at once and never repairs by forgetting data. It
only asks: each store checks itself through its public ``check()`` (metadata DB, dataset catalog and
warehouse, secrets, models, workflows and runs) and returns findings; this module collects and prints.
Orphan files are removed only when no table or snapshot references them and they are older than an
age guard (as Iceberg's own orphan-file removal does), so a write in flight is never touched.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from mixtrain.errors import MixtrainError
from mixtrain.health import Finding
from mixtrain.settings import Settings

__all__ = ["ORPHAN_AGE", "Finding", "Report", "check"]

ORPHAN_AGE = 3600  # seconds: younger unreferenced files may belong to a write in flight


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)

    def add(self, finding: Finding) -> None:
        if not finding.ok and any(f.what == finding.what for f in self.findings):
            return  # one broken store fails every later check that needs it: say it once
        self.findings.append(finding)

    @property
    def healthy(self) -> bool:
        return all(f.ok or f.fixed for f in self.findings)


def check(settings: Settings, fix: bool = False, older_than: float = ORPHAN_AGE) -> Report:
    from mixtrain import services

    report = Report()
    home = settings.home
    # Team services first, even before this machine has a home: a new member checks the servers they share.
    down = set()
    for service, finding in services.checks(settings):
        report.add(finding)
        if not finding.ok:
            down.add(service)
    if not home.exists():
        report.add(Finding(True, f"home {home} does not exist yet (a fresh install; created on first use)"))
        return report
    for name, step in _steps(settings, fix, older_than):
        if down & NEEDS.get(name, set()):
            continue  # its service is down: said once above, not again per store
        try:
            for finding in step():
                report.add(finding)
        except MixtrainError as exc:
            report.add(Finding(False, exc.what, exc.fix or ""))
        except Exception as exc:  # the doctor reports; it must not crash on the damage it looks for
            report.add(Finding(False, f"{name} check failed: {type(exc).__name__}: {exc}", "see the message"))
    return report


# Which team services (``services.checks``) each store's check needs.
NEEDS = {
    "metadata": {"database"},
    "datasets": {"database", "catalog", "bucket"},
    "secrets": {"database"},
    "models": {"database", "bucket"},
    "workflows": {"database"},
}


def _steps(settings: Settings, fix: bool, older_than: float) -> list[tuple[str, Callable[[], list[Finding]]]]:
    from mixtrain.datasets.store import DatasetStore
    from mixtrain.metadata import db
    from mixtrain.models.registry import ModelRegistry
    from mixtrain.secrets.store import SecretStore
    from mixtrain.workflows.registry import WorkflowRegistry

    return [
        ("home", lambda: [_home(settings)]),
        ("metadata", lambda: db.check(settings.database_url)),
        ("datasets", lambda: DatasetStore(settings).check(fix, older_than)),
        ("secrets", lambda: SecretStore(settings).check(fix)),
        ("models", lambda: ModelRegistry(settings).check()),
        ("workflows", lambda: WorkflowRegistry(settings).check(fix)),
    ]


def _home(settings: Settings) -> Finding:
    if not os.access(settings.home, os.W_OK):
        return Finding(False, f"home {settings.home} is read-only", "reads work; writes need a writable home")
    return Finding(True, f"home {settings.home} is writable")
