"""Capture readers: pcap and pcapng files (plain, gzip or zstd) to columnar packet batches."""

from meshpcap.capture.linktypes import LINKTYPE_NAMES, linktype_name
from meshpcap.capture.reader import Batch, Capture, CaptureInfo, open_capture

__all__ = ["open_capture", "Capture", "CaptureInfo", "Batch", "LINKTYPE_NAMES", "linktype_name"]
