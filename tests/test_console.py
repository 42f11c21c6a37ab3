"""The web console in a real browser: Debian's chromium, headless, driven by Playwright, against the real
`facerec serve`. Sign in, create a person, drop three photos, see three thumbnails, identify a val photo
and read the name on the page, read the decisions, delete the person; names are text, never HTML; the
pages load only the service's own files; /docs renders the live API."""

from __future__ import annotations

import base64
import shutil
import uuid
from pathlib import Path

import pytest

from http_client import free_port, photo_file, running_server

ADMIN_KEY, CLIENT_KEY = "admin-" + uuid.uuid4().hex, "client-" + uuid.uuid4().hex
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 # A camera that shows chromium's own test pattern, granted without asking.
                 "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
TIMEOUT_MS = 60_000  # a photo's first trip through the networks, on a busy 2-core machine
# Page-side checks are functions ("() => ..."), never expression strings: Playwright evaluates those
# with eval(), which the console's Content-Security-Policy (rightly) refuses.


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def server(tmp_path_factory, project_root, celebrity_dir):
    """`facerec serve` (one worker) with two people enrolled through the API; (client, base URL)."""
    if not (project_root / "models" / "facenet_keras.h5").is_file():
        pytest.skip("FaceNet weights not fetched (make models)")
    port = free_port()
    env = {"FACEREC_API_KEYS": f"admin:{ADMIN_KEY},client:{CLIENT_KEY}", "FACEREC_SERVER__WORKERS": "1",
           "FACEREC_DATABASE_URL": ""}
    with running_server(tmp_path_factory.mktemp("console-home"), port, env, project_root) as client:
        for person in ("ben_afflek", "jerry_seinfeld"):
            client.call("POST", "/v1/people", ADMIN_KEY, json_body={"id": person})
            photos = sorted((celebrity_dir / "train" / person).iterdir())[:5]
            assert client.call("POST", f"/v1/people/{person}/faces", ADMIN_KEY,
                               files=[photo_file(p) for p in photos])[0] == 201
        yield client, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def browser():
    executable = chromium()
    if executable is None:
        pytest.skip("Debian's chromium is not installed (`make test` installs it where it may: apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        yield launched
        launched.close()


class Tab:
    """A fresh browser tab (its own sessionStorage), recording what it loads, its dialogs and CSP reports."""

    def __init__(self, browser, base: str):
        self.context = browser.new_context()
        self.page = self.context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.base, self.requests, self.dialogs, self.console = base, [], [], []
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("dialog", lambda dialog: (self.dialogs.append(dialog.message), dialog.dismiss()))
        self.page.on("console", lambda message: self.console.append(message.text))

    def sign_in(self, key: str) -> None:
        self.page.goto(f"{self.base}/console")
        self.page.fill("#key", key)
        self.page.click("#sign-in button[type=submit]")
        self.page.wait_for_selector("#nav:not([hidden])")

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def tab(browser, server):
    opened = Tab(browser, server[1])
    yield opened
    opened.close()


def drop_photos(page, selector: str, photos: list[Path]) -> None:
    """Drag and drop files onto an element, as a person would from their file manager."""
    files = [{"name": p.name, "data": base64.b64encode(p.read_bytes()).decode(), "type": "image/jpeg"} for p in photos]
    transfer = page.evaluate_handle("""files => {
        const transfer = new DataTransfer();
        for (const f of files) {
            const bytes = Uint8Array.from(atob(f.data), c => c.charCodeAt(0));
            transfer.items.add(new File([bytes], f.name, {type: f.type}));
        }
        return transfer;
    }""", files)
    page.dispatch_event(selector, "drop", {"dataTransfer": transfer})


def test_the_roster_round_trip_in_a_browser(tab, server, celebrity_dir):
    client, base = server
    page = tab.page
    tab.sign_in(ADMIN_KEY)
    assert page.is_visible("nav a[href='#/people']") and page.is_visible("nav a[href='#/decisions']")

    # Create a person.
    page.fill("#new-id", "console-madonna")
    page.fill("#new-name", "Madonna, by console")
    page.fill("#new-metadata", '{"badge": 7}')
    page.click("#new-person button[type=submit]")
    page.wait_for_selector("#person-title:has-text('Madonna, by console')")

    # Drop three photos onto her: three outcomes, three thumbnails.
    photos = sorted((celebrity_dir / "train" / "madonna").iterdir())[:3]
    drop_photos(page, "#drop", photos)
    page.wait_for_function("() => document.querySelectorAll('#outcomes .outcome').length === 3")
    assert page.locator("#outcomes .ok.outcome").count() == 3, page.inner_text("#outcomes")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#faces img.thumb')].filter(i => i.naturalWidth > 0).length === 3")
    assert client.call("GET", "/v1/people/console-madonna", ADMIN_KEY)[1]["faces"] == 3

    # Identify a val photo of her on Try it, and read her name on the page.
    page.click("nav a[href='#/try']")
    # A val photo 0.63 from those three (0.7 is a strict threshold for this model: docs/accuracy.md).
    page.set_input_files("#try-photo", str(sorted((celebrity_dir / "val" / "madonna").iterdir())[0]))
    page.click("#identify")
    answer = page.wait_for_selector("li.answer")
    assert "console-madonna" in answer.inner_text() and "threshold 0.7" in answer.inner_text()
    assert page.is_visible("canvas#photo")

    # The decision is on the Decisions page, filtered by person.
    page.click("nav a[href='#/decisions']")
    page.fill("#audit-person", "console-madonna")
    page.press("#audit-person", "Enter")
    # The unfiltered page may answer first: wait for the rows of the filtered one.
    page.wait_for_selector("#decisions[data-person='console-madonna'] tr.decision")
    cells = page.locator("#decisions[data-person='console-madonna'] tr.decision").first.locator("td").all_inner_texts()
    assert cells[1].startswith("admin:") and cells[2:5] == ["identify", "match", "console-madonna"], cells

    # Delete her, with a confirmation.
    page.goto(f"{base}/console#/person/console-madonna")
    page.click("#delete")
    page.click("#confirm-delete")
    page.wait_for_selector("#people table")
    assert client.call("GET", "/v1/people/console-madonna", ADMIN_KEY)[0] == 404

    # Only the service's own files were loaded, and the key never went into a URL or a cookie.
    assert tab.requests and all(url.startswith(base + "/") or url.startswith("blob:") for url in tab.requests)
    assert all(ADMIN_KEY not in url for url in tab.requests) and tab.context.cookies() == []
    assert page.evaluate("() => sessionStorage.getItem('facerec.key')") == ADMIN_KEY
    assert tab.dialogs == []


def test_refusals_are_said_in_plain_words(tab, celebrity_dir, tmp_path):
    tab.sign_in(ADMIN_KEY)
    page = tab.page
    page.goto(f"{tab.base}/console#/person/ben_afflek")
    page.wait_for_selector("#drop")
    notes = tmp_path / "notes.jpg"
    notes.write_text("not a photo at all")
    drop_photos(page, "#drop", [notes, sorted((celebrity_dir / "train" / "ben_afflek").iterdir())[0]])
    page.wait_for_function("() => document.querySelectorAll('#outcomes .outcome').length === 2")
    text = page.inner_text("#outcomes")
    assert "refused: not an image file" in text and "refused: already enrolled for this person" in text


def test_names_and_metadata_are_shown_as_text_never_run(tab, server):
    client, base = server
    name = "<img src=x onerror=alert(1)>"
    assert client.call("POST", "/v1/people", ADMIN_KEY, json_body={
        "id": "xss", "name": name, "metadata": {"note": "<script>alert(2)</script>"}})[0] == 201
    tab.sign_in(ADMIN_KEY)
    page = tab.page
    page.goto(f"{base}/console#/people?q=xss&offset=0")
    page.wait_for_selector("tr.person[data-id='xss']")
    assert name in page.inner_text("tr.person[data-id='xss']")
    page.goto(f"{base}/console#/person/xss")
    page.wait_for_selector("#person-title")
    assert page.inner_text("#person-title") == name
    assert "<script>alert(2)</script>" in page.input_value("#edit-metadata")
    assert page.locator("img[src='x']").count() == 0 and tab.dialogs == []
    # And an inline script, however it got in, would not run: the policy forbids it.
    page.evaluate("""() => { const s = document.createElement('script');
                             s.textContent = 'window.__inline_ran = true'; document.body.append(s); }""")
    assert page.evaluate("() => window.__inline_ran === undefined")
    assert any("Content Security Policy" in message for message in tab.console)
    client.call("DELETE", "/v1/people/xss", ADMIN_KEY)


def test_a_client_key_gets_try_it_only(tab, server, celebrity_dir):
    tab.sign_in(CLIENT_KEY)
    page = tab.page
    assert page.is_visible("nav a[href='#/try']")
    assert not page.is_visible("nav a[href='#/people']") and not page.is_visible("nav a[href='#/decisions']")
    page.goto(f"{tab.base}/console#/people")
    page.wait_for_selector("text=This key may only use Try it")
    page.goto(f"{tab.base}/console#/try")
    page.set_input_files("#try-photo", str(sorted((celebrity_dir / "val" / "jerry_seinfeld").iterdir())[0]))
    page.fill("#claimed", "jerry_seinfeld")
    page.click("#verify")
    answer = page.wait_for_selector("li.answer")
    assert "jerry_seinfeld: accepted" in answer.inner_text()


def test_a_photo_from_the_camera(tab):
    """The camera path: chromium's fake camera shows a test pattern, so the answer is "no face"."""
    tab.sign_in(CLIENT_KEY)
    page = tab.page
    page.goto(f"{tab.base}/console#/try")
    page.click("text=Use the camera")
    page.wait_for_function("() => document.querySelector('#camera').videoWidth > 0")
    page.click("text=Take photo")
    page.wait_for_selector("#result:has-text('photo: camera.jpg')")
    page.click("#identify")
    page.wait_for_selector("#result .error:has-text('no face found')")


def test_a_wrong_key_is_refused(tab):
    page = tab.page
    page.goto(f"{tab.base}/console")
    page.fill("#key", "not-a-key")
    page.click("#sign-in button[type=submit]")
    page.wait_for_selector("#sign-in-error:has-text('The key was refused')")
    assert page.evaluate("() => sessionStorage.getItem('facerec.key')") is None


def test_the_docs_render_the_live_api(tab, server):
    client, base = server
    tab.sign_in(ADMIN_KEY)
    page = tab.page
    page.goto(f"{base}/docs")
    page.wait_for_selector(".opblock-summary-path[data-path='/v1/identify']")
    for path in ("/v1/people", "/v1/verify", "/v1/audit", "/v1/people/{person_id}/faces/{face_id}/crop.jpg"):
        assert page.locator(f".opblock-summary-path[data-path='{path}']").count() >= 1, path
    assert all(url.startswith(base + "/") or url.startswith("blob:") or url.startswith("data:") for url in tab.requests)
    assert not [m for m in tab.console if "Content Security Policy" in m], tab.console


def test_the_pages_carry_a_policy_without_inline_scripts(server):
    client, _ = server
    for path in ("/console", "/docs"):
        status, _, headers = client.call("GET", path)
        policy = headers["Content-Security-Policy"]
        assert status == 200 and "script-src 'self'" in policy and "unsafe-inline'" not in policy.split("script-src")[1].split(";")[0]
        assert "default-src 'self'" in policy and headers["X-Content-Type-Options"] == "nosniff"
