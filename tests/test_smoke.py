import os
from pathlib import Path

from django.conf import settings


def test_it_keeps_test_files_in_the_test_var_dir():
    assert Path(os.environ["VAR_DIR"]).resolve() == settings.VAR_DIR
    assert settings.MEDIA_ROOT.is_relative_to(settings.VAR_DIR)
