"""The date of a service-tag snapshot, and how far it is from the capture it judges.

A ``ServiceTags_Public_YYYYMMDD.json`` carries its date in its name only; a renamed file is
dated from its cloud and changeNumber when they are a known snapshot (``snapshots.toml``),
else its date is unknown, and the report says so.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from functools import lru_cache
from pathlib import Path

from ..rules.files import toml_document

# AzureCloud changes every week; beyond this many days between the snapshot and the capture,
# addresses may have joined or left the tag since.
FAR_DAYS = 90


@lru_cache(maxsize=1)
def known_snapshots() -> dict[tuple[str, int], date]:
    """(cloud, changeNumber) -> date of the published snapshots listed in ``snapshots.toml``."""
    doc = toml_document(Path(__file__).with_name("snapshots.toml").read_bytes().decode())
    return {(s["cloud"], s["change_number"]): s["date"] for s in doc.get("snapshot", [])}


def snapshot_date(file_date: date | None, cloud: str | None, change_number: int | None) -> tuple[date | None, str | None]:
    """The snapshot's date and where it came from: ``"file name"``, ``"changeNumber"`` (a known
    snapshot of that cloud), or (None, None) when unknown."""
    if file_date is not None:
        return file_date, "file name"
    known = known_snapshots().get((cloud or "", change_number if change_number is not None else -1))
    if known is not None:
        return known, "changeNumber"
    return None, None


def distance_warning(snap: date | None, capture_first_ns: int | None, capture_last_ns: int | None) -> str | None:
    """A warning when the snapshot is more than :data:`FAR_DAYS` from the capture's dates, else None."""
    if snap is None or capture_first_ns is None:
        return None
    first = datetime.fromtimestamp(capture_first_ns / 1e9, timezone.utc).date()
    last = datetime.fromtimestamp((capture_last_ns or capture_first_ns) / 1e9, timezone.utc).date()
    if first <= snap <= last:
        return None
    days = (first - snap).days if snap < first else (snap - last).days
    if days <= FAR_DAYS:
        return None
    when = "before" if snap < first else "after"
    return (f"the service-tag snapshot is dated {snap.isoformat()}, {days} days {when} the capture "
            f"({first.isoformat()}): addresses may have joined or left the tags since; use the snapshot nearest "
            "the capture's date")
