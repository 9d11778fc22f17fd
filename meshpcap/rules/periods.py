"""When a profile's requirements were in force, and which profile was in force on a date.

The dates are data (``valid_from``, ``superseded_on``/``superseded_by``, ``retired_on``/``retired_by``
in each profile's ``[profile]`` table, every one with its source); this module only reads them.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Any

from meshpcap._dataclass import dataclass
from meshpcap.errors import RuleError
from meshpcap.rules.m365 import version_date
from meshpcap.rules.model import Profile


@dataclass(frozen=True, slots=True)
class Notice:
    """What the report says first when the rules and the capture's date do not fit together."""

    kind: str  # "superseded" | "retired" | "not-yet" | "endpoints-newer"
    on: date  # the date judged (the capture's first packet, or --as-of)
    in_force: str | None  # id of the profile in force on that date (None: not known)
    text: str

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "date": self.on.isoformat(), "in_force": self.in_force, "text": self.text}


def capture_date(first_ns: int | None) -> date | None:
    """The UTC date of a capture's first packet (integer nanoseconds since the epoch), or None."""
    if first_ns is None:
        return None
    try:
        return datetime.fromtimestamp(first_ns / 1e9, tz=timezone.utc).date()
    except (OverflowError, OSError, ValueError):
        return None


def parse_as_of(text: str) -> date:
    """``--as-of YYYY-MM-DD``; RuleError names the option."""
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise RuleError("--as-of", f"'{text}' is not a date (YYYY-MM-DD)") from None


def _lookup(name: str) -> Profile:
    from meshpcap.rules.load import load_profile

    return load_profile(name)


def chain(profile: Profile, on: date) -> list[Profile]:
    """``profile`` and the profiles that followed it up to the one in force on ``on`` (first to last)."""
    out = [profile]
    seen = {profile.id}
    current = profile
    while current.ended_on is not None and on >= current.ended_on and current.successor:
        if current.successor in seen:
            raise RuleError(str(current.path or current.id), f"profiles follow each other in a circle ({current.successor})",
                            field="profile: superseded_by")
        current = _lookup(current.successor)
        seen.add(current.id)
        out.append(current)
    return out


def in_force(on: date, start: Profile | str | None = None) -> Profile:
    """The profile in force on ``on``, following ``superseded_by``/``retired_by`` from ``start``
    (default: the default profile, ``multi-room``)."""
    from meshpcap.rules.load import default_profile

    if start is None:
        first = default_profile()
    elif isinstance(start, str):
        first = _lookup(start)
    else:
        first = start
    return chain(first, on)[-1]


def _ended(p: Profile) -> str:
    if p.ended_on is None:
        return ""
    if p.superseded_on == p.ended_on:
        return f"superseded on {p.superseded_on}" + (f" by `{p.superseded_by}`" if p.superseded_by else "")
    return f"retired on {p.retired_on}" + (f" in favour of `{p.retired_by}`" if p.retired_by else "")


def profile_notice(profile: Profile, on: date | None, as_of: bool = False) -> Notice | None:
    """The notice for judging a capture of date ``on`` against ``profile`` (None when they fit)."""
    if on is None:
        return None
    when = f"the date given ({on})" if as_of else f"this capture's date ({on})"
    ended = profile.ended_on
    if ended is not None and on >= ended:
        steps = chain(profile, on)
        now = steps[-1]
        what = profile.date or profile.valid_from
        later = "".join(f", then {_ended(p)}" for p in steps[1:-1])
        text = (f"judged against the {what} requirements (`{profile.id}`), {_ended(profile)}{later}; for {when} "
                f"the rules in force were `{now.id}` (--profile {now.id}, or --profile auto)")
        kind = "superseded" if profile.superseded_on == ended else "retired"
        return Notice(kind, on, now.id, text)
    if profile.valid_from is not None and on < profile.valid_from:
        text = (f"{when[0].upper()}{when[1:]} comes before these requirements (`{profile.id}`, in force from "
                f"{profile.valid_from}); they may not be the ones the network was set up for")
        return Notice("not-yet", on, None, text)
    published = version_date(profile.endpoints_version)
    if published is not None and on < published:
        text = (f"judged by Microsoft 365 endpoints version {profile.endpoints_version} (published {published}), "
                f"newer than {when}; for the rows then current pass --m365-endpoints FILE of that time")
        return Notice("endpoints-newer", on, profile.id, text)
    return None


def profile_period(p: Profile) -> dict[str, Any]:
    """A profile's identity, dates (with their sources), endpoint-file use and notes, for listing."""
    def iso(d: date | None) -> str | None:
        return d.isoformat() if d else None

    end = p.ended_on
    span = f"{iso(p.valid_from) or '?'} .. {iso(end) or 'now'}" if (p.valid_from or end) else "current"
    e = p.endpoints
    return {
        "id": p.id, "default": p.default, "date": iso(p.date), "in_force": span, "rules": len(p.rules),
        "title": p.title, "source": p.source,
        "valid_from": iso(p.valid_from), "valid_from_source": p.valid_from_source,
        "superseded_on": iso(p.superseded_on), "superseded_by": p.superseded_by, "superseded_on_source": p.superseded_source,
        "retired_on": iso(p.retired_on), "retired_by": p.retired_by, "retired_on_source": p.retired_source,
        "endpoints": None if e is None else {
            "combine": e.combine,
            "selects": [f"service area {a}" for a in e.service_areas] + [f"set {i}" for i in e.ids],
            "version": p.endpoints_version, "file": p.endpoints_file.name if p.endpoints_file else None,
            "use_cache": e.use_cache,
        },
        "notes": p.notes,
    }
