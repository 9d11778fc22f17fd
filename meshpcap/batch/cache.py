"""Results kept between runs, keyed by content hash and the fingerprint of the options."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

from .audit import AuditResult

# -- the result cache ------------------------------------------------------------------------------

def default_cache_dir() -> Path:
    from ..rules.servicetags import cache_dir

    return cache_dir() / "audits"


class ResultCache:
    """Results keyed by the capture's SHA-256 and the fingerprint of everything that changes a
    verdict (meshpcap version, table schema, every rule of the profile with its date, the
    service-tag snapshot's bytes, --fail-on); one pickle per entry, written atomically."""

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)

    def _path(self, sha256: str, fingerprint: str) -> Path:
        return self.directory / sha256[:2] / f"{sha256}-{fingerprint[:32]}.pickle"

    def get(self, sha256: str, fingerprint: str) -> AuditResult | None:
        try:
            with open(self._path(sha256, fingerprint), "rb") as f:
                result = pickle.load(f)
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError, ValueError, TypeError):
            return None
        return result if isinstance(result, AuditResult) else None

    def put(self, sha256: str, fingerprint: str, result: AuditResult) -> None:
        path = self._path(sha256, fingerprint)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            with open(tmp, "wb") as f:
                pickle.dump(result, f, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, path)
        except OSError:
            pass  # a cache that cannot be written only costs time
