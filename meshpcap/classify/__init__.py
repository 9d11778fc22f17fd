"""Judge flows against a profile: verdicts per flow, findings, the requirement checklist."""

from .findings import FAIL_ON, HEADLINE_VERDICTS, CheckItem, Finding, GroupStatus, Judgement, failing, headline, judge
from .verdicts import BLOCKED_BY, TAG_UNVERIFIED, VERDICTS, FlowVerdict

__all__ = ["judge", "failing", "headline", "HEADLINE_VERDICTS", "Judgement", "Finding", "CheckItem", "GroupStatus", "FlowVerdict", "VERDICTS",
           "BLOCKED_BY", "FAIL_ON", "TAG_UNVERIFIED"]
