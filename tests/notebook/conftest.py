from tests.browser.conftest import browser, page  # noqa: F401  (shared Chromium fixtures)
