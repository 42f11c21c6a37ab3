"""The README's console screenshots, taken in Debian's chromium (headless) from a real `facerec serve`.

    .venv/bin/python docs/make_screenshots.py      # writes docs/screenshots/*.png

Starts the service on a fresh home, enrolls the 5-celebrity train photos through the API, then signs
in to the console and photographs its pages: people, a person with their faces and a drop of photos,
try it with an identify, decisions, and the API docs.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the tests' server starter and HTTP client

from http_client import free_port, photo_file, running_server  # noqa: E402

ADMIN = "admin-" + uuid.uuid4().hex
CELEBRITIES = ROOT / "models" / "data" / "5-celebrity"
OUT = ROOT / "docs" / "screenshots"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


def main() -> None:
    from playwright.sync_api import sync_playwright

    OUT.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="facerec-screens-"))
    port = free_port()
    env = {"FACEREC_API_KEYS": f"admin:{ADMIN}", "FACEREC_SERVER__WORKERS": "1", "FACEREC_DATABASE_URL": ""}
    try:
        with running_server(home, port, env, ROOT) as client, sync_playwright() as playwright:
            for person in sorted(p.name for p in (CELEBRITIES / "train").iterdir()):
                client.call("POST", "/v1/people", ADMIN, json_body={"id": person, "name": person.replace("_", " ").title(),
                                                                   "metadata": {"badge": len(person) * 7}})
                photos = sorted((CELEBRITIES / "train" / person).iterdir())[:4 if person != "madonna" else 2]
                client.call("POST", f"/v1/people/{person}/faces", ADMIN, files=[photo_file(p) for p in photos])
            base = f"http://127.0.0.1:{port}"
            browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            page.set_default_timeout(60_000)
            page.goto(f"{base}/console")
            page.fill("#key", ADMIN)
            page.click("#sign-in button[type=submit]")
            page.wait_for_selector("#people table")
            page.screenshot(path=OUT / "people.png")

            page.goto(f"{base}/console#/person/madonna")
            page.wait_for_function("() => [...document.querySelectorAll('#faces img.thumb')].every(i => i.naturalWidth > 0)")
            page.set_input_files("#photos", [str(p) for p in sorted((CELEBRITIES / "train" / "madonna").iterdir())[2:4]]
                                 + [str(ROOT / "README.md")])
            page.wait_for_function("() => document.querySelectorAll('#outcomes .outcome').length === 3")
            page.wait_for_function("() => document.querySelectorAll('#faces img.thumb').length === 4 && "
                                   "[...document.querySelectorAll('img.thumb')].every(i => i.complete && i.naturalWidth > 0)")
            page.screenshot(path=OUT / "person.png", full_page=True)

            page.goto(f"{base}/console#/try")
            page.set_input_files("#try-photo", str(sorted((CELEBRITIES / "val" / "jerry_seinfeld").iterdir())[4]))
            page.click("#identify")
            page.wait_for_selector("li.answer")
            page.screenshot(path=OUT / "try-it.png", full_page=True)

            page.goto(f"{base}/console#/decisions")
            page.wait_for_selector("tr.decision")
            page.screenshot(path=OUT / "decisions.png")

            page.goto(f"{base}/docs")
            page.wait_for_selector(".opblock-summary-path[data-path='/v1/identify']")
            page.screenshot(path=OUT / "api-docs.png")
            browser.close()
    finally:
        shutil.rmtree(home, ignore_errors=True)
    print("\n".join(str(p.relative_to(ROOT)) for p in sorted(OUT.glob("*.png"))))


if __name__ == "__main__":
    main()
