"""Firewall-ready lists from a ``meshpcap.report`` document (pure functions of the document).

For each rule of the profile: the concrete host names seen under its wildcards (from SNI, HTTP
Host, CONNECT targets and DNS, with the CNAME chains the resolver answered), the addresses the
client reached or tried under it, and the ports and transports to allow, with the dates the lists
rest on (service-tag snapshot, profile/endpoints version).  The same content is written as plain
text for a change request, a PAN-OS external dynamic list (IP and domain lists), nftables sets
with ``flags interval`` and FortiGate address objects.

Only names that pass a strict host-name check reach the appliance formats: they are pasted into
configuration, where a quote or a newline from the wire must never arrive.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import field
from typing import Any

from meshpcap._dataclass import dataclass
from .sanitize import terminal_text

# flows whose destination the firewall must let through: the working ones and the refused ones
NEEDED_VERDICTS = ("allowed", "blocked")
_HOST = re.compile(r"^(\*\.)?([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.)*[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}"
                   r"[A-Za-z0-9_])?\.?$")
_TAG = re.compile(r"^the (\S+) service tag$")
_MORE = re.compile(r"^(.*?) \(\+(\d+) more\)$")
_PORTS = re.compile(r"^(TCP|UDP) (.+)$", re.IGNORECASE)


def safe_host(name: str | None) -> bool:
    """True for a host name (optionally ``*.``-prefixed) safe to paste into appliance configuration."""
    return bool(name) and len(name) <= 253 and _HOST.match(name) is not None


@dataclass(slots=True)
class HostSeen:
    name: str
    sources: list[str] = field(default_factory=list)  # sni, http-host, connect, dns
    chain: list[str] = field(default_factory=list)  # CNAME targets, in answer order
    addresses: list[str] = field(default_factory=list)  # what DNS answered
    dns_failed: str | None = None  # the rcode or "no answer" when every lookup failed

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "sources": self.sources, "chain": self.chain, "addresses": self.addresses,
                "dns_failed": self.dns_failed}


@dataclass(slots=True)
class RuleAllow:
    """What one rule asks the firewall to allow, and what the capture showed under it."""

    rule: str
    description: str
    status: str
    requirement: str
    ports: list[tuple[str, str]]  # ("tcp", "443"), ("udp", "3478-3481")
    domains: list[str]
    cidrs: list[str]
    cidrs_more: int  # prefixes of the profile not listed in the document
    service_tag: str | None
    any_destination: bool
    hosts: list[HostSeen]
    addresses: list[str]  # servers of the flows under the rule (allowed or blocked)
    flows: int

    @property
    def ports_text(self) -> str:
        return "; ".join(f"{t.upper()} {p}" for t, p in self.ports)

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "description": self.description, "status": self.status,
                "requirement": self.requirement, "ports": [list(p) for p in self.ports], "domains": self.domains,
                "cidrs": self.cidrs, "cidrs_more": self.cidrs_more, "service_tag": self.service_tag,
                "any_destination": self.any_destination, "hosts": [h.to_dict() for h in self.hosts],
                "addresses": self.addresses, "flows": self.flows}


@dataclass(slots=True)
class FirewallLists:
    rules: list[RuleAllow]
    basis: list[str]  # the dated sources the lists rest on

    def to_dict(self) -> dict[str, Any]:
        return {"basis": self.basis, "rules": [r.to_dict() for r in self.rules]}


def parse_ports(text: str) -> list[tuple[str, str]]:
    """``"TCP 443 + UDP 3478-3481"`` (the checklist's ports) -> [("tcp", "443"), ("udp", "3478-3481")]."""
    out = []
    for part in re.split(r"\s*[+;]\s*", text or ""):
        m = _PORTS.match(part.strip())
        if m:
            out.append((m[1].lower(), m[2].replace(" ", "")))
    return out


def parse_destination(text: str) -> tuple[list[str], list[str], int, str | None, bool]:
    """The checklist's destination text -> (domains, cidrs, cidrs not listed, service tag, any destination)."""
    domains: list[str] = []
    cidrs: list[str] = []
    more = 0
    tag = None
    anyd = False
    for part in (text or "").split("; "):
        part = part.strip()
        if not part or part == "-":
            continue
        m = _TAG.match(part)
        if m:
            tag = m[1]
            continue
        if part == "any destination":
            anyd = True
            continue
        m = _MORE.match(part)
        if m:
            part, more = m[1], int(m[2])
        for tok in part.split(", "):
            tok = tok.strip()
            try:
                cidrs.append(str(ipaddress.ip_network(tok, strict=False)))
            except ValueError:
                if tok:
                    domains.append(tok)
    return domains, cidrs, more, tag, anyd


def under(name: str, pattern: str) -> bool:
    """True when ``name`` is ``pattern`` or, for ``*.suffix``, any name below suffix."""
    name = name.lower().rstrip(".")
    pattern = pattern.lower().rstrip(".")
    if pattern.startswith("*."):
        return name.endswith(pattern[1:])
    return name == pattern


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def _addr_key(a: str):
    ip = ipaddress.ip_address(a)
    return (ip.version, int(ip))


def build(doc: dict[str, Any]) -> FirewallLists:
    """The firewall-ready lists of a report document (``Report.to_dict()``)."""
    flows_by_rule: dict[str, list[dict]] = {}
    for f in doc.get("flows") or []:
        if f.get("rule"):
            flows_by_rule.setdefault(f["rule"], []).append(f)
    dns = doc.get("dns") or []
    full = {a["rule"]: a for a in (doc.get("profile") or {}).get("allow") or []}
    out = []
    for item in doc.get("checklist") or []:
        a = full.get(item["rule"])
        if a is not None:  # the rule in full
            domains, cidrs, more, tag, anyd = (list(a["domains"]), list(a["cidrs"]), 0, a.get("service_tag"),
                                               bool(a.get("any_destination")))
            ports = [(t, p) for t, p in a["ports"]]
        else:  # an older document: what the checklist's texts say
            domains, cidrs, more, tag, anyd = parse_destination(item.get("destination", ""))
            ports = parse_ports(item.get("ports", ""))
        fl = [f for f in flows_by_rule.get(item["rule"], []) if f.get("verdict") in NEEDED_VERDICTS]
        hosts: dict[str, HostSeen] = {}

        def seen(name: str | None, source: str, domains=domains, hosts=hosts) -> None:
            if not name or _is_ip(name) or not any(under(name, d) for d in domains):
                return
            key = name.lower().rstrip(".")
            h = hosts.setdefault(key, HostSeen(key))
            if source not in h.sources:
                h.sources.append(source)

        for f in fl:
            seen(f.get("sni"), "sni")
            seen(f.get("http_host"), "http-host")
            target = f.get("connect_target")
            if target:
                seen(target.rsplit(":", 1)[0].strip("[]") if ":" in target else target, "connect")
            for n in f.get("dns_names") or []:
                seen(n, "dns")
        # every lookup of a name under the rule's domains, answered or not (a failed one is a finding too)
        failures: dict[str, str] = {}
        for e in dns:
            q = e.get("qname")
            if not q or not any(under(q, d) for d in domains):
                continue
            seen(q, "dns")
            h = hosts.get(q.lower().rstrip("."))
            if h is None:
                continue
            if e.get("rcode") == "NOERROR" and e.get("answers"):
                failures.pop(h.name, None)
                h.dns_failed = None
                for a in e["answers"]:
                    bucket = h.addresses if _is_ip(a) else h.chain
                    if a not in bucket:
                        bucket.append(a)
            elif not h.addresses:
                h.dns_failed = e.get("rcode") or "no answer"
        addresses = sorted({f["server"] for f in fl if _is_ip(f.get("server") or "")}, key=_addr_key)
        out.append(RuleAllow(
            rule=item["rule"], description=item.get("description", ""), status=item.get("status", ""),
            requirement=item.get("requirement", ""), ports=ports, domains=domains,
            cidrs=cidrs, cidrs_more=more, service_tag=tag, any_destination=anyd,
            hosts=sorted(hosts.values(), key=lambda h: h.name), addresses=addresses, flows=len(fl)))
    return FirewallLists(out, basis_lines(doc))


def basis_lines(doc: dict[str, Any]) -> list[str]:
    p = doc.get("profile") or {}
    lines = [f"profile {p.get('id')} ({p.get('date') or 'undated'}): {p.get('title')}"]
    if p.get("source"):
        lines.append(f"rules from: {p['source']}")
    st = doc.get("service_tags")
    if st:
        lines.append(f"service tags: {st.get('file')} (date {st.get('date') or 'unknown'}, changeNumber "
                     f"{st.get('change_number')}, cloud {st.get('cloud')})")
    else:
        lines.append("service tags: none given (service-tag membership not verified)")
    c = doc.get("capture") or {}
    lines.append(f"capture: {c.get('path')}")
    # file names (the capture's, the snapshot's) are the user's, not ours: one line each, no escapes
    return [terminal_text(line) for line in lines]


def _addr_note(r: RuleAllow, doc: dict[str, Any]) -> str:
    if r.service_tag:
        st = doc.get("service_tags") or {}
        if st:
            return (f"seen in the capture; the rule is the whole {r.service_tag} service tag "
                    f"(snapshot date {st.get('date') or 'unknown'}, changeNumber {st.get('change_number')})")
        return f"seen in the capture; the rule is the whole {r.service_tag} service tag (no snapshot given)"
    return "seen in the capture (addresses behind names change: allow the names where the firewall can)"


def render_text(fw: FirewallLists, doc: dict[str, Any]) -> str:
    """Plain text for a change request."""
    out = ["FIREWALL CHANGE REQUEST (from meshpcap)", ""] + [f"basis: {b}" for b in fw.basis] + [""]
    for r in fw.rules:
        out.append(f"[{r.rule}] {r.description} ({r.requirement}; status in this capture: {r.status})")
        out.append(f"  allow outbound: {r.ports_text or '-'}")
        dest = []
        if r.domains:
            dest.append("names " + ", ".join(r.domains))
        if r.cidrs:
            dest.append("prefixes " + ", ".join(r.cidrs) + (f" (+{r.cidrs_more} more in the profile)"
                                                             if r.cidrs_more else ""))
        if r.service_tag:
            dest.append(f"the {r.service_tag} service tag")
        if r.any_destination:
            dest.append("any destination")
        out.append("  to: " + ("; ".join(dest) or "-"))
        if r.hosts:
            out.append("  host names seen:")
            for h in r.hosts:
                line = f"    {h.name}"
                if h.chain:
                    line += " -> CNAME " + " -> ".join(h.chain)
                if h.addresses:
                    line += " -> " + ", ".join(h.addresses)
                if h.dns_failed:
                    line += f" (DNS failed: {h.dns_failed})"
                line += f"  [{', '.join(h.sources)}]"
                out.append(line)
        if r.addresses:
            out.append(f"  addresses {_addr_note(r, doc)}:")
            out += [f"    {a}" for a in address_ranges(r.addresses)]
        if not (r.hosts or r.addresses):
            out.append("  (nothing under this rule in the capture)")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def _entries(fw: FirewallLists) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """address -> rules, host name -> rules (only names safe for configuration)."""
    addrs: dict[str, list[str]] = {}
    names: dict[str, list[str]] = {}
    for r in fw.rules:
        for c in _entries_of(r):
            addrs.setdefault(c, [])
            if r.rule not in addrs[c]:
                addrs[c].append(r.rule)
        for n in [h.name for h in r.hosts] + [c for h in r.hosts for c in h.chain] + r.domains:
            if safe_host(n):
                names.setdefault(n.lower().rstrip("."), [])
                if r.rule not in names[n.lower().rstrip(".")]:
                    names[n.lower().rstrip(".")].append(r.rule)
    return addrs, names


def _net_key(c: str):
    if "-" in c:
        c = c.split("-", 1)[0]
    n = ipaddress.ip_network(c, strict=False)
    return (n.version, int(n.network_address), n.prefixlen)


def address_ranges(addresses: list[str]) -> list[str]:
    """Addresses as entries: runs of consecutive addresses become ``first-last`` ranges (exactly the
    addresses seen, no more), single ones stay addresses."""
    ips = sorted({ipaddress.ip_address(a) for a in addresses}, key=lambda ip: (ip.version, int(ip)))
    out: list[str] = []
    i = 0
    while i < len(ips):
        j = i
        while j + 1 < len(ips) and ips[j + 1].version == ips[i].version and int(ips[j + 1]) == int(ips[j]) + 1:
            j += 1
        out.append(str(ips[i]) if i == j else f"{ips[i]}-{ips[j]}")
        i = j + 1
    return out


def _version(entry: str) -> int:
    return 6 if ":" in entry else 4


def _entries_of(r: RuleAllow) -> list[str]:
    """The profile's prefixes of a rule (merged) and the addresses seen under it that no prefix
    covers (runs as ranges), as list entries that do not overlap: nftables refuses overlapping
    elements in an interval set."""
    nets = []
    for v in (4, 6):
        mine = [ipaddress.ip_network(c, strict=False) for c in r.cidrs if ipaddress.ip_network(c, strict=False).version == v]
        nets += list(ipaddress.collapse_addresses(mine))
    loose = [a for a in r.addresses if not any(ipaddress.ip_address(a) in n for n in nets)]
    return [str(n) for n in nets] + address_ranges(loose)


def rule_allow(rule) -> dict[str, Any]:
    """What a rule (:class:`meshpcap.rules.model.Rule`) allows, in full, for the report document's
    ``profile.allow`` (the checklist's destination text shortens long prefix lists)."""
    return {"rule": rule.id, "domains": list(rule.domains), "cidrs": [str(c) for c in rule.cidrs],
            "service_tag": rule.service_tag, "any_destination": bool(rule.any_destination),
            "ports": [[t, ",".join(str(a) if a == b else f"{a}-{b}" for a, b in ps.ranges)] for t, ps in rule.port_map]}


def render_panos(fw: FirewallLists) -> str:
    """PAN-OS external dynamic lists: an IP list (entry, space, comment) and a domain list."""
    addrs, names = _entries(fw)
    out = ["# PAN-OS external dynamic list, type IP address (one entry per line; text after the space is a comment)"]
    out += [f"{a} meshpcap {' '.join(map(_label, rs))}" for a, rs in sorted(addrs.items(), key=lambda kv: _net_key(kv[0]))]
    out += ["", "# PAN-OS external dynamic list, type domain (one entry per line)"]
    out += sorted(names)
    return "\n".join(out) + "\n"


def _set_name(rule: str, v: int) -> str:
    return "meshpcap_" + re.sub(r"[^a-z0-9]", "_", rule.lower()) + f"_v{v}"


def render_nftables(fw: FirewallLists) -> str:
    """nftables: per rule an IPv4 and an IPv6 set with ``flags interval``, and the accept rules using them."""
    out = ["table inet meshpcap {"]
    rules_out = []
    for r in fw.rules:
        nets = _entries_of(r)
        for v, typ, fam in ((4, "ipv4_addr", "ip"), (6, "ipv6_addr", "ip6")):
            mine = [n for n in nets if _version(n) == v]
            if not mine:
                continue
            name = _set_name(r.rule, v)
            out.append(f"\tset {name} {{")
            out.append(f"\t\ttype {typ}")
            out.append("\t\tflags interval")
            out.append(f"\t\telements = {{ {', '.join(mine)} }}")
            out.append("\t}")
            for t, p in r.ports:
                rules_out.append(f"\t\t{fam} daddr @{name} {t} dport {{ {p.replace(',', ', ')} }} accept"
                                 f" comment \"{_label(r.rule)}\"")
    out.append("\tchain forward {")
    out.append("\t\ttype filter hook forward priority 0; policy accept;")
    out += rules_out
    out.append("\t}")
    out.append("}")
    return "\n".join(out) + "\n"


def _label(rule: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", rule)


def render_fortigate(fw: FirewallLists) -> str:
    """FortiGate CLI: address objects (subnets and FQDNs, wildcard FQDNs for ``*.``) and one group per rule."""
    v4: dict[str, str] = {}
    v6: dict[str, str] = {}
    groups4, groups6 = [], []
    for r in fw.rules:
        members4, members6 = [], []
        for c in _entries_of(r):
            obj = f"meshpcap-{c}"
            comment = f'        set comment "{_label(r.rule)}"\n    next'
            if "-" in c:
                a, b = c.split("-", 1)
                body = f'    edit "{obj}"\n        set type iprange\n        set start-ip {a}\n        set end-ip {b}\n'
            elif _version(c) == 4:
                n = ipaddress.ip_network(c)
                body = f'    edit "{obj}"\n        set subnet {n.network_address} {n.netmask}\n'
            else:
                body = f'    edit "{obj}"\n        set ip6 {ipaddress.ip_network(c)}\n'
            if _version(c) == 4:
                v4.setdefault(obj, body + comment)
                members4.append(obj)
            else:
                v6.setdefault(obj, body + comment)
                members6.append(obj)
        for h in [h.name for h in r.hosts] + r.domains:
            if not safe_host(h):
                continue
            obj = f"meshpcap-{h}"[:79]
            v4.setdefault(obj, f'    edit "{obj}"\n        set type fqdn\n        set fqdn "{h}"\n'
                               f'        set comment "{_label(r.rule)}"\n    next')
            members4.append(obj)
        for members, groups, suffix in ((members4, groups4, ""), (members6, groups6, "-v6")):
            if members:
                quoted = " ".join(f'"{m}"' for m in dict.fromkeys(members))
                groups.append(f'    edit "meshpcap-{_label(r.rule)}{suffix}"\n        set member {quoted}\n    next')
    out = []
    for head, body in (("config firewall address", list(v4.values())), ("config firewall address6", list(v6.values())),
                       ("config firewall addrgrp", groups4), ("config firewall addrgrp6", groups6)):
        if body:
            out += [head] + body + ["end"]
    return "\n".join(out) + "\n"


FORMATS = {"text": render_text, "panos": render_panos, "nftables": render_nftables, "fortigate": render_fortigate}


def render_all(doc: dict[str, Any]) -> dict[str, str]:
    """All four renderings of a document's firewall lists."""
    fw = build(doc)
    return {"text": render_text(fw, doc), "panos": render_panos(fw), "nftables": render_nftables(fw),
            "fortigate": render_fortigate(fw)}
