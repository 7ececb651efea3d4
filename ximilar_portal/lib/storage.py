"""Writing files through Django's storage API so that a failure leaves nothing
behind: a full disk, a read-only folder or an S3 error removes the part
already written and raises StorageUnavailable, which the portal answers with a
503 ("nothing was saved, try again")."""

import logging

log = logging.getLogger(__name__)


def _storage_errors() -> tuple:
    errors = (OSError,)
    try:  # S3 (django-storages) raises botocore's own errors, which are not OSErrors
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:  # pragma: no cover - boto3 is pinned
        return errors
    return (*errors, BotoCoreError, ClientError)


STORAGE_ERRORS = _storage_errors()


class StorageUnavailable(Exception):
    """The media storage refused a write; nothing of it was kept."""

    def __init__(self, error=None):
        super().__init__("The file storage is unavailable: nothing was saved. Try again shortly.")
        self.error = error


def save_file(field, filename: str, content) -> None:
    """`field.save(filename, content, save=False)`, but under a name chosen
    before writing, so that a write that fails half-way is deleted too."""
    storage = field.storage
    name = field.field.generate_filename(field.instance, filename)
    name = storage.get_available_name(name, max_length=field.field.max_length)
    try:
        field.name = storage.save(name, content, max_length=field.field.max_length)
    except STORAGE_ERRORS as error:
        delete_quietly(storage, name)
        log.error("storage.write_failed name=%s error=%r", name, error)
        raise StorageUnavailable(error) from error
    setattr(field.instance, field.field.attname, field.name)
    field._committed = True


def delete_files(*fields) -> None:
    """Remove what was written for a row that was not saved."""
    for field in fields:
        if field:
            delete_quietly(field.storage, field.name)
            field.name = None
            setattr(field.instance, field.field.attname, None)


def delete_quietly(storage, name: str) -> None:
    try:
        storage.delete(name)
    except STORAGE_ERRORS as error:
        log.warning("storage.delete_failed name=%s error=%r", name, error)
