"""mostore's exceptions: one tree, each class knows its HTTP status.

::

    MostoreError (500)
    ├── InvalidInputError (400)          bad argument: wrong type, k <= 0, bad vector, ...
    │   ├── InvalidImageError (400)      unreadable, corrupt, zero-byte or unsupported image
    │   ├── ImageTooLargeError (413)     too many pixels, or an upload over the size limit
    │   ├── FilterError (400)            a where-filter outside the allowed grammar
    │   └── MetadataError (400)          metadata that can't be stored (nested too deep, ...)
    ├── CorruptBitstreamError (422)      a latent bitstream that fails to parse or check
    ├── CodecMismatchError (409)         a bitstream or table made by another codec
    ├── NotFoundError (404)              unknown table, item or classifier
    ├── AlreadyExistsError (409)         a table that exists already
    ├── ConflictError (409)              a concurrent write that lost, after retries
    ├── AuthError (401)                  missing or unknown API key
    │   └── ForbiddenError (403)         a read-only key asked to write
    └── RemoteError (502)                the server answered with something that isn't ours

The HTTP server answers ``{"error": cls.__name__, "message": str(exc)}`` with
``cls.status``; the remote client raises the same class again from that body.
"""

from __future__ import annotations


class MostoreError(Exception):
    """Base of every error mostore raises on purpose."""

    status = 500


class InvalidInputError(MostoreError, ValueError):
    status = 400


class InvalidImageError(InvalidInputError):
    status = 400


class ImageTooLargeError(InvalidInputError):
    status = 413


class FilterError(InvalidInputError):
    status = 400


class MetadataError(InvalidInputError):
    status = 400


class CorruptBitstreamError(MostoreError, ValueError):
    status = 422


class CodecMismatchError(MostoreError):
    status = 409


class NotFoundError(MostoreError, KeyError):
    status = 404

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class AlreadyExistsError(MostoreError):
    status = 409


class ConflictError(MostoreError):
    status = 409


class AuthError(MostoreError):
    status = 401


class ForbiddenError(AuthError):
    status = 403


class RemoteError(MostoreError):
    status = 502


#: name -> class, used by the remote client to raise what the server raised
ERRORS: dict[str, type[MostoreError]] = {
    cls.__name__: cls
    for cls in (
        MostoreError,
        InvalidInputError,
        InvalidImageError,
        ImageTooLargeError,
        FilterError,
        MetadataError,
        CorruptBitstreamError,
        CodecMismatchError,
        NotFoundError,
        AlreadyExistsError,
        ConflictError,
        AuthError,
        ForbiddenError,
        RemoteError,
    )
}
