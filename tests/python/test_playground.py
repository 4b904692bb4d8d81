"""The playground page in a real browser (Debian's chromium driven by Playwright) against the
live server: tokens stream in, a token's distribution opens, a digit is drawn, audio is
generated and playable, it fits a phone, it asks for the API key, and nothing logs an error.
Screenshots are kept under $JIELONG_ARTIFACTS (default <target>/serve-artifacts).

Run: apt-get install -y chromium; pip install -r tests/python/requirements.txt;
     JIELONG_BIN=... pytest tests/python/test_playground.py
"""

import os

import pytest
from playwright.sync_api import expect, sync_playwright

from conftest import artifacts, audio_default_temperature

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-dev-shm-usage",
    "--autoplay-policy=no-user-gesture-required",
]


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no chromium at {CHROMIUM} (apt-get install -y chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


class Page:
    """A page that records console errors and uncaught exceptions."""

    def __init__(self, browser, base, **context):
        self.context = browser.new_context(**context)
        self.page = self.context.new_page()
        self.errors = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.base = base

    def open(self, hash=""):
        self.page.goto(self.base + "/" + hash)
        expect(self.page.locator("body[data-ready=true]")).to_have_count(1, timeout=30_000)
        return self.page

    def shot(self, name):
        self.page.screenshot(path=str(artifacts() / name), full_page=True)

    def close(self):
        self.context.close()
        assert not self.errors, f"console errors: {self.errors}"


def set_range(page, selector, value):
    page.eval_on_selector(
        selector, "(el, v) => { el.value = v; el.dispatchEvent(new Event('input')); }", str(value)
    )


def test_text_tokens_stream_and_show_their_distribution(browser, server):
    p = Page(browser, server.base, viewport={"width": 1280, "height": 860})
    page = p.open("#text")
    page.fill("#text-prompt", "ROMEO:")
    set_range(page, "#text-max", 150)
    page.fill("#text-seed", "7")
    # Record how many tokens the page shows each time it changes: streamed tokens arrive in
    # several updates, a whole answer at the end in one (polling from here would race a fast
    # model, which can finish 150 tokens before the first poll).
    page.evaluate(
        """() => {
        window.tokenUpdates = [];
        const out = document.querySelector('#text-output');
        new MutationObserver(() => window.tokenUpdates.push(out.querySelectorAll('.tok').length))
            .observe(out, {childList: true, subtree: true});
    }"""
    )
    page.click("#text-generate")
    expect(page.locator("#text-status")).to_contain_text("Done", timeout=60_000)
    count = page.locator("#text-output .tok").count()
    assert count == 150
    updates = [n for n in page.evaluate("window.tokenUpdates") if 0 < n]
    assert len(set(updates)) > 1 and min(updates) < count, f"tokens arrived at once: {updates}"
    # Hover a token: the bars of its distribution, the drawn one marked.
    page.locator("#text-output .tok").nth(3).hover()
    expect(page.locator("#dist")).to_be_visible()
    assert page.locator("#dist-bars li").count() >= 2
    assert page.locator("#dist-bars li.drawn").count() == 1
    p.shot("playground-text.png")
    p.close()


def test_chat_replies_token_by_token(browser, server):
    p = Page(browser, server.base, viewport={"width": 1280, "height": 860})
    page = p.open("#chat")
    page.fill("#chat-input", "Who goes there?")
    page.click("#chat-send")
    expect(page.locator("#chat-status")).to_contain_text("tokens", timeout=60_000)
    assert page.locator(".msg.assistant .tok").count() > 0
    page.locator(".msg.assistant .tok").first.click()
    expect(page.locator("#dist")).to_be_visible()
    p.shot("playground-chat.png")
    p.close()


def test_a_digit_is_drawn_block_by_block(browser, server):
    p = Page(browser, server.base, viewport={"width": 1280, "height": 860})
    page = p.open("#image")
    page.click("#image-classes-3")
    page.click("#image-draw")
    expect(page.locator("#image-status")).to_contain_text("Done", timeout=60_000)
    page.wait_for_timeout(500)  # the last row's blocks are painted a few per frame
    # The canvas is no longer all grey: black and white blocks were painted.
    colours = page.evaluate(
        """() => {
        const c = document.getElementById('image-canvas');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        const seen = new Set();
        for (let i = 0; i < d.length; i += 4) seen.add(d[i]);
        return [...seen];
    }"""
    )
    assert 0 in colours and 255 in colours, colours
    box = page.locator("#image-canvas").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    expect(page.locator("#dist")).to_be_visible()
    assert page.locator("#dist-bars li img").count() >= 1, "alternatives are shown as pictures"
    p.shot("playground-image.png")
    p.close()


def test_audio_is_generated_and_playable(browser, server):
    p = Page(browser, server.base, viewport={"width": 1280, "height": 860})
    page = p.open("#audio")
    # The slider starts at the model's own default temperature (its config.json's generation section).
    expect(page.locator("#audio-temperature-out")).to_have_text(f"{audio_default_temperature():.2f}")
    page.click("#audio-classes-4")
    set_range(page, "#audio-seconds", 0.25)
    page.click("#audio-say")
    expect(page.locator("#audio-status")).to_contain_text("Done", timeout=120_000)
    player = page.locator("#audio-player")
    expect(player).to_be_visible()
    assert player.get_attribute("src").startswith("blob:")
    duration = page.evaluate(
        """() => new Promise((ok) => {
        const a = document.getElementById('audio-player');
        if (a.readyState >= 1) ok(a.duration); else a.addEventListener('loadedmetadata', () => ok(a.duration));
    })"""
    )
    assert abs(duration - 0.25) < 0.01, duration
    p.shot("playground-audio.png")
    p.close()


def test_it_fits_a_phone(browser, server):
    p = Page(browser, server.base, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = p.open("#text")
    set_range(page, "#text-max", 40)
    page.click("#text-generate")
    expect(page.locator("#text-status")).to_contain_text("Done", timeout=60_000)
    page.locator("#text-output .tok").nth(2).tap()
    expect(page.locator("#dist")).to_be_visible()
    overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page is {overflow}px wider than the phone"
    p.shot("playground-phone.png")
    p.close()


def test_it_asks_for_the_api_key(browser, keyed_server):
    p = Page(browser, keyed_server.base, viewport={"width": 1280, "height": 860})
    page = p.page
    # The 401s before the key is given are expected: they are how the page learns it needs one.
    page.goto(keyed_server.base + "/")
    expect(page.locator("#key-dialog")).to_be_visible(timeout=30_000)
    page.fill("#key-input", "sesame")
    page.click("#key-form button")
    expect(page.locator("body[data-ready=true]")).to_have_count(1, timeout=30_000)
    assert page.locator("#text-model option").count() == 1
    p.errors = [e for e in p.errors if "401" not in e]
    p.close()
