"""LINKTYPE_* numbers (tcpdump.org link-layer header types) and their short names."""

from __future__ import annotations

# https://www.tcpdump.org/linktypes.html; several numbers share a name on purpose:
# DLT 12 is raw IP on most BSDs and DLT 14 on OpenBSD, LINKTYPE_RAW is 101.
LINKTYPE_NAMES: dict[int, str] = {
    0: "null",
    1: "ethernet",
    6: "ieee802_5",
    8: "slip",
    9: "ppp",
    10: "fddi",
    12: "raw",
    14: "raw",
    50: "ppp_hdlc",
    51: "pppoe",
    101: "raw",
    104: "c_hdlc",
    105: "ieee802_11",
    107: "frelay",
    108: "loop",
    113: "linux_sll",
    119: "ieee802_11_prism",
    127: "radiotap",
    143: "docsis",
    163: "ieee802_11_avs",
    192: "ppi",
    195: "ieee802_15_4",
    201: "bluetooth_hci_h4_with_phdr",
    220: "usb_linux_mmapped",
    227: "can_socketcan",
    228: "ipv4",
    229: "ipv6",
    239: "nflog",
    249: "usbpcap",
    252: "wireshark_upper_pdu",
    274: "ethernet_mpacket",
    276: "linux_sll2",
}


def linktype_name(linktype: int) -> str:
    """The short name of a LINKTYPE value, or ``dlt-<n>`` when it is not in the table."""
    return LINKTYPE_NAMES.get(linktype, f"dlt-{linktype}")
