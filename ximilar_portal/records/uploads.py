"""Upload parsing with caps, so a huge file or a request with many files
never fills the disk or the memory: files stream to temporary files, and the
parser stops at the first file too many or the first byte too many."""

import functools

from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.core.files.uploadhandler import StopUpload, TemporaryFileUploadHandler
from django.http.multipartparser import MultiPartParserError
from django.views.decorators.csrf import csrf_exempt, csrf_protect


class CappedUploadHandler(TemporaryFileUploadHandler):
    def __init__(self, request=None, *, max_bytes: int, max_files: int):
        super().__init__(request)
        self.max_bytes = max_bytes
        self.max_files = max_files
        self.files_seen = 0
        self.received = 0
        self.problem = ""

    def new_file(self, *args, **kwargs):
        self.files_seen += 1
        if self.files_seen > self.max_files:
            self.problem = too_many_files(self.max_files)
            raise StopUpload(connection_reset=False)
        self.received = 0
        super().new_file(*args, **kwargs)

    def receive_data_chunk(self, raw_data, start):
        self.received += len(raw_data)
        if self.received > self.max_bytes:
            self.problem = f"The file is larger than {self.max_bytes // (1024 * 1024)} MB."
            raise StopUpload(connection_reset=False)
        return super().receive_data_chunk(raw_data, start)


def too_many_files(limit: int) -> str:
    files = "one file" if limit == 1 else f"{limit} files"
    return f"Send at most {files} per request; the upload page sends many files one by one."


def capped_uploads(*, max_bytes, on_problem, max_files=1):
    """View decorator: parse the body with the caps before the CSRF check
    (which would otherwise parse it with the default handlers). A body cut
    short is answered by `on_problem(request, message)`, which must not write
    anything: the CSRF token may be among what was not read."""

    def decorate(view):
        protected = csrf_protect(view)

        @csrf_exempt
        @functools.wraps(view)
        def wrapper(request, *args, **kwargs):
            if request.method == "POST":
                handler = CappedUploadHandler(request, max_bytes=max_bytes(), max_files=max_files)
                request.upload_handlers = [handler]
                try:
                    request.POST  # noqa: B018 - parse now, with the handler above
                except TooManyFilesSent:
                    handler.problem = too_many_files(max_files)
                except (RequestDataTooBig, TooManyFieldsSent, MultiPartParserError):
                    handler.problem = "The request could not be read; send one file at a time."
                if handler.problem:
                    return on_problem(request, handler.problem)
            return protected(request, *args, **kwargs)

        return wrapper

    return decorate
