// A browser page in the same room as IRC clients and nc. Run by
// tests/irc_clients.rs, which drives the IRC clients and nc:
//
//   node tests/browser/irc.mjs --web http://127.0.0.1:PORT/ --nick page --say TEXT --hear TEXT[,TEXT...]
//
// The page joins as NICK, says TEXT once it is online, and waits until
// every TEXT to hear has shown up in its messages. Prints "page online"
// when it is in the room and "irc page checks passed" at the end; it
// waits for what arrives, never for a fixed time.

import { launchChromium, PATIENCE } from "./support.mjs";

function option(name) {
  const index = process.argv.indexOf(`--${name}`);
  if (index < 0 || !process.argv[index + 1]) throw new Error(`missing --${name}`);
  return process.argv[index + 1];
}

async function main() {
  const browser = await launchChromium();
  try {
    const page = await (await browser.newContext()).newPage();
    page.on("pageerror", (error) => console.error("page error:", error));
    await page.goto(option("web"));
    await page.locator("#nick-dialog[open]").waitFor({ timeout: PATIENCE });
    await page.fill("#nick-input", option("nick"));
    await page.click("#nick-form button");
    await page.locator("#state.online").waitFor({ timeout: PATIENCE });
    console.log("page online");
    await page.fill("#input", option("say"));
    await page.press("#input", "Enter");
    for (const text of option("hear").split(",")) {
      await page.locator("#messages li", { hasText: text }).first().waitFor({ timeout: PATIENCE });
    }
    console.log("irc page checks passed");
  } finally {
    await browser.close();
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
