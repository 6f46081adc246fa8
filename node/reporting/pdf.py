"""The text of an Encapsulated PDF report (pypdf, imported only when one arrives)."""

from __future__ import annotations

import io

from node.errors import ReportError

__all__ = ["extract_pdf_text"]


def extract_pdf_text(data: bytes) -> str:
    """The text of every page of a PDF document."""
    import pypdf  # only needed for PDF reports
    from pypdf.errors import PdfReadError

    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        pages = [page.extract_text() or "" for page in reader.pages]
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as exc:
        raise ReportError(f"the encapsulated PDF cannot be read: {exc}") from exc
    return "\n".join(p.strip() for p in pages if p.strip()).strip()
