"""``--format markdown``: the HTML report's content as text for tickets and wikis.

A renderer over the same ``meshpcap.report`` document as JSON and HTML: the verdict and capture
facts with their warnings, the findings with their fixes (clients, first and last failing attempt,
Wireshark filter), the requirement checklist with evidence, expected traffic, the per-client view,
the firewall-ready lists and the flows that matter.  Strings from the capture are escaped so that
no markup, link or table cell boundary can come from the wire.
"""

from __future__ import annotations

import re
from typing import Any

from . import firewall
from .flows import ns_text
from .sanitize import markdown_code, markdown_text, terminal_text
from .html import FLOW_HEAD, clients_view, evidence, finding_view, flow_rows
from .quality import quality_view



def md(text: Any) -> str:
    """Text safe in a Markdown paragraph or table cell: control characters shown as escapes (no
    new line, no terminal escape sequence), markup characters backslash-escaped."""
    return markdown_text("" if text is None else text)


def code(text: Any) -> str:
    """Inline code; the fence is longer than any run of backticks inside."""
    return markdown_code("" if text is None else text)


def block(text: str, lang: str = "") -> list[str]:
    # control characters shown as escapes; the tabs of nftables' layout become four spaces (a code
    # block's usual indentation, and no raw control character reaches a terminal or a wiki)
    text = "\n".join(terminal_text(line.replace("\t", "    ")) for line in text.rstrip("\n").split("\n"))
    longest = max((len(m) for m in re.findall(r"~+", text)), default=0)
    fence = "~" * max(3, longest + 1)
    return [fence + lang, text, fence]


def headline(doc: dict[str, Any]) -> str:
    """The report's headline (the one line that agrees with the exit code); counted here for a
    document older than the field."""
    if doc.get("headline"):
        return str(doc["headline"])
    fs = doc.get("findings") or []
    kinds = {k: sum(1 for f in fs if f.get("kind") == k and f.get("severity") != "info")
             for k in ("blocked", "missing", "unexpected")}
    errors = sum(1 for f in fs if f.get("severity") == "error")
    p = doc.get("profile") or {}
    return (f"{str(doc.get('verdict')).upper()}: {kinds['blocked']} blocked, {kinds['missing']} missing, "
            f"{kinds['unexpected']} unexpected ({errors} error{'s' if errors != 1 else ''}) "
            f"under profile {p.get('id')} ({p.get('date')})")


def _rel(ns: int | None, t0: int | None) -> str:
    if ns is None or t0 is None:
        return ""
    return f" (+{(ns - t0) / 1e9:.3f} s)"


def render_markdown_document(doc: dict[str, Any], unrelated_hidden: int = 0) -> str:
    """The report document as Markdown: headline and notices, the capture's summary and warnings,
    findings, requirements and expected traffic, quality, clients, firewall-ready lists, flows."""
    cap = doc.get("capture") or {}
    t0 = cap.get("first_ns")
    flows = doc.get("flows") or []
    by_id = {f["id"]: f for f in flows}
    findings = [finding_view(f, by_id, doc.get("dns")) for f in doc.get("findings") or []]
    out = _summary_section(doc)
    out += _findings_section(findings, t0)
    out += _requirements_section(doc, flows)
    out += _quality(doc)
    out += _clients_section(flows, findings)
    out += _firewall_section(doc)
    out += _flows_section(flows, t0, unrelated_hidden)
    return "\n".join(out) + "\n"


def _summary_section(doc: dict[str, Any]) -> list[str]:
    """The headline, the profile's notices, what was read under which rules, and the warnings."""
    cap = doc.get("capture") or {}
    p = doc.get("profile") or {}
    st = doc.get("service_tags")
    out = [f"# meshpcap: {md(headline(doc))}", ""]
    out += [f"> **Note:** {md(n.get('text'))}\n" for n in p.get("notices", ())]  # the rules' dates vs the capture's
    out.append(f"- capture: {code(cap.get('path'))} ({cap.get('packets')} packets, {cap.get('decoded')} decoded; "
               f"{md(cap.get('format'))})")
    out.append(f"- span: {ns_text(cap.get('first_ns'))} .. {ns_text(cap.get('last_ns'))}")
    out.append(f"- profile: **{md(p.get('id'))}**: {md(p.get('title'))}; source: {md(p.get('source'))}")
    if st:
        out.append(f"- service tags: {code(st.get('file'))} (date {st.get('date') or 'unknown'}, changeNumber "
                   f"{st.get('change_number')})")
    else:
        out.append("- service tags: none (AzureCloud membership not verified)")
    warnings = list(doc.get("warnings") or [])
    if cap.get("truncated"):
        t = cap["truncated"]
        warnings.append(f"capture truncated at record {t.get('record')}: {t.get('reason')}")
    if warnings:
        out += ["", "## Warnings", ""] + [f"- {md(w)}" for w in warnings]
    return out


def _findings_section(findings: list[dict], t0: int | None) -> list[str]:
    """One subsection a finding (already through :func:`finding_view`), or "None."."""
    out = ["", "## Findings", ""]
    if not findings:
        out += ["None.", ""]
    for f in findings:
        out.append(f"### {md(f['id'])} ({md(f.get('severity'))}, {md(f.get('kind'))}): {md(f.get('title'))}")
        out.append("")
        out.append(f"- {md(f.get('detail'))}")
        out.append(f"- **fix:** {md(f.get('fix'))}")
        if f.get("rule"):
            out.append(f"- rule: {code(f['rule'])}: {md(f.get('source') or '')}")
        out.append(f"- clients: {', '.join(md(c) for c in f['clients']) or '-'}")
        if f.get("first_ns") is not None:
            out.append(f"- first failing attempt: {ns_text(f['first_ns'])}{_rel(f['first_ns'], t0)}; last: "
                       f"{ns_text(f.get('last_ns'))}{_rel(f.get('last_ns'), t0)}")
        if f.get("flow_ids"):
            out.append(f"- flows: {', '.join(map(str, f['flow_ids']))}")
        if f.get("filter"):
            out.append(f"- Wireshark: {code(f['filter'])}")
        out.append("")
    return out


def _requirements_section(doc: dict[str, Any], flows: list[dict]) -> list[str]:
    """The checklist (each rule with the flows that are its evidence) and the expected groups."""
    by_rule: dict[str, list[dict]] = {}
    for f in flows:
        if f.get("rule"):
            by_rule.setdefault(f["rule"], []).append(f)
    out = ["## Requirements", "", "| status | rule | what | destination | ports | req. | evidence |",
           "|---|---|---|---|---|---|---|"]
    for c in doc.get("checklist") or []:
        ev = "; ".join(evidence(c["rule"], by_rule)) or "no flow"
        out.append(f"| {md(c.get('status'))} | {md(c['rule'])} | {md(c.get('description'))} | "
                   f"{md(c.get('destination'))} | {md(c.get('ports'))} | {md(c.get('requirement'))} | {md(ev)} |")
    if doc.get("expected"):
        out += ["", "## Expected traffic", "", "| status | group | what a working session shows | detail |",
                "|---|---|---|---|"]
        out += [f"| {md(g.get('status'))} | {md(g.get('id'))} | {md(g.get('description'))} | {md(g.get('detail'))} |"
                for g in doc["expected"]]
    return out


def _clients_section(flows: list[dict], findings: list[dict]) -> list[str]:
    """One row a client address (none when there is no client)."""
    clients = clients_view(flows, findings)
    if not clients:
        return []
    out = ["", "## Clients", "", "| client | allowed | blocked | unexpected | blocked flows | findings |",
           "|---|---|---|---|---|---|"]
    out += [f"| {md(c['client'])} | {c['allowed']} | {c['blocked']} | {c['unexpected']} | "
            f"{md('; '.join(c['blocked_to']))} | {md(', '.join(c['findings']))} |" for c in clients]
    return out


def _firewall_section(doc: dict[str, Any]) -> list[str]:
    """The firewall-ready lists: the change-request text, PAN-OS, nftables, FortiGate."""
    fw = firewall.build(doc)
    out = ["", "## Firewall-ready", "", "For the change request:", ""]
    out += block(firewall.render_text(fw, doc), "text")
    out += ["", "PAN-OS external dynamic lists:", ""] + block(firewall.render_panos(fw), "text")
    out += ["", "nftables:", ""] + block(firewall.render_nftables(fw), "nft")
    out += ["", "FortiGate address objects:", ""] + block(firewall.render_fortigate(fw), "text")
    return out


def _flows_section(flows: list[dict], t0: int | None, unrelated_hidden: int) -> list[str]:
    """The flow table (and how many unrelated flows it leaves out)."""
    note = f" ({unrelated_hidden} unrelated flows not shown: --show-unrelated)" if unrelated_hidden else ""
    out = ["", f"## Flows{note}", "", "| " + " | ".join(FLOW_HEAD) + " |", "|" + "---|" * len(FLOW_HEAD)]
    out += ["| " + " | ".join(md(x) for x in row) + " |" for row in flow_rows(flows, t0)]
    return out


def _row(cells) -> str:
    return "| " + " | ".join(md(c) for c in cells) + " |"


def _quality(doc: dict[str, Any]) -> list[str]:
    """The media-quality section: verdict and source, what one capture point cannot see, the degraded
    findings, the streams that missed a target, RTT per server and the streams (as the HTML page)."""
    q = quality_view(doc)
    if q is None:
        return []
    out = ["", "## Media quality", "",
           f"**{md(q['verdict'])}**: {q['judged']} stream(s) judged, {q['met']} met every target; {q['rtt_total']} "
           f"server(s) with round-trip times. Targets: {md(q['source'])}" + (f" ({md(q['scope'])})" if q["scope"] else "")
           + f"; file {code(q['file'])}.", "", "What one capture point cannot see:", ""]
    out += [f"- {md(x)}" for x in q["limits"]]
    out += ["", "### Degraded findings", ""]
    if q["degraded"]:
        out += ["| finding | stream or server | window | measured | target |", "|---|---|---|---|---|"]
        out += [_row([d["id"], d["subject"], d["window"], d["measured"], d["target"]]) for d in q["degraded"]]
    else:
        out.append("None: every judged stream and server met the targets.")
    if q["missed"]:
        out += ["", "### Streams that missed a target or could not be judged on one", "",
                "| stream | scope | target | measured | limit |", "|---|---|---|---|---|"]
        out += [_row([m["stream"], m["scope"], m["target"], m["measured"], m["limit"]]) for m in q["missed"]]
    out += ["", "### Round-trip time per server", ""]
    if q["rtt"]:
        out += ["| server | transport | measured by | samples | min ms | median ms | max ms | one way (RTT/2, estimate) ms "
                "| target | flows |", "|---|---|---|---|---|---|---|---|---|---|"]
        out += [_row([r["server"], r["transport"], r["methods"], r["samples"], r["min"], r["median"], r["max"],
                      r["one_way"], r["status"], r["flows"]]) for r in q["rtt"]]
        if q["rtt_total"] > len(q["rtt"]):
            out += ["", f"{q['rtt_total'] - len(q['rtt'])} more servers are in the JSON report."]
    else:
        out.append("No round trip seen (no STUN transaction or TCP handshake answered).")
    out += ["", "### Streams", ""]
    if q["stream_rows"]:
        out += [_row(q["stream_head"]), "|" + "---|" * len(q["stream_head"])]
        out += [_row(r) for r in q["stream_rows"]]
        if q["streams_total"] > len(q["stream_rows"]):
            out += ["", f"{q['streams_total'] - len(q['stream_rows'])} more streams are in the JSON report."]
    else:
        out.append("No RTP stream in the capture.")
    return out


def render_markdown(r, show_unrelated: bool = False) -> str:
    """``meshpcap analyze --format markdown``."""
    from ..classify.verdicts import unrelated_count

    doc = r.to_dict(show_unrelated)
    hidden = 0 if show_unrelated else unrelated_count(r.judgement.flows)
    return render_markdown_document(doc, hidden)
