// Drives the sockchat page in a real browser (Debian's Chromium through
// playwright-core), next to a plain TCP client, against a running server.
// Run by tests/web.rs:
//
//   node tests/browser/chat.mjs --web http://127.0.0.1:PORT/ --tcp 127.0.0.1:PORT --shots DIR
//
// Exits 0 when every check passed; otherwise prints what failed and exits 1.
// It waits for what appears on the page or the socket, never for a fixed time.

import assert from "node:assert/strict";
import http from "node:http";
import path from "node:path";

import { launchChromium, LineClient, PATIENCE } from "./support.mjs";

function option(name) {
  const index = process.argv.indexOf(`--${name}`);
  if (index < 0 || !process.argv[index + 1]) throw new Error(`missing --${name}`);
  return process.argv[index + 1];
}

const webUrl = option("web");
const [tcpHost, tcpPort] = option("tcp").split(":");
const shots = option("shots");

/// Every request the pages made that failed (a missing favicon, say).
const failedRequests = [];

async function openPage(browser, nick, viewport) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.on("pageerror", (error) => console.error(`[${nick}] page error:`, error));
  page.on("response", (response) => {
    if (response.status() >= 400) failedRequests.push(`${response.status()} ${response.url()}`);
  });
  await page.goto(webUrl);
  // Waiting for a nickname, it asks for one and does not connect yet.
  await page.locator("#nick-dialog[open]").waitFor({ timeout: PATIENCE });
  assert.equal(await page.locator("#state").textContent(), "choose a nickname");
  assert.equal(await page.evaluate(() => state.socket), null);
  await page.fill("#nick-input", nick);
  await page.click("#nick-form button");
  await page.locator("#state.online").waitFor({ timeout: PATIENCE });
  // It shows our own nickname once the server has taken it.
  await page.locator("#me", { hasText: nick }).waitFor({ timeout: PATIENCE });
  // On a phone the member list is folded away: attached, not visible.
  await page.locator("#member-list li", { hasText: nick }).waitFor({ state: "attached", timeout: PATIENCE });
  return page;
}

async function say(page, text) {
  await page.fill("#input", text);
  await page.press("#input", "Enter");
}

function messageOn(page, text) {
  return page.locator("#messages li", { hasText: text }).first().waitFor({ timeout: PATIENCE });
}

async function main() {
  const browser = await launchChromium();
  try {
    const alice = await openPage(browser, "alice", { width: 1100, height: 700 });
    // Bob is on a phone-sized screen.
    const bob = await openPage(browser, "bob", { width: 390, height: 844 });
    const carol = await LineClient.connect(tcpHost, tcpPort);
    await carol.expect("welcome");
    carol.send("/nick carol");
    await carol.expect("now known as carol");

    // Everyone hears everyone: two browsers and a TCP client.
    await say(alice, "hello from alice");
    await messageOn(bob, "hello from alice");
    assert.equal(await carol.expect("hello from alice"), "[lobby] alice: hello from alice");
    await say(bob, "hi from bob, 你好");
    await messageOn(alice, "hi from bob, 你好");
    assert.equal(await carol.expect("hi from bob"), "[lobby] bob: hi from bob, 你好");
    carol.send("hi from tcp 🎉");
    await messageOn(alice, "hi from tcp 🎉");
    await messageOn(bob, "hi from tcp 🎉");
    // Own messages are marked as ours; system notices look different.
    assert.equal(await alice.locator("#messages li.own", { hasText: "hello from alice" }).count(), 1);
    assert.equal(await alice.locator("#messages li.own .you").first().textContent(), "you");
    assert.equal(await alice.locator("#messages li.own", { hasText: "hi from bob" }).count(), 0);
    assert.ok((await alice.locator("#messages li.system", { hasText: "carol" }).count()) > 0);

    // Markup in a message is shown as text, never run.
    const attack = `<img src=x onerror="window.pwned=1">`;
    carol.send(attack);
    await messageOn(alice, "<img src=x");
    assert.equal(await alice.locator("#messages img").count(), 0);
    assert.equal(await alice.evaluate(() => window.pwned), undefined);
    assert.ok((await alice.locator("#messages li", { hasText: attack }).count()) === 1);

    // Enter while an input method is composing confirms the composition;
    // it does not send.
    await alice.fill("#input", "你好世界");
    await alice.evaluate(() => {
      const input = document.getElementById("input");
      input.dispatchEvent(new CompositionEvent("compositionstart", { data: "" }));
      input.dispatchEvent(
        new KeyboardEvent("keydown", { key: "Enter", isComposing: true, bubbles: true, cancelable: true }),
      );
    });
    assert.equal(await alice.inputValue("#input"), "你好世界", "a composing Enter must not send");
    await alice.evaluate(() => {
      document.getElementById("input").dispatchEvent(new CompositionEvent("compositionend", { data: "你好世界" }));
    });
    await alice.press("#input", "Enter");
    assert.equal(await carol.expect("alice:"), "[lobby] alice: 你好世界");

    // Rooms, switching, unread counts.
    await say(alice, "/join rust");
    await alice.locator("#room-title", { hasText: "#rust" }).waitFor({ timeout: PATIENCE });
    await say(bob, "while alice is away");
    await alice.locator("#room-list li", { hasText: "#lobby" }).locator(".unread", { hasText: "1" })
      .waitFor({ timeout: PATIENCE });
    await alice.click("#room-list li[data-room=lobby]");
    await messageOn(alice, "while alice is away");
    assert.equal(await alice.locator("#room-list li[data-room=lobby] .unread").count(), 0);

    // Private messages get a place of their own.
    await say(bob, "/msg alice just between us");
    await alice.locator("#room-list li", { hasText: "private" }).locator(".unread").waitFor({ timeout: PATIENCE });
    await alice.click("#room-list li[data-room='@private']");
    await messageOn(alice, "just between us");

    // A reload shows the history.
    await bob.reload();
    await bob.locator("#state.online").waitFor({ timeout: PATIENCE });
    await bob.locator("#messages li.history", { hasText: "hello from alice" }).waitFor({ timeout: PATIENCE });
    // What bob said before the reload came back with the history, before
    // the server took his nickname again: it is still marked as his.
    await bob.locator("#messages li.history.own", { hasText: "hi from bob" }).waitFor({ timeout: PATIENCE });
    // The page's icon is served (no 404 in the log), and nothing the pages
    // asked for failed.
    const icon = await bob.request.get(new URL("/favicon.ico", webUrl).href);
    assert.equal(icon.status(), 200);
    assert.equal(icon.headers()["content-type"], "image/svg+xml");
    assert.deepEqual(failedRequests, []);

    // The server going away shows in the connection state, and the page
    // comes back by itself (tested by the reload above for a fresh page).
    assert.equal(await bob.locator("#state").textContent(), "online");

    // A dropped connection shows, and the page reconnects (with backoff),
    // takes its nickname back and rejoins its rooms.
    await alice.evaluate(() => state.socket.close());
    await alice.locator("#state.offline", { hasText: "retrying" }).waitFor({ timeout: PATIENCE });
    await alice.locator("#state.online").waitFor({ timeout: PATIENCE });
    await carol.expect("alice joined");
    // The rejoin follows the nickname; ask until it has happened.
    let members = "";
    for (let asked = 0; asked < 50 && !members.includes("alice"); asked += 1) {
      carol.send("/who rust");
      // "* #rust has N: ..." or, before the rejoin, "! no such room: #rust".
      members = await carol.expect("#rust");
    }
    assert.equal(members, "* #rust has 1: alice");

    // Scrolling up fetches older history than the replay on join.
    for (let index = 0; index < 25; index += 1) carol.send(`filler ${index}`);
    await carol.expect("filler 24");
    const dave = await openPage(browser, "dave", { width: 1100, height: 700 });
    await messageOn(dave, "filler 24");
    assert.equal(await dave.locator("#messages li", { hasText: "hello from alice" }).count(), 0);
    await dave.evaluate(() => {
      const list = document.getElementById("messages");
      list.scrollTop = 0;
      list.dispatchEvent(new Event("scroll"));
    });
    await messageOn(dave, "hello from alice");

    // A page from another origin cannot open a WebSocket to the server.
    const evil = http.createServer((request, response) => {
      response.setHeader("content-type", "text/html");
      response.end("<!doctype html><title>elsewhere</title>");
    });
    await new Promise((resolve) => evil.listen(0, "127.0.0.1", resolve));
    const elsewhere = await (await browser.newContext()).newPage();
    await elsewhere.goto(`http://127.0.0.1:${evil.address().port}/`);
    const wsUrl = webUrl.replace(/^http/, "ws") + "ws";
    const outcome = await elsewhere.evaluate(
      (url) =>
        new Promise((resolve) => {
          const socket = new WebSocket(url);
          socket.onopen = () => resolve("open");
          socket.onerror = () => resolve("refused");
        }),
      wsUrl,
    );
    assert.equal(outcome, "refused", "a cross-origin WebSocket must be refused");
    evil.close();

    await alice.click("#room-list li[data-room=lobby]");
    await alice.screenshot({ path: path.join(shots, "web-desktop.png") });
    await bob.screenshot({ path: path.join(shots, "web-phone.png") });
    carol.socket.end();
    console.log("browser checks passed");
  } finally {
    await browser.close();
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
