from django.conf import settings


def test_it_uses_a_test_var_dir():
    assert settings.VAR_DIR.name == "test"
