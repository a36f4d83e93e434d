"""The artifact container: a JSON header plus named numpy arrays, never pickle.

Layout: MAGIC (8 bytes) | header length (uint32 LE) | header (UTF-8 JSON) | npz payload |
SHA-256 of everything before it (32 bytes). The npz is read with `allow_pickle=False`, so object
arrays (the only way numpy would run a pickle) are refused; the checksum turns truncation and
bit rot into a clear `ArtifactError` instead of a half-loaded model. The checksum is an integrity
check, not authentication: artifacts come from our own store.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import zipfile

import numpy as np

MAGIC = b"AHDET\x00v1"
_DIGEST = 32

__all__ = ["ArtifactError", "MAGIC", "pack", "unpack", "prefixed", "unprefixed"]


class ArtifactError(ValueError):
    """A model or state blob that is not a valid AnomalyHub artifact (wrong magic, truncated,
    corrupted, wrong detector, or containing anything but plain numeric arrays)."""


def pack(header: dict, arrays: dict[str, np.ndarray]) -> bytes:
    """Serialize `header` (JSON-able) and `arrays` (numeric/bool/str numpy arrays)."""
    head = json.dumps(header, sort_keys=True, allow_nan=True).encode()
    buf = io.BytesIO()
    for name, arr in arrays.items():
        if np.asarray(arr).dtype == object:
            raise ArtifactError(f"array {name!r} has dtype object; only plain arrays are stored")
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    body = MAGIC + struct.pack("<I", len(head)) + head + buf.getvalue()
    return body + hashlib.sha256(body).digest()


def unpack(blob: bytes, expected_kind: str | None = None) -> tuple[dict, dict[str, np.ndarray]]:
    """Inverse of `pack`; raises ArtifactError for anything that is not an intact artifact."""
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise ArtifactError(f"artifact must be bytes, not {type(blob).__name__}")
    blob = bytes(blob)
    if not blob.startswith(MAGIC):
        raise ArtifactError("not an AnomalyHub detector artifact (bad magic; pickles are refused)")
    if len(blob) < len(MAGIC) + 4 + _DIGEST:
        raise ArtifactError("artifact is truncated")
    body, digest = blob[:-_DIGEST], blob[-_DIGEST:]
    if hashlib.sha256(body).digest() != digest:
        raise ArtifactError("artifact checksum mismatch (truncated or corrupted)")
    (hlen,) = struct.unpack("<I", body[len(MAGIC): len(MAGIC) + 4])
    start = len(MAGIC) + 4
    try:
        header = json.loads(body[start: start + hlen].decode())
        with np.load(io.BytesIO(body[start + hlen:]), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (ValueError, OSError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
        raise ArtifactError(f"artifact payload is invalid: {exc}") from exc
    if expected_kind is not None and header.get("kind") != expected_kind:
        raise ArtifactError(f"artifact holds {header.get('kind')!r}, expected {expected_kind!r}")
    return header, arrays


def prefixed(prefix: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Namespace a component's arrays inside a composite artifact (e.g. the ensemble)."""
    return {f"{prefix}/{k}": v for k, v in arrays.items()}


def unprefixed(prefix: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    head = f"{prefix}/"
    return {k[len(head):]: v for k, v in arrays.items() if k.startswith(head)}
