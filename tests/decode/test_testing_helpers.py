"""meshpcap.testing holds the builders; the parser modules hold parsing only (issue 10 item 1)."""

from __future__ import annotations

import ast
import inspect

import pytest

import meshpcap.decode.quic as quic_parser
import meshpcap.decode.stun as stun_parser
import meshpcap.decode.tls as tls_parser
import meshpcap.rules.match as match
from meshpcap import testing as mt


@pytest.mark.parametrize("module", [tls_parser, quic_parser, stun_parser, match])
def test_parsers_define_no_builders(module):
    tree = ast.parse(inspect.getsource(module))
    defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert not {d for d in defined if d.startswith("build_") or d in ("encrypt_client_initial", "crypto_frame",
                                                                     "domain_matches")}


@pytest.mark.parametrize("module,target,name", [
    (tls_parser, mt.tls, "build_client_hello"), (quic_parser, mt.quic, "encrypt_client_initial"),
    (stun_parser, mt.stun, "build_stun"), (match, mt.rules, "domain_matches"),
])
def test_old_names_are_gone(module, target, name):
    # the deprecation shims were removed once every caller imported from meshpcap.testing
    assert callable(getattr(target, name))
    assert not hasattr(module, name)
    with pytest.raises(AttributeError):
        module.no_such_thing  # noqa: B018


def test_builders_read_back():
    hello = mt.tls.build_client_hello("teams.microsoft.com", alpn=("h2",), grease=True, pq_key_share=True)
    assert tls_parser.read_client_hello(hello).sni == "teams.microsoft.com"
    tid = bytes(12)
    msg = mt.stun.build_stun(0x003, 3, [mt.stun.build_error_code(403, "Forbidden")], tid, fingerprint=True)
    assert stun_parser.parse_stun(msg).error_code == 403 and stun_parser.verify_fingerprint(msg)
    assert mt.rules.domain_matches("*.office.com", "a.b.office.com") and not mt.rules.domain_matches("*.office.com",
                                                                                                   "office.com")
