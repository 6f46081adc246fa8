"""The REST side: DICOMweb, the similar-case extension, admin and health routes.

Routers (one concept each, never importing each other): ``qido``, ``wado`` (retrieve,
metadata, bulk data, frames), ``rendered`` (rendered images and thumbnails), ``stow``,
``similar``, ``reports``, ``kos``, ``delete``, ``admin``, ``health``. Shared plumbing is
private: ``_deps`` (prefix, media types, the services dependency), ``_qido_answer`` and
``_dicom_json`` (the QIDO-RS answers), ``_similar_params`` and ``_similar_answer`` (the
extension's parameters and answers), ``_wado`` (stored files and multipart answers);
``problems`` turns every failure into an RFC 7807 answer, ``auth`` checks tokens and
``access_log`` writes one line per request (no query string). ``app`` composes them.
"""

from node.web._deps import DICOMWEB_PREFIX
from node.web.app import create_app

__all__ = ["DICOMWEB_PREFIX", "create_app"]
