// The sockchat page over HTTPS, chatting over WSS, in a real browser
// (Debian's Chromium through playwright-core), next to a plain TCP client.
// Run by tests/tls.rs:
//
//   node tests/browser/https.mjs --web https://127.0.0.1:PORT/ --tcp 127.0.0.1:PORT --cert CERT.pem
//
// Chromium trusts the server's self-signed certificate by its public key
// alone (--ignore-certificate-errors-spki-list), the way a person accepts
// it once: any other certificate is still refused. Exits 0 when every
// check passed; it waits for what arrives, never for a fixed time.

import assert from "node:assert/strict";
import { createHash, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";

import { launchChromium, LineClient, PATIENCE } from "./support.mjs";

function option(name) {
  const index = process.argv.indexOf(`--${name}`);
  if (index < 0 || !process.argv[index + 1]) throw new Error(`missing --${name}`);
  return process.argv[index + 1];
}

const webUrl = option("web");
const [tcpHost, tcpPort] = option("tcp").split(":");
const certificate = new X509Certificate(readFileSync(option("cert")));
// What Chromium pins: the SHA-256 of the certificate's public key (SPKI), base64.
const spki = createHash("sha256")
  .update(certificate.publicKey.export({ type: "spki", format: "der" }))
  .digest("base64");

async function main() {
  const browser = await launchChromium([`--ignore-certificate-errors-spki-list=${spki}`]);
  try {
    const page = await (await browser.newContext()).newPage();
    page.on("pageerror", (error) => console.error("page error:", error));
    const response = await page.goto(webUrl);
    assert.equal(response.status(), 200);
    assert.equal(await page.evaluate(() => location.protocol), "https:");
    // The certificate the browser was shown is the server's.
    const security = await response.securityDetails();
    assert.ok(security, "the page came over TLS");
    assert.match(security.protocol, /^TLS 1\.[23]$/);

    await page.locator("#nick-dialog[open]").waitFor({ timeout: PATIENCE });
    await page.fill("#nick-input", "secure");
    await page.click("#nick-form button");
    await page.locator("#state.online").waitFor({ timeout: PATIENCE });
    assert.equal(await page.evaluate(() => state.socket.url.split(":")[0]), "wss");

    const plain = await LineClient.connect(tcpHost, tcpPort);
    await plain.expect("welcome");
    await page.fill("#input", "over wss, 你好");
    await page.press("#input", "Enter");
    assert.equal(await plain.expect("over wss"), "[lobby] secure: over wss, 你好");
    plain.send("hello https page");
    await page.locator("#messages li", { hasText: "hello https page" }).first().waitFor({ timeout: PATIENCE });
    plain.socket.end();
    console.log("https checks passed");
  } finally {
    await browser.close();
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
