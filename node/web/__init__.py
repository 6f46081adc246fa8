"""The REST side: DICOMweb, the similar-case extension, admin and health routes."""

from node.web.app import DICOMWEB_PREFIX, create_app

__all__ = ["DICOMWEB_PREFIX", "create_app"]
