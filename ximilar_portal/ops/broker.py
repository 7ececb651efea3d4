"""What the broker says: whether it answers, how many messages wait in each work
queue, and what the filesystem broker set aside. Every call is bounded by
HEALTH_BROKER_TIMEOUT, so a dead broker cannot hang a probe or the page."""

import logging
import os
from datetime import UTC, datetime

from django.conf import settings

log = logging.getLogger(__name__)


def _connection():
    from ximilar_portal.celery import app

    timeout = settings.HEALTH_BROKER_TIMEOUT
    # socket_timeout: a broker that accepts the connection and then says nothing.
    options = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    return app.connection_for_read(
        settings.CELERY_BROKER_URL, connect_timeout=timeout, transport_options=options
    )


def broker_reachable() -> bool:
    """Connect once, no retry, and open a channel (Redis answers a PING there)."""
    try:
        with _connection() as connection:
            connection.ensure_connection(max_retries=0)
            connection.channel().close()
    except Exception as error:
        log.warning("ops.broker_unreachable error=%r", error)
        return False
    return True


def queue_depths() -> dict[str, int | None]:
    """Messages waiting in each work queue by kind; None where the broker did
    not answer. The transport counts (Redis: the list's length; AMQP: the
    server's count; filesystem: the queue's message files)."""
    queues = settings.WORK_QUEUES
    try:
        with _connection() as connection:
            connection.ensure_connection(max_retries=0)
            return {kind: _depth(connection, name) for kind, name in queues.items()}
    except Exception as error:
        log.warning("ops.queue_depth_failed error=%r", error)
        return dict.fromkeys(queues)


def _depth(connection, queue: str) -> int:
    # A channel of its own: AMQP closes the channel of a failed passive declare.
    channel = connection.channel()
    try:
        return channel.queue_declare(queue=queue, passive=True).message_count
    except connection.channel_errors:
        return 0  # no such queue: nothing was ever left in it (Redis drops empty lists)
    finally:
        channel.close()


def quarantined() -> dict | None:
    """The messages the filesystem broker set aside as undecodable (None with
    any other broker: only that one sets messages aside)."""
    folder = settings.BROKER_QUARANTINE_DIR
    if folder is None:
        return None
    files = sorted(_files_by_age(folder))
    newest_at, newest_name = files[-1] if files else (None, "")
    return {
        "folder": str(folder),
        "count": len(files),
        "newest_name": newest_name,
        "newest_at": datetime.fromtimestamp(newest_at, UTC) if files else None,
    }


def _files_by_age(folder):
    """(modified, name) of each file; one deleted meanwhile is skipped."""
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return
    for entry in entries:
        try:
            if entry.is_file():
                yield entry.stat().st_mtime, entry.name
        except FileNotFoundError:
            continue
