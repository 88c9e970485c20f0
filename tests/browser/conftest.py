"""Browser tests: pytest-playwright driving Debian's chromium (installed by .ci/run; never downloaded
by ``playwright install``) against pytest-django's live server, at a laptop's 1400 px."""

import os
from pathlib import Path

import pytest

# Playwright's sync API runs an event loop in this thread; the ORM calls the tests make between page
# actions are ordinary synchronous calls, which Django would otherwise refuse inside a running loop.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
PASSWORD = "browser-test-password"


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does), or set CHROMIUM_PATH.")
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ],
    }


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": {"width": 1400, "height": 900}, "timezone_id": "UTC"}


@pytest.fixture
def agent(transactional_db, django_user_model):
    return django_user_model.objects.create_superuser("agent", "agent@example.com", PASSWORD)


@pytest.fixture
def signed_in(page, live_server, agent):
    """A browser page signed in to the admin through its login form."""
    page.goto(f"{live_server.url}/admin/")
    page.fill("#id_username", "agent")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector(".bo-dashboard")
    page.base = live_server.url
    return page


@pytest.fixture
def shoot(tmp_path):
    """Screenshots each page; with UPDATE_SCREENSHOTS=1 into docs/screenshots/ (docs/BACK_OFFICE.md shows
    them), otherwise into the test's temporary directory, so a plain test run leaves the tree clean."""
    target = SCREENSHOTS if os.environ.get("UPDATE_SCREENSHOTS") == "1" else tmp_path

    def save(page, name: str, *, full_page: bool = False) -> None:
        target.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(target / f"{name}.png"), full_page=full_page)
        assert (target / f"{name}.png").stat().st_size > 0

    return save
